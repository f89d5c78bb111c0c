//! The database tier under load and attack: many tenant databases behind a small cap on
//! connections, every request served; a bounded wait when every pool is in use; operations
//! cancelled at every poll point while pools are closed to make room; a resolver that fails.

// Tests inspect behind the library's back.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, DbBackend, Statement};
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::{DatabaseTier, Error, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

use crate::attacks::cancel_at_every_poll;
use crate::common::entities::{self, post};
use crate::common::{Env, TenantDatabase, TestUrls, Tiers, new_post};
use crate::pooled::app_backends;
use crate::rls::one_connection_env;

/// A handle in RLS mode whose catalog puts `n` tenants on databases of their own, under `tier`
/// (given the tenant databases' URLs), and the tenants with their databases.
async fn fleet(
    n: usize,
    tier: impl FnOnce(TestUrls) -> DatabaseTier,
) -> (TenantDb, Vec<(TenantId, TenantDatabase)>, crate::pg::TestDb) {
    let (app, raw, keep) = crate::connections().await;
    let catalog = Catalog::new(raw.clone());
    catalog.create_table().await.unwrap();
    let databases = crate::tenant_databases(n).await;
    let urls = TestUrls(databases.iter().map(|d| d.app_url.clone()).collect());
    let tables = tenant::TenantTables::new()
        .tables(entities::tables())
        .rls(tenant::Rls::default());
    let mut tenants = Vec::new();
    for (i, database) in databases.into_iter().enumerate() {
        let id = TenantId::from(Uuid::from_u128(0x7e7a_0000 + i as u128));
        tables.create(&database.owner).await.unwrap();
        catalog
            .register(
                NewTenant::database(id, format!("t{i}"), format!("test:{i}"))
                    .status(TenantStatus::Active),
            )
            .await
            .unwrap();
        tenants.push((id, database));
    }
    let db = TenantDb::with_rls(app, tenant::Rls::default())
        .unwrap()
        .with_catalog(catalog)
        .with_database_tier(tier(urls))
        .unwrap();
    (db, tenants, keep)
}

/// Twelve tenant databases behind a cap of three connections, one per pool: eight workers
/// spread 240 operations over all of them. Every one succeeds and sees its tenant's rows alone;
/// no more than three pools are ever open, and pools were closed and opened again to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tenant_databases_behind_a_small_cap_serve_every_request() {
    const TENANTS: usize = 12;
    let (db, tenants, _keep) = fleet(TENANTS, |urls| {
        DatabaseTier::new(urls).max_connections(3).per_tenant(1)
    })
    .await;
    let ids: Vec<TenantId> = tenants.iter().map(|(id, _)| *id).collect();
    let mut workers = Vec::new();
    for w in 0..8usize {
        let (db, ids) = (db.clone(), ids.clone());
        workers.push(tokio::spawn(async move {
            for op in 0..30usize {
                // Spread deterministically over every tenant, each worker in its own order.
                let t = ids[(w * 7 + op * 5) % ids.len()];
                let tier = db.database_tier().unwrap();
                let written = tenant::scope(t, async {
                    let repo = TenantRepo::<post::Entity>::new(&db);
                    let p = repo.insert(new_post(&format!("w{w}-{op}"))).await?;
                    let all = repo.all().await?;
                    Ok::<_, Error>((p, all))
                })
                .await
                .unwrap_or_else(|e| panic!("worker {w}, operation {op}, tenant {t}: {e}"));
                assert!(
                    tier.open_pools() <= 3,
                    "more pools open than the cap allows"
                );
                let (p, all) = written;
                assert_eq!(p.tenant_id, *t.as_uuid());
                assert!(all.iter().all(|row| row.tenant_id == *t.as_uuid()));
                assert!(all.iter().any(|row| row.id == p.id));
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let tier = db.database_tier().unwrap();
    assert!(
        tier.pools_opened() > TENANTS,
        "pools were closed to make room and opened again: {} opened",
        tier.pools_opened()
    );
    let mut total = 0;
    for (id, database) in &tenants {
        // Each database holds its own tenant's rows only (the owner sees every row).
        let foreign: i64 = database
            .owner
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) FROM post WHERE tenant_id <> $1",
                [Uuid::from(*id).into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        assert_eq!(foreign, 0, "{id}'s database holds another tenant's rows");
        total += app_backends(&database.owner, "true", 1).await;
    }
    assert!(
        total <= 3,
        "{total} connections to the tenant databases, over the cap of 3"
    );
}

/// With every pool in use, an operation waits for one to come free, and fails with its own
/// error when none does within the timeout; one that waits long enough gets the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_pool_in_use_an_operation_waits_then_fails_or_gets_the_room() {
    let (db, tenants, _keep) = fleet(2, |urls| {
        DatabaseTier::new(urls)
            .max_connections(1)
            .per_tenant(1)
            .acquire_timeout(Duration::from_millis(200))
    })
    .await;
    let (a, b) = (tenants[0].0, tenants[1].0);
    // `a`'s transaction holds the only room.
    let txn = tenant::scope(a, db.begin()).await.unwrap();
    let err = tenant::scope(b, TenantRepo::<post::Entity>::new(&db).all())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DatabaseTierFull { tenant, max_connections: 1, .. } if tenant == b),
        "{err}"
    );
    // A waiter with time enough is served once `a` is done, whenever that is.
    let patient = db.clone();
    let waiter = tokio::spawn(tenant::scope(b, async move {
        let repo = TenantRepo::<post::Entity>::new(&patient);
        // Retried while the short timeout elapses: it must succeed once `a` commits.
        loop {
            match repo.all().await {
                Ok(rows) => return rows.len(),
                Err(Error::DatabaseTierFull { .. }) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
    }));
    tenant::scope(a, async {
        post::Entity::find().all(&txn).await.unwrap();
    })
    .await;
    txn.commit().await.unwrap();
    assert_eq!(waiter.await.unwrap(), 0);
}

/// A resolver that cannot resolve a reference fails the operation with its own error; a tier
/// that could never open a pool is refused at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_database_and_a_tier_that_cannot_open_a_pool_are_errors() {
    let (db, tenants, _keep) = fleet(1, |_| DatabaseTier::new(TestUrls(Vec::new()))).await;
    let t = tenants[0].0;
    let err = tenant::scope(t, TenantRepo::<post::Entity>::new(&db).all())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DatabaseUnresolved { tenant, .. } if *tenant == t),
        "{err}"
    );
    assert!(err.to_string().contains("no such test database"), "{err}");
    for tier in [
        DatabaseTier::new(TestUrls(Vec::new())).per_tenant(0),
        DatabaseTier::new(TestUrls(Vec::new()))
            .max_connections(2)
            .per_tenant(3),
    ] {
        let err = db.clone().with_database_tier(tier).unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
    }
}

/// Both tenants on databases of their own behind a cap of one pool: every operation kind dropped
/// at every poll point, each switch of tenant closing the other's pool; nothing is left in a
/// transaction on either database and the next tenant sees its own rows alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tier_operations_dropped_at_every_poll_leave_no_transaction_open() {
    let test_db = crate::pg::fresh_database().await;
    let env: Env = one_connection_env(
        ConnectOptions::new(test_db.app_url.clone()),
        test_db,
        true,
        Some(Tiers::DATABASE),
    )
    .await;
    cancel_at_every_poll(&env, "database tier, RLS, sqlx").await;
}

