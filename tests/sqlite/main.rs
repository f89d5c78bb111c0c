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
        assert_eq!(
            indexes,
            [
                r#"CREATE UNIQUE INDEX IF NOT EXISTS "ux_post_tenant_id_id" ON "post" ("tenant_id", "id")"#,
                r#"CREATE UNIQUE INDEX IF NOT EXISTS "ux_post_tenant_id_slug" ON "post" ("tenant_id", "slug")"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_post_tenant_id_title" ON "post" ("tenant_id", "title")"#,
            ],
            "{backend:?}"
        );
    }
    // A global table has no tenant keys.
    let plan = tenant::table_statements::<common::entities::plan::Entity>(DbBackend::Postgres);
    assert!(plan.indexes.is_empty());
}
