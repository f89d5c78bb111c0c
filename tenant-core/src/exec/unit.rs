//! One unit of work and the executor its statements run on.

use std::fmt;
#[cfg(feature = "postgres")]
use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement,
};

#[cfg(feature = "postgres")]
use super::pg::{Op, Outcome, PgTxn};
use crate::Result;

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

/// One unit of work: the statements of one scoped operation. In RLS mode it owns the
/// transaction that bound the tenant, committed by [`finish`](Self::finish) on success and rolled
/// back otherwise (also when dropped half-way).
#[doc(hidden)]
pub struct Unit<'a> {
    pub(super) kind: UnitKind<'a>,
    /// It began a transaction of its own.
    #[cfg(feature = "postgres")]
    pub(super) commits: bool,
}

pub(super) enum UnitKind<'a> {
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
    pub(super) fn shared(exec: Exec<'a>) -> Self {
        Self {
            kind: UnitKind::Shared(exec),
            #[cfg(feature = "postgres")]
            commits: false,
        }
    }

    /// Whether the unit owns a transaction it commits in [`finish`](Self::finish): an RLS-mode
    /// unit outside a `TenantTxn`. Its writes then commit before their `after_save` hook runs,
    /// as SeaORM's do on a pool.
    #[cfg(feature = "postgres")]
    pub(crate) fn commits(&self) -> bool {
        self.commits
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

/// Runs `$call` on the executor of `$plan`'s unit of work, in the plan's span, and finishes the
/// unit with its result.
///
/// Boxed: the unit and SeaORM's statement future are kilobytes, and an operation's future is
/// moved whole into each future that wraps it (`tenant::scope`, the task, the caller's own);
/// one allocation costs less than those copies.
macro_rules! in_unit {
    ($plan:expr, $conn:expr, |$exec:ident| $call:expr) => {
        Box::pin(::tracing::Instrument::instrument(
            async {
                let unit = $plan.unit($conn).await?;
                let result = {
                    let $exec = &unit.exec();
                    $call.await.map_err($crate::Error::from)
                };
                unit.finish(result).await
            },
            $plan.span().clone(),
        ))
        .await
    };
}
pub(crate) use in_unit;
