//! [`TenantDb`] and [`TenantTxn`]: connections that only tenant-scoped statements can use.
//!
//! Neither type implements SeaORM's `ConnectionTrait` nor derefs to a connection, so no SeaORM
//! executor accepts them: the only statements they run are the ones this crate has scoped.
//! Execution goes through the private [`Exec`] seam, which is where a different driver or a
//! per-statement tenant binding plugs in.

use std::fmt;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};

use crate::context::{self, Access};
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
}

impl TenantDb {
    /// Wraps a SeaORM connection (pool).
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
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
        let txn = self.conn.begin().await?;
        Ok(TenantTxn { txn, access })
    }

    /// The raw connection, past every tenant check. This is the escape hatch.
    ///
    /// The [`AssertUnscoped`] names the reason, and every call logs it to the `tenant::audit`
    /// tracing target.
    pub fn unscoped(&self, assert: &AssertUnscoped) -> &DatabaseConnection {
        tracing::warn!(
            target: "tenant::audit",
            reason = assert.reason,
            tenant.id = ?context::current().ok(),
            "unscoped database access"
        );
        &self.conn
    }

    /// The underlying pool, to close it.
    ///
    /// # Errors
    ///
    /// The driver's error on close.
    pub async fn close(self) -> Result<()> {
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
    txn: DatabaseTransaction,
    access: Access,
}

impl TenantTxn {
    /// Commits the transaction.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn commit(self) -> Result<()> {
        self.txn.commit().await.map_err(Error::from)
    }

    /// Rolls the transaction back.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn rollback(self) -> Result<()> {
        self.txn.rollback().await.map_err(Error::from)
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
pub trait TenantConnection: private::Sealed + Sync {
    /// The executor. The token cannot be made outside this crate, so neither can an `Exec`.
    #[doc(hidden)]
    fn __exec(&self, token: private::Token) -> Exec<'_>;

    /// Who the next operation acts for: the scope's tenant, checked against the transaction's.
    #[doc(hidden)]
    fn __access(&self, token: private::Token) -> Result<Access>;
}

impl TenantConnection for TenantDb {
    fn __exec(&self, _: private::Token) -> Exec<'_> {
        Exec::Db(&self.conn)
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        context::access()
    }
}

impl TenantConnection for TenantTxn {
    fn __exec(&self, _: private::Token) -> Exec<'_> {
        Exec::Txn(&self.txn)
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

fn describe(access: &Access) -> String {
    match access {
        Access::Tenant(id) => id.to_string(),
        Access::System(_) => "system".to_owned(),
    }
}

impl<T: TenantConnection> TenantConnection for &T {
    fn __exec(&self, _: private::Token) -> Exec<'_> {
        (**self).__exec(private::Token(()))
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        (**self).__access(private::Token(()))
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

/// The one place scoped statements reach the database.
///
/// Public only so that the sealed [`TenantConnection`] can name it; it cannot be obtained
/// outside this crate.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Exec<'a> {
    #[doc(hidden)]
    Db(&'a DatabaseConnection),
    #[doc(hidden)]
    Txn(&'a DatabaseTransaction),
}

#[async_trait::async_trait]
impl ConnectionTrait for Exec<'_> {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Exec::Db(c) => c.get_database_backend(),
            Exec::Txn(c) => c.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Exec::Db(c) => c.execute_raw(stmt).await,
            Exec::Txn(c) => c.execute_raw(stmt).await,
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
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Exec::Db(c) => c.query_one_raw(stmt).await,
            Exec::Txn(c) => c.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Exec::Db(c) => c.query_all_raw(stmt).await,
            Exec::Txn(c) => c.query_all_raw(stmt).await,
        }
    }

    fn support_returning(&self) -> bool {
        match self {
            Exec::Db(c) => c.support_returning(),
            Exec::Txn(c) => c.support_returning(),
        }
    }
}

/// The executor of `conn`, for this crate's own statements.
pub(crate) fn exec<C: TenantConnection + ?Sized>(conn: &C) -> Exec<'_> {
    conn.__exec(private::Token(()))
}

/// Who an operation on `conn` acts for right now.
pub(crate) fn access<C: TenantConnection + ?Sized>(conn: &C) -> Result<Access> {
    conn.__access(private::Token(()))
}
