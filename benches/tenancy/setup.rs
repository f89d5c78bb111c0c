//! Databases, schema, roles, seed data and pools.
//!
//! PostgreSQL: ONE table, created by `TenantTables` with RLS (`ENABLE` + `FORCE` and the
//! `tenant_isolation` policy). RLS mode and the hand-written `set_config` transaction connect as
//! `tenant_app`, which the policy applies to. The other implementations connect as
//! `tenant_bench_plain`, a role like `tenant_app` but with `BYPASSRLS`, so PostgreSQL plans their
//! statements without the policy, as on a table without RLS. Every implementation reads the same
//! pages of the same table, so none is favoured by what happens to be cached.
//!
//! Citus: the same table in the distributed form (keys `(tenant_id, id)`, distributed by
//! `tenant_id`, the policy without a subquery) in the database `CITUS_URL` names, the RLS role
//! [`CITUS_APP_ROLE`] with `citus.propagate_set_commands = 'local'` so that `SET LOCAL` reaches
//! the workers, and the same plain role.
//!
//! The schema and database tiers (`schema-rls`, `db-rls` and their pipelined forms), when asked
//! for: each tenant's rows in a schema or a database of its own, and a catalog saying
//! so, in a database of its own.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{
    self, ConnectOptions as _, Connection as _, PgConnection, PgPool, QueryBuilder,
};
use sea_orm::{SqlxPostgresConnector, SqlxSqliteConnector};
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::{DatabaseTier, Pipeline, PolicyForm, Rls, TenantDb, TenantId, TenantTables};

use crate::Result;
use crate::args::Args;
use crate::data::{DataSet, Row};
use crate::databases::{self, TenantDatabases};
use crate::entity::item;
use crate::ops::{DbTier, Imp, Raw, Target};
use crate::pg;
use crate::tokio_pg::{self, TokioPg};
use crate::typeorm::{TypeOrm, Variants};

/// The role the non-RLS implementations connect as (see the module docs).
pub(crate) const PLAIN_ROLE: &str = "tenant_bench_plain";

/// The RLS role on Citus: like `tenant_app`, with `citus.propagate_set_commands = 'local'`.
pub(crate) const CITUS_APP_ROLE: &str = "tenant_bench_citus_app";

/// Tenants whose bound read the Citus setup check tries (each its own transaction).
const CITUS_CHECKED_TENANTS: u64 = 16;

/// Rows per `INSERT` while seeding.
const PG_BATCH: usize = 10_000;
const SQLITE_BATCH: usize = 500;

/// One seeded PostgreSQL database, or the table on a Citus coordinator.
#[derive(Debug)]
pub(crate) struct PgData {
    home: Home,
    pub(crate) admin: PgPool,
    /// The role the policies apply to: RLS mode and the hand-written transactions.
    app_url: String,
    pub(crate) plain_url: String,
    /// Every tenant's copy of `item` in a schema of its own, provisioned when first asked for.
    schemas: tokio::sync::OnceCell<SchemaTier>,
    /// Every tenant's copy of `item` in a database of its own, provisioned when first asked for.
    databases: tokio::sync::OnceCell<DatabaseTierData>,
}

/// Where a PostgreSQL data set is.
#[derive(Debug)]
enum Home {
    /// A fresh database of the throwaway (or `DATABASE_URL`) server, dropped (with the database)
    /// when this is dropped.
    Database(pg::TestDb),
    /// The database of `CITUS_URL` on a Citus coordinator: it cannot cheaply create databases,
    /// so the bench's table is made there and dropped by [`PgData::finish`].
    Citus,
}

/// The schema tier of a data set: a schema per tenant (`t0`, `t1`, ..) holding its rows, and the
/// catalog that says so, in a database of its own.
#[derive(Debug)]
struct SchemaTier {
    /// Dropped (with the catalog's database) when this is dropped.
    _catalog_db: pg::TestDb,
    catalog: Catalog,
}

/// The database tier of a data set: a database per tenant holding its rows, and the catalog that
/// says so, in a database of its own.
#[derive(Debug)]
struct DatabaseTierData {
    /// Dropped (every tenant database) when this is dropped.
    databases: TenantDatabases,
    catalog: Catalog,
    /// Dropped (with the catalog's database) when this is dropped.
    _catalog_db: pg::TestDb,
}