/// The builder serves the database tier only with a catalog, which is where a tenant's database
/// is found; with one, a database tenant's operations run on its own database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_serves_the_database_tier_through_the_catalog() {
    let test_db = crate::pg::fresh_database().await;
    let databases = crate::tenant_databases(1).await;
    let urls = || TestUrls(databases.iter().map(|d| d.app_url.clone()).collect());
    let err = TenantDb::builder(test_db.app_url.clone())
        .database_tier(DatabaseTier::new(urls()))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");

    let db = TenantDb::builder(test_db.app_url.clone())
        .system_url(test_db.admin_url.clone())
        .catalog(Duration::ZERO)
        .database_tier(DatabaseTier::new(urls()).max_connections(2))
        .connect()
        .await
        .unwrap();
    let catalog = db.catalog().unwrap();
    catalog.create_table().await.unwrap();
    let t = TenantId::from(Uuid::from_u128(0xb011_de45));
    catalog
        .register(NewTenant::database(t, "builder", "test:0").status(TenantStatus::Active))
        .await
        .unwrap();
    tenant::create_schema(&databases[0].owner, &entities::tables())
        .await
        .unwrap();
    let p = tenant::scope(
        t,
        TenantRepo::<post::Entity>::new(&db).insert(new_post("own")),
    )
    .await
    .unwrap();
    let there: i64 = databases[0]
        .owner
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FROM post WHERE id = $1",
            [p.id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(there, 1, "the row is in the tenant's own database");
    assert_eq!(db.database_tier().unwrap().open_pools(), 1);
}

