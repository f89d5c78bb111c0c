//! The schema tier against attack: one pooled connection serving tenants of different schemas
//! under cached statements (sqlx's and the pipeline's) and a schema change, cancellations at
//! every poll point, PgBouncer in front, catalog entries tampered with, and the audit of a
//! tenant's schema.

// Tests plant, inspect and tamper behind the library's back.
#![allow(clippy::disallowed_methods)]

use sea_orm::{ConnectOptions, ConnectionTrait, DbBackend, Statement};
use tenant::catalog::{NewTenant, TenantStatus};
use tenant::{Error, FindingKind, TenantId, TenantRepo};
use uuid::Uuid;

use crate::attacks::cancel_at_every_poll;
use crate::common::entities::{self, post};
use crate::common::{Env, Tiers, new_post};
use crate::rls::{one_connection_env, pgbouncer};

/// Both tenants on schemas of their own, the application pool of one connection, with a
/// pipeline of one connection when `pipelined`.
async fn one_connection(rls: bool, tiers: Tiers, pipelined: bool) -> Env {
    let test_db = crate::pg::fresh_database().await;
    let url = test_db.app_url.clone();
    let env = one_connection_env(ConnectOptions::new(url.clone()), test_db, rls, Some(tiers)).await;
    if pipelined {
        env.with_pipeline(&url, 1)
    } else {
        env
    }
}

/// `t`'s posts as its scoped reads see them, by every read path, sorted; and that `other_id`
/// (another tenant's post) is out of reach.
async fn posts_of(env: &Env, t: TenantId, other_id: Uuid) -> Vec<Uuid> {
    tenant::scope(t, async {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        let mut all: Vec<Uuid> = repo.all().await.unwrap().iter().map(|p| p.id).collect();
        all.sort();
        assert_eq!(repo.count().await.unwrap(), all.len() as u64);
        assert!(repo.find_by_id(other_id).await.unwrap().is_none());
        // In a transaction: the sqlx path, whatever the handle's reads go through.
        let txn = env.db.begin().await.unwrap();
        let mut in_txn: Vec<Uuid> = post::Entity::find()
            .all(&txn)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        txn.commit().await.unwrap();
        in_txn.sort();
        assert_eq!(in_txn, all, "the transaction sees what the reads see");
        all
    })
    .await
}

/// Alternates the two tenants on the one connection for `rounds`, each writing a post and
/// reading its own back, and checks each sees exactly its own posts.
async fn alternate(env: &Env, mine: &mut [Vec<Uuid>; 2], rounds: usize, at: &str) {
    let tenants = [env.acme, env.globex];
    for round in 0..rounds {
        for (i, t) in tenants.into_iter().enumerate() {
            let other = mine[1 - i][0];
            let fresh = tenant::scope(
                t,
                TenantRepo::<post::Entity>::new(&env.db).insert(new_post(&format!("{at}-{round}"))),
            )
            .await
            .unwrap_or_else(|e| panic!("{at}: round {round}: insert: {e}"));
            assert_eq!(fresh.tenant_id, *t.as_uuid());
            mine[i].push(fresh.id);
            mine[i].sort();
            assert_eq!(
                posts_of(env, t, other).await,
                mine[i],
                "{at}: round {round}: {t} sees its own posts alone"
            );
        }
    }
}

