//! The operations, once per implementation. Each does the same work: the same statement shape,
//! the tenant predicate written out (by hand or by this crate), the row decoded into a struct,
//! and the result checked, so that an implementation that quietly reads nothing (an RLS binding
//! gone wrong) fails the run instead of looking fast.

use std::fmt::Write as _;

use sea_orm::ActiveValue::{Set, Unchanged};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::{self, PgPool, Row as _, SqlitePool};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tenant::{DatabaseTier, TenantDb, TenantId, TenantRepo};

use crate::Result;
use crate::data::{Key, MANY, Row};
use crate::entity::{item, plain};
use crate::tokio_pg::{Binding, TokioPg};
use crate::typeorm::TypeOrm;

/// Rows in a page.
pub(crate) const PAGE: u64 = 50;

/// An implementation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Imp {
    /// Raw sqlx, `WHERE tenant_id = $1` written by hand.
    Sqlx,
    /// Plain SeaORM with a hand-written `.filter(Column::TenantId.eq(..))`: the baseline.
    SeaOrm,
    /// `TenantRepo` on `TenantDb::new`: the app-level filter.
    Repo,
    /// `TenantRepo` on `TenantDb::with_rls`: PostgreSQL Row-Level Security plus the filter.
    Rls,
    /// Raw sqlx: `BEGIN`, `SELECT set_config('app.tenant_id', $1, true)`, the statement of
    /// [`Imp::Sqlx`], `COMMIT`, each awaited.
    SqlxTxn,
    /// [`Imp::SqlxTxn`] binding with `SET LOCAL app.tenant_id = '..'`, a message of its own after
    /// `BEGIN`: the form Citus propagates to its workers (with `citus.propagate_set_commands =
    /// 'local'`), where it never propagates `set_config`. Run on Citus in place of
    /// [`Imp::SqlxTxn`]; on PostgreSQL only when named.
    SqlxSetLocal,
    /// [`Imp::Repo`] on the pipelined executor (`TenantDb::with_pipeline`).
    RepoPipe,
    /// [`Imp::Rls`] on the pipelined executor.
    RlsPipe,
    /// [`Imp::Repo`] with a tenant catalog, every tenant registered and its entry cached: what
    /// admitting each operation costs. Not in the default set.
    RepoCatalog,
    /// [`Imp::Rls`] with every tenant on the schema tier: a copy of `item` (with its policy) in
    /// a schema of its own, bound per unit. Not in the default set (it provisions a schema per
    /// tenant).
    SchemaRls,
    /// [`Imp::SchemaRls`] on the pipelined executor.
    SchemaRlsPipe,
    /// [`Imp::Rls`] with every tenant on the database tier: a database of its own holding its
    /// rows, behind a `DatabaseTier` with room for all of them. Not in the default set (it makes
    /// a database per tenant).
    DbRls,
    /// [`Imp::DbRls`] with a pipelined executor per tenant database (`DatabaseTier::pipeline`).
    DbRlsPipe,
    /// Raw tokio-postgres as the role of [`Imp::Sqlx`], its SQL, statements prepared once per
    /// connection (`prepare_cached`) on a deadpool-postgres pool built as the pipeline builds
    /// its own: no tenancy layer, the driver's ceiling.
    TokioPg,
    /// RLS bound by hand on tokio-postgres as the RLS role: `BEGIN; SET LOCAL app.tenant_id =
    /// '..'`, the statement of [`Imp::TokioPg`] (with its tenant filter) and `COMMIT` issued
    /// together, one round trip: what the pipeline does, without the library.
    TokioPgRls,
    /// [`Imp::TokioPgRls`] with the library's `search_path` pin in its binding (`SET LOCAL
    /// search_path = public, pg_temp`): the same binding as RLS mode's, and against
    /// [`Imp::TokioPgRls`] the pin's price in the same run.
    TokioPgRlsPin,
    /// The seeds' `TypeORM` `TenantRepository` with `AsyncLocalStorage` on Node, as the role of
    /// [`Imp::Sqlx`]: the app-level filter of the guide (`benches/typeorm/bench.js`). Not in the
    /// default set (it needs Node and `npm ci --prefix benches/typeorm`); PostgreSQL only.
    TypeOrm,
    /// [`Imp::TypeOrm`] inside the guide's `withTenantTransaction` (`dataSource.transaction`,
    /// `SELECT set_config('app.tenant_id', $1, true)`, the operation) as the RLS role.
    TypeOrmRls,
}

