//! Integration tests on SQLite (a file database per test, so that a pool has one database).

// Tests plant and inspect rows behind the library's back with SeaORM's own entry points.
#![allow(clippy::disallowed_methods)]

#[cfg(not(feature = "sqlite"))]
compile_error!(
    "the SQLite suite needs the `sqlite` feature: run `cargo test --workspace --all-features`"
);

#[path = "../common/mod.rs"]
mod common;
mod counters;
mod web;

use common::Env;

async fn setup() -> Env {
    let (app, raw, dir) = open().await;
    Env::new(app, raw, Box::new(dir)).await
}

/// A file database: the handle's pool, and a planting connection.
async fn open() -> (
    sea_orm::DatabaseConnection,
    sea_orm::DatabaseConnection,
    tempfile::TempDir,
) {
    // Removed with everything in it when the `Env` that keeps it is dropped.
    let dir = tempfile::Builder::new()
        .prefix("tenant-sqlite-")
        .tempdir()
        .expect("create a temporary directory");
    let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
    let mut options = sea_orm::ConnectOptions::new(url.clone());
    options.max_connections(2).sqlx_logging(false);
    let app = sea_orm::Database::connect(options)
        .await
        .expect("open SQLite");
    // The planting connection skips foreign keys, to plant rows the schema would refuse.
    let mut raw = sea_orm::ConnectOptions::new(url);
    raw.sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| o.foreign_keys(false));
    let raw = sea_orm::Database::connect(raw).await.expect("open SQLite");
    (app, raw, dir)
}

crate::scenarios!(setup);

/// Every scenario again on the tables' distributed form (keys `(tenant, key)`).
mod distributed {
    use super::Env;

    async fn setup() -> Env {
        let (app, raw, dir) = super::open().await;
        Env::new_distributed(app, raw, false, Box::new(dir)).await
    }

    crate::scenarios!(setup);
}

#[test]
fn schema_statements_lead_every_key_with_the_tenant_column() {
    use common::entities::post;
    use sea_orm::DbBackend;

    for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
        let s = tenant::table_statements::<post::Entity>(backend);
        let table = backend.build(&s.table).to_string();
        assert!(
            table.contains(r#""tenant_id" uuid"#) || table.contains(r#""tenant_id" uuid_text"#),
            "{table}"
        );
        let indexes: Vec<String> = s
            .indexes
            .iter()
            .map(|i| backend.build(i).to_string())
            .collect();
        // SQLite has no `INCLUDE`: the carried column is a further key column there.
        let covering = if backend == DbBackend::Sqlite {
            r#"CREATE INDEX IF NOT EXISTS "ix_post_tenant_id_views_include_title" ON "post" ("tenant_id", "views", "title")"#
        } else {
            r#"CREATE INDEX IF NOT EXISTS "ix_post_tenant_id_views_include_title" ON "post" ("tenant_id", "views") INCLUDE ("title")"#
        };
        assert_eq!(
            indexes,
            [
                r#"CREATE UNIQUE INDEX IF NOT EXISTS "ux_post_tenant_id_id" ON "post" ("tenant_id", "id")"#,
                r#"CREATE UNIQUE INDEX IF NOT EXISTS "ux_post_tenant_id_slug" ON "post" ("tenant_id", "slug")"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_post_tenant_id_title" ON "post" ("tenant_id", "title")"#,
                covering,
            ],
            "{backend:?}"
        );
    }
    // A global table has no tenant keys.
    let plan = tenant::table_statements::<common::entities::plan::Entity>(DbBackend::Postgres);
    assert!(plan.indexes.is_empty());
}

#[test]
fn escape_hatches_and_system_scopes_are_logged_with_their_reason() {
    let capture = common::audit_log::Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let env = setup().await;
            env.seed().await;
            let _raw = env
                .db
                .unscoped(&tenant::AssertUnscoped::new("test: nightly export"));
            tenant::SystemScope::assert("test: support ticket 42")
                .run(common::entities::post::Entity::find().all(&env.db))
                .await
                .unwrap();
        });
    });
    let events = capture.audit_events();
    let reasons: Vec<_> = events.iter().filter_map(|e| e.field("reason")).collect();
    assert!(reasons.contains(&"test: nightly export"), "{events:?}");
    // At the default level (`tenant::set_audit_level` changes it: tests/observability.rs).
    assert!(events.iter().all(|e| e.level == "WARN"), "{events:?}");
    // The scope's creation, and each operation under it.
    assert!(
        reasons
            .iter()
            .filter(|r| **r == "test: support ticket 42")
            .count()
            >= 2,
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.field("operation") == Some("select") && e.field("entity") == Some("post")),
        "{events:?}"
    );
}