/// Which tiers besides the shared one a target serves, and which `TypeORM` variants its node
/// process runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tiers {
    pub(crate) schemas: bool,
    pub(crate) databases: bool,
    pub(crate) typeorm: Variants,
}

impl Tiers {
    /// The tiers `imps` run on.
    pub(crate) fn of(imps: &[Imp]) -> Self {
        Self {
            schemas: imps
                .iter()
                .any(|i| matches!(i, Imp::SchemaRls | Imp::SchemaRlsPipe)),
            databases: imps.iter().any(|i| i.database_tier()),
            typeorm: Variants::of(imps),
        }
    }
}

/// Connect options with sqlx's statement logging off: nothing is logged while measuring.
pub(crate) fn pg_options(url: &str) -> Result<PgConnectOptions> {
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

/// A pool of one connection, for setup.
pub(crate) async fn one_connection(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg_options(url)?)
        .await?)
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// The rows of `item` a connection to `url` sees.
async fn count_rows(url: &str) -> Result<u64> {
    let pool = one_connection(url).await?;
    let counted = sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM item")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    Ok(u64::try_from(counted?.0)?)
}

/// A fresh database with the table, the policy, the roles' grants and the data set.
pub(crate) async fn pg_seed(data: &DataSet) -> Result<PgData> {
    let db = pg::fresh_database().await;
    let admin = one_connection(&db.admin_url).await?;
    let owner = SqlxPostgresConnector::from_sqlx_postgres_pool(admin.clone());
    TenantTables::new()
        .table::<item::Entity>()
        .rls(Rls::default())
        .create(&owner)
        .await?;
    create_role(&admin, PLAIN_ROLE, true).await?;
    seed_rows(&admin, data.rows_in_order()).await?;
    let seeded = PgData {
        plain_url: with_user(&db.app_url, PLAIN_ROLE, PLAIN_ROLE)?,
        app_url: db.app_url.clone(),
        home: Home::Database(db),
        admin,
        schemas: tokio::sync::OnceCell::new(),
        databases: tokio::sync::OnceCell::new(),
    };
    seeded.check_roles(data).await?;
    Ok(seeded)
}