impl Imp {
    /// The default set.
    pub(crate) const ALL: [Imp; 10] = [
        Imp::Sqlx,
        Imp::TokioPg,
        Imp::SeaOrm,
        Imp::Repo,
        Imp::RepoPipe,
        Imp::Rls,
        Imp::RlsPipe,
        Imp::SqlxTxn,
        Imp::TokioPgRls,
        Imp::TokioPgRlsPin,
    ];

    /// Every implementation, the opt-in ones too: the order of the report's rows.
    pub(crate) const EVERY: [Imp; 18] = [
        Imp::Sqlx,
        Imp::TokioPg,
        Imp::SeaOrm,
        Imp::Repo,
        Imp::RepoCatalog,
        Imp::RepoPipe,
        Imp::Rls,
        Imp::RlsPipe,
        Imp::SchemaRls,
        Imp::SchemaRlsPipe,
        Imp::DbRls,
        Imp::DbRlsPipe,
        Imp::SqlxTxn,
        Imp::SqlxSetLocal,
        Imp::TokioPgRls,
        Imp::TokioPgRlsPin,
        Imp::TypeOrm,
        Imp::TypeOrmRls,
    ];

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "sqlx" => Imp::Sqlx,
            "seaorm" | "sea-orm" => Imp::SeaOrm,
            "repo" | "app" => Imp::Repo,
            "rls" => Imp::Rls,
            "sqlx-txn" => Imp::SqlxTxn,
            "sqlx-set-local" => Imp::SqlxSetLocal,
            "repo-pipe" | "app-pipe" => Imp::RepoPipe,
            "rls-pipe" => Imp::RlsPipe,
            "repo-catalog" => Imp::RepoCatalog,
            "schema-rls" => Imp::SchemaRls,
            "schema-rls-pipe" => Imp::SchemaRlsPipe,
            "db-rls" => Imp::DbRls,
            "db-rls-pipe" => Imp::DbRlsPipe,
            "tokio-pg" => Imp::TokioPg,
            "tokio-pg-rls" => Imp::TokioPgRls,
            "tokio-pg-rls-pin" => Imp::TokioPgRlsPin,
            "typeorm" => Imp::TypeOrm,
            "typeorm-rls" => Imp::TypeOrmRls,
            other => {
                return Err(format!(
                    "unknown implementation `{other}`; expected one of `sqlx`, `tokio-pg`, `seaorm`, `repo`, `repo-pipe`, `rls`, `rls-pipe`, `sqlx-txn`, `tokio-pg-rls`, `tokio-pg-rls-pin`, `sqlx-set-local`, `repo-catalog`, `schema-rls`, `schema-rls-pipe`, `db-rls`, `db-rls-pipe`, `typeorm`, `typeorm-rls`"
                ));
            }
        })
    }

    /// The name in the tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Imp::Sqlx => "raw sqlx",
            Imp::SeaOrm => "plain SeaORM",
            Imp::Repo => "TenantRepo (app)",
            Imp::Rls => "RLS mode",
            Imp::SqlxTxn => "sqlx BEGIN+set_config",
            Imp::SqlxSetLocal => "sqlx BEGIN+SET LOCAL",
            Imp::RepoPipe => "TenantRepo (app), pipeline",
            Imp::RlsPipe => "RLS mode, pipeline",
            Imp::RepoCatalog => "TenantRepo (app), catalog",
            Imp::SchemaRls => "schema tier, RLS",
            Imp::SchemaRlsPipe => "schema tier, RLS, pipeline",
            Imp::DbRls => "database tier, RLS",
            Imp::DbRlsPipe => "database tier, RLS, pipeline",
            Imp::TokioPg => "raw tokio-postgres",
            Imp::TokioPgRls => "hand-written RLS pipeline",
            Imp::TokioPgRlsPin => "hand-written RLS pipeline + search_path pin",
            Imp::TypeOrm => "TypeORM seed repo (app)",
            Imp::TypeOrmRls => "TypeORM seed repo + RLS txn",
        }
    }

    /// Whether it runs in the `TypeORM` control's node process.
    pub(crate) fn typeorm(self) -> bool {
        matches!(self, Imp::TypeOrm | Imp::TypeOrmRls)
    }

    /// Whether it runs on the database tier.
    pub(crate) fn database_tier(self) -> bool {
        matches!(self, Imp::DbRls | Imp::DbRlsPipe)
    }

    /// Whether it needs PostgreSQL (Row-Level Security).
    pub(crate) fn postgres_only(self) -> bool {
        matches!(
            self,
            Imp::Rls
                | Imp::SqlxTxn
                | Imp::SqlxSetLocal
                | Imp::RepoPipe
                | Imp::RlsPipe
                | Imp::SchemaRls
                | Imp::SchemaRlsPipe
                | Imp::DbRls
                | Imp::DbRlsPipe
                | Imp::TokioPg
                | Imp::TokioPgRls
                | Imp::TokioPgRlsPin
                | Imp::TypeOrm
                | Imp::TypeOrmRls
        )
    }
}

