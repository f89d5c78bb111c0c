//! [`TenantDb`] and [`TenantTxn`]: connections that only tenant-scoped statements can use.
//!
//! Neither type implements SeaORM's `ConnectionTrait` nor derefs to a connection, so no SeaORM
//! executor accepts them: the only statements they run are the ones this crate has scoped.
//! Execution goes through the private [`Exec`] seam, which is where a different driver or a
//! per-statement tenant binding plugs in.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};

use crate::context::{self, Access};
use crate::rls::Rls;
use crate::{Error, Result};

/// A database handle that runs only tenant-scoped statements.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = tenant_core::TenantDb::new(sea_orm::Database::connect("sqlite::memory:").await?);
/// assert_eq!(db.backend(), sea_orm::DbBackend::Sqlite);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TenantDb {
    conn: DatabaseConnection,
    rls: Option<Arc<Rls>>,
    /// A connection whose role bypasses RLS, for system scopes in RLS mode.
    system: Option<DatabaseConnection>,
    /// The escape hatch's own pool, when [`TenantDb::connect`] opened one: raw SQL then never
    /// runs on a connection that scoped units use.
    hatch: Option<DatabaseConnection>,
    /// The pipelined executor for the reads it can take.
    #[cfg(feature = "pipeline")]
    pipeline: Option<crate::Pipeline>,
}

impl TenantDb {
    /// Wraps a SeaORM connection (pool). Scoping is enforced by this crate's queries (the
    /// app-level filter); see [`with_rls`](Self::with_rls) for the database layer.
    pub fn new(conn: DatabaseConnection) -> Self {
        Self {
            conn,
            rls: None,
            system: None,
            hatch: None,
            #[cfg(feature = "pipeline")]
            pipeline: None,
        }
    }

    /// Wraps a PostgreSQL connection in RLS mode: every scoped unit of work runs in a
    /// transaction that binds the tenant with `SET LOCAL` first, so the tables' policies
    /// refuse what the app-level filter would have missed. The app-level predicate stays too.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsPostgres`] when the connection is not PostgreSQL.
    pub fn with_rls(conn: DatabaseConnection, rls: Rls) -> Result<Self> {
        if conn.get_database_backend() != DbBackend::Postgres || !cfg!(feature = "postgres") {
            return Err(Error::NeedsPostgres {
                feature: "RLS mode",
                backend: conn.get_database_backend(),
            });
        }
        Ok(Self {
            conn,
            rls: Some(Arc::new(rls)),
            system: None,
            hatch: None,
            #[cfg(feature = "pipeline")]
            pipeline: None,
        })
    }

