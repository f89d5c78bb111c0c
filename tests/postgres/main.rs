//! Integration tests on real PostgreSQL: one throwaway cluster per run (or `DATABASE_URL`), one
//! database per test. The scoped handle connects as `tenant_app`, a role that neither owns the
//! tables nor is superuser nor `BYPASSRLS`; the planting connection is the owner.

// Tests plant and inspect rows behind the library's back with SeaORM's own entry points.
#![allow(clippy::disallowed_methods)]

#[cfg(not(all(feature = "postgres", feature = "pipeline")))]
compile_error!(
    "the PostgreSQL suite needs the `postgres` and `pipeline` features: run `cargo test --workspace --all-features`"
);

#[path = "../support/attacks.rs"]
mod attacks;
mod audit;
#[path = "../common/mod.rs"]
mod common;
mod connect;
mod databases;
#[path = "../support/postgres.rs"]
mod pg;
mod pipeline;
mod pipeline_writes;
mod pooled;
mod rls;
mod tiers;

use common::Env;

/// The scoped handle (as `tenant_app`) and the owner's connection of a fresh database.
async fn connections() -> (
    sea_orm::DatabaseConnection,
    sea_orm::DatabaseConnection,
    pg::TestDb,
) {
    let test_db = pg::fresh_database().await;
    let mut options = sea_orm::ConnectOptions::new(test_db.app_url.clone());
    options
        .max_connections(2)
        .min_connections(0)
        .sqlx_logging(false);
    let app = sea_orm::Database::connect(options)
        .await
        .expect("connect as the app role");
    let mut admin = sea_orm::ConnectOptions::new(test_db.admin_url.clone());
    admin
        .max_connections(1)
        .min_connections(0)
        .sqlx_logging(false);
    let raw = sea_orm::Database::connect(admin)
        .await
        .expect("connect as the owner");
    (app, raw, test_db)
}

async fn setup() -> Env {
    let (app, raw, keep) = connections().await;
    Env::new(app, raw, Box::new(keep)).await
}

crate::scenarios!(setup);

/// Every scenario again with the tables under Row-Level Security and the handle in RLS mode.
mod rls_mode {
    use super::{Env, connections};

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        Env::new_rls(app, raw, Box::new(keep)).await
    }

    crate::scenarios!(setup);
}

/// Every scenario again on the tables' distributed form (keys `(tenant, key)`, as Citus needs
/// them), app level.
mod distributed {
    use super::{Env, connections};

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        Env::new_distributed(app, raw, false, Box::new(keep)).await
    }

    crate::scenarios!(setup);
}

/// Every scenario again on the distributed form, in RLS mode (plain policies, as Citus needs
/// them) with reads and writes on the pipeline.
mod distributed_rls_pipeline {
    use super::{Env, connections};

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let url = keep.app_url.clone();
        Env::new_distributed(app, raw, true, Box::new(keep))
            .await
            .with_pipeline(&url, 2)
    }

    crate::scenarios!(setup);
}

/// Every scenario again with reads on the pipelined executor (tokio-postgres).
mod pipeline_mode {
    use super::{Env, connections};

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let url = keep.app_url.clone();
        Env::new(app, raw, Box::new(keep))
            .await
            .with_pipeline(&url, 2)
    }

    crate::scenarios!(setup);
}

/// Every scenario again in RLS mode with reads on the pipelined executor.
mod rls_pipeline_mode {
    use super::{Env, connections};

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let url = keep.app_url.clone();
        Env::new_rls(app, raw, Box::new(keep))
            .await
            .with_pipeline(&url, 2)
    }

    crate::scenarios!(setup);
}

/// `n` fresh databases for database-tier tenants, each with the owner's connection.
pub(crate) async fn tenant_databases(n: usize) -> Vec<common::TenantDatabase> {
    let mut out = Vec::new();
    for _ in 0..n {
        let test_db = pg::fresh_database().await;
        let mut admin = sea_orm::ConnectOptions::new(test_db.admin_url.clone());
        admin
            .max_connections(1)
            .min_connections(0)
            .sqlx_logging(false);
        let owner = sea_orm::Database::connect(admin)
            .await
            .expect("connect to a tenant database as the owner");
        out.push(common::TenantDatabase {
            owner,
            app_url: test_db.app_url.clone(),
            keep: Box::new(test_db),
        });
    }
    out
}

/// The two tenants on `tiers`, through a catalog, RLS mode when `rls`, reads and writes on the
/// pipeline when `pipelined`.
async fn tiered(rls: bool, tiers: common::Tiers, pipelined: bool) -> Env {
    let (app, raw, keep) = connections().await;
    let role = pg::cluster().app_role().to_owned();
    let url = keep.app_url.clone();
    let databases = tenant_databases(tiers.databases()).await;
    let env = Env::new_tiered(
        app,
        raw,
        &role,
        rls,
        tiers,
        databases,
        pipelined,
        Box::new(keep),
    )
    .await;
    if pipelined {
        env.with_pipeline(&url, 2)
    } else {
        env
    }
}

/// Every scenario again with both tenants on schemas of their own (the catalog says so), the
/// handle in app-level mode: the schema is the isolation.
mod schema_tier {
    async fn setup() -> super::Env {
        super::tiered(false, crate::common::Tiers::SCHEMA, false).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// Every scenario again on schemas of their own, in RLS mode, with the pipeline.
mod schema_tier_rls_pipeline {
    async fn setup() -> super::Env {
        super::tiered(true, crate::common::Tiers::SCHEMA, true).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// Every scenario again on one handle serving a tenant of its own schema (`acme`) and a tenant
/// of the shared tables (`globex`), in RLS mode.
mod hybrid_rls {
    async fn setup() -> super::Env {
        super::tiered(true, crate::common::Tiers::HYBRID, false).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// The hybrid handle in app-level mode, with the pipeline.
mod hybrid_pipeline {
    async fn setup() -> super::Env {
        super::tiered(false, crate::common::Tiers::HYBRID, true).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// Every scenario again with both tenants on databases of their own, in RLS mode, under a
/// database tier with room for one tenant pool at a time.
mod database_tier_rls {
    async fn setup() -> super::Env {
        super::tiered(true, crate::common::Tiers::DATABASE, false).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// Both tenants on databases of their own, in RLS mode, each database with its own pipeline.
mod database_tier_rls_pipeline {
    async fn setup() -> super::Env {
        super::tiered(true, crate::common::Tiers::DATABASE, true).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// Every scenario again with a schema tenant (`acme`) beside a database tenant (`globex`), in
/// app-level mode with the pipeline (the shared database's, and the tenant database's own).
mod fleet_pipeline {
    async fn setup() -> super::Env {
        super::tiered(false, crate::common::Tiers::FLEET, true).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// The example service on PostgreSQL in RLS mode: the application role under policies, the
/// owner for the tables and system work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_isolates_its_tenants() {
    let test_db = pg::fresh_database().await;
    common::service::the_service_answers_every_endpoint_for_its_own_tenant_only(
        common::service::app::Database::Postgres {
            app_url: test_db.app_url.clone(),
            owner_url: test_db.admin_url.clone(),
        },
    )
    .await;
    drop(test_db);
}