/// Operations measured together: the reads one by one, the writes as insert, then update, then
/// delete of the same rows, so that the data set is the same after every block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Get,
    Page,
    Count,
    Write,
    /// `update many`: one statement over a few rows of a tenant.
    Many,
}

impl Group {
    pub(crate) const ALL: [Group; 5] = [
        Group::Get,
        Group::Page,
        Group::Count,
        Group::Write,
        Group::Many,
    ];

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "get" => Group::Get,
            "page" => Group::Page,
            "count" => Group::Count,
            "write" | "writes" => Group::Write,
            "many" | "update-many" => Group::Many,
            other => {
                return Err(format!(
                    "unknown operation group `{other}`; expected one of `get`, `page`, `count`, `write`, `many`"
                ));
            }
        })
    }

    /// Its operations, in the order they run.
    pub(crate) fn ops(self) -> &'static [Op] {
        match self {
            Group::Get => &[Op::Get],
            Group::Page => &[Op::Page],
            Group::Count => &[Op::Count],
            Group::Write => &[Op::Insert, Op::Update, Op::Delete],
            Group::Many => &[Op::UpdateMany],
        }
    }

    /// A number for seeding.
    pub(crate) fn tag(self) -> u64 {
        match self {
            Group::Get => 1,
            Group::Page => 2,
            Group::Count => 3,
            Group::Write => 4,
            Group::Many => 5,
        }
    }
}

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Op {
    Get,
    Page,
    Count,
    Insert,
    Update,
    Delete,
    /// `qty = qty + 1` on the rows of one tenant in a `created_at` range, [`MANY`] of them.
    UpdateMany,
}

impl Op {
    pub(crate) const ALL: [Op; 7] = [
        Op::Get,
        Op::Page,
        Op::Count,
        Op::Insert,
        Op::Update,
        Op::Delete,
        Op::UpdateMany,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get by id",
            Op::Page => "page of 50 newest",
            Op::Count => "count",
            Op::Insert => "insert",
            Op::Update => "update by id",
            Op::Delete => "delete by id",
            Op::UpdateMany => "update many",
        }
    }

    pub(crate) fn is_read(self) -> bool {
        matches!(self, Op::Get | Op::Page | Op::Count)
    }
}

/// The raw pools of one data set at one concurrency.
#[derive(Debug)]
pub(crate) enum Raw {
    Postgres {
        /// A role with `BYPASSRLS`: what the non-RLS implementations connect as.
        plain: PgPool,
        /// `tenant_app` (on Citus a role of its own), subject to the policies: RLS mode and the
        /// hand-written transactions.
        app: PgPool,
    },
    Sqlite(SqlitePool),
}