/// A login role like `tenant_app` (tests/support/postgres.rs), with `BYPASSRLS` when `bypass`,
/// allowed to read and write `item`. Re-asserted every time so that a pre-existing role cannot
/// be different. On Citus the coordinator propagates all of it to the workers.
async fn create_role(admin: &PgPool, role: &str, bypass: bool) -> Result<()> {
    let bypass = if bypass { "BYPASSRLS" } else { "NOBYPASSRLS" };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN \
             CREATE ROLE {role} LOGIN PASSWORD '{role}'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
         END $$; \
         ALTER ROLE {role} LOGIN PASSWORD '{role}' \
             NOSUPERUSER {bypass} NOCREATEDB NOCREATEROLE; \
         GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON item TO {role};"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

/// `rows`, by `INSERT .. SELECT FROM UNNEST(..)` in batches, then `VACUUM (ANALYZE)`; how many
/// were inserted.
async fn seed_rows(admin: &PgPool, rows: impl Iterator<Item = Row>) -> Result<u64> {
    let mut batch = Columns::with_capacity(PG_BATCH);
    let mut inserted = 0;
    for row in rows {
        batch.push(row);
        if batch.len() == PG_BATCH {
            inserted += batch.insert_pg(admin).await?;
        }
    }
    if batch.len() > 0 {
        inserted += batch.insert_pg(admin).await?;
    }
    // Statistics for the planner and a visibility map for index-only counts, as autovacuum
    // would have made them on a table that has been in use.
    sqlx::raw_sql("VACUUM (ANALYZE) item")
        .execute(admin)
        .await?;
    Ok(inserted)
}

/// A Citus coordinator, from `CITUS_URL`, checked before anything is measured.
#[derive(Debug)]
pub(crate) struct Citus {
    url: String,
    /// Citus's and PostgreSQL's versions and the workers, for the report.
    pub(crate) description: String,
}

impl Citus {
    /// `CITUS_URL`'s server, if it is a Citus coordinator.
    pub(crate) async fn connect() -> Result<Self> {
        let url = std::env::var("CITUS_URL")
            .ok()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .ok_or(
                "`--backend citus` needs CITUS_URL, a superuser URL of a Citus coordinator's \
                 database (the bench makes and drops its table `item` there), such as \
                 CITUS_URL=$(../shared/citus/cluster.sh url)",
            )?;
        let shown = redact(&url);
        // One connection, not a pool: a pool retries until its timeout and then hides why.
        let mut admin = PgConnection::connect_with(&pg_options(&url)?)
            .await
            .map_err(|e| format!("CITUS_URL ({shown}): cannot connect: {e}"))?;
        let checked = async {
            let (citus, coordinator): (String, bool) =
                sqlx::query_as("SELECT citus_version(), citus_is_coordinator()")
                    .fetch_one(&mut admin)
                    .await
                    .map_err(|e| {
                        format!(
                            "CITUS_URL ({shown}) is not a Citus coordinator: \
                             `SELECT citus_version()` failed: {e}"
                        )
                    })?;
            if !coordinator {
                return Err(format!(
                    "CITUS_URL ({shown}) is a node of a Citus cluster but not its coordinator"
                )
                .into());
            }
            let (server, workers): (String, i64) = sqlx::query_as(
                "SELECT current_setting('server_version'), \
                 (SELECT count(*) FROM pg_dist_node \
                  WHERE noderole = 'primary' AND isactive AND groupid <> 0)",
            )
            .fetch_one(&mut admin)
            .await?;
            let citus = citus.split(" on ").next().unwrap_or(&citus).to_owned();
            Ok::<_, crate::BoxError>(format!(
                "{citus} on PostgreSQL {server}, a coordinator and {workers} worker{}",
                if workers == 1 { "" } else { "s" }
            ))
        }
        .await;
        admin.close().await?;
        Ok(Self {
            description: checked?,
            url,
        })
    }
}

/// The RLS settings of the tables on Citus, which refuses policies with a subquery.
fn citus_rls() -> Rls {
    Rls::default().with_policy_form(PolicyForm::Plain)
}

/// The bench's table, with the policy, the roles and the data set, in the distributed form on
/// the Citus coordinator; an earlier run's table is dropped first.
pub(crate) async fn citus_seed(citus: &Citus, data: &DataSet) -> Result<PgData> {
    let admin = one_connection(&citus.url).await?;
    let owner = SqlxPostgresConnector::from_sqlx_postgres_pool(admin.clone());
    let seeded = PgData {
        app_url: with_user(&citus.url, CITUS_APP_ROLE, CITUS_APP_ROLE)?,
        plain_url: with_user(&citus.url, PLAIN_ROLE, PLAIN_ROLE)?,
        home: Home::Citus,
        admin,
        schemas: tokio::sync::OnceCell::new(),
        databases: tokio::sync::OnceCell::new(),
    };
    seeded.drop_tables().await?;
    // `.distributed()`: keys `(tenant_id, id)` and `create_distributed_table` by `tenant_id`.
    TenantTables::new()
        .table::<item::Entity>()
        .distributed()
        .rls(citus_rls())
        .create(&owner)
        .await?;
    create_role(&seeded.admin, PLAIN_ROLE, true).await?;
    create_role(&seeded.admin, CITUS_APP_ROLE, false).await?;
    // Without it `SET LOCAL` stays on the coordinator and the workers see no tenant.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {CITUS_APP_ROLE} SET citus.propagate_set_commands = 'local'"
    )))
    .execute(&seeded.admin)
    .await?;
    seed_rows(&seeded.admin, data.rows_in_order()).await?;
    seeded.check_roles(data).await?;
    Ok(seeded)
}

