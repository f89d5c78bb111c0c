//! The pooled PostgreSQL connection a unit of work holds: armed before `BEGIN`, rolled back or
//! closed when dropped before its transaction ended, and recovering from what raw SQL left on it.

use std::fmt;
use std::sync::Arc;

use sea_orm::{DbErr, Statement};

use crate::{Error, Result};

/// A SeaORM statement as a sqlx query with its values bound (prepared and cached by sqlx).
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

pub(super) type PgTxn = tokio::sync::Mutex<PgUnit>;

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
#[doc(hidden)]
pub struct PgUnit {
    conn: Option<sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Postgres>>,
    /// A `BEGIN` may have been sent whose transaction has not ended.
    open: bool,
    /// What opened the transaction, to open it again.
    begin: Option<String>,
    /// No statement has run in the transaction yet: it can be started over unnoticed.
    pub(super) fresh: bool,
    /// A stale prepared statement failed the transaction: the cache is cleared when it ends.
    stale: bool,
    /// The hold on a database-tier tenant's pool: dropped after the connection.
    lease: Option<super::databases::Lease>,
}

/// What a statement on a [`PgUnit`] is run for.
#[derive(Clone, Copy)]
pub(super) enum Op {
    Execute,
    One,
    All,
}

pub(super) enum Outcome {
    Execute(sea_orm::sqlx::postgres::PgQueryResult),
    One(Option<sea_orm::sqlx::postgres::PgRow>),
    All(Vec<sea_orm::sqlx::postgres::PgRow>),
}

impl PgUnit {
    /// A connection of `pool`, outside any transaction (app-level mode).
    pub(super) async fn acquire(pool: &sea_orm::sqlx::PgPool) -> Result<Self> {
        Ok(Self {
            conn: Some(pool.acquire().await.map_err(sqlx_err)?),
            open: false,
            begin: None,
            fresh: false,
            stale: false,
            lease: None,
        })
    }

    /// A connection of `pool` with `begin` (a `BEGIN`, with the binding if any) run on it.
    pub(super) async fn begin(pool: &sea_orm::sqlx::PgPool, begin: String) -> Result<Self> {
        // A drop before `start` has sent nothing: the connection goes back clean.
        let mut unit = Self::acquire(pool).await?;
        unit.start(begin).await.map_err(sqlx_err)?;
        Ok(unit)
    }

    /// The same unit, holding `lease` on its pool until it is dropped.
    pub(super) fn leasing(mut self, lease: super::databases::Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// `BEGIN` on a unit that has no transaction (a `TenantTxn` in app-level mode).
    pub(super) async fn begin_if_idle(&mut self) -> Result<()> {
        if !self.open {
            self.start("BEGIN".to_owned()).await.map_err(sqlx_err)?;
        }
        Ok(())
    }

    async fn start(&mut self, begin: String) -> Result<(), sea_orm::sqlx::Error> {
        self.open = true;
        let (opening, binding) = super::placement::opening_messages(&begin);
        let sql = || sea_orm::sqlx::AssertSqlSafe(opening.to_owned());
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
        // The split form (Citus): the binding as a message of its own, a round trip more.
        if let Some(binding) = binding {
            sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(binding.to_owned()))
                .execute(&mut **self)
                .await?;
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
    pub(super) async fn statement(
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

    pub(super) async fn commit(mut self) -> Result<()> {
        self.end("COMMIT").await
    }

    pub(super) async fn rollback(mut self) -> Result<()> {
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
fn is_stale_plan(err: &sea_orm::sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| {
        db.code().is_some_and(|code| code == "0A000")
            && db
                .message()
                .contains("cached plan must not change result type")
    })
}

impl fmt::Debug for PgUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUnit")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for PgUnit {
    type Target = sea_orm::sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        self.conn.as_deref().expect("taken only on drop")
    }
}

impl std::ops::DerefMut for PgUnit {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_deref_mut().expect("taken only on drop")
    }
}

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

/// `25P02`: the connection is in a failed transaction.
fn is_aborted_transaction(err: &sea_orm::sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(sea_orm::sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "25P02")
}

pub(super) fn sqlx_err(err: sea_orm::sqlx::Error) -> Error {
    Error::Db(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(err))))
}