/// Everything the implementations run on, for one data set at one concurrency. The raw and the
/// SeaORM implementations share one pool (SeaORM wraps it), so they use the same connections.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) raw: Raw,
    /// Plain SeaORM over the non-RLS pool.
    pub(crate) orm: DatabaseConnection,
    /// `TenantDb::new` over the same pool.
    pub(crate) repo: TenantDb,
    /// `TenantDb::with_rls` over the app role's pool (PostgreSQL only).
    pub(crate) rls: Option<TenantDb>,
    /// `repo` with a pipeline of its own connections as the same role (PostgreSQL only).
    pub(crate) repo_pipe: Option<TenantDb>,
    /// `rls` with a pipeline of its own connections as the app role (PostgreSQL only).
    pub(crate) rls_pipe: Option<TenantDb>,
    /// `repo` with a tenant catalog in which every tenant is active and cached (not on Citus).
    pub(crate) repo_catalog: Option<TenantDb>,
    /// RLS mode over the app role's pool, with a catalog putting every tenant in a schema of its
    /// own, without and with a pipeline (PostgreSQL, when asked for).
    pub(crate) schema_rls: Option<(TenantDb, TenantDb)>,
    /// RLS mode with every tenant in a database of its own (PostgreSQL, when asked for).
    pub(crate) db_rls: Option<DbTier>,
    /// The tokio-postgres pools of `tokio-pg` and `tokio-pg-rls` (PostgreSQL only).
    pub(crate) tokio_pg: Option<TokioPg>,
    /// The node process of `typeorm` and `typeorm-rls` (PostgreSQL, when asked for).
    pub(crate) typeorm: Option<TypeOrm>,
    /// Rows per tenant: what `count` must return.
    pub(crate) rows: u64,
}

impl Target {
    /// Rows a page must hold.
    fn page_len(&self) -> usize {
        usize::try_from(self.rows.min(PAGE)).expect("small")
    }

    /// Rows an `update many` must touch.
    fn many_len(&self) -> u64 {
        self.rows.min(MANY)
    }

    /// Runs `op` on `key` through `imp` and checks the result.
    pub(crate) async fn run(&self, imp: Imp, op: Op, key: &Key) -> Result<()> {
        let outcome = match (imp, &self.raw) {
            (Imp::Sqlx, Raw::Postgres { plain, .. }) => pg_statement(plain, op, key).await?,
            (Imp::Sqlx, Raw::Sqlite(pool)) => sqlite_statement(pool, op, key).await?,
            (Imp::SeaOrm, _) => orm(&self.orm, op, key).await?,
            (Imp::Repo, _) => repo(&self.repo, op, key).await?,
            (Imp::RepoCatalog, _) => {
                let db = self
                    .repo_catalog
                    .as_ref()
                    .ok_or("no tenant catalog on this backend")?;
                repo(db, op, key).await?
            }
            (Imp::Rls, _) => {
                let db = self.rls.as_ref().ok_or("RLS mode needs PostgreSQL")?;
                repo(db, op, key).await?
            }
            (Imp::RepoPipe, _) => {
                let db = self
                    .repo_pipe
                    .as_ref()
                    .ok_or("the pipeline needs PostgreSQL")?;
                repo(db, op, key).await?
            }
            (Imp::RlsPipe, _) => {
                let db = self
                    .rls_pipe
                    .as_ref()
                    .ok_or("the pipeline needs PostgreSQL")?;
                repo(db, op, key).await?
            }
            (Imp::SchemaRls | Imp::SchemaRlsPipe, _) => {
                let (sqlx, piped) = self
                    .schema_rls
                    .as_ref()
                    .ok_or("the schema tier needs PostgreSQL")?;
                repo(if imp == Imp::SchemaRls { sqlx } else { piped }, op, key).await?
            }
            (Imp::DbRls | Imp::DbRlsPipe, _) => {
                let tier = self
                    .db_rls
                    .as_ref()
                    .ok_or("the database tier needs PostgreSQL")?;
                repo(tier.handle(imp), op, key).await?
            }
            (Imp::SqlxTxn, Raw::Postgres { app, .. }) => pg_set_config(app, op, key).await?,
            (Imp::SqlxSetLocal, Raw::Postgres { app, .. }) => pg_set_local(app, op, key).await?,
            (Imp::SqlxTxn | Imp::SqlxSetLocal, Raw::Sqlite(_)) => {
                return Err("the hand-written RLS transactions need PostgreSQL".into());
            }
            (Imp::TokioPg | Imp::TokioPgRls | Imp::TokioPgRlsPin, _) => {
                let pools = self
                    .tokio_pg
                    .as_ref()
                    .ok_or("tokio-postgres needs PostgreSQL")?;
                let binding = match imp {
                    Imp::TokioPgRls => Binding::Rls,
                    Imp::TokioPgRlsPin => Binding::RlsPinned,
                    _ => Binding::None,
                };
                pools.run(binding, op, key).await?
            }
            // The node process checks its own results.
            (Imp::TypeOrm | Imp::TypeOrmRls, _) => {
                let node = self
                    .typeorm
                    .as_ref()
                    .ok_or("TypeORM runs on PostgreSQL, when named")?;
                return node.run(imp, op, key).await;
            }
        };
        self.check(imp, op, key, &outcome)
    }

