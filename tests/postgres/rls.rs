//! Row-Level Security on its own, as the application role `tenant_app`: raw SQL past the library
//! is still confined to the bound tenant, and one pooled connection serving thousands of mixed,
//! cancelled, failing and panicking operations for two tenants never shows a row of the wrong
//! tenant nor keeps a binding afterwards, directly and through PgBouncer in transaction mode. The
//! attacks are in `support/attacks.rs`.

#[path = "../support/pgbouncer.rs"]
pub(crate) mod pgbouncer;

use std::time::Duration;

use futures::FutureExt as _;
use sea_orm::{ConnectOptions, Database};
use tenant::AssertUnscoped;

use crate::attacks::stress;
use crate::common::Env;
use crate::common::entities::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_through_the_escape_hatch_is_confined_by_row_level_security() {
    let (app, raw, keep) = crate::connections().await;
    let env = Env::new_rls(app, raw, Box::new(keep)).await;
    crate::attacks::raw_sql_through_the_escape_hatch_is_confined_by_row_level_security(&env).await;
}

// ---------------------------------------------------------------------------------------------
// One pooled connection under load.

/// Operations in one stress run, all tasks together.
const OPERATIONS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pooled_connection_serving_ten_thousand_mixed_operations_never_leaks_a_tenant() {
    let test_db = crate::pg::fresh_database().await;
    let options = ConnectOptions::new(test_db.app_url.clone());
    let env = single_connection_env(options, test_db).await;
    stress(&env, "direct", OPERATIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ten_thousand_operations_with_reads_on_one_pipelined_connection_never_leak_a_tenant()
 {
    let test_db = crate::pg::fresh_database().await;
    let url = test_db.app_url.clone();
    let options = ConnectOptions::new(test_db.app_url.clone());
    let env = single_connection_env(options, test_db)
        .await
        .with_pipeline(&url, 1);
    stress(&env, "pipelined reads, 1 connection", OPERATIONS).await;
    let pipelined = env.pipeline.as_ref().unwrap().statements();
    assert!(
        pipelined > 1_000,
        "the reads did not take the pipeline: {pipelined} statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ten_thousand_operations_through_pgbouncer_in_transaction_mode_never_leak_a_tenant()
 {
    // Starting it blocks (process start, port wait): keep it off the runtime's workers.
    let bouncer = tokio::task::spawn_blocking(pgbouncer::bouncer)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let test_db = crate::pg::fresh_database().await;
    // With PgBouncer < 1.21 this turns sqlx's statement cache off: see `connect_options`.
    let options = bouncer.connect_options(&test_db.app_url);
    let env = single_connection_env(options, test_db).await;
    let label = format!(
        "PgBouncer {} (pool_mode = transaction, default_pool_size = 2, {})",
        bouncer.version_string(),
        if bouncer.prepared_statements {
            "max_prepared_statements = 100"
        } else {
            "sqlx statement cache off"
        }
    );
    stress(&env, &label, OPERATIONS).await;
}

/// An RLS-mode environment whose application pool has exactly one connection.
async fn single_connection_env(options: ConnectOptions, test_db: crate::pg::TestDb) -> Env {
    one_connection_env(options, test_db, true, None).await
}

/// An environment, in RLS mode or not, whose application pool (made from `options`) has exactly
/// one connection.
pub(crate) async fn one_connection_env(
    mut options: ConnectOptions,
    test_db: crate::pg::TestDb,
    rls: bool,
    tiers: Option<crate::common::Tiers>,
) -> Env {
    options
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    let app = Database::connect(options)
        .await
        .expect("connect as the app role");
    let mut admin = ConnectOptions::new(test_db.admin_url.clone());
    admin
        .max_connections(1)
        .min_connections(0)
        .sqlx_logging(false);
    let raw = Database::connect(admin)
        .await
        .expect("connect as the owner");
    match tiers {
        Some(tiers) => {
            let role = crate::pg::cluster().app_role().to_owned();
            let databases = crate::tenant_databases(tiers.databases()).await;
            Env::new_tiered(
                app,
                raw,
                &role,
                rls,
                tiers,
                databases,
                false,
                Box::new(test_db),
            )
            .await
        }
        None if rls => Env::new_rls(app, raw, Box::new(test_db)).await,
        None => Env::new(app, raw, Box::new(test_db)).await,
    }
}

/// The kit's RLS check fails where RLS is missing: the same tables with no policies, the same
/// application role, and the rows the app layer wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_rls_check_reports_tables_without_policies() {
    let env = crate::setup().await; // app level: no policies on the tables
    env.seed().await;
    let tenants = tenant::testing::TwoTenants {
        a: env.acme,
        b: env.globex,
    };
    let app = env
        .db
        .unscoped(&AssertUnscoped::new("the kit's raw queries"));
    let rls = tenant::Rls::default();
    let caught = std::panic::AssertUnwindSafe(tenant::testing::assert_rls_refuses::<post::Entity>(
        app, &rls, &tenants,
    ))
    .catch_unwind()
    .await;
    let message = *caught
        .expect_err("no policies, and the check passed")
        .downcast::<String>()
        .unwrap();
    for breach in [
        "read with no tenant bound",
        "read of b's rows bound to a",
        "delete of b's rows bound to a",
        "a's rows moved to b, bound to a",
    ] {
        assert!(message.contains(breach), "{breach}: {message}");
    }
}
