//! Integration tests on real PostgreSQL: one throwaway cluster per run (or `DATABASE_URL`), one
//! database per test. The scoped handle connects as `tenant_app`, a role that neither owns the
//! tables nor is superuser nor `BYPASSRLS`; the planting connection is the owner.

// Tests plant and inspect rows behind the library's back with SeaORM's own entry points.
#![allow(clippy::disallowed_methods)]

#[cfg(not(all(feature = "postgres", feature = "pipeline")))]
compile_error!(
    "the PostgreSQL suite needs the `postgres` and `pipeline` features: run `cargo test --workspace --all-features`"
);

mod audit;
#[path = "../common/mod.rs"]
mod common;
mod connect;
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

/// Every scenario again with both tenants on schemas of their own (the catalog says so), the
/// handle in app-level mode: the schema is the isolation.
mod schema_tier {
    use super::{Env, connections};
    use crate::common::Tiers;

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let role = crate::pg::cluster().app_role().to_owned();
        Env::new_tiered(app, raw, &role, false, Tiers::Schema, Box::new(keep)).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// Every scenario again on schemas of their own, in RLS mode, with the pipeline.
mod schema_tier_rls_pipeline {
    use super::{Env, connections};
    use crate::common::Tiers;

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let role = crate::pg::cluster().app_role().to_owned();
        let url = keep.app_url.clone();
        Env::new_tiered(app, raw, &role, true, Tiers::Schema, Box::new(keep))
            .await
            .with_pipeline(&url, 2)
    }

    crate::scenarios!(@with_catalog setup);
}

/// Every scenario again on one handle serving a tenant of its own schema (`acme`) and a tenant
/// of the shared tables (`globex`), in RLS mode.
mod hybrid_rls {
    use super::{Env, connections};
    use crate::common::Tiers;

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let role = crate::pg::cluster().app_role().to_owned();
        Env::new_tiered(app, raw, &role, true, Tiers::Hybrid, Box::new(keep)).await
    }

    crate::scenarios!(@with_catalog setup);
}

/// The hybrid handle in app-level mode, with the pipeline.
mod hybrid_pipeline {
    use super::{Env, connections};
    use crate::common::Tiers;

    async fn setup() -> Env {
        let (app, raw, keep) = connections().await;
        let role = crate::pg::cluster().app_role().to_owned();
        let url = keep.app_url.clone();
        Env::new_tiered(app, raw, &role, false, Tiers::Hybrid, Box::new(keep))
            .await
            .with_pipeline(&url, 2)
    }

    crate::scenarios!(@with_catalog setup);
}