    fn check(&self, imp: Imp, op: Op, key: &Key, outcome: &Outcome) -> Result<()> {
        let ok = match (op, outcome) {
            (Op::Get, Outcome::Row(Some(row))) => row.id == key.id && row.tenant_id == key.tenant,
            (Op::Page, Outcome::Rows(n)) => *n == self.page_len(),
            (Op::Count, Outcome::Count(n)) => *n == self.rows,
            (Op::Insert, Outcome::Row(Some(row))) => row.id == key.id && row.label == key.label,
            (Op::Update, Outcome::Row(Some(row))) => row.id == key.id && row.label == key.updated,
            (Op::Delete, Outcome::Count(n)) => *n == 1,
            (Op::UpdateMany, Outcome::Count(n)) => *n == self.many_len(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} {}: unexpected result {outcome:?} for tenant {} row {}",
                imp.name(),
                op.name(),
                key.tenant,
                key.id
            )
            .into())
        }
    }
}

/// RLS mode over the shared data set's app pool, with a catalog putting every tenant in a
/// database of its own, and a `DatabaseTier` serving those databases: its pools (and, for
/// `piped`, pipelines) of `per_tenant` connections each, room for all of them at once.
#[derive(Debug)]
pub(crate) struct DbTier {
    pub(crate) sqlx: TenantDb,
    pub(crate) piped: TenantDb,
    pub(crate) per_tenant: u32,
}

impl DbTier {
    /// The handle `imp` runs on.
    pub(crate) fn handle(&self, imp: Imp) -> &TenantDb {
        if imp == Imp::DbRlsPipe {
            &self.piped
        } else {
            &self.sqlx
        }
    }

    /// The tier behind `imp`'s handle.
    pub(crate) fn tier(&self, imp: Imp) -> Option<&DatabaseTier> {
        self.handle(imp).database_tier()
    }

    /// What the tiers of `imps` did in a cell of `tenants` tenants: the pools they opened (one
    /// per tenant database when none was closed to make room) and the statements the tenant
    /// databases' pipelines ran.
    pub(crate) fn describe(&self, imps: &[Imp], tenants: u64, workers: usize) -> String {
        let n = self.per_tenant;
        let mut text = format!(
            "database tier at T={tenants}, C={workers}: pools of {n} connection{} per tenant \
             database, room for all of them",
            if n == 1 { "" } else { "s" }
        );
        for &imp in imps.iter().filter(|imp| imp.database_tier()) {
            let Some(tier) = self.tier(imp) else {
                continue;
            };
            let opened = tier.pools_opened() as u64;
            let _ = write!(
                text,
                "; `{}` opened {opened} pools ({})",
                if imp == Imp::DbRls {
                    "db-rls"
                } else {
                    "db-rls-pipe"
                },
                if opened == tenants {
                    "one per tenant database: none closed to make room"
                } else {
                    "not one per tenant database: some closed to make room"
                },
            );
            if imp == Imp::DbRlsPipe {
                let _ = write!(
                    text,
                    " with a pipeline of {n} each, which ran {} statements",
                    tier.pipelined_statements()
                );
            }
        }
        text
    }
}

/// What an operation returned, reduced to what the check needs.
#[derive(Debug)]
pub(crate) enum Outcome {
    Row(Option<Row>),
    Rows(usize),
    Count(u64),
}

impl From<item::Model> for Row {
    fn from(m: item::Model) -> Self {
        Row {
            id: m.id,
            tenant_id: m.tenant_id,
            label: m.label,
            qty: m.qty,
            created_at: m.created_at,
        }
    }
}

