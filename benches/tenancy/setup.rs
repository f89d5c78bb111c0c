//! Databases, schema, roles, seed data and pools.
//!
//! PostgreSQL: ONE table, created by `TenantTables` with RLS (`ENABLE` + `FORCE` and the
//! `tenant_isolation` policy). RLS mode and the hand-written `set_config` transaction connect as
//! `tenant_app`, which the policy applies to. The other implementations connect as
//! `tenant_bench_plain`, a role like `tenant_app` but with `BYPASSRLS`, so PostgreSQL plans their
//! statements without the policy, as on a table without RLS. Every implementation reads the same
//! pages of the same table, so none is favoured by what happens to be cached.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{self, ConnectOptions as _, PgPool, QueryBuilder};
use sea_orm::{SqlxPostgresConnector, SqlxSqliteConnector};
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::{Pipeline, Rls, TenantDb, TenantId, TenantTables};

use crate::Result;
use crate::data::{DataSet, Row};
use crate::entity::item;
use crate::ops::{Raw, Target};
use crate::pg;

/// The role the non-RLS implementations connect as (see the module docs).
pub(crate) const PLAIN_ROLE: &str = "tenant_bench_plain";

/// Rows per `INSERT` while seeding.
const PG_BATCH: usize = 10_000;
const SQLITE_BATCH: usize = 500;

/// One seeded PostgreSQL database.
#[derive(Debug)]
pub(crate) struct PgData {
    /// Dropped (with the database) when this is dropped.
    pub(crate) db: pg::TestDb,
    pub(crate) admin: PgPool,
    pub(crate) plain_url: String,
    /// Every tenant's copy of `item` in a schema of its own, provisioned when first asked for.
    schemas: tokio::sync::OnceCell<SchemaTier>,
}

/// The schema tier of a data set: a schema per tenant (`t0`, `t1`, ..) holding its rows, and the
/// catalog that says so, in a database of its own.
#[derive(Debug)]
struct SchemaTier {
    /// Dropped (with the catalog's database) when this is dropped.
    _catalog_db: pg::TestDb,
    catalog: Catalog,
}

/// Connect options with sqlx's statement logging off: nothing is logged while measuring.
fn pg_options(url: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)?.disable_statement_logging())
}

/// `url` with other credentials.
fn with_user(url: &str, user: &str, password: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let host = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    Ok(format!("{scheme}://{user}:{password}@{host}"))
}

/// The server's version string.
pub(crate) async fn pg_version(admin: &PgPool) -> Result<String> {
    let (v,): (String,) = sqlx::query_as("SELECT version()").fetch_one(admin).await?;
    Ok(v)
}

/// A fresh database with the table, the policy, the roles' grants and the data set.
pub(crate) async fn pg_seed(data: &DataSet) -> Result<PgData> {
    let db = pg::fresh_database().await;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg_options(&db.admin_url)?)
        .await?;
    let owner = SqlxPostgresConnector::from_sqlx_postgres_pool(admin.clone());
    TenantTables::new()
        .table::<item::Entity>()
        .rls(Rls::default())
        .create(&owner)
        .await?;
    // Like `tenant_app` (tests/support/postgres.rs), plus BYPASSRLS. Re-asserted every time so
    // a pre-existing role cannot be different.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN \
             CREATE ROLE {PLAIN_ROLE} LOGIN PASSWORD '{PLAIN_ROLE}'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
         END $$; \
         ALTER ROLE {PLAIN_ROLE} LOGIN PASSWORD '{PLAIN_ROLE}' \
             NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE; \
         GRANT USAGE ON SCHEMA public TO {PLAIN_ROLE}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON item TO {PLAIN_ROLE};"
    )))
    .execute(&admin)
    .await?;

    let mut batch = Columns::with_capacity(PG_BATCH);
    for row in data.rows_in_order() {
        batch.push(row);
        if batch.len() == PG_BATCH {
            batch.insert_pg(&admin).await?;
        }
    }
    if batch.len() > 0 {
        batch.insert_pg(&admin).await?;
    }
    // Statistics for the planner and a visibility map for index-only counts, as autovacuum
    // would have made them on a table that has been in use.
    sqlx::raw_sql("VACUUM (ANALYZE) item")
        .execute(&admin)
        .await?;

    let plain_url = with_user(&db.app_url, PLAIN_ROLE, PLAIN_ROLE)?;
    let seeded = PgData {
        db,
        admin,
        plain_url,
        schemas: tokio::sync::OnceCell::new(),
    };
    seeded.check_roles(data).await?;
    Ok(seeded)
}