    /// [`with_rls`](Self::with_rls) that refuses to start unless the start-up
    /// [`audit`](crate::audit()) of `schema` on this connection is clean: the role cannot bypass
    /// the policies, every tenant table is under the declared policy, and the declared keys exist.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] listing every finding with its fix; [`Error::RlsMismatch`] when `schema`
    /// declares no RLS or other settings than `rls`; [`Error::NeedsPostgres`] when the connection
    /// is not PostgreSQL; or the database's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(tables: Vec<tenant_core::Table>) -> tenant_core::Result<()> {
    /// # let conn: sea_orm::DatabaseConnection = unimplemented!();
    /// let rls = tenant_core::Rls::default();
    /// let schema = tenant_core::TenantSchema::new().tables(tables).rls(rls.clone());
    /// let db = tenant_core::TenantDb::with_rls_checked(conn, rls, &schema).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn with_rls_checked(
        conn: DatabaseConnection,
        rls: Rls,
        schema: &crate::TenantSchema,
    ) -> Result<Self> {
        if schema.rls_settings() != Some(&rls) {
            return Err(Error::RlsMismatch {
                schema: schema.rls_settings().cloned(),
                handle: rls,
            });
        }
        let db = Self::with_rls(conn, rls)?;
        crate::audit(&db.conn, schema).await?.into_result()?;
        Ok(db)
    }

    /// The connection system scopes use in RLS mode: its role must bypass RLS (or own the
    /// tables without `FORCE`), since the application role sees no rows without a tenant.
    #[must_use]
    pub fn with_system_connection(mut self, conn: DatabaseConnection) -> Self {
        self.system = Some(conn);
        self
    }

    /// Runs the reads that return whole models or a count (`all`, `one`, `exists`,
    /// `find_by_id`, `count`, paginator pages) and the single-row writes (insert, update, delete
    /// by key) on `pipeline`, which sends the tenant binding, the statement and the `COMMIT` of
    /// an RLS-mode statement together: one round trip instead of three.
    ///
    /// The same tenant predicate and, in RLS mode, the same `BEGIN; SET LOCAL ..` are sent; only
    /// the driver differs. Transactions, system scopes, many-row writes and models with a field
    /// type tokio-postgres cannot decode stay on the SeaORM connection; so does a write whose
    /// SeaORM hooks use the database. See [`pipeline`](crate::pipeline).
    ///
    /// Connect the pipeline as the same role as this handle's connection. In RLS mode its reads
    /// and writes fail with [`Error::BypassingRole`] when that role is a superuser or has `BYPASSRLS`
    /// (checked once, on the first statement).
    ///
    /// # Errors
    ///
    /// [`Error::NeedsPostgres`] when this handle is not on PostgreSQL.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    pub fn with_pipeline(mut self, pipeline: crate::Pipeline) -> Result<Self> {
        if self.backend() != DbBackend::Postgres {
            return Err(Error::NeedsPostgres {
                feature: "the pipelined executor",
                backend: self.backend(),
            });
        }
        self.pipeline = Some(pipeline);
        Ok(self)
    }

    /// Where a read acting for `access` goes on the pipeline, if this handle has one.
    #[cfg(feature = "pipeline")]
    fn route(&self, access: Option<&Access>) -> Option<crate::pipeline::Route<'_>> {
        let pipeline = self.pipeline.as_ref()?;
        let begin = match (&self.rls, access) {
            (None, _) => None,
            // A system scope in RLS mode runs on the bypass connection, which is sqlx's.
            (Some(_), Some(Access::System(_))) => return None,
            (Some(rls), Some(Access::Tenant(id))) => Some(rls.begin_sql(Some(*id))),
            (Some(rls), None) => Some(rls.begin_sql(None)),
        };
        Some(crate::pipeline::Route { pipeline, begin })
    }

    /// The pool, for this crate's own catalog queries (no audit log line, unlike `unscoped`).
    #[cfg(feature = "postgres")]
    pub(crate) fn raw(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The RLS settings, when in RLS mode.
    pub fn rls(&self) -> Option<&Rls> {
        self.rls.as_deref()
    }

    /// The database backend.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Begins a transaction bound to the tenant in scope.
    ///
    /// Every scoped API accepts the returned [`TenantTxn`] in place of the [`TenantDb`]. Using it
    /// inside another tenant's scope fails with [`Error::ScopeMismatch`].
    ///
    /// # Errors
    ///
    /// [`Error::NoTenant`] outside a scope, or the database's error.
    pub async fn begin(&self) -> Result<TenantTxn> {
        let access = context::access()?;
        let txn = match self.unit(Some(&access)).await?.kind {
            UnitKind::Shared(Exec::Db(conn)) => TxnKind::Orm(conn.begin().await?),
            // On PostgreSQL the unit's connection is held by this crate, so that a `TenantTxn`
            // dropped while its `BEGIN` is in flight never goes back to the pool inside a
            // transaction. In RLS mode the unit has begun already, with the tenant bound.
            #[cfg(feature = "postgres")]
            UnitKind::Bound(mut txn) => {
                txn.get_mut().begin_if_idle().await?;
                TxnKind::Pg(txn)
            }
            UnitKind::Shared(_) => unreachable!("a `TenantDb` unit runs on its own pool"),
        };
        Ok(TenantTxn { txn, access })
    }

    /// A unit of work acting for `access` (`None`: no tenant needed, such as a global table).
    #[cfg_attr(
        not(feature = "postgres"),
        expect(clippy::unused_async, reason = "awaits only on the PostgreSQL path")
    )]
    async fn unit(&self, access: Option<&Access>) -> Result<Unit<'_>> {
        // In RLS mode every unit runs in a transaction, global reads included: behind
        // PgBouncer's transaction pooling a statement outside a transaction may be prepared on
        // one server connection and executed on another.
        let (conn, begin) = match (&self.rls, access) {
            (Some(_), Some(Access::System(_))) => match &self.system {
                Some(system) => (system, None),
                None => return Err(Error::SystemNeedsBypass),
            },
            (Some(rls), access) => (
                &self.conn,
                Some(rls.begin_sql(match access {
                    Some(Access::Tenant(id)) => Some(*id),
                    _ => None,
                })),
            ),
            (None, _) => (&self.conn, None),
        };
        // On PostgreSQL the unit holds its connection: see `PgUnit`.
        #[cfg(feature = "postgres")]
        if conn.get_database_backend() == DbBackend::Postgres {
            let pool = conn.get_postgres_connection_pool();
            // Boxed: the acquire-and-begin future is large, and an unboxed one would make
            // every operation's future that large.
            let txn = match begin {
                Some(begin) => Box::pin(PgUnit::begin(pool, begin)).await?,
                None => Box::pin(PgUnit::acquire(pool)).await?,
            };
            return Ok(Unit {
                kind: UnitKind::Bound(tokio::sync::Mutex::new(txn)),
            });
        }
        debug_assert!(begin.is_none(), "`with_rls` refuses without PostgreSQL");
        Ok(Unit::shared(Exec::Db(conn)))
    }

    /// The raw connection, past every tenant check. This is the escape hatch.
    ///
    /// The [`AssertUnscoped`] names the reason, and every call logs it to the `tenant::audit`
    /// tracing target.
    ///
    /// On PostgreSQL, a handle from [`TenantDb::connect`] or [`TenantDb::builder`] gives the
    /// escape hatch a pool of its own (same URL and options, no idle connections, opened on
    /// first use): session state that raw SQL leaves behind (a temporary table, a session
    /// `search_path`, an open transaction) never reaches a connection that scoped units use. A
    /// handle wrapped around a connection of the caller's ([`TenantDb::new`],
    /// [`TenantDb::with_rls`]) returns that connection.
    pub fn unscoped(&self, assert: &AssertUnscoped) -> &DatabaseConnection {
        tracing::warn!(
            target: "tenant::audit",
            reason = assert.reason,
            tenant.id = ?context::current().ok(),
            "unscoped database access"
        );
        self.hatch.as_ref().unwrap_or(&self.conn)
    }

    /// Gives the escape hatch `conn`, a pool of its own to the same database.
    #[cfg(feature = "postgres")]
    pub(crate) fn with_escape_hatch(mut self, conn: DatabaseConnection) -> Self {
        self.hatch = Some(conn);
        self
    }

    /// The underlying pool, to close it.
    ///
    /// # Errors
    ///
    /// The driver's error on close.
    pub async fn close(self) -> Result<()> {
        if let Some(hatch) = self.hatch {
            hatch.close().await?;
        }
        self.conn.close().await.map_err(Error::from)
    }
}