impl From<plain::Model> for Row {
    fn from(m: plain::Model) -> Self {
        Row {
            id: m.id,
            tenant_id: m.tenant_id,
            label: m.label,
            qty: m.qty,
            created_at: m.created_at,
        }
    }
}

/// A row decoded by hand, as a raw sqlx application does.
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        Row {
            id: row.try_get(0)?,
            tenant_id: row.try_get(1)?,
            label: row.try_get(2)?,
            qty: row.try_get(3)?,
            created_at: row.try_get(4)?,
        }
    }};
}

pub(crate) const PG_GET: &str =
    "SELECT id, tenant_id, label, qty, created_at FROM item WHERE id = $1 AND tenant_id = $2";
pub(crate) const PG_PAGE: &str = "SELECT id, tenant_id, label, qty, created_at FROM item \
                       WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 50";
pub(crate) const PG_COUNT: &str = "SELECT COUNT(*) FROM item WHERE tenant_id = $1";
pub(crate) const PG_INSERT: &str = "INSERT INTO item (id, tenant_id, label, qty, created_at) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id, tenant_id, label, qty, created_at";
pub(crate) const PG_UPDATE: &str = "UPDATE item SET label = $1, qty = $2 WHERE id = $3 AND tenant_id = $4 \
                         RETURNING id, tenant_id, label, qty, created_at";
pub(crate) const PG_DELETE: &str = "DELETE FROM item WHERE id = $1 AND tenant_id = $2";
pub(crate) const PG_UPDATE_MANY: &str = "UPDATE item SET qty = qty + 1 \
                                         WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3";

/// The hand-written statement of `op` on a PostgreSQL pool or transaction.
async fn pg_statement<'c, E>(exec: E, op: Op, key: &Key) -> Result<Outcome>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    Ok(match op {
        Op::Get => {
            let row = sqlx::query(PG_GET)
                .bind(key.id)
                .bind(key.tenant)
                .fetch_optional(exec)
                .await?;
            Outcome::Row(match row {
                Some(row) => Some(decode!(row)),
                None => None,
            })
        }
        Op::Page => {
            let rows = sqlx::query(PG_PAGE)
                .bind(key.tenant)
                .fetch_all(exec)
                .await?;
            let rows = rows
                .into_iter()
                .map(|row| Ok(decode!(row)))
                .collect::<Result<Vec<Row>>>()?;
            Outcome::Rows(rows.len())
        }
        Op::Count => {
            let (n,): (i64,) = sqlx::query_as(PG_COUNT)
                .bind(key.tenant)
                .fetch_one(exec)
                .await?;
            Outcome::Count(u64::try_from(n)?)
        }
        Op::Insert => {
            let row = sqlx::query(PG_INSERT)
                .bind(key.id)
                .bind(key.tenant)
                .bind(key.label.clone())
                .bind(key.qty)
                .bind(key.created_at)
                .fetch_one(exec)
                .await?;
            Outcome::Row(Some(decode!(row)))
        }
        Op::Update => {
            let row = sqlx::query(PG_UPDATE)
                .bind(key.updated.clone())
                .bind(key.qty + 1)
                .bind(key.id)
                .bind(key.tenant)
                .fetch_optional(exec)
                .await?;
            Outcome::Row(match row {
                Some(row) => Some(decode!(row)),
                None => None,
            })
        }
        Op::Delete => {
            let done = sqlx::query(PG_DELETE)
                .bind(key.id)
                .bind(key.tenant)
                .execute(exec)
                .await?;
            Outcome::Count(done.rows_affected())
        }
        Op::UpdateMany => {
            let done = sqlx::query(PG_UPDATE_MANY)
                .bind(key.tenant)
                .bind(key.from)
                .bind(key.until)
                .execute(exec)
                .await?;
            Outcome::Count(done.rows_affected())
        }
    })
}

/// [`pg_statement`] in a transaction that binds the tenant with `set_config` first: what an
/// application does by hand to use RLS with sqlx.
async fn pg_set_config(pool: &PgPool, op: Op, key: &Key) -> Result<Outcome> {
    let mut txn = pool.begin().await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(key.tenant.to_string())
        .execute(&mut *txn)
        .await?;
    let outcome = pg_statement(&mut *txn, op, key).await?;
    txn.commit().await?;
    Ok(outcome)
}

