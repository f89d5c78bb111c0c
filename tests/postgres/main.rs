//! Integration tests on real PostgreSQL: one throwaway cluster per run (or `DATABASE_URL`), one
//! database per test. The scoped handle connects as `tenant_app`, a role that neither owns the
//! tables nor is superuser nor `BYPASSRLS`; the planting connection is the owner.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/postgres.rs"]
mod pg;

use common::Env;

async fn setup() -> Env {
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
    Env::new(app, raw, Box::new(test_db)).await
}

crate::scenarios!(setup);