impl PgData {
    /// Proves the setup: the app role sees nothing without a bound tenant, the plain role sees
    /// everything.
    async fn check_roles(&self, data: &DataSet) -> Result<()> {
        let count = |url: String| async move {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(pg_options(&url)?)
                .await?;
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM item")
                .fetch_one(&pool)
                .await?;
            pool.close().await;
            Ok::<_, crate::BoxError>(u64::try_from(n)?)
        };
        let app = count(self.db.app_url.clone()).await?;
        let plain = count(self.plain_url.clone()).await?;
        if app != 0 || plain != data.tenants * data.rows {
            return Err(format!(
                "setup is wrong: `tenant_app` sees {app} rows without a tenant (want 0), \
                 `{PLAIN_ROLE}` sees {plain} (want {})",
                data.tenants * data.rows
            )
            .into());
        }
        Ok(())
    }

    /// Pools of `workers` connections and the implementations' handles over them.
    pub(crate) async fn target(
        &self,
        data: &DataSet,
        workers: usize,
        ping: bool,
        schemas: bool,
    ) -> Result<Target> {
        let pool = |url: String| async move {
            let workers = u32::try_from(workers)?;
            let pool = PgPoolOptions::new()
                .max_connections(workers)
                .min_connections(workers)
                .test_before_acquire(ping)
                .acquire_timeout(Duration::from_mins(1))
                .connect_with(pg_options(&url)?)
                .await?;
            Ok::<_, crate::BoxError>(pool)
        };
        let plain = pool(self.plain_url.clone()).await?;
        let app = pool(self.db.app_url.clone()).await?;
        let orm = SqlxPostgresConnector::from_sqlx_postgres_pool(plain.clone());
        let rls = TenantDb::with_rls(
            SqlxPostgresConnector::from_sqlx_postgres_pool(app.clone()),
            Rls::default(),
        )?;
        // The pipelines' connections are made up front, like the sqlx pools' `min_connections`.
        let pipeline = |url: String| async move {
            let pipeline = Pipeline::connect(&url, workers)?;
            let clients =
                futures::future::try_join_all((0..workers).map(|_| pipeline.pool().get())).await?;
            drop(clients);
            Ok::<_, crate::BoxError>(pipeline)
        };
        let repo_pipe =
            TenantDb::new(orm.clone()).with_pipeline(pipeline(self.plain_url.clone()).await?)?;
        let rls_pipe = rls
            .clone()
            .with_pipeline(pipeline(self.db.app_url.clone()).await?)?;
        let schema_rls = if schemas {
            let tier = self
                .schemas
                .get_or_try_init(|| timed("schema tier", self.provision_schemas(data)))
                .await?;
            let db = rls.clone().with_catalog(tier.catalog.clone());
            let piped = db
                .clone()
                .with_pipeline(pipeline(self.db.app_url.clone()).await?)?;
            Some((db, piped))
        } else {
            None
        };
        Ok(Target {
            schema_rls,
            raw: Raw::Postgres { plain, app },
            repo_catalog: with_catalog(&orm, data, Some(&self.admin)).await?,
            repo: TenantDb::new(orm.clone()),
            orm,
            rls: Some(rls),
            repo_pipe: Some(repo_pipe),
            rls_pipe: Some(rls_pipe),
            rows: data.rows,
        })
    }
}

