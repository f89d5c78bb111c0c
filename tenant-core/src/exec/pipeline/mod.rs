//! The pipelined PostgreSQL executor: a second driver (tokio-postgres) for the reads whose rows
//! this crate can decode itself, and for the writes.
//!
//! sqlx awaits every message before it sends the next, so in RLS mode a read costs three round
//! trips: `BEGIN; SET LOCAL ..`, the statement, `COMMIT`. tokio-postgres writes requests as soon
//! as they are issued and matches the responses in order, so the three go out together and come
//! back in one round trip. Outside RLS mode the statement alone goes out, on a driver with less
//! work per query than sqlx.
//!
//! Reads: those that return whole models of a declared entity (`all`, `one`, `exists`,
//! `find_by_id`, pages) or a count, when every column of the model has a tokio-postgres decoding
//! that accepts the column's type and every bound value has an encoding for its parameter's
//! type; both are checked against the prepared statement before anything runs.
//!
//! Writes: insert, update and delete of one row by key, `insert_many`, `update_many`,
//! `delete_many` and upserts, with the same checks. In RLS mode the
//! binding, the write and `COMMIT` are one round trip; `after_save` runs once the write has
//! committed, as SeaORM's does on a pool. A `before_save` that uses the database keeps the write
//! on sqlx, in the hook's own tenant-bound unit. A statement PostgreSQL refuses took no effect
//! and runs again on sqlx, so that its error is SeaORM's.
//!
//! Everything else (joins, partial models and tuples, every [`TenantTxn`](crate::TenantTxn) and
//! system scope) stays on SeaORM's sqlx connection, and says so at debug level on the
//! `tenant::pipeline` target; a statement the pipeline declines says why.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use deadpool_postgres;
pub use tokio_postgres;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sea_orm::{DbErr, RuntimeErr, Statement};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Column, NoTls, Row};

mod decode;
mod param;

#[doc(hidden)]
pub use decode::{Columns, Decoder, Probe, ViaNone, ViaPg};
use param::{Param, bindable, params};

use crate::{Error, Result};

/// A pool of tokio-postgres connections for [`TenantDb::with_pipeline`](crate::TenantDb::with_pipeline).
///
/// Connect it as the same role, to the same database, as the `TenantDb`'s own connection: in RLS
/// mode the tables' policies are what confine it.
///
/// # Examples
///
/// ```no_run
/// # async fn run(conn: sea_orm::DatabaseConnection) -> tenant_core::Result<()> {
/// use tenant_core::{Pipeline, Rls, TenantDb};
///
/// let url = "postgres://app@localhost/app";
/// let db = TenantDb::with_rls(conn, Rls::default())?.with_pipeline(Pipeline::connect(url, 8)?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pipeline {
    pool: Pool,
    /// Statements run, shared by the clones.
    statements: Arc<AtomicU64>,
    /// Whether the pool's role is confined by row-level security, checked on the first read in
    /// RLS mode: `Err` names the role and the right that lets it bypass the policies.
    confined: Arc<tokio::sync::OnceCell<std::result::Result<(), (String, &'static str)>>>,
}

