//! A multi-tenant HTTP service on `tenant`: projects and tasks per tenant, global price plans,
//! a background report job, the tenant of each request proven by a bearer token.
//!
//! ```text
//! cargo run --example service --features sqlite,jwt,jobs            # SQLite, no server
//! DATABASE_URL=postgres://app:..@localhost/app OWNER_DATABASE_URL=postgres://owner:..@localhost/app \
//!     cargo run --example service --features sqlite,postgres,jwt,jobs   # PostgreSQL with RLS
//! ```
//!
//! It prints a token for each of two tenants, `acme` and `globex`; then, for instance:
//!
//! ```text
//! curl -H "authorization: Bearer $ACME" -H 'content-type: application/json' \
//!      -d '{"name":"launch"}' localhost:3000/projects
//! curl -H "authorization: Bearer $ACME" localhost:3000/projects
//! curl -H "authorization: Bearer $ACME" -H 'x-tenant: globex' localhost:3000/projects   # 403
//! ```

mod app;

use app::{App, Database};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = match (
        std::env::var("DATABASE_URL"),
        std::env::var("OWNER_DATABASE_URL"),
    ) {
        (Ok(app_url), Ok(owner_url)) => Database::Postgres { app_url, owner_url },
        (Ok(_), Err(_)) => {
            return Err("DATABASE_URL (the application role) needs OWNER_DATABASE_URL (the tables' owner) beside it".into());
        }
        _ => Database::Sqlite("sqlite::memory:".to_owned()),
    };
    // A real service reads its secret from its secret store.
    let secret = std::env::var("JWT_SECRET")
        .unwrap_or_else(|_| "a development secret, 32 bytes or more".to_owned());
    let app = App::start(database).await?;
    let router = app.router(secret.as_bytes())?;
    for slug in ["acme", "globex"] {
        let tenant = app.tenant(slug).await?;
        println!(
            "{slug}: {tenant}\n  token: {}",
            app::token(secret.as_bytes(), tenant)
        );
    }
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, router).await?;
    Ok(())
}
