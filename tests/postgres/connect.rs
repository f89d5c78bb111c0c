//! `TenantDb::connect` and `TenantDb::builder`: the library opens the pools, checks the role in
//! RLS mode, runs the start-up audit, and adds the system connection and the pipeline.

use tenant::{Error, Rls, TenantDb, TenantRepo, TenantTables};

use crate::common::entities::{self, post};
use crate::common::new_post;

fn schema() -> TenantTables {
    TenantTables::new()
        .tables(entities::tables())
        .rls(Rls::default())
}

/// A fresh database with the schema and its policies, created as the owner.
async fn database() -> crate::pg::TestDb {
    let test_db = crate::pg::fresh_database().await;
    let owner = TenantDb::connect(&test_db.admin_url).await.unwrap();
    let raw = owner.unscoped(&tenant::AssertUnscoped::new("test: create the schema"));
    schema().create(raw).await.unwrap();
    owner.close().await.unwrap();
    test_db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_connects_in_rls_mode_with_the_audit_the_system_connection_and_the_pipeline() {
    let test_db = database().await;
    let schema = schema();
    let db = TenantDb::builder(test_db.app_url.clone())
        .max_connections(2)
        .min_connections(0)
        .rls(Rls::default())
        .audit(&schema)
        .system_url(test_db.admin_url.clone())
        .pipeline(1)
        .connect()
        .await
        .unwrap();
    assert_eq!(db.rls(), Some(&Rls::default()));
    let acme = tenant::TenantId::from(uuid::Uuid::new_v4());
    let globex = tenant::TenantId::from(uuid::Uuid::new_v4());
    for (t, slug) in [(acme, "a"), (globex, "g")] {
        tenant::scope(
            t,
            TenantRepo::<post::Entity>::new(&db).insert(new_post(slug)),
        )
        .await
        .unwrap();
    }
    let mine = tenant::scope(acme, post::Entity::find().all(&db))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].slug, "a");
    // The system connection sees every tenant; the application role alone would see none.
    let all = tenant::SystemScope::assert("test: count every tenant's posts")
        .run(post::Entity::find().count(&db))
        .await
        .unwrap();
    assert_eq!(all, 2);
    // The pipeline is the builder's: a size of zero is refused.
    let err = TenantDb::builder(test_db.app_url.clone())
        .pipeline(0)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PipelineSetup { .. }), "{err:?}");
}

/// Every PostgreSQL handle from the builder has a pipeline, as large as its pool and with its
/// connections open before the first request, unless told otherwise; one that cannot connect
/// (here: a URL option only sqlx knows) is an error when asked for and left out by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_gives_a_postgresql_handle_a_warm_pipeline_unless_told_not_to() {
    let test_db = database().await;
    let acme = tenant::TenantId::from(uuid::Uuid::new_v4());
    for (min, warm) in [(0, 1), (2, 2)] {
        let db = TenantDb::builder(test_db.app_url.clone())
            .max_connections(3)
            .min_connections(min)
            .rls(Rls::default())
            .connect()
            .await
            .unwrap();
        let pipeline = db.pipeline().expect("a pipeline by default");
        let status = pipeline.pool().status();
        assert_eq!(status.max_size, 3, "as large as the pool");
        assert_eq!(status.size, warm, "connections open before any request");
        let before = pipeline.statements();
        let rows = tenant::scope(acme, post::Entity::find().all(&db)).await;
        assert!(rows.unwrap().is_empty());
        assert_eq!(
            pipeline.statements(),
            before + 1,
            "the read ran on the pipeline"
        );
    }
    let db = TenantDb::builder(test_db.app_url.clone())
        .without_pipeline()
        .connect()
        .await
        .unwrap();
    assert!(db.pipeline().is_none());
    tenant::scope(acme, post::Entity::find().all(&db))
        .await
        .unwrap();
    // sqlx reads this option; tokio-postgres refuses the URL.
    let sqlx_only = format!("{}?statement-cache-capacity=50", test_db.app_url);
    let db = TenantDb::builder(sqlx_only.clone())
        .rls(Rls::default())
        .connect()
        .await
        .unwrap();
    assert!(db.pipeline().is_none(), "left out by default");
    tenant::scope(acme, post::Entity::find().all(&db))
        .await
        .unwrap();
    let err = TenantDb::builder(sqlx_only)
        .pipeline(2)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PipelineSetup { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_mode_as_a_superuser_is_refused_at_connect() {
    let test_db = database().await;
    let err = TenantDb::builder(test_db.admin_url.clone())
        .rls(Rls::default())
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::BypassingRole {
                connection: "application",
                right: "is a superuser",
                ..
            }
        ),
        "{err:?}"
    );
    // App-level mode has no policies to skip: the same role connects.
    TenantDb::connect(&test_db.admin_url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_refuses_a_database_the_audit_finds_fault_with() {
    let test_db = database().await;
    let owner = TenantDb::connect(&test_db.admin_url).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        owner.unscoped(&tenant::AssertUnscoped::new("test: break the schema")),
        "ALTER TABLE comment DISABLE ROW LEVEL SECURITY",
    )
    .await
    .unwrap();
    let schema = schema();
    let err = TenantDb::builder(test_db.app_url.clone())
        .rls(Rls::default())
        .audit(&schema)
        .connect()
        .await
        .unwrap_err();
    let Error::Audit(report) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(report.findings().len(), 1, "{report}");
    assert_eq!(report.findings()[0].kind, tenant::FindingKind::RlsDisabled);
    // A schema declaring other RLS settings than the handle's is refused before the audit.
    let other = TenantTables::new()
        .tables(entities::tables())
        .rls(Rls::new("app.other").unwrap());
    let err = TenantDb::builder(test_db.app_url.clone())
        .rls(Rls::default())
        .audit(&other)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RlsMismatch { .. }), "{err:?}");
}