impl fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantDb")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// A transaction begun with [`TenantDb::begin`], bound to one tenant.
///
/// Dropped without [`commit`](Self::commit), it rolls back.
pub struct TenantTxn {
    txn: TxnKind,
    access: Access,
}

enum TxnKind {
    Orm(DatabaseTransaction),
    #[cfg(feature = "postgres")]
    Pg(PgTxn),
}

impl TenantTxn {
    /// Commits the transaction.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn commit(self) -> Result<()> {
        match self.txn {
            TxnKind::Orm(txn) => txn.commit().await.map_err(Error::from),
            #[cfg(feature = "postgres")]
            TxnKind::Pg(txn) => txn.into_inner().commit().await,
        }
    }

    /// Rolls the transaction back.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn rollback(self) -> Result<()> {
        match self.txn {
            TxnKind::Orm(txn) => txn.rollback().await.map_err(Error::from),
            #[cfg(feature = "postgres")]
            TxnKind::Pg(txn) => txn.into_inner().rollback().await,
        }
    }
}

impl fmt::Debug for TenantTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantTxn")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// The typed speed bump in front of [`TenantDb::unscoped`].
///
/// Greppable (`rg AssertUnscoped`), and it needs a reason written in the code.
#[derive(Debug)]
pub struct AssertUnscoped {
    reason: &'static str,
}

