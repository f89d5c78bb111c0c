//! Tenant databases for the database tier, shared by `--fleet` and the per-operation
//! implementations `db-rls` and `db-rls-pipe`: copies of one template holding `item` (made by
//! `TenantTables` with RLS, as the shared table is), the catalog entries that put tenants in
//! them, the resolver the `DatabaseTier` asks for their URLs, and their removal.

use std::time::Instant;

use sea_orm::SqlxPostgresConnector;
use sea_orm::sqlx::{self, PgPool};
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::{ResolveDatabase, ResolveError, Rls, TenantId, TenantTables};

use crate::Result;
use crate::entity::item;
use crate::pg;
use crate::setup::one_connection;

/// The most tenants (so databases) the per-operation run takes: each holds a pool of its own
/// open for the whole run, and past a few hundred the server's `max_connections` ends it.
pub(crate) const MAX_TENANTS: u64 = 200;

/// Connections of each tenant database's pool (and pipeline) for `workers` workers over
/// `tenants` tenants: the shared tier's `workers` connections spread over the tenant databases,
/// at least one each.
pub(crate) fn per_tenant(tenants: u64, workers: usize) -> u32 {
    let workers = workers as u64;
    u32::try_from(workers.div_ceil(tenants).max(1)).unwrap_or(u32::MAX)
}

/// The catalog reference of tenant database `i`.
fn reference(i: usize) -> String {
    format!("db:{i}")
}

/// Resolves `db:<i>` to the `i`th tenant database's URL, as the app role.
pub(crate) struct Urls(Vec<String>);

#[async_trait::async_trait]
impl ResolveDatabase for Urls {
    async fn resolve(&self, _: TenantId, reference: &str) -> Result<String, ResolveError> {
        let i: usize = reference
            .strip_prefix("db:")
            .ok_or("not a `db:` reference")?
            .parse()?;
        Ok(self.0.get(i).ok_or("no such tenant database")?.clone())
    }
}

/// A template database holding `item` and copies of it, one per tenant; all of them dropped
/// when this is dropped (also when the run failed half-way), or by [`Self::drop_all`].
#[derive(Debug)]
pub(crate) struct TenantDatabases {
    /// Dropped after the copies (fields drop after `Drop::drop`), which connects to it to drop
    /// them: a database cannot be dropped from a connection to itself.
    template: pg::TestDb,
    names: Vec<String>,
}

impl TenantDatabases {
    /// `n` copies of a template with `item`, its policy and the app role's grants, made by
    /// `admin`, a superuser connection to another database of the server (the template takes
    /// no connections while it is copied). Reports the time it took on stderr.
    pub(crate) async fn create(admin: &PgPool, n: usize) -> Result<Self> {
        let template = pg::fresh_database().await;
        let owner = one_connection(&template.admin_url).await?;
        TenantTables::new()
            .table::<item::Entity>()
            .rls(Rls::default())
            .create(&SqlxPostgresConnector::from_sqlx_postgres_pool(
                owner.clone(),
            ))
            .await?;
        // The template's default privileges cover it too; said here so that the copies do not
        // depend on them.
        let role = pg::cluster().app_role();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON item TO {role}"
        )))
        .execute(&owner)
        .await?;
        owner.close().await;
        let mut made = Self {
            template,
            names: Vec::with_capacity(n),
        };
        let started = Instant::now();
        for i in 0..n {
            let name = format!("{}_d{i}", made.template.name);
            let sql = format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
                made.template.name
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(admin)
                .await?;
            made.names.push(name);
        }
        eprintln!(
            "  {n} tenant databases: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(made)
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The superuser URL of tenant database `i`.
    pub(crate) fn admin_url(&self, i: usize) -> String {
        pg::cluster().admin_url(&self.names[i])
    }

    /// The app role's URL of tenant database `i`.
    pub(crate) fn app_url(&self, i: usize) -> String {
        pg::cluster().app_url(&self.names[i])
    }

    /// A resolver for a `DatabaseTier` (each tier owns one).
    pub(crate) fn resolver(&self) -> Urls {
        Urls((0..self.names.len()).map(|i| self.app_url(i)).collect())
    }

    /// Drops every copy now, on this runtime (the template goes with its `TestDb`).
    pub(crate) async fn drop_all(mut self) {
        let names = std::mem::take(&mut self.names);
        drop_databases(&self.template.admin_url, names).await;
    }
}

impl Drop for TenantDatabases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        if names.is_empty() {
            return;
        }
        let url = self.template.admin_url.clone();
        // Drop cannot await and may run on a runtime's thread: a thread and runtime of its own.
        let done = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(drop_databases(&url, names)),
                Err(e) => eprintln!("warning: tenant databases not dropped: {e}"),
            }
        })
        .join();
        if done.is_err() {
            eprintln!("warning: dropping the tenant databases panicked");
        }
    }
}

/// `DROP DATABASE .. WITH (FORCE)` of each of `names`, from a connection to `url`.
async fn drop_databases(url: &str, names: Vec<String>) {
    let count = names.len();
    let dropped = async {
        let admin = one_connection(url).await?;
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await
            {
                eprintln!("warning: could not drop {name}: {e}");
            }
        }
        admin.close().await;
        Ok::<_, crate::BoxError>(())
    }
    .await;
    if let Err(e) = dropped {
        eprintln!("warning: {count} tenant databases not dropped: {e}");
    }
}

/// Registers `tenants[i]` in `catalog` as active on the database tier, in tenant database `i`,
/// and reads each entry into the catalog's cache: while measuring, admitting an operation never
/// reads the catalog's table.
pub(crate) async fn register(catalog: &Catalog, tenants: &[TenantId]) -> Result<()> {
    for (i, &tenant) in tenants.iter().enumerate() {
        catalog
            .register(
                NewTenant::database(tenant, format!("t{i}"), reference(i))
                    .status(TenantStatus::Active),
            )
            .await?;
        catalog.lookup(tenant).await?;
    }
    Ok(())
}