impl PgData {
    /// A schema per tenant with a copy of `item` (by `TenantTables::create_in`'s statements,
    /// policy included) holding that tenant's rows, the app role's grants, and a catalog in a
    /// database of its own listing every tenant on the schema tier, every entry cached.
    async fn provision_schemas(&self, data: &DataSet) -> Result<SchemaTier> {
        let tables = TenantTables::new()
            .table::<item::Entity>()
            .rls(Rls::default());
        let role = pg::cluster().app_role().to_owned();
        let catalog_db = pg::fresh_database().await;
        let catalog_owner = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(pg_options(&catalog_db.admin_url)?)
            .await?;
        let catalog = Catalog::with_max_staleness(
            SqlxPostgresConnector::from_sqlx_postgres_pool(catalog_owner),
            Duration::from_hours(1),
        );
        catalog.create_table().await?;
        for t in 0..data.tenants {
            let schema = format!("t{t}");
            let tenant = data.tenant(t);
            let mut tx = self.admin.begin().await?;
            for stmt in tables.statements_in(&schema)? {
                sqlx::raw_sql(sqlx::AssertSqlSafe(stmt.sql))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO item SELECT * FROM public.item WHERE tenant_id = $1")
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            for grant in TenantTables::grants_in(&schema, &role)? {
                sqlx::raw_sql(sqlx::AssertSqlSafe(grant))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            catalog
                .register(
                    NewTenant::schema(TenantId::from(tenant), format!("t{t}"), schema)
                        .status(TenantStatus::Active),
                )
                .await?;
        }
        sqlx::raw_sql("ANALYZE").execute(&self.admin).await?;
        for t in 0..data.tenants {
            catalog.lookup(TenantId::from(data.tenant(t))).await?;
        }
        Ok(SchemaTier {
            _catalog_db: catalog_db,
            catalog,
        })
    }
}

/// Seed rows as columns, for `UNNEST`.
struct Columns {
    id: Vec<sea_orm::prelude::Uuid>,
    tenant_id: Vec<sea_orm::prelude::Uuid>,
    label: Vec<String>,
    qty: Vec<i32>,
    created_at: Vec<sea_orm::prelude::DateTimeUtc>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            tenant_id: Vec::with_capacity(n),
            label: Vec::with_capacity(n),
            qty: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
        }
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    fn push(&mut self, row: Row) {
        self.id.push(row.id);
        self.tenant_id.push(row.tenant_id);
        self.label.push(row.label);
        self.qty.push(row.qty);
        self.created_at.push(row.created_at);
    }

    /// One `INSERT .. SELECT FROM UNNEST(..)` of the batch; empties it.
    async fn insert_pg(&mut self, admin: &PgPool) -> Result<()> {
        let n = self.len();
        let batch = std::mem::replace(self, Self::with_capacity(n));
        sqlx::query(
            "INSERT INTO item (id, tenant_id, label, qty, created_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::timestamptz[])",
        )
        .bind(batch.id)
        .bind(batch.tenant_id)
        .bind(batch.label)
        .bind(batch.qty)
        .bind(batch.created_at)
        .execute(admin)
        .await?;
        Ok(())
    }
}

/// The SQLite library's version.
pub(crate) async fn sqlite_version(target: &Target) -> Result<String> {
    let Raw::Sqlite(pool) = &target.raw else {
        return Err("not a SQLite target".into());
    };
    let (v,): (String,) = sqlx::query_as("SELECT sqlite_version()")
        .fetch_one(pool)
        .await?;
    Ok(v)
}

/// One seeded SQLite database file.
#[derive(Debug)]
pub(crate) struct SqliteData {
    path: PathBuf,
}

fn sqlite_options(path: &PathBuf) -> SqliteConnectOptions {
    // WAL with `synchronous = NORMAL`: the usual setting for an application database.
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging()
}

/// A fresh database file in the temp dir with the table and the data set.
pub(crate) async fn sqlite_seed(data: &DataSet) -> Result<SqliteData> {
    let path = std::env::temp_dir().join(format!(
        "tenant-bench-{}-{}x{}.sqlite",
        std::process::id(),
        data.tenants,
        data.rows
    ));
    let seeded = SqliteData { path };
    seeded.remove_files();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlite_options(&seeded.path))
        .await?;
    let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
    TenantTables::new()
        .table::<item::Entity>()
        .create(&conn)
        .await?;
    let mut txn = pool.begin().await?;
    let rows: Vec<Row> = data.rows_in_order().collect();
    for chunk in rows.chunks(SQLITE_BATCH) {
        let mut insert = QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO item (id, tenant_id, label, qty, created_at) ",
        );
        insert.push_values(chunk, |mut b, row| {
            b.push_bind(row.id)
                .push_bind(row.tenant_id)
                .push_bind(row.label.clone())
                .push_bind(row.qty)
                .push_bind(row.created_at);
        });
        insert.build().execute(&mut *txn).await?;
    }
    txn.commit().await?;
    sqlx::raw_sql("ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(seeded)
}