impl AssertUnscoped {
    /// Asserts that what follows must run without the tenant filter, for `reason`.
    ///
    /// # Panics
    ///
    /// When `reason` is empty or only whitespace.
    pub fn new(reason: &'static str) -> Self {
        assert!(
            !reason.trim().is_empty(),
            "`AssertUnscoped::new` needs a reason; say why this access must skip the tenant filter"
        );
        Self { reason }
    }
}

/// A handle scoped operations run on: [`TenantDb`] or [`TenantTxn`].
///
/// Sealed: only this crate's handles implement it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenant-scoped connection",
    label = "scoped queries and writes run on a `TenantDb` or a `TenantTxn`",
    note = "wrap the connection: `TenantDb::new(conn)`; for deliberate unscoped access use `TenantDb::unscoped(&AssertUnscoped::new(\"reason\"))`"
)]
pub trait TenantConnection: private::Sealed + Sync {
    /// A unit of work acting for `access`. The token cannot be made outside this crate, so
    /// neither can a unit nor its executor.
    #[doc(hidden)]
    fn __unit(
        &self,
        token: private::Token,
        access: Option<&Access>,
    ) -> impl Future<Output = Result<Unit<'_>>> + Send;

    /// Who the next operation acts for: the scope's tenant, checked against the transaction's.
    #[doc(hidden)]
    fn __access(&self, token: private::Token) -> Result<Access>;

    /// Where a read acting for `access` goes on the pipelined executor, if anywhere.
    #[cfg(feature = "pipeline")]
    #[doc(hidden)]
    fn __route(&self, _: private::Token, _: Option<&Access>) -> Option<crate::pipeline::Route<'_>> {
        None
    }
}

impl TenantConnection for TenantDb {
    fn __unit(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> impl Future<Output = Result<Unit<'_>>> + Send {
        self.unit(access)
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        context::access()
    }

    #[cfg(feature = "pipeline")]
    fn __route(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> Option<crate::pipeline::Route<'_>> {
        self.route(access)
    }
}

impl TenantConnection for TenantTxn {
    fn __unit(
        &self,
        _: private::Token,
        _: Option<&Access>,
    ) -> impl Future<Output = Result<Unit<'_>>> + Send {
        let exec = match &self.txn {
            TxnKind::Orm(txn) => Exec::Txn(txn),
            #[cfg(feature = "postgres")]
            TxnKind::Pg(txn) => Exec::Pg(txn),
        };
        std::future::ready(Ok(Unit::shared(exec)))
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        let now = context::access()?;
        match (&self.access, &now) {
            (Access::Tenant(bound), Access::Tenant(scope)) if bound == scope => Ok(now),
            (Access::System(_), Access::System(_)) => Ok(now),
            (bound, scope) => Err(Error::ScopeMismatch {
                bound: describe(bound),
                scope: describe(scope),
            }),
        }
    }
}

fn describe(access: &Access) -> Option<crate::TenantId> {
    match access {
        Access::Tenant(id) => Some(*id),
        Access::System(_) => None,
    }
}

// Not offered in messages: "`&T` implements it" only distracts from wrapping the connection.
#[diagnostic::do_not_recommend]
impl<T: TenantConnection> TenantConnection for &T {
    fn __unit(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> impl Future<Output = Result<Unit<'_>>> + Send {
        (**self).__unit(private::Token(()), access)
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        (**self).__access(private::Token(()))
    }

