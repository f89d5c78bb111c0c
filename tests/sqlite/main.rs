//! Integration tests on SQLite (a file database per test, so that a pool has one database).

#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::Env;

async fn setup() -> Env {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tenant-sqlite-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let url = format!("sqlite://{}/test.db?mode=rwc", dir.display());
    let mut options = sea_orm::ConnectOptions::new(url.clone());
    options.max_connections(2).sqlx_logging(false);
    let app = sea_orm::Database::connect(options)
        .await
        .expect("open SQLite");
    let raw = sea_orm::Database::connect(url).await.expect("open SQLite");
    Env::new(app, raw, Box::new(dir)).await
}

crate::scenarios!(setup);