/// Raw SQL through the escape hatch of a handle from the builder leaves, on every connection it
/// can reach, a temporary `post` holding a row that claims to be `tenant`'s and a session
/// `search_path` that puts it first: scoped units never see it, because the escape hatch has a
/// pool of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_left_through_the_escape_hatch_never_reaches_scoped_units() {
    let test_db = crate::pg::fresh_database().await;
    let owner = TenantDb::connect(&test_db.admin_url).await.unwrap();
    let raw = owner.unscoped(&tenant::AssertUnscoped::new("test: create the schema"));
    TenantTables::new()
        .tables(entities::tables())
        .create(raw)
        .await
        .unwrap();
    owner.close().await.unwrap();
    // App-level mode: no transaction per unit, so nothing but the pool keeps the session
    // objects away. Two connections, both held by the escape hatch at once; every statement on
    // sqlx, whose pool is the one the escape hatch must not share.
    let db = TenantDb::builder(test_db.app_url.clone())
        .max_connections(2)
        .without_pipeline()
        .connect()
        .await
        .unwrap();
    let globex = tenant::TenantId::from(uuid::Uuid::new_v4());
    let hatch = db.unscoped(&tenant::AssertUnscoped::new(
        "test: leave session objects behind",
    ));
    let shadow = format!(
        "CREATE TEMP TABLE post (LIKE public.post INCLUDING ALL); \
         INSERT INTO pg_temp.post (id, tenant_id, slug, title, views) \
         VALUES ('{}', '{globex}', 'planted', 'Planted', 0); \
         SET search_path = pg_temp, public",
        uuid::Uuid::new_v4()
    );
    let (first, second) = (
        sea_orm::TransactionTrait::begin(hatch).await.unwrap(),
        sea_orm::TransactionTrait::begin(hatch).await.unwrap(),
    );
    for txn in [&first, &second] {
        sea_orm::ConnectionTrait::execute_unprepared(txn, &shadow)
            .await
            .unwrap();
    }
    first.commit().await.unwrap();
    second.commit().await.unwrap();

    for round in 0..4 {
        let fresh = tenant::scope(
            globex,
            TenantRepo::<post::Entity>::new(&db).insert(new_post(&format!("real-{round}"))),
        )
        .await
        .unwrap();
        let seen = tenant::scope(globex, post::Entity::find().all(&db))
            .await
            .unwrap();
        assert_eq!(seen.len(), round + 1, "round {round}: {seen:?}");
        assert!(
            seen.iter().all(|p| p.slug.starts_with("real-")),
            "round {round}: the planted row was read: {seen:?}"
        );
        assert!(seen.iter().any(|p| p.id == fresh.id));
    }
    // The shadows are still in place on the escape hatch's connections, untouched.
    let planted = sea_orm::ConnectionTrait::query_one_raw(
        hatch,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM post",
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(planted.try_get::<i64>("", "n").unwrap(), 1);
    db.close().await.unwrap();
}

/// The builder's catalog reads on the system connection: in RLS mode the application role needs
/// no rights on the catalog's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_gives_the_handle_a_catalog_on_the_system_connection() {
    use tenant::catalog::{NewTenant, TenantStatus};

    let test_db = database().await;
    let owner = TenantDb::connect(&test_db.admin_url).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        owner.unscoped(&tenant::AssertUnscoped::new(
            "test: keep the app role off the catalog",
        )),
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM tenant_app",
    )
    .await
    .unwrap();
    owner.close().await.unwrap();
    let db = TenantDb::builder(test_db.app_url.clone())
        .rls(Rls::default())
        .system_url(test_db.admin_url.clone())
        .catalog(std::time::Duration::from_mins(1))
        .connect()
        .await
        .unwrap();
    let catalog = db.catalog().expect("the builder's catalog");
    catalog.create_table().await.unwrap();
    let acme = tenant::TenantId::from(uuid::Uuid::new_v4());
    catalog
        .register(NewTenant::shared(acme, "acme").status(TenantStatus::Active))
        .await
        .unwrap();
    tenant::scope(
        acme,
        TenantRepo::<post::Entity>::new(&db).insert(new_post("a")),
    )
    .await
    .unwrap();
    catalog
        .set_status(acme, TenantStatus::Suspended)
        .await
        .unwrap();
    let err = tenant::scope(acme, post::Entity::find().all(&db))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TenantSuspended { .. }), "{err:?}");
    // The application role itself cannot read the catalog: lookups went through the system
    // connection.
    let app = sea_orm::Database::connect(test_db.app_url.clone())
        .await
        .unwrap();
    let denied =
        sea_orm::ConnectionTrait::execute_unprepared(&app, "SELECT * FROM tenant_catalog").await;
    assert!(denied.is_err(), "the application role reads the catalog");
}