impl Pipeline {
    /// Wraps a deadpool-postgres pool (for TLS or other settings, build the pool yourself).
    ///
    /// Its prepared statements are cached per connection (`prepare_cached`); behind PgBouncer in
    /// transaction mode that needs PgBouncer 1.21 or later with `max_prepared_statements` set.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            statements: Arc::default(),
            confined: Arc::default(),
        }
    }

    /// A pool of up to `max_size` plain-TCP connections to `url` (`postgres://user:pass@host/db`).
    ///
    /// # Errors
    ///
    /// [`Error::PipelineSetup`] when `url` does not parse or `max_size` is zero. Connections are made
    /// on first use.
    pub fn connect(url: &str, max_size: usize) -> Result<Self> {
        if max_size == 0 {
            return Err(Error::PipelineSetup {
                reason: "a pipeline pool needs at least one connection".to_owned(),
            });
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| Error::PipelineSetup {
            reason: format!("its database URL does not parse: {e}"),
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection comes back only after its requests were all sent (see `run`), so
                // a closed-check is all the recycling it needs.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::PipelineSetup {
                reason: format!("its pool cannot be built: {e}"),
            })?;
        Ok(Self::new(pool))
    }

    /// The pool, to inspect or close it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many statements have run on this pipeline (its clones included): the reads that
    /// took the pipelined path rather than SeaORM's connection.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Opens `n` connections of the pool (fewer if it is smaller) and, when `confine`, checks
    /// that its role is one the policies confine.
    pub(crate) async fn warm(&self, n: usize, confine: bool) -> Result<()> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n.min(self.pool.status().max_size) {
            clients.push(self.pool.get().await.map_err(pool_err)?);
        }
        if confine && let Some(client) = clients.first() {
            self.check_confined(client).await?;
        }
        Ok(())
    }

    /// The same pipeline, counting its statements in `counter` (shared with others).
    pub(crate) fn counting_in(mut self, counter: Arc<AtomicU64>) -> Self {
        self.statements = counter;
        self
    }
}

impl Pipeline {
    /// Refuses, in RLS mode, a pool whose role skips the policies: a superuser or a role with
    /// `BYPASSRLS` would read every tenant's rows through a pipeline handed the wrong URL. One
    /// pool has one role, so the check runs once.
    async fn check_confined(&self, client: &tokio_postgres::Client) -> Result<()> {
        const ROLE: &str = "SELECT current_user::text, r.rolsuper, r.rolbypassrls \
                            FROM pg_roles r WHERE r.rolname = current_user";
        let verdict = self
            .confined
            .get_or_try_init(|| async {
                let row = client.query_one(ROLE, &[]).await.map_err(db_err)?;
                let (user, superuser, bypass): (String, bool, bool) =
                    (row.get(0), row.get(1), row.get(2));
                Ok::<_, Error>(match (superuser, bypass) {
                    (false, false) => Ok(()),
                    (true, _) => Err((user, "is a superuser")),
                    (false, true) => Err((user, "has `BYPASSRLS`")),
                })
            })
            .await?;
        verdict
            .clone()
            .map_err(|(role, right)| Error::BypassingRole {
                connection: "pipeline",
                role,
                right,
            })
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("status", &self.pool.status())
            .field("statements", &self.statements())
            .finish_non_exhaustive()
    }
}

/// Prepared statements kept per pipelined connection; sqlx keeps 100.
const STATEMENT_CACHE: usize = 256;

/// Where one read goes on the pipeline: the pool and the message that opens its transaction
/// (`BEGIN; SET LOCAL ..` in RLS mode, nothing in app-level mode).
///
/// Public only so that the sealed `TenantConnection` can name it; it cannot be made outside
/// this crate.
#[doc(hidden)]
#[derive(Debug)]
pub struct Route<'a> {
    /// The shared database's pipeline, or a database-tier tenant's own.
    pub(crate) pipeline: std::borrow::Cow<'a, Pipeline>,
    /// The hold on a database-tier tenant's database while the route is used.
    #[expect(dead_code, reason = "held, never read: dropped with the route")]
    pub(crate) lease: Option<crate::exec::databases::Lease>,
    pub(crate) begin: Option<String>,
    /// RLS mode: the pipeline's role must be one the policies confine.
    pub(crate) confine: bool,
    /// The operation's span, its statements run in.
    pub(crate) span: tracing::Span,
}