/// The dense `#[sea_orm::model]` format: the derive is copied onto `ModelEx` too, and must
/// declare the entity once.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's generated `Entity::load()` calls the unscoped `find`"
)]
#[expect(unreachable_pub, reason = "SeaORM's entity layout")]
mod dense {
    pub mod author {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
        #[sea_orm(table_name = "author")]
        #[tenant(unique(name))]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub tenant_id: Uuid,
            pub name: String,
            #[sea_orm(has_many)]
            pub books: HasMany<super::book::Entity>,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod book {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
        #[sea_orm(table_name = "book")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub tenant_id: Uuid,
            pub author_id: Uuid,
            pub title: String,
            #[sea_orm(belongs_to, from = "author_id", to = "id")]
            pub author: BelongsTo<super::author::Entity>,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }
}

#[tokio::test]
async fn the_dense_model_format_is_scoped_too() {
    use dense::{author, book};
    use sea_orm::Set;

    let env = setup().await;
    let tables = [
        tenant::table::<author::Entity>(),
        tenant::table::<book::Entity>(),
    ];
    tenant::create_schema(&env.raw, &tables).await.unwrap();
    for t in [env.acme, env.globex] {
        tenant::scope(t, async {
            let a = author::Entity::insert(author::ActiveModel {
                id: Set(uuid::Uuid::new_v4()),
                name: Set("Ann".into()),
                ..Default::default()
            })
            .exec(&env.db)
            .await
            .unwrap();
            tenant::TenantRepo::<book::Entity>::new(&env.db)
                .insert(book::ActiveModel {
                    id: Set(uuid::Uuid::new_v4()),
                    author_id: Set(a.id),
                    title: Set(format!("by {t}")),
                    ..Default::default()
                })
                .await
                .unwrap();
        })
        .await;
    }
    tenant::scope(env.acme, async {
        let rows = tenant::find::<author::Entity>()
            .find_with_related(book::Entity)
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1.len(), 1);
        assert_eq!(rows[0].1[0].title, format!("by {}", env.acme));
    })
    .await;
}

/// An entity whose tenant and indexed columns have `Column` variants renamed with
/// `#[sea_orm(enum_name = "..")]`: the derive names SeaORM's variants, not its default spelling.
#[expect(unreachable_pub, reason = "SeaORM's entity layout")]
mod renamed {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "renamed")]
    #[tenant(column = org, index(label))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(enum_name = "Owner")]
        pub org: Uuid,
        #[sea_orm(enum_name = "Name")]
        pub label: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[tokio::test]
async fn renamed_column_variants_are_the_ones_scoped_and_indexed() {
    use sea_orm::{ActiveValue::Set, DbBackend, IdenStatic};
    use uuid::Uuid;

    assert!(matches!(
        <renamed::Entity as tenant::TenantScoped>::TENANT_COLUMN,
        renamed::Column::Owner
    ));
    // SeaORM names the column after the variant.
    assert_eq!(renamed::Column::Owner.as_str(), "owner");
    let s = tenant::table_statements::<renamed::Entity>(DbBackend::Sqlite);
    let indexes: Vec<String> = s
        .indexes
        .iter()
        .map(|i| DbBackend::Sqlite.build(i).to_string())
        .collect();
    assert!(
        indexes.iter().any(|i| i.contains(r#"("owner", "name")"#)),
        "{indexes:?}"
    );
    let conn = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
    tenant::create_schema(&conn, &[tenant::table::<renamed::Entity>()])
        .await
        .unwrap();
    let db = tenant::TenantDb::new(conn);
    let (a, b) = (
        tenant::TenantId::from(Uuid::new_v4()),
        tenant::TenantId::from(Uuid::new_v4()),
    );
    for t in [a, b] {
        tenant::scope(
            t,
            renamed::ActiveModel {
                id: Set(Uuid::new_v4()),
                label: Set("x".into()),
                ..Default::default()
            }
            .insert(&db),
        )
        .await
        .unwrap();
    }
    let seen = tenant::scope(a, renamed::Entity::find().all(&db))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].org, *a.as_uuid());
}