/// [`pg_set_config`] binding with `SET LOCAL`, sent as a message of its own (a setting takes no
/// bind parameter: the id is written into the statement, a UUID's text is safe there).
async fn pg_set_local(pool: &PgPool, op: Op, key: &Key) -> Result<Outcome> {
    let mut txn = pool.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL app.tenant_id = '{}'",
        key.tenant
    )))
    .execute(&mut *txn)
    .await?;
    let outcome = pg_statement(&mut *txn, op, key).await?;
    txn.commit().await?;
    Ok(outcome)
}

const LITE_GET: &str =
    "SELECT id, tenant_id, label, qty, created_at FROM item WHERE id = ? AND tenant_id = ?";
const LITE_PAGE: &str = "SELECT id, tenant_id, label, qty, created_at FROM item \
                         WHERE tenant_id = ? ORDER BY created_at DESC LIMIT 50";
const LITE_COUNT: &str = "SELECT COUNT(*) FROM item WHERE tenant_id = ?";
const LITE_INSERT: &str = "INSERT INTO item (id, tenant_id, label, qty, created_at) \
                           VALUES (?, ?, ?, ?, ?) RETURNING id, tenant_id, label, qty, created_at";
const LITE_UPDATE: &str = "UPDATE item SET label = ?, qty = ? WHERE id = ? AND tenant_id = ? \
                           RETURNING id, tenant_id, label, qty, created_at";
const LITE_DELETE: &str = "DELETE FROM item WHERE id = ? AND tenant_id = ?";
const LITE_UPDATE_MANY: &str = "UPDATE item SET qty = qty + 1 \
                                WHERE tenant_id = ? AND created_at >= ? AND created_at < ?";

/// The hand-written statement of `op` on SQLite.
async fn sqlite_statement(pool: &SqlitePool, op: Op, key: &Key) -> Result<Outcome> {
    Ok(match op {
        Op::Get => {
            let row = sqlx::query(LITE_GET)
                .bind(key.id)
                .bind(key.tenant)
                .fetch_optional(pool)
                .await?;
            Outcome::Row(match row {
                Some(row) => Some(decode!(row)),
                None => None,
            })
        }
        Op::Page => {
            let rows = sqlx::query(LITE_PAGE)
                .bind(key.tenant)
                .fetch_all(pool)
                .await?;
            let rows = rows
                .into_iter()
                .map(|row| Ok(decode!(row)))
                .collect::<Result<Vec<Row>>>()?;
            Outcome::Rows(rows.len())
        }
        Op::Count => {
            let (n,): (i64,) = sqlx::query_as(LITE_COUNT)
                .bind(key.tenant)
                .fetch_one(pool)
                .await?;
            Outcome::Count(u64::try_from(n)?)
        }
        Op::Insert => {
            let row = sqlx::query(LITE_INSERT)
                .bind(key.id)
                .bind(key.tenant)
                .bind(key.label.clone())
                .bind(key.qty)
                .bind(key.created_at)
                .fetch_one(pool)
                .await?;
            Outcome::Row(Some(decode!(row)))
        }
        Op::Update => {
            let row = sqlx::query(LITE_UPDATE)
                .bind(key.updated.clone())
                .bind(key.qty + 1)
                .bind(key.id)
                .bind(key.tenant)
                .fetch_optional(pool)
                .await?;
            Outcome::Row(match row {
                Some(row) => Some(decode!(row)),
                None => None,
            })
        }
        Op::Delete => {
            let done = sqlx::query(LITE_DELETE)
                .bind(key.id)
                .bind(key.tenant)
                .execute(pool)
                .await?;
            Outcome::Count(done.rows_affected())
        }
        Op::UpdateMany => {
            let done = sqlx::query(LITE_UPDATE_MANY)
                .bind(key.tenant)
                .bind(key.from)
                .bind(key.until)
                .execute(pool)
                .await?;
            Outcome::Count(done.rows_affected())
        }
    })
}