    #[cfg(feature = "pipeline")]
    fn __route(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> Option<crate::pipeline::Route<'_>> {
        (**self).__route(private::Token(()), access)
    }
}

pub(crate) mod private {
    /// Proof of being inside this crate.
    #[derive(Debug, Clone, Copy)]
    pub struct Token(pub(crate) ());

    pub trait Sealed {}
    impl Sealed for super::TenantDb {}
    impl Sealed for super::TenantTxn {}
    impl<T: Sealed> Sealed for &T {}
}

impl fmt::Debug for Exec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exec::Db(_) => "Exec::Db",
            Exec::Txn(_) => "Exec::Txn",
            #[cfg(feature = "postgres")]
            Exec::Pg(_) => "Exec::Pg",
        })
    }
}

/// The one place scoped statements reach the database.
///
/// Public only so that the sealed [`TenantConnection`] can name it; it cannot be obtained
/// outside this crate.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Exec<'a> {
    #[doc(hidden)]
    Db(&'a DatabaseConnection),
    #[doc(hidden)]
    Txn(&'a DatabaseTransaction),
    #[doc(hidden)]
    #[cfg(feature = "postgres")]
    Pg(&'a PgTxn),
}

#[async_trait::async_trait]
impl ConnectionTrait for Exec<'_> {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Exec::Db(c) => c.get_database_backend(),
            Exec::Txn(c) => c.get_database_backend(),
            #[cfg(feature = "postgres")]
            Exec::Pg(_) => DbBackend::Postgres,
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the executor itself: it runs the statements this crate has scoped"
    )]
    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Exec::Db(c) => c.execute_raw(stmt).await,
            Exec::Txn(c) => c.execute_raw(stmt).await,
            #[cfg(feature = "postgres")]
            Exec::Pg(txn) => match txn.lock().await.statement(Op::Execute, &stmt).await {
                Ok(Outcome::Execute(done)) => Ok(done.into()),
                Ok(_) => unreachable!("run for `Op::Execute`"),
                Err(e) => Err(DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(e)))),
            },
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "delegation: reachable only through this crate's own statements"
    )]
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Exec::Db(c) => c.execute_unprepared(sql).await,
            Exec::Txn(c) => c.execute_unprepared(sql).await,
            #[cfg(feature = "postgres")]
            Exec::Pg(txn) => {
                let mut txn = txn.lock().await;
                txn.fresh = false;
                sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut **txn)
                    .await
                    .map(Into::into)
                    .map_err(|e| DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(e))))
            }
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the executor itself: it runs the statements this crate has scoped"
    )]
    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Exec::Db(c) => c.query_one_raw(stmt).await,
            Exec::Txn(c) => c.query_one_raw(stmt).await,
            #[cfg(feature = "postgres")]
            Exec::Pg(txn) => match txn.lock().await.statement(Op::One, &stmt).await {
                Ok(Outcome::One(row)) => Ok(row.map(Into::into)),
                Ok(_) => unreachable!("run for `Op::One`"),
                Err(e) => Err(DbErr::Query(sea_orm::RuntimeErr::SqlxError(Arc::new(e)))),
            },
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the executor itself: it runs the statements this crate has scoped"
    )]
    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Exec::Db(c) => c.query_all_raw(stmt).await,
            Exec::Txn(c) => c.query_all_raw(stmt).await,
            #[cfg(feature = "postgres")]
            Exec::Pg(txn) => match txn.lock().await.statement(Op::All, &stmt).await {
                Ok(Outcome::All(rows)) => Ok(rows.into_iter().map(Into::into).collect()),
                Ok(_) => unreachable!("run for `Op::All`"),
                Err(e) => Err(DbErr::Query(sea_orm::RuntimeErr::SqlxError(Arc::new(e)))),
            },
        }
    }

    fn support_returning(&self) -> bool {
        match self {
            Exec::Db(c) => c.support_returning(),
            Exec::Txn(c) => c.support_returning(),
            #[cfg(feature = "postgres")]
            Exec::Pg(_) => true,
        }
    }
}