impl Route<'_> {
    /// The same route, its statements run in `span`.
    pub(crate) fn in_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Whether the route binds a tenant (RLS mode): its statements run in a transaction.
    pub(crate) fn binds(&self) -> bool {
        self.begin.is_some()
    }

    /// The rows of `stmt` as `M`s, or `None` when `decoder` or the bound values do not fit the
    /// prepared statement (the caller then runs it on sqlx; nothing has run yet).
    pub(crate) async fn models<M>(
        &self,
        stmt: &Statement,
        decoder: &Decoder<M>,
        columns: &[&str],
    ) -> Result<Option<Vec<M>>> {
        self.decoded(stmt, decoder, columns, false).await
    }

    /// The rows of `stmt` as pairs: an `A` from the columns `a`, and a `B` from the columns `b`
    /// when they decode (SeaORM's `SelectTwo`: a `B` whose columns are `NULL`, the left join's
    /// missing row, is `None`, as SeaORM reads it). `None` as for [`models`](Self::models).
    pub(crate) async fn pairs<A, B>(
        &self,
        stmt: &Statement,
        (a, a_columns): (&Decoder<A>, &[String]),
        (b, b_columns): (&Decoder<B>, &[String]),
    ) -> Result<Option<Vec<(A, Option<B>)>>> {
        let fits = |prepared: &tokio_postgres::Statement| {
            Some((
                a.plan(prepared.columns(), a_columns)?,
                b.plan(prepared.columns(), b_columns)?,
            ))
        };
        self.read(stmt, false, fits, |row, (at_a, at_b)| {
            Ok(((a.decode)(row, at_a)?, (b.decode)(row, at_b).ok()))
        })
        .await
    }

    /// The `i64` in the first column of the one row of `stmt` (a `COUNT(*)`), or `None` as for
    /// [`models`](Self::models).
    pub(crate) async fn count(&self, stmt: &Statement) -> Result<Option<u64>> {
        let fits = |prepared: &tokio_postgres::Statement| {
            (prepared.columns().first().map(Column::type_) == Some(&Type::INT8)).then_some(())
        };
        let counts = self.read(stmt, false, fits, |row, ()| row.try_get::<_, i64>(0));
        Ok(counts
            .await?
            .map(|counts| u64::try_from(counts.first().copied().unwrap_or(0)).unwrap_or(0)))
    }

    /// Runs the write `stmt` (`.. RETURNING` every column of `M`) and decodes what it returns,
    /// committed with it in RLS mode. `None` when it does not fit, as for [`models`](Self::models),
    /// and also when PostgreSQL refuses it: it then took no effect, and the caller runs it again
    /// on sqlx, which reports the refusal as SeaORM's error.
    pub(crate) async fn write_models<M>(
        &self,
        stmt: &Statement,
        decoder: &Decoder<M>,
        columns: &[&str],
    ) -> Result<Option<Vec<M>>> {
        self.decoded(stmt, decoder, columns, true).await
    }

    /// The rows of `stmt` decoded as `M`s: a read, or a write (whose refusal is `None`, see
    /// [`settle`]).
    async fn decoded<M>(
        &self,
        stmt: &Statement,
        decoder: &Decoder<M>,
        columns: &[&str],
        write: bool,
    ) -> Result<Option<Vec<M>>> {
        let fits =
            move |prepared: &tokio_postgres::Statement| decoder.plan(prepared.columns(), columns);
        self.read(stmt, write, fits, |row, at| (decoder.decode)(row, at))
            .await
    }

    /// The rows of `stmt`, each read by `read` with what `fits` found in the prepared statement,
    /// in the operation's span: a read, or a write (whose refusal is `None`, see [`settle`]).
    /// `None` as for [`models`](Self::models).
    async fn read<P, T>(
        &self,
        stmt: &Statement,
        write: bool,
        fits: impl FnOnce(&tokio_postgres::Statement) -> Option<P>,
        read: impl Fn(&Row, &P) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<Option<Vec<T>>> {
        let rows = async {
            let Some((client, ready)) = self.prepare(stmt, fits).await? else {
                return Ok(None);
            };
            let rows = ready.run(&client, self).await;
            let Some(rows) = settle(rows, &client.statement_cache, stmt, write)? else {
                return Ok(None);
            };
            rows.iter()
                .map(|row| read(row, &ready.fit))
                .collect::<std::result::Result<Vec<T>, _>>()
                .map(Some)
                .map_err(db_err)
        };
        tracing::Instrument::instrument(rows, self.span.clone()).await
    }

    /// Runs the write `stmt` and counts the rows it touched; `None` as for
    /// [`write_models`](Self::write_models).
    pub(crate) async fn write_count(&self, stmt: &Statement) -> Result<Option<u64>> {
        let counted = async {
            let Some((client, ready)) = self.prepare(stmt, |_| Some(())).await? else {
                return Ok(None);
            };
            let count = ready.execute(&client, self).await;
            settle(count, &client.statement_cache, stmt, true)
        };
        tracing::Instrument::instrument(counted, self.span.clone()).await
    }

    /// Prepares `stmt` and checks that its values bind to the prepared parameters and that
    /// `fits` accepts the prepared result (giving what reading the rows needs). `None`: it does
    /// not fit, or PostgreSQL refused to prepare it (sqlx then runs it and reports SeaORM's
    /// error); nothing has run.
    async fn prepare<P>(
        &self,
        stmt: &Statement,
        fits: impl FnOnce(&tokio_postgres::Statement) -> Option<P>,
    ) -> Result<Option<(deadpool_postgres::Object, Prepared<P>)>> {
        let Some(params) = params(stmt) else {
            declined("a bound value has no tokio-postgres encoding");
            return Ok(None);
        };
        let client = self.client().await?;
        let statement = match client.prepare_cached(&stmt.sql).await {
            Ok(statement) => statement,
            Err(err) if err.as_db_error().is_some() => {
                declined("PostgreSQL refused to prepare the statement; sqlx reports its error");
                return Ok(None);
            }
            Err(err) => return Err(db_err(err)),
        };
        if !bindable(&params, statement.params()) {
            declined("a bound value does not fit the type of its parameter");
            return Ok(None);
        }
        let Some(fit) = fits(&statement) else {
            declined("the result's columns do not fit what the operation decodes");
            return Ok(None);
        };
        Ok(Some((
            client,
            Prepared {
                statement,
                params,
                fit,
            },
        )))
    }

    /// A connection of the pool; in RLS mode, of a pool whose role the policies confine.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        let client = self.pipeline.pool.get().await.map_err(pool_err)?;
        // deadpool's cache never evicts, and each entry holds a prepared statement on the
        // server: start over past a bound, as sqlx's LRU would (dropping the last handle of a
        // statement closes it on the server).
        if client.statement_cache.size() >= STATEMENT_CACHE {
            client.statement_cache.clear();
        }
        if self.confine {
            self.pipeline.check_confined(&client).await?;
        }
        Ok(client)
    }
}

