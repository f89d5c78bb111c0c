//! Executors for the SeaORM hooks of a pipelined write (`before_save`, `after_save`,
//! `before_delete`, `after_delete`). A hook takes a SeaORM `ConnectionTrait`, which the
//! pipelined driver cannot be; these executors tell the write whether its hooks touched the
//! database, so that a write whose hooks do stays on sqlx exactly as without the pipeline.

use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement};

use crate::Error;
use crate::context::Access;
use crate::exec::{self, TenantConnection, Unit};

/// Opens the write's unit of work (the tenant-bound transaction, in RLS mode) on first use and
/// runs everything on it: a hook before the write gets the unit the write would have had
/// without the pipeline, and the write then continues in it.
pub(crate) struct Lazy<'c, C: ?Sized> {
    conn: &'c C,
    access: Option<Access>,
    unit: tokio::sync::OnceCell<Unit<'c>>,
}

impl<'c, C: TenantConnection + ?Sized> Lazy<'c, C> {
    pub(crate) fn new(conn: &'c C, access: Option<&Access>) -> Self {
        Self {
            conn,
            access: access.cloned(),
            unit: tokio::sync::OnceCell::new(),
        }
    }

    /// The unit, if a hook opened it.
    pub(crate) fn into_unit(self) -> Option<Unit<'c>> {
        self.unit.into_inner()
    }

    async fn unit(&self) -> Result<&Unit<'c>, DbErr> {
        self.unit
            .get_or_try_init(|| exec::unit(self.conn, self.access.as_ref()))
            .await
            .map_err(|err| match err {
                Error::Db(err) => err,
                other => DbErr::Custom(other.to_string()),
            })
    }
}

#[async_trait::async_trait]
impl<C: TenantConnection + ?Sized> ConnectionTrait for Lazy<'_, C> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "delegation: a SeaORM hook's statement, run in the write's unit"
    )]
    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.unit().await?.exec().execute_raw(stmt).await
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "delegation: the hook's own statement, in the write's unit"
    )]
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.unit().await?.exec().execute_unprepared(sql).await
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "delegation: a SeaORM hook's statement, run in the write's unit"
    )]
    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.unit().await?.exec().query_one_raw(stmt).await
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "delegation: a SeaORM hook's statement, run in the write's unit"
    )]
    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.unit().await?.exec().query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        true
    }
}

/// Refuses every statement and remembers that one was tried: a hook after a pipelined write
/// whose transaction is still open cannot run on it, so a hook that tries makes the write start
/// over on sqlx, where the hook runs again with the write's real unit.
#[derive(Default)]
pub(crate) struct Refuse {
    tried: AtomicBool,
}

impl Refuse {
    /// Whether a hook tried a statement.
    pub(crate) fn tried(&self) -> bool {
        self.tried.load(Ordering::Relaxed)
    }

    fn refuse(&self) -> DbErr {
        self.tried.store(true, Ordering::Relaxed);
        DbErr::Custom(
            "not run: the write starts over with this hook on its own transaction".to_owned(),
        )
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Refuse {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, _: Statement) -> Result<ExecResult, DbErr> {
        Err(self.refuse())
    }

    async fn execute_unprepared(&self, _: &str) -> Result<ExecResult, DbErr> {
        Err(self.refuse())
    }

    async fn query_one_raw(&self, _: Statement) -> Result<Option<QueryResult>, DbErr> {
        Err(self.refuse())
    }

    async fn query_all_raw(&self, _: Statement) -> Result<Vec<QueryResult>, DbErr> {
        Err(self.refuse())
    }

    fn support_returning(&self) -> bool {
        true
    }
}