/// A SeaORM statement as a sqlx query with its values bound (prepared and cached by sqlx).
#[cfg(feature = "postgres")]
fn bound(
    stmt: &Statement,
) -> sea_orm::sqlx::query::Query<'_, sea_orm::sqlx::Postgres, sea_query_sqlx::SqlxValues> {
    let values = stmt
        .values
        .clone()
        .unwrap_or_else(|| sea_orm::Values(Vec::new()));
    sea_orm::sqlx::query_with(
        sea_orm::sqlx::AssertSqlSafe(stmt.sql.as_str()),
        sea_query_sqlx::SqlxValues(values),
    )
}

/// A unit of work on `conn` acting for `access` (`None`: no tenant needed).
pub(crate) async fn unit<'c, C: TenantConnection + ?Sized>(
    conn: &'c C,
    access: Option<&Access>,
) -> Result<Unit<'c>> {
    conn.__unit(private::Token(()), access).await
}

#[cfg(feature = "postgres")]
type PgTxn = tokio::sync::Mutex<PgUnit>;

/// The pooled PostgreSQL connection a unit of work runs on, held by this crate.
///
/// sqlx's own transaction arms its rollback only once the server has answered `BEGIN`, and its
/// pool does not roll back what comes back to it: a future dropped while `BEGIN; SET LOCAL ..`
/// is in flight would put the connection back in the pool inside a transaction bound to its
/// tenant. This guard is armed before a `BEGIN` is sent and disarmed only when `COMMIT` or
/// `ROLLBACK` has answered; dropped while armed, it rolls the connection back before the pool
/// can hand it out again, or closes it.
///
/// Holding the connection also lets a statement recover from what another user of it left
/// behind: an aborted transaction, or a prepared statement whose result type a schema change
/// made stale (see [`statement`](Self::statement)).
#[cfg(feature = "postgres")]
#[doc(hidden)]
pub struct PgUnit {
    conn: Option<sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Postgres>>,
    /// A `BEGIN` may have been sent whose transaction has not ended.
    open: bool,
    /// What opened the transaction, to open it again.
    begin: Option<String>,
    /// No statement has run in the transaction yet: it can be started over unnoticed.
    fresh: bool,
    /// A stale prepared statement failed the transaction: the cache is cleared when it ends.
    stale: bool,
}

/// What a statement on a [`PgUnit`] is run for.
#[cfg(feature = "postgres")]
#[derive(Clone, Copy)]
enum Op {
    Execute,
    One,
    All,
}

#[cfg(feature = "postgres")]
enum Outcome {
    Execute(sea_orm::sqlx::postgres::PgQueryResult),
    One(Option<sea_orm::sqlx::postgres::PgRow>),
    All(Vec<sea_orm::sqlx::postgres::PgRow>),
}

#[cfg(feature = "postgres")]
impl PgUnit {
    /// A connection of `pool`, outside any transaction (app-level mode).
    async fn acquire(pool: &sea_orm::sqlx::PgPool) -> Result<Self> {
        Ok(Self {
            conn: Some(pool.acquire().await.map_err(sqlx_err)?),
            open: false,
            begin: None,
            fresh: false,
            stale: false,
        })
    }

    /// A connection of `pool` with `begin` (a `BEGIN`, with the binding if any) run on it.
    async fn begin(pool: &sea_orm::sqlx::PgPool, begin: String) -> Result<Self> {
        // A drop before `start` has sent nothing: the connection goes back clean.
        let mut unit = Self::acquire(pool).await?;
        unit.start(begin).await.map_err(sqlx_err)?;
        Ok(unit)
    }

    /// `BEGIN` on a unit that has no transaction (a `TenantTxn` in app-level mode).
    async fn begin_if_idle(&mut self) -> Result<()> {
        if !self.open {
            self.start("BEGIN".to_owned()).await.map_err(sqlx_err)?;
        }
        Ok(())
    }