/// Runs `$statement` (a tokio-postgres future) after the route's opening message and before
/// `COMMIT` when the route binds a tenant; evaluates to `Result<_, Refusal>`.
///
/// Each future sends its request on its first poll, and `join!` polls them in order in one go:
/// either none is sent (dropped before the first poll) or all are, so a cancelled statement
/// never leaves its transaction, or its tenant, open on the connection. When the statement
/// fails, PostgreSQL answers the `COMMIT` with a rollback. A macro rather than an async fn taking the future: that would move the
/// statement's future into another future's state on every pipelined statement.
macro_rules! in_transaction {
    ($client:expr, $begin:expr, $statement:expr) => {
        match $begin {
            None => $statement.await.map_err(Refusal::from),
            Some(begin) => match $crate::exec::opening_messages(begin) {
                (opening, None) => {
                    let (opened, result, committed) = tokio::join!(
                        $client.batch_execute(opening),
                        $statement,
                        $client.batch_execute("COMMIT"),
                    );
                    opened.map_err(Refusal::from).and_then(|()| {
                        let value = result?;
                        committed?;
                        Ok(value)
                    })
                }
                // The split form (Citus): `BEGIN` and the binding as two messages, still
                // issued together, so still one round trip.
                (opening, Some(binding)) => {
                    let (opened, bound, result, committed) = tokio::join!(
                        $client.batch_execute(opening),
                        $client.batch_execute(binding),
                        $statement,
                        $client.batch_execute("COMMIT"),
                    );
                    opened.and(bound).map_err(Refusal::from).and_then(|()| {
                        let value = result?;
                        committed?;
                        Ok(value)
                    })
                }
            },
        }
    };
}