/// The audit of every tenant on a schema or database of its own: clean as provisioned; a
/// database tenant's table left without its policy and a schema tenant's missing table are
/// findings naming where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_audit_covers_every_schema_and_database_tenant() {
    let env = {
        let (app, raw, keep) = crate::connections().await;
        let role = crate::pg::cluster().app_role().to_owned();
        let databases = crate::tenant_databases(1).await;
        Env::new_tiered(
            app,
            raw,
            &role,
            true,
            Tiers::FLEET,
            databases,
            false,
            Box::new(keep),
        )
        .await
    };
    let tables = tenant::TenantTables::new()
        .tables(entities::tables())
        .rls(tenant::Rls::default());
    let report = env.db.audit_tenants(&tables).await.unwrap();
    assert!(report.is_clean(), "{report}");

    env.raw
        .execute_unprepared("DROP TABLE t_acme.post_tag")
        .await
        .unwrap();
    let Some(crate::common::Place::Database(owner)) = env.place_of(env.globex) else {
        panic!("globex is on the database tier");
    };
    owner
        .execute_unprepared("ALTER TABLE comment DISABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let report = env.db.audit_tenants(&tables).await.unwrap();
    let found: Vec<_> = report
        .findings()
        .iter()
        .map(|f| {
            (
                f.kind,
                f.table.as_deref(),
                f.schema.as_deref(),
                f.database.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                tenant::FindingKind::TableMissing,
                Some("post_tag"),
                Some("t_acme"),
                None
            ),
            (
                tenant::FindingKind::RlsDisabled,
                Some("comment"),
                None,
                Some("test:0")
            ),
        ],
        "{report}"
    );
    assert!(
        report.to_string().contains("in database `test:0`"),
        "{report}"
    );
}

/// Both tenants on databases of their own, each with its own pipeline, behind room for one
/// database at a time: every operation kind dropped at every poll point, on the tenant
/// databases' pipelines, leaves no transaction open on either, and the pipelines ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tier_pipelined_operations_dropped_at_every_poll_leave_no_transaction_open() {
    let test_db = crate::pg::fresh_database().await;
    let mut options = ConnectOptions::new(test_db.app_url.clone());
    options
        .max_connections(1)
        .min_connections(0)
        .sqlx_logging(false);
    let app = sea_orm::Database::connect(options).await.unwrap();
    let mut admin = ConnectOptions::new(test_db.admin_url.clone());
    admin
        .max_connections(1)
        .min_connections(0)
        .sqlx_logging(false);
    let raw = sea_orm::Database::connect(admin).await.unwrap();
    let role = crate::pg::cluster().app_role().to_owned();
    let databases = crate::tenant_databases(2).await;
    let env = Env::new_tiered(
        app,
        raw,
        &role,
        true,
        Tiers::DATABASE,
        databases,
        true,
        Box::new(test_db),
    )
    .await;
    let tier = env.db.database_tier().unwrap().clone();
    cancel_at_every_poll(&env, "database tier, RLS, pipelines").await;
    assert!(
        tier.pipelined_statements() > 0,
        "the tenant databases' pipelines took the reads and writes"
    );
    assert!(
        tier.pools_opened() > 2,
        "the one room was handed back and forth"
    );
}