    async fn start(&mut self, begin: String) -> Result<(), sea_orm::sqlx::Error> {
        self.open = true;
        let sql = || sea_orm::sqlx::AssertSqlSafe(begin.clone());
        match sea_orm::sqlx::raw_sql(sql()).execute(&mut **self).await {
            Ok(_) => {}
            // Raw SQL on this pooled connection abandoned a failed transaction, which refuses
            // every statement but `ROLLBACK`: end it (nothing in it can commit) and begin again.
            Err(err) if is_aborted_transaction(&err) => {
                sea_orm::sqlx::raw_sql("ROLLBACK")
                    .execute(&mut **self)
                    .await?;
                sea_orm::sqlx::raw_sql(sql()).execute(&mut **self).await?;
            }
            Err(err) => return Err(err),
        }
        self.begin = Some(begin);
        self.fresh = true;
        Ok(())
    }

    /// Runs `stmt` for `op`.
    ///
    /// A prepared statement whose result type a schema change made stale (`cached plan must not
    /// change result type`) is forgotten on this connection, and the statement runs again when
    /// nothing was lost by its failure: outside a transaction, or as the first statement of one,
    /// which is then begun again. Later in a transaction the error stands (the transaction is
    /// aborted, as for any failed statement), once: the cache is cleared when it ends. Outside a
    /// transaction, an aborted one that raw SQL left on the connection is rolled back and the
    /// statement run again.
    async fn statement(
        &mut self,
        op: Op,
        stmt: &Statement,
    ) -> Result<Outcome, sea_orm::sqlx::Error> {
        let fresh = std::mem::replace(&mut self.fresh, false);
        let err = match run(self, op, stmt).await {
            Err(err) => err,
            ok => return ok,
        };
        if is_stale_plan(&err) {
            match (self.open, fresh, self.begin.clone()) {
                (false, _, _) => {}
                (true, true, Some(begin)) => {
                    sea_orm::sqlx::raw_sql("ROLLBACK")
                        .execute(&mut **self)
                        .await?;
                    sea_orm::sqlx::Connection::clear_cached_statements(&mut **self).await?;
                    self.start(begin).await?;
                    self.fresh = false;
                    return run(self, op, stmt).await;
                }
                (true, _, _) => {
                    self.stale = true;
                    return Err(err);
                }
            }
            sea_orm::sqlx::Connection::clear_cached_statements(&mut **self).await?;
            return run(self, op, stmt).await;
        }
        if !self.open && is_aborted_transaction(&err) {
            sea_orm::sqlx::raw_sql("ROLLBACK")
                .execute(&mut **self)
                .await?;
            return run(self, op, stmt).await;
        }
        Err(err)
    }

    async fn commit(mut self) -> Result<()> {
        self.end("COMMIT").await
    }

    async fn rollback(mut self) -> Result<()> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, sql: &'static str) -> Result<()> {
        if !self.open {
            // App-level mode: no transaction to end.
            return Ok(());
        }
        sea_orm::sqlx::raw_sql(sql)
            .execute(&mut **self)
            .await
            .map_err(sqlx_err)?;
        self.open = false;
        if std::mem::take(&mut self.stale) {
            sea_orm::sqlx::Connection::clear_cached_statements(&mut **self)
                .await
                .map_err(sqlx_err)?;
        }
        Ok(())
    }
}

/// `stmt` run on `conn` with its values bound (prepared and cached by sqlx).
#[cfg(feature = "postgres")]
async fn run(
    conn: &mut sea_orm::sqlx::PgConnection,
    op: Op,
    stmt: &Statement,
) -> Result<Outcome, sea_orm::sqlx::Error> {
    Ok(match op {
        Op::Execute => Outcome::Execute(bound(stmt).execute(conn).await?),
        Op::One => Outcome::One(bound(stmt).fetch_optional(conn).await?),
        Op::All => Outcome::All(bound(stmt).fetch_all(conn).await?),
    })
}

/// `0A000 cached plan must not change result type`: a prepared statement outlived a schema
/// change of what it returns.
#[cfg(feature = "postgres")]
fn is_stale_plan(err: &sea_orm::sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| {
        db.code().is_some_and(|code| code == "0A000")
            && db
                .message()
                .contains("cached plan must not change result type")
    })
}

