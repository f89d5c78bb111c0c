//! The executor SeaORM's hooks get where the write's own unit is not theirs to use: before a
//! pipelined write (`before_save`, `before_delete`), and after a write that has committed
//! (`after_save`, `after_delete` in RLS mode outside a `TenantTxn`). A hook takes a SeaORM
//! `ConnectionTrait`; [`Lazy`] opens a unit, bound to the write's tenant, only when the hook
//! uses it, and tells the write whether it did.

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

    /// Ends the unit a hook opened, if any, with `result`: committed on success.
    pub(crate) async fn finish<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        match self.into_unit() {
            Some(unit) => unit.finish(result).await,
            None => result,
        }
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