async fn cached_statements_never_cross_schemas(env: &Env, label: &str) {
    let s = env.seed().await;
    let mut mine = [s.acme.to_vec(), s.globex.to_vec()];
    for m in &mut mine {
        m.sort();
    }
    let before = env.pipeline.as_ref().map(tenant::Pipeline::statements);
    alternate(env, &mut mine, 3, label).await;
    // A schema change in one tenant's schema under statements both tenants have prepared.
    env.plant(
        env.acme,
        Statement::from_string(
            DbBackend::Postgres,
            "ALTER TABLE post ALTER COLUMN title TYPE varchar(200)",
        ),
    )
    .await;
    alternate(
        env,
        &mut mine,
        3,
        &format!("{label}, after a schema change"),
    )
    .await;
    for (t, ids) in [(env.acme, &mine[0]), (env.globex, &mine[1])] {
        for id in ids {
            assert_eq!(env.raw_post_in(t, *id).await.tenant_id, *t.as_uuid());
        }
    }
    if let (Some(pipeline), Some(before)) = (&env.pipeline, before) {
        assert!(
            pipeline.statements() > before,
            "{label}: nothing ran on the pipeline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pooled_connection_serves_each_schema_its_own_tables_across_cached_statements() {
    let env = one_connection(false, Tiers::SCHEMA, false).await;
    cached_statements_never_cross_schemas(&env, "app level, sqlx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pipelined_connection_serves_each_schema_its_own_tables_across_cached_statements() {
    let env = one_connection(true, Tiers::SCHEMA, true).await;
    cached_statements_never_cross_schemas(&env, "RLS, pipeline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pooled_connection_alternating_a_schema_and_a_shared_tenant_never_crosses() {
    let env = one_connection(true, Tiers::HYBRID, false).await;
    cached_statements_never_cross_schemas(&env, "hybrid, RLS, sqlx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_tier_operations_dropped_at_every_poll_leave_their_connection_clean() {
    cancel_at_every_poll(
        &one_connection(false, Tiers::SCHEMA, false).await,
        "schema tier, app level, sqlx",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_tier_pipelined_operations_dropped_at_every_poll_leave_both_connections_clean() {
    let env = one_connection(true, Tiers::HYBRID, true).await;
    let before = env.pipeline.as_ref().unwrap().statements();
    cancel_at_every_poll(&env, "hybrid, RLS, pipeline").await;
    assert!(env.pipeline.as_ref().unwrap().statements() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_tier_through_pgbouncer_in_transaction_mode_leaves_no_state() {
    // Starting it blocks (process start, port wait): keep it off the runtime's workers.
    let bouncer = tokio::task::spawn_blocking(pgbouncer::bouncer)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let env = || async {
        let test_db = crate::pg::fresh_database().await;
        let options = bouncer.connect_options(&test_db.app_url);
        one_connection_env(options, test_db, false, Some(Tiers::SCHEMA)).await
    };
    cached_statements_never_cross_schemas(&env().await, "schema tier, PgBouncer").await;
    cancel_at_every_poll(&env().await, "schema tier, PgBouncer").await;
}

/// A catalog entry changed behind the catalog's back, to a schema name the catalog would never
/// accept, is refused before any SQL: the name is never written into a binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_schema_name_is_refused_before_any_sql() {
    let env = one_connection(false, Tiers::SCHEMA, true).await;
    let catalog = env.db.catalog().unwrap().clone();
    let statements = env.pipeline.as_ref().map(tenant::Pipeline::statements);
    for tampered in [
        "public",
        "pg_catalog",
        "t_acme\"; DROP TABLE post; --",
        "T_Acme",
        "",
    ] {
        env.raw
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE tenant_catalog SET schema_name = $1 WHERE id = $2",
                [tampered.into(), Uuid::from(env.acme).into()],
            ))
            .await
            .unwrap();
        catalog.invalidate(env.acme);
        let err = tenant::scope(env.acme, post::Entity::find().all(&env.db))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTenantEntry {
                    field: "schema name",
                    ..
                }
            ),
            "{tampered:?}: {err}"
        );
        let err = tenant::scope(env.acme, env.db.begin()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidTenantEntry { .. }), "{err}");
    }
    assert_eq!(
        env.pipeline.as_ref().map(tenant::Pipeline::statements),
        statements,
        "nothing reached the pipeline"
    );
    // The posts table is still there.
    assert_eq!(env.raw_posts().await, 0);
}

/// A tenant on a tier the handle does not serve fails closed, with its own error, on every path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_tier_tenant_fails_closed_on_a_schema_handle() {
    let env = one_connection(true, Tiers::HYBRID, true).await;
    let catalog = env.db.catalog().unwrap();
    let initech = TenantId::from(Uuid::from_u128(0x0141_7ec4));
    catalog
        .register(
            NewTenant::database(initech, "initech", "vault:db/initech")
                .status(TenantStatus::Active),
        )
        .await
        .unwrap();
    let repo = TenantRepo::<post::Entity>::new(&env.db);
    let results = tenant::scope(initech, async {
        vec![
            repo.all().await.map(drop),
            repo.insert(new_post("x")).await.map(drop),
            repo.count().await.map(drop),
            env.db.begin().await.map(drop),
        ]
    })
    .await;
    for result in results {
        assert!(
            matches!(result, Err(Error::TierNotServed { tenant, tier: tenant::catalog::Tier::Database }) if tenant == initech),
            "{result:?}"
        );
    }
}

/// The audit of a tenant's schema: clean as provisioned; a table missing from the schema is a
/// finding naming the schema, although the shared schema has one of that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_of_a_tenant_schema_finds_what_its_tenant_would_miss() {
    let env = one_connection(true, Tiers::SCHEMA, false).await;
    let tables = tenant::TenantTables::new()
        .tables(entities::tables())
        .rls(tenant::Rls::default());
    let app = env
        .db
        .unscoped(&tenant::AssertUnscoped::new("test: audit as the app role"));
    for schema in ["t_acme", "t_globex"] {
        let report = tenant::audit_in(app, &tables, schema).await.unwrap();
        assert!(report.is_clean(), "{schema}: {report}");
    }
    env.raw
        .execute_unprepared(
            "DROP TABLE t_acme.comment; ALTER TABLE t_globex.post DISABLE ROW LEVEL SECURITY",
        )
        .await
        .unwrap();
    let report = tenant::audit_in(app, &tables, "t_acme").await.unwrap();
    let missing: Vec<_> = report
        .findings()
        .iter()
        .map(|f| (f.kind, f.table.as_deref(), f.schema.as_deref()))
        .collect();
    assert_eq!(
        missing,
        [(FindingKind::TableMissing, Some("comment"), Some("t_acme"))],
        "{report}"
    );
    assert!(
        report.to_string().contains("in schema `t_acme`"),
        "{report}"
    );
    let report = tenant::audit_in(app, &tables, "t_globex").await.unwrap();
    assert!(
        report
            .findings()
            .iter()
            .any(|f| f.kind == FindingKind::RlsDisabled && f.schema.as_deref() == Some("t_globex")),
        "{report}"
    );
    // The shared tables are untouched, and their audit is clean.
    assert!(tenant::audit(app, &tables).await.unwrap().is_clean());
    let err = tenant::audit_in(app, &tables, "public").await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
}

/// The statements that provision a schema refuse names that are not a tenant's own schema.
#[test]
fn provisioning_refuses_shared_and_malformed_schema_names() {
    let tables = tenant::TenantTables::new().tables(entities::tables());
    for bad in [
        "public",
        "pg_toast",
        "information_schema",
        "Acme",
        "a b",
        "x\"y",
        "",
    ] {
        assert!(
            matches!(tables.statements_in(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(
            tenant::TenantTables::grants_in(bad, "app").is_err(),
            "{bad:?}"
        );
    }
    let statements = tables.statements_in("t_acme").unwrap();
    assert_eq!(statements[0].sql, "CREATE SCHEMA IF NOT EXISTS \"t_acme\"");
    assert_eq!(
        statements[1].sql,
        "SET LOCAL search_path = \"t_acme\", public"
    );
    // Global tables stay shared: no `plan` in a tenant's schema.
    assert!(
        statements
            .iter()
            .all(|s| !s.sql.contains("\"plan\"") || s.sql.contains("REFERENCES")),
        "{statements:#?}"
    );
}

/// Provisioning runs in one transaction: a schema whose tables cannot all be created is not
/// left half made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_a_schema_is_all_or_nothing() {
    let env = one_connection(false, Tiers::HYBRID, false).await;
    // A `comment` that is not a table stops the provisioning half-way.
    env.raw
        .execute_unprepared("CREATE SCHEMA t_half; CREATE VIEW t_half.comment AS SELECT 1 AS x")
        .await
        .unwrap();
    let tables = tenant::TenantTables::new().tables(entities::tables());
    tables.create_in(&env.raw, "t_half").await.unwrap_err();
    let made: i64 = env
        .raw
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 't_half'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(made, 0, "no table of the failed provisioning is left");
}

/// A system scope writes the shared tables: every way it inserts a row for a tenant whose rows
/// are in a schema of its own is refused, and nothing reaches the shared tables; a row for the
/// shared tenant is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_scope_never_writes_a_schema_tenants_row_into_the_shared_tables() {
    use sea_orm::ActiveValue::Set;
    for (rls, pipelined) in [(false, true), (true, false)] {
        let env = one_connection(rls, Tiers::HYBRID, pipelined).await;
        let at = format!("rls {rls}, pipeline {pipelined}");
        let named = |t: TenantId, slug: &str| {
            let mut p = new_post(slug);
            p.tenant_id = Set(*t.as_uuid());
            p
        };
        let system = || tenant::SystemScope::assert("test: system writes");
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        let results = vec![
            (
                "insert",
                system()
                    .run(named(env.acme, "a").insert(&env.db))
                    .await
                    .map(drop),
            ),
            (
                "repo insert",
                system()
                    .run(repo.insert(named(env.acme, "b")))
                    .await
                    .map(drop),
            ),
            (
                "insert_many",
                system()
                    .run(repo.insert_many([named(env.globex, "c"), named(env.acme, "d")]))
                    .await
                    .map(drop),
            ),
            (
                "upsert",
                system()
                    .run(repo.upsert(named(env.acme, "e")))
                    .await
                    .map(drop),
            ),
            (
                "in a transaction",
                system()
                    .run(async {
                        let txn = env.db.begin().await?;
                        named(env.acme, "f").insert(&txn).await?;
                        txn.commit().await
                    })
                    .await,
            ),
        ];
        for (what, result) in results {
            assert!(
                matches!(result, Err(Error::TenantElsewhere { tenant, tier: tenant::catalog::Tier::Schema }) if tenant == env.acme),
                "{at}: {what}: {result:?}"
            );
        }
        assert_eq!(
            env.raw_posts().await,
            0,
            "{at}: nothing was written anywhere"
        );
        let row = system()
            .run(named(env.globex, "shared").insert(&env.db))
            .await
            .unwrap();
        assert_eq!(row.tenant_id, *env.globex.as_uuid(), "{at}");
    }
}