/// Plain SeaORM with the tenant filter written by hand: the baseline of every ratio.
#[expect(
    clippy::disallowed_methods,
    reason = "the baseline is plain, unscoped SeaORM with a hand-written filter"
)]
async fn orm(conn: &DatabaseConnection, op: Op, key: &Key) -> Result<Outcome> {
    use plain::{ActiveModel, Column, Entity};
    // Here only: its `min` and `max` would shadow `Ord`'s elsewhere.
    use sea_orm::sea_query::ExprTrait as _;
    let mine = Column::TenantId.eq(key.tenant);
    Ok(match op {
        Op::Get => Outcome::Row(
            Entity::find_by_id(key.id)
                .filter(mine)
                .one(conn)
                .await?
                .map(Row::from),
        ),
        Op::Page => Outcome::Rows(
            Entity::find()
                .filter(mine)
                .order_by_desc(Column::CreatedAt)
                .limit(PAGE)
                .all(conn)
                .await?
                .len(),
        ),
        Op::Count => Outcome::Count(Entity::find().filter(mine).count(conn).await?),
        Op::Insert => {
            let am = ActiveModel {
                id: Set(key.id),
                tenant_id: Set(key.tenant),
                label: Set(key.label.clone()),
                qty: Set(key.qty),
                created_at: Set(key.created_at),
            };
            Outcome::Row(Some(am.insert(conn).await?.into()))
        }
        Op::Update => {
            let am = ActiveModel {
                id: Unchanged(key.id),
                label: Set(key.updated.clone()),
                qty: Set(key.qty + 1),
                ..Default::default()
            };
            Outcome::Row(Some(
                Entity::update(am)
                    .validate()?
                    .filter(mine)
                    .exec(conn)
                    .await?
                    .into(),
            ))
        }
        Op::Delete => Outcome::Count(
            Entity::delete_by_id(key.id)
                .filter(mine)
                .exec(conn)
                .await?
                .rows_affected,
        ),
        Op::UpdateMany => Outcome::Count(
            Entity::update_many()
                .col_expr(Column::Qty, Expr::col(Column::Qty).add(1))
                .filter(mine)
                .filter(Column::CreatedAt.gte(key.from))
                .filter(Column::CreatedAt.lt(key.until))
                .exec(conn)
                .await?
                .rows_affected,
        ),
    })
}

/// `TenantRepo` inside `tenant::scope`, as a request handler would run it: the repository is
/// made and the scope entered per operation, so their cost is measured too.
async fn repo(db: &TenantDb, op: Op, key: &Key) -> Result<Outcome> {
    use sea_orm::sea_query::ExprTrait as _;
    let repo = TenantRepo::<item::Entity>::new(db);
    let work = async {
        Ok::<_, tenant::Error>(match op {
            Op::Get => Outcome::Row(repo.find_by_id(key.id).await?.map(Row::from)),
            Op::Page => Outcome::Rows(
                repo.find()
                    .order_by_desc(item::Column::CreatedAt)
                    .limit(PAGE)
                    .all(repo.connection())
                    .await?
                    .len(),
            ),
            Op::Count => Outcome::Count(repo.count().await?),
            Op::Insert => {
                let am = item::ActiveModel {
                    id: Set(key.id),
                    label: Set(key.label.clone()),
                    qty: Set(key.qty),
                    created_at: Set(key.created_at),
                    ..Default::default()
                };
                Outcome::Row(Some(repo.insert(am).await?.into()))
            }
            Op::Update => {
                let am = item::ActiveModel {
                    id: Unchanged(key.id),
                    label: Set(key.updated.clone()),
                    qty: Set(key.qty + 1),
                    ..Default::default()
                };
                Outcome::Row(Some(repo.update(am).await?.into()))
            }
            Op::Delete => {
                repo.delete_by_id(key.id).await?;
                Outcome::Count(1)
            }
            // `TenantRepo::update_many` takes an `ActiveModel`, which cannot say `qty + 1`;
            // the derive's `Entity::update_many()` is the same scoped statement with `col_expr`.
            Op::UpdateMany => Outcome::Count(
                item::Entity::update_many()
                    .col_expr(item::Column::Qty, Expr::col(item::Column::Qty).add(1))
                    .filter(item::Column::CreatedAt.gte(key.from))
                    .filter(item::Column::CreatedAt.lt(key.until))
                    .exec(db)
                    .await?,
            ),
        })
    };
    Ok(tenant::scope(TenantId::from(key.tenant), work).await?)
}