#[cfg(feature = "postgres")]
impl fmt::Debug for PgUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUnit")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "postgres")]
impl std::ops::Deref for PgUnit {
    type Target = sea_orm::sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        self.conn.as_deref().expect("taken only on drop")
    }
}

#[cfg(feature = "postgres")]
impl std::ops::DerefMut for PgUnit {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_deref_mut().expect("taken only on drop")
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgUnit {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.open {
            return;
        }
        // The rollback waits for whatever is still in flight (a `BEGIN`, a cancelled statement)
        // and ends the transaction; the connection returns to the pool only after it. Where it
        // cannot run, the connection is closed, which ends the transaction on the server.
        let stale = self.stale;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let mut clean = sea_orm::sqlx::raw_sql("ROLLBACK")
                        .execute(&mut *conn)
                        .await
                        .is_ok();
                    if clean && stale {
                        clean = sea_orm::sqlx::Connection::clear_cached_statements(&mut *conn)
                            .await
                            .is_ok();
                    }
                    if !clean {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// One unit of work: the statements of one scoped operation. In RLS mode it owns the
/// transaction that bound the tenant, committed by [`finish`](Self::finish) on success and rolled
/// back otherwise (also when dropped half-way).
#[doc(hidden)]
pub struct Unit<'a> {
    kind: UnitKind<'a>,
}

enum UnitKind<'a> {
    /// Statements run on a pool or a caller's transaction.
    Shared(Exec<'a>),
    /// Statements run in a transaction this unit began with the tenant bound.
    #[cfg(feature = "postgres")]
    Bound(PgTxn),
}

impl fmt::Debug for Unit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unit").finish_non_exhaustive()
    }
}

impl<'a> Unit<'a> {
    fn shared(exec: Exec<'a>) -> Self {
        Self {
            kind: UnitKind::Shared(exec),
        }
    }

    /// The executor the unit's statements run on.
    pub(crate) fn exec(&self) -> Exec<'_> {
        match &self.kind {
            UnitKind::Shared(exec) => *exec,
            #[cfg(feature = "postgres")]
            UnitKind::Bound(txn) => Exec::Pg(txn),
        }
    }

    /// Ends the unit: commits its own transaction when `result` is a success, rolls it back
    /// otherwise.
    #[cfg_attr(
        not(feature = "postgres"),
        expect(clippy::unused_async, reason = "awaits only on the PostgreSQL path")
    )]
    pub(crate) async fn finish<T>(self, result: Result<T>) -> Result<T> {
        match self.kind {
            UnitKind::Shared(_) => result,
            #[cfg(feature = "postgres")]
            UnitKind::Bound(txn) => {
                let txn = txn.into_inner();
                match result {
                    Ok(value) => {
                        Box::pin(txn.commit()).await?;
                        Ok(value)
                    }
                    Err(err) => {
                        // The statement's error is the one to report; a failed rollback drops
                        // the connection, which ends the transaction anyway.
                        let _ = Box::pin(txn.rollback()).await;
                        Err(err)
                    }
                }
            }
        }
    }
}

/// `25P02`: the connection is in a failed transaction.
#[cfg(feature = "postgres")]
fn is_aborted_transaction(err: &sea_orm::sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(sea_orm::sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "25P02")
}

#[cfg(feature = "postgres")]
fn sqlx_err(err: sea_orm::sqlx::Error) -> Error {
    Error::Db(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(err))))
}

/// Who an operation on `conn` acts for right now.
pub(crate) fn access<C: TenantConnection + ?Sized>(conn: &C) -> Result<Access> {
    conn.__access(private::Token(()))
}

/// Where a read on `conn` acting for `access` goes on the pipelined executor, if anywhere.
#[cfg(feature = "pipeline")]
pub(crate) fn route<'c, C: TenantConnection + ?Sized>(
    conn: &'c C,
    access: Option<&Access>,
) -> Option<crate::pipeline::Route<'c>> {
    conn.__route(private::Token(()), access)
}