#[tokio::test]
async fn rls_mode_on_sqlite_is_refused_with_an_error_a_caller_can_match() {
    let conn = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
    let err = tenant::TenantDb::with_rls(conn, tenant::Rls::default()).unwrap_err();
    assert!(
        matches!(
            err,
            tenant::Error::NeedsPostgres {
                feature: "RLS mode",
                backend: sea_orm::DbBackend::Sqlite
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "RLS mode needs PostgreSQL, and this connection is Sqlite; SQLite keeps the app-level \
         guarantees only"
    );
    let err = tenant::Rls::new("app.tenant-id").unwrap_err();
    assert!(
        matches!(&err, tenant::Error::InvalidName { what: "custom setting name", name, .. } if name == "app.tenant-id"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_builder_connects_to_sqlite_and_refuses_rls_mode_there() {
    let db = tenant::TenantDb::builder("sqlite::memory:")
        .max_connections(1)
        .connect()
        .await
        .unwrap();
    assert_eq!(db.backend(), sea_orm::DbBackend::Sqlite);
    // The pipeline is PostgreSQL's: none by default, an error when asked for.
    assert!(db.pipeline().is_none());
    let err = tenant::TenantDb::builder("sqlite::memory:")
        .pipeline(2)
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tenant::Error::NeedsPostgres {
                feature: "the pipelined executor",
                ..
            }
        ),
        "{err:?}"
    );
    let err = tenant::TenantDb::builder("sqlite::memory:")
        .rls(tenant::Rls::default())
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tenant::Error::NeedsPostgres {
                feature: "RLS mode",
                ..
            }
        ),
        "{err:?}"
    );
}

/// SQLite has no schemas: a tenant the catalog puts on the schema tier fails closed with an error
/// a caller can match, before any SQL, and so does provisioning one.
#[tokio::test]
async fn a_schema_tier_tenant_on_sqlite_is_refused_before_any_sql() {
    use common::entities::post;
    use tenant::catalog::{Catalog, NewTenant, TenantStatus};
    let env = setup().await;
    let catalog = Catalog::new(env.raw.clone());
    catalog.create_table().await.unwrap();
    catalog
        .register(NewTenant::schema(env.acme, "acme", "t_acme").status(TenantStatus::Active))
        .await
        .unwrap();
    let db = env.db.clone().with_catalog(catalog);
    let err = tenant::scope(env.acme, post::Entity::find().all(&db))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tenant::Error::NeedsPostgres {
                feature: "schema-per-tenant",
                ..
            }
        ),
        "{err}"
    );
    let err = tenant::TenantTables::new()
        .tables(common::entities::tables())
        .create_in(&env.raw, "t_acme")
        .await
        .unwrap_err();
    assert!(matches!(err, tenant::Error::NeedsPostgres { .. }), "{err}");
}