/// A statement prepared on a connection, with its values and what reading its rows needs.
struct Prepared<P> {
    statement: tokio_postgres::Statement,
    params: Vec<Param>,
    fit: P,
}

impl<P> Prepared<P> {
    /// The statement's rows, run in the route's transaction: the opening message, the statement
    /// and the `COMMIT` are issued together, so they leave in one write and return in one round
    /// trip.
    async fn run(
        &self,
        client: &tokio_postgres::Client,
        route: &Route<'_>,
    ) -> Result<Vec<Row>, Refusal> {
        let refs = self.refs();
        route.pipeline.statements.fetch_add(1, Ordering::Relaxed);
        in_transaction!(
            client,
            route.begin.as_deref(),
            client.query(&self.statement, &refs)
        )
    }

    /// How many rows the statement touched, run as [`run`](Self::run) runs it.
    async fn execute(
        &self,
        client: &tokio_postgres::Client,
        route: &Route<'_>,
    ) -> Result<u64, Refusal> {
        let refs = self.refs();
        route.pipeline.statements.fetch_add(1, Ordering::Relaxed);
        in_transaction!(
            client,
            route.begin.as_deref(),
            client.execute(&self.statement, &refs)
        )
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p as _).collect()
    }
}

/// Why a pipelined statement did not succeed.
enum Refusal {
    /// PostgreSQL refused the statement or its transaction: nothing took effect.
    Refused(tokio_postgres::Error),
    /// The cached prepared statement outlived a schema change of its result type (`cached plan
    /// must not change result type`): nothing took effect, and it must be prepared again.
    Stale,
    /// Anything else, such as a lost connection: whether it took effect is unknown.
    Failed(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Refusal {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(db)
                if *db.code() == tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
                    && db
                        .message()
                        .contains("cached plan must not change result type") =>
            {
                Refusal::Stale
            }
            Some(_) => Refusal::Refused(err),
            None => Refusal::Failed(err),
        }
    }
}

/// What a read or write makes of a refusal: `None` when the statement took no effect and runs
/// again on sqlx. A stale statement is forgotten on its connection first, so that the next one
/// is prepared afresh; sqlx's own stale statement is handled on its side (`PgUnit`). A write
/// refused by PostgreSQL runs again on sqlx too, for SeaORM's error; a read reports it.
fn settle<T>(
    result: std::result::Result<T, Refusal>,
    cache: &deadpool_postgres::StatementCache,
    stmt: &Statement,
    write: bool,
) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Refusal::Stale) => {
            cache.remove(&stmt.sql, &[]);
            declined(
                "the prepared statement went stale (a table changed); prepared again next time",
            );
            Ok(None)
        }
        Err(Refusal::Refused(_)) if write => {
            declined(
                "PostgreSQL refused the write, which took no effect; sqlx runs it for SeaORM's error",
            );
            Ok(None)
        }
        Err(Refusal::Refused(err) | Refusal::Failed(err)) => Err(db_err(err)),
    }
}

#[expect(clippy::needless_pass_by_value, reason = "the shape `map_err` takes")]
fn db_err(err: tokio_postgres::Error) -> Error {
    let message = match err.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => err.to_string(),
    };
    if err.is_closed() {
        Error::Db(DbErr::Conn(RuntimeErr::Internal(message)))
    } else {
        Error::Db(DbErr::Query(RuntimeErr::Internal(message)))
    }
}

#[expect(clippy::needless_pass_by_value, reason = "the shape `map_err` takes")]
fn pool_err(err: deadpool_postgres::PoolError) -> Error {
    Error::Db(DbErr::Conn(RuntimeErr::Internal(format!(
        "pipeline pool: {err}"
    ))))
}

/// Says, at debug level, why a statement the pipeline was offered runs on sqlx instead; in the
/// operation's span (`tenant.op`), which names the operation and the entity.
pub(crate) fn declined(reason: &'static str) {
    tracing::debug!(target: "tenant::pipeline", reason, "declined by the pipeline: runs on sqlx");
}