impl PgData {
    /// `--cluster`: rewrites `item` in the order of its `(tenant_id, created_at)` index, so that
    /// each tenant's rows sit on adjacent pages, then vacuums and analyses it again. Returns the
    /// index's name.
    pub(crate) async fn cluster(&self) -> Result<String> {
        let (index,): (String,) = sqlx::query_as(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename = 'item' AND indexdef LIKE '%(tenant_id, created_at)%'",
        )
        .fetch_one(&self.admin)
        .await
        .map_err(|e| format!("no (tenant_id, created_at) index on `item` to cluster on: {e}"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CLUSTER item USING \"{index}\""
        )))
        .execute(&self.admin)
        .await?;
        // A message of its own: in one with `CLUSTER` it would run in a transaction block,
        // which `VACUUM` refuses.
        sqlx::raw_sql("VACUUM (ANALYZE) item")
            .execute(&self.admin)
            .await?;
        Ok(index)
    }

    /// `--covering`: drops the plain `(tenant_id, created_at)` index and creates the covering
    /// one that [`covering`](crate::entity::covering)'s declaration makes, then vacuums (so that
    /// the visibility map lets the page skip the heap) and analyses `item`. Returns its name.
    pub(crate) async fn cover(&self) -> Result<String> {
        let statements = tenant::table_statements::<crate::entity::covering::Entity>(
            sea_orm::DbBackend::Postgres,
        );
        let index = statements
            .indexes
            .last()
            .ok_or("the covering declaration makes no index")?;
        let name = index
            .get_index_spec()
            .get_name()
            .ok_or("the covering index has no name")?
            .to_owned();
        let sql = sea_orm::DbBackend::Postgres.build(index).to_string();
        sqlx::raw_sql("DROP INDEX ix_item_tenant_id_created_at")
            .execute(&self.admin)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await?;
        sqlx::raw_sql("VACUUM (ANALYZE) item")
            .execute(&self.admin)
            .await?;
        Ok(name)
    }

    /// Whether this is the table on a Citus coordinator.
    fn citus(&self) -> bool {
        matches!(self.home, Home::Citus)
    }

    /// The role the policies apply to.
    fn app_role(&self) -> &str {
        match self.home {
            Home::Database(_) => pg::cluster().app_role(),
            Home::Citus => CITUS_APP_ROLE,
        }
    }

    /// The fresh database, unless on Citus.
    pub(crate) fn database(&self) -> Option<&pg::TestDb> {
        match &self.home {
            Home::Database(db) => Some(db),
            Home::Citus => None,
        }
    }

    async fn drop_tables(&self) -> Result<()> {
        sqlx::raw_sql("DROP TABLE IF EXISTS item CASCADE")
            .execute(&self.admin)
            .await?;
        Ok(())
    }

    /// Drops the table on Citus (a fresh database goes with its `TestDb`) and closes the owner's
    /// pool.
    pub(crate) async fn finish(self) -> Result<()> {
        let dropped = if self.citus() {
            self.drop_tables().await
        } else {
            Ok(())
        };
        self.admin.close().await;
        dropped
    }

    /// Proves the setup: the app role sees nothing without a bound tenant, the plain role sees
    /// everything; on Citus also that the table is distributed and that a bound read sees the
    /// tenant's rows, which it only does when the binding reaches the worker holding them.
    async fn check_roles(&self, data: &DataSet) -> Result<()> {
        let app = count_rows(&self.app_url).await?;
        let plain = count_rows(&self.plain_url).await?;
        if app != 0 || plain != data.tenants * data.rows {
            return Err(format!(
                "setup is wrong: `{}` sees {app} rows without a tenant (want 0), \
                 `{PLAIN_ROLE}` sees {plain} (want {})",
                self.app_role(),
                data.tenants * data.rows
            )
            .into());
        }
        if self.citus() {
            self.check_citus(data).await?;
        }
        Ok(())
    }

    /// `item` has shards, and bound to each of the first tenants in turn, the app role counts
    /// exactly that tenant's rows over every shard (no tenant filter: every worker is asked).
    async fn check_citus(&self, data: &DataSet) -> Result<()> {
        let (shards, nodes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT (nodename, nodeport)) FROM citus_shards \
             WHERE table_name = 'item'::regclass",
        )
        .fetch_one(&self.admin)
        .await?;
        if shards == 0 {
            return Err(
                "setup is wrong: `item` is not distributed (no shards in `citus_shards`): \
                 is the citus extension installed in CITUS_URL's database?"
                    .into(),
            );
        }
        let role = self.app_role();
        let app = one_connection(&self.app_url).await?;
        let checked = data.tenants.min(CITUS_CHECKED_TENANTS);
        for t in 0..checked {
            let tenant = data.tenant(t);
            let mut txn = app.begin().await?;
            // `BEGIN` and `SET LOCAL` as two messages, as Citus needs them.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET LOCAL app.tenant_id = '{tenant}'"
            )))
            .execute(&mut *txn)
            .await?;
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM item")
                .fetch_one(&mut *txn)
                .await?;
            txn.rollback().await?;
            if u64::try_from(n)? != data.rows {
                app.close().await;
                return Err(format!(
                    "setup is wrong: bound to tenant {tenant}, `{role}` sees {n} rows (want {}): \
                     the binding does not reach the worker holding them; is \
                     `citus.propagate_set_commands` 'local' for `{role}`?",
                    data.rows
                )
                .into());
            }
        }
        app.close().await;
        let tenants: Vec<_> = (0..checked).map(|t| data.tenant(t)).collect();
        let (on,): (i64,) = sqlx::query_as(
            "SELECT count(DISTINCT (nodename, nodeport)) FROM citus_shards \
             WHERE table_name = 'item'::regclass AND shardid IN \
                 (SELECT get_shard_id_for_distribution_column('item', t) \
                  FROM unnest($1::uuid[]) AS t)",
        )
        .bind(tenants)
        .fetch_one(&self.admin)
        .await?;
        eprintln!(
            "  Citus: `item` in {shards} shards on {nodes} nodes; bound to each of {checked} \
             tenants (on {on} nodes), `{role}` saw its {} rows",
            data.rows
        );
        Ok(())
    }

    /// Pools of `workers` connections and the implementations' handles over them.
    pub(crate) async fn target(
        &self,
        data: &DataSet,
        workers: usize,
        ping: bool,
        tiers: Tiers,
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
        let citus = self.citus();
        let plain = pool(self.plain_url.clone()).await?;
        let app = pool(self.app_url.clone()).await?;
        let orm = SqlxPostgresConnector::from_sqlx_postgres_pool(plain.clone());
        let mut repo = TenantDb::new(orm.clone());
        let mut rls = TenantDb::with_rls(
            SqlxPostgresConnector::from_sqlx_postgres_pool(app.clone()),
            if citus { citus_rls() } else { Rls::default() },
        )?;
        if citus {
            // Keys per tenant (upsert targets), and each RLS unit's `BEGIN` and `SET LOCAL`
            // as two messages, which Citus needs.
            repo = repo.with_distributed_keys();
            rls = rls.with_distributed_keys();
        }
        // The pipelines' connections are made up front, like the sqlx pools' `min_connections`.
        let pipeline = |url: String| async move {
            let pipeline = Pipeline::connect(&url, workers)?;
            let clients =
                futures::future::try_join_all((0..workers).map(|_| pipeline.pool().get())).await?;
            drop(clients);
            Ok::<_, crate::BoxError>(pipeline)
        };
        let repo_pipe = repo
            .clone()
            .with_pipeline(pipeline(self.plain_url.clone()).await?)?;
        let tokio_pg = TokioPg {
            plain: tokio_pg::pool(&self.plain_url, workers).await?,
            // Citus needs `BEGIN` and `SET LOCAL` as two messages: `tokio-pg-rls` does not run.
            app: if citus {
                None
            } else {
                Some(tokio_pg::pool(&self.app_url, workers).await?)
            },
        };
        let rls_pipe = rls
            .clone()
            .with_pipeline(pipeline(self.app_url.clone()).await?)?;
        let schema_rls = if tiers.schemas {
            let tier = self
                .schemas
                .get_or_try_init(|| timed("schema tier", self.provision_schemas(data)))
                .await?;
            let db = rls.clone().with_catalog(tier.catalog.clone());
            let piped = db
                .clone()
                .with_pipeline(pipeline(self.app_url.clone()).await?)?;
            Some((db, piped))
        } else {
            None
        };
        let db_rls = if tiers.databases {
            let provisioned = self
                .databases
                .get_or_try_init(|| timed("database tier", self.provision_databases(data)))
                .await?;
            Some(provisioned.handles(&rls, data.tenants, workers)?)
        } else {
            None
        };
        // The catalog's table would share the coordinator's database with whatever else uses
        // it, and what the catalog costs is on the client: not on Citus.
        let repo_catalog = if citus {
            None
        } else {
            Some(with_catalog(&orm, data, Some(&self.admin)).await?)
        };
        // After the data set is seeded and the Rust pools are connected.
        let typeorm = self.typeorm(data, workers, tiers.typeorm).await?;
        Ok(Target {
            schema_rls,
            db_rls,
            raw: Raw::Postgres { plain, app },
            repo_catalog,
            repo,
            orm,
            rls: Some(rls),
            repo_pipe: Some(repo_pipe),
            rls_pipe: Some(rls_pipe),
            tokio_pg: Some(tokio_pg),
            typeorm,
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

impl PgData {
    /// The `TypeORM` control's node process for `variants`, if any (not on Citus).
    async fn typeorm(
        &self,
        data: &DataSet,
        workers: usize,
        variants: Variants,
    ) -> Result<Option<TypeOrm>> {
        if self.citus() {
            return Ok(None);
        }
        TypeOrm::start(&self.plain_url, &self.app_url, workers, data.rows, variants).await
    }

    /// A database per tenant (copies of one template with `item`, its policy and the app role's
    /// grants) holding exactly that tenant's rows, the same as in the shared table, each
    /// vacuumed and analysed; and a catalog in a database of its own listing every tenant on the
    /// database tier, every entry cached.
    async fn provision_databases(&self, data: &DataSet) -> Result<DatabaseTierData> {
        let databases =
            TenantDatabases::create(&self.admin, usize::try_from(data.tenants)?).await?;
        for t in 0..data.tenants {
            let admin = one_connection(&databases.admin_url(usize::try_from(t)?)).await?;
            let seeded = seed_rows(&admin, (0..data.rows).map(|r| data.row(t, r))).await;
            admin.close().await;
            if seeded? != data.rows {
                return Err(
                    format!("setup is wrong: tenant database {t} did not get its rows").into(),
                );
            }
        }
        // The policy holds there too: without a bound tenant the app role sees nothing.
        let unbound = count_rows(&databases.app_url(0)).await?;
        if unbound != 0 {
            return Err(format!(
                "setup is wrong: `{}` sees {unbound} rows of a tenant database without a tenant \
                 (want 0)",
                pg::cluster().app_role()
            )
            .into());
        }
        let catalog_db = pg::fresh_database().await;
        let catalog = Catalog::with_max_staleness(
            SqlxPostgresConnector::from_sqlx_postgres_pool(
                one_connection(&catalog_db.admin_url).await?,
            ),
            Duration::from_hours(1),
        );
        catalog.create_table().await?;
        let tenants: Vec<TenantId> = (0..data.tenants)
            .map(|t| TenantId::from(data.tenant(t)))
            .collect();
        databases::register(&catalog, &tenants).await?;
        Ok(DatabaseTierData {
            databases,
            catalog,
            _catalog_db: catalog_db,
        })
    }

    /// The names of the tenant databases, once provisioned.
    pub(crate) fn tenant_databases(&self) -> &[String] {
        self.databases
            .get()
            .map_or(&[], |tier| tier.databases.names())
    }
}

impl DatabaseTierData {
    /// RLS mode on `rls`'s pool with this catalog, and a database tier for `workers` workers
    /// over `tenants` tenants, without and with a pipeline per tenant database.
    fn handles(&self, rls: &TenantDb, tenants: u64, workers: usize) -> Result<DbTier> {
        let per_tenant = databases::per_tenant(tenants, workers);
        let tier = |pipeline: u32| -> Result<DatabaseTier> {
            let tier = DatabaseTier::new(self.databases.resolver())
                // Room for every tenant database at once: no pool is closed to make room while
                // measuring, which is the cost `--fleet` measures, not this.
                .max_connections(u32::try_from(tenants)? * (per_tenant + pipeline))
                .per_tenant(per_tenant)
                .acquire_timeout(Duration::from_mins(1))
                // Nor closed for idling while the other implementations' blocks run.
                .idle_timeout(Duration::from_hours(1));
            Ok(match pipeline {
                0 => tier,
                size => tier.pipeline(usize::try_from(size)?),
            })
        };
        let handle = |tier| {
            rls.clone()
                .with_catalog(self.catalog.clone())
                .with_database_tier(tier)
        };
        Ok(DbTier {
            sqlx: handle(tier(0)?)?,
            piped: handle(tier(per_tenant)?)?,
            per_tenant,
        })
    }
}

/// Connections a cell holds besides the database tier's: the target's pools of `workers` each
/// (plain and app; a pipeline each for `repo-pipe` and `rls-pipe`, and for the schema tier's; a
/// tokio-postgres pool each for `tokio-pg` and `tokio-pg-rls`; a `TypeORM` pool each for `typeorm`
/// and `typeorm-rls`), and a few for setup (the data set's owner, the catalogs' owners).
fn other_connections(workers: usize, tiers: Tiers) -> u64 {
    let pools = 6 + u64::from(tiers.schemas) + tiers.typeorm.pools();
    pools * workers as u64 + 4
}

/// Refuses a run whose database tier would need more connections than the server takes: with
/// `db-rls` and `db-rls-pipe` every tenant database's pool (and pipeline) stays open for the
/// whole cell. Counted at their caps, the most they may hold.
pub(crate) async fn check_connections(admin: &PgPool, args: &Args) -> Result<()> {
    let tiers = Tiers::of(&args.impls);
    if !tiers.databases {
        return Ok(());
    }
    let (max, reserved, in_use): (i32, i32, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::int4, \
                current_setting('superuser_reserved_connections')::int4 \
                + COALESCE(current_setting('reserved_connections', true)::int4, 0), \
                (SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())",
    )
    .fetch_one(admin)
    .await?;
    let room = i64::from(max) - i64::from(reserved) - in_use;
    for &tenants in &args.tenants {
        for &workers in &args.workers {
            let per_tenant = u64::from(databases::per_tenant(tenants, workers));
            let mut tier = 0;
            if args.impls.contains(&Imp::DbRls) {
                tier += tenants * per_tenant;
            }
            if args.impls.contains(&Imp::DbRlsPipe) {
                tier += tenants * 2 * per_tenant;
            }
            let need = tier + other_connections(workers, tiers);
            if i64::try_from(need)? > room {
                return Err(format!(
                    "the database tier at T={tenants}, C={workers} may hold {tier} connections \
                     to tenant databases (a pool of {per_tenant} per tenant database for \
                     `db-rls`; a pool and a pipeline of {per_tenant} each for `db-rls-pipe`), \
                     {need} with the other implementations' pools, but the server takes {room} \
                     more (max_connections {max}, {reserved} reserved, {in_use} in use): use \
                     fewer tenants, one of `db-rls` and `db-rls-pipe` at a time, or a server \
                     with a higher max_connections (DATABASE_URL)"
                )
                .into());
            }
        }
    }
    Ok(())
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

    /// One `INSERT .. SELECT FROM UNNEST(..)` of the batch; empties it. Rows inserted.
    async fn insert_pg(&mut self, admin: &PgPool) -> Result<u64> {
        let n = self.len();
        let batch = std::mem::replace(self, Self::with_capacity(n));
        let done = sqlx::query(
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
        Ok(done.rows_affected())
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
            repo_catalog: Some(with_catalog(&orm, data, None).await?),
            schema_rls: None,
            db_rls: None,
            repo: TenantDb::new(orm.clone()),
            orm,
            rls: None,
            repo_pipe: None,
            rls_pipe: None,
            tokio_pg: None,
            typeorm: None,
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
        if let Some(tier) = &self.db_rls {
            for imp in [Imp::DbRls, Imp::DbRlsPipe] {
                if let Some(tier) = tier.tier(imp) {
                    tier.close().await;
                }
            }
        }
        match &self.raw {
            Raw::Postgres { plain, app } => {
                plain.close().await;
                app.close().await;
            }
            Raw::Sqlite(pool) => pool.close().await,
        }
        if let Some(pools) = &self.tokio_pg {
            pools.plain.close();
            if let Some(app) = &pools.app {
                app.close();
            }
        }
        if let Some(node) = &self.typeorm
            && let Err(e) = node.close().await
        {
            eprintln!("  TypeORM control: {e}");
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