/// A system task reaches every active tenant as one job per tenant, each run in its own scope:
/// a suspended tenant gets none, and each job's writes are its tenant's.
#[tokio::test]
async fn a_fanned_out_job_runs_once_per_active_tenant_in_its_scope() {
    use common::entities::post;
    use tenant::TenantRepo;
    use tenant::catalog::{Catalog, NewTenant, TenantStatus};
    use tenant::jobs::{TenantJob, fan_out};
    let env = setup().await;
    let catalog = Catalog::new(env.raw.clone());
    catalog.create_table().await.unwrap();
    let initech = tenant::TenantId::from(uuid::Uuid::from_u128(0x0141_7ec4));
    for (id, slug, status) in [
        (env.acme, "acme", TenantStatus::Active),
        (env.globex, "globex", TenantStatus::Active),
        (initech, "initech", TenantStatus::Suspended),
    ] {
        catalog
            .register(NewTenant::shared(id, slug).status(status))
            .await
            .unwrap();
    }
    let jobs = fan_out(&catalog, "nightly".to_owned()).await.unwrap();
    assert_eq!(
        jobs.iter().map(TenantJob::tenant).collect::<Vec<_>>(),
        [env.acme, env.globex]
    );
    let db = env.db.clone().with_catalog(catalog);
    for job in jobs {
        // Through a queue: the job is a message, read back by the worker.
        let message = serde_json::to_vec(&job).unwrap();
        let job: TenantJob<String> = serde_json::from_slice(&message).unwrap();
        let tenant = job.tenant();
        let db = &db;
        let written = job
            .run(|slug| async move {
                let repo = TenantRepo::<post::Entity>::new(db);
                repo.insert(common::new_post(&slug)).await?;
                repo.all().await
            })
            .await
            .unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].tenant_id, *tenant.as_uuid());
    }
    assert_eq!(env.raw_posts().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_isolates_its_tenants() {
    let dir = tempfile::Builder::new()
        .prefix("tenant-service-")
        .tempdir()
        .unwrap();
    let url = format!("sqlite://{}/service.db?mode=rwc", dir.path().display());
    common::service::the_service_answers_every_endpoint_for_its_own_tenant_only(
        common::service::app::Database::Sqlite(url),
    )
    .await;
}

#[test]
fn the_distributed_form_keys_rows_by_tenant_and_refuses_what_cannot_be_distributed() {
    use common::entities::{comment, post};
    use sea_orm::DbBackend;
    use tenant::{Error, PolicyForm, Rls, TenantTables};

    let plain = Rls::default().with_policy_form(PolicyForm::Plain);
    let schema = TenantTables::new()
        .tables(common::entities::tables())
        .distributed()
        .rls(plain);
    schema.check().unwrap();
    let sql: Vec<String> = schema
        .statements(DbBackend::Postgres)
        .iter()
        .map(ToString::to_string)
        .collect();
    let of = |prefix: &str| {
        sql.iter()
            .find(|s| s.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}..` in {sql:#?}"))
    };
    let post = of(r#"CREATE TABLE IF NOT EXISTS "post""#);
    assert!(
        post.contains(r#"CONSTRAINT "pk_post" PRIMARY KEY ("tenant_id", "id")"#),
        "{post}"
    );
    assert!(
        !post.contains(r#""id" uuid NOT NULL PRIMARY KEY"#),
        "{post}"
    );
    // The only foreign key to a tenant parent is the tenant-consistent one.
    let comment = of(r#"CREATE TABLE IF NOT EXISTS "comment""#);
    assert_eq!(comment.matches("FOREIGN KEY").count(), 1, "{comment}");
    assert!(
        comment.contains(
            r#"FOREIGN KEY ("tenant_id", "post_id") REFERENCES "post" ("tenant_id", "id")"#
        )
    );
    // The primary key is the `(tenant, key)` unique: not created twice.
    assert!(!sql.iter().any(|s| s.contains("ux_post_tenant_id_id")));
    // Distributed by tenant, colocated; the global table a reference table; both guarded.
    assert!(of("DO $tenant$").contains("create_reference_table('\"plan\"')"));
    assert!(sql.iter().any(|s| s.contains(
        "create_distributed_table('\"comment\"', 'tenant_id', colocate_with => '\"post\"')"
    )));
    // The policies come after the distribution.
    let position = |needle: &str| sql.iter().position(|s| s.contains(needle)).unwrap();
    assert!(
        position("create_distributed_table('\"post\"'")
            < position("CREATE POLICY tenant_isolation ON \"post\"")
    );
    // No distribution statements where there is no Citus to run them.
    let sqlite = schema.statements(DbBackend::Sqlite);
    assert!(!sqlite.iter().any(|s| s.to_string().contains("$tenant$")));

    let refused = |s: TenantTables| match s.check() {
        Err(Error::NotDistributable { table, reason }) => (table, reason),
        other => panic!("{other:?}"),
    };
    let (table, reason) = refused(TenantTables::new().table::<comment::Entity>().distributed());
    assert_eq!(table, "comment");
    assert!(
        reason.contains("`post`, which is not in this `TenantTables`"),
        "{reason}"
    );
    let (table, reason) = refused(
        TenantTables::new()
            .table::<post::Entity>()
            .distributed()
            .rls(Rls::default()),
    );
    assert_eq!(table, "post");
    assert!(reason.contains("PolicyForm::Plain"), "{reason}");
    // The standard form is not checked for distribution.
    TenantTables::new()
        .table::<comment::Entity>()
        .check()
        .unwrap();
}

#[test]
#[should_panic(expected = "`comment` cannot be distributed")]
fn statements_of_a_set_that_cannot_be_distributed_panic_naming_the_table() {
    let _ = tenant::TenantTables::new()
        .table::<common::entities::comment::Entity>()
        .distributed()
        .statements(sea_orm::DbBackend::Postgres);
}