impl SqliteData {
    fn remove_files(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }

    /// A pool of `workers` connections and the implementations' handles over it.
    pub(crate) async fn target(
        &self,
        data: &DataSet,
        workers: usize,
        ping: bool,
    ) -> Result<Target> {
        let workers = u32::try_from(workers)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(workers)
            .min_connections(workers)
            .test_before_acquire(ping)
            .acquire_timeout(Duration::from_mins(1))
            .connect_with(sqlite_options(&self.path))
            .await?;
        let orm = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
        Ok(Target {
            raw: Raw::Sqlite(pool),
            repo_catalog: with_catalog(&orm, data, None).await?,
            schema_rls: None,
            repo: TenantDb::new(orm.clone()),
            orm,
            rls: None,
            repo_pipe: None,
            rls_pipe: None,
            rows: data.rows,
        })
    }
}

impl Drop for SqliteData {
    fn drop(&mut self) {
        self.remove_files();
    }
}

impl Target {
    /// Closes the pools.
    pub(crate) async fn close(&self) {
        match &self.raw {
            Raw::Postgres { plain, app } => {
                plain.close().await;
                app.close().await;
            }
            Raw::Sqlite(pool) => pool.close().await,
        }
    }
}

/// How long `f` took, reported on stderr.
pub(crate) async fn timed<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let out = f.await?;
    eprintln!("  {what}: {:.1} s", start.elapsed().as_secs_f64());
    Ok(out)
}

/// `TenantDb::new(orm)` with a tenant catalog in `orm`'s database, every tenant of `data`
/// registered as active (once per data set, by `owner` on PostgreSQL, where the plain role may
/// only read it) and its entry read into the cache, which keeps entries for an hour: the
/// measured operations find every entry cached.
async fn with_catalog(
    orm: &sea_orm::DatabaseConnection,
    data: &DataSet,
    owner: Option<&PgPool>,
) -> Result<TenantDb> {
    let writer = match owner {
        Some(admin) => SqlxPostgresConnector::from_sqlx_postgres_pool(admin.clone()),
        None => orm.clone(),
    };
    let setup = Catalog::with_max_staleness(writer, Duration::ZERO);
    setup.create_table().await?;
    let tenant = |t| TenantId::from(data.tenant(t));
    if setup.get(tenant(0)).await?.is_none() {
        for t in 0..data.tenants {
            let new = NewTenant::shared(tenant(t), format!("t{t}")).status(TenantStatus::Active);
            setup.register(new).await?;
        }
    }
    if let Some(admin) = owner {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "GRANT SELECT ON tenant_catalog TO {PLAIN_ROLE}"
        )))
        .execute(admin)
        .await?;
    }
    let catalog = Catalog::with_max_staleness(orm.clone(), Duration::from_hours(1));
    for t in 0..data.tenants {
        catalog.lookup(tenant(t)).await?;
    }
    Ok(TenantDb::new(orm.clone()).with_catalog(catalog))
}
