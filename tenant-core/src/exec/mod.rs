//! Where and how scoped statements run: the handles ([`TenantDb`], [`TenantTxn`]), the
//! placement of a unit of work and its tenant binding, the unit and its executor, PostgreSQL's
//! held connection, the hooks' executors, and the pipelined executor.
//!
//! Neither handle implements SeaORM's `ConnectionTrait` nor derefs to a connection, so no SeaORM
//! executor accepts them: the only statements they run are the ones this crate has scoped.
//! Execution goes through the private [`Exec`] seam.

use std::future::Future;

use crate::Result;
use crate::context::Access;

mod connect;
#[cfg(feature = "postgres")]
mod databases;
mod handle;
#[cfg(feature = "postgres")]
pub(crate) mod hooks;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "pipeline")]
pub mod pipeline;
mod placement;
mod unit;

pub use connect::TenantDbBuilder;
#[cfg(feature = "postgres")]
pub use databases::{DatabaseTier, ResolveDatabase, ResolveError};
pub use handle::{AssertUnscoped, TenantDb, TenantTxn};
#[cfg(feature = "pipeline")]
pub(crate) use placement::opening_messages;
pub(crate) use unit::in_unit;
pub use unit::{Exec, Unit};

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

    /// Refuses `tenant` unless its rows are in the shared tables: what a system scope writes.
    #[doc(hidden)]
    fn __shared_tenant(
        &self,
        token: private::Token,
        tenant: crate::TenantId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether a row's key is unique per tenant only ([`TenantDb::with_distributed_keys`]).
    #[doc(hidden)]
    fn __distributed_keys(&self, token: private::Token) -> bool;

    /// Where an operation acting for `access` goes on the pipelined executor, if anywhere, once
    /// the catalog (if any) admitted its tenant.
    #[cfg(feature = "pipeline")]
    #[doc(hidden)]
    fn __route(
        &self,
        _: private::Token,
        _: Option<&Access>,
    ) -> impl Future<Output = Result<Option<crate::pipeline::Route<'_>>>> + Send {
        std::future::ready(Ok(None))
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

    fn __distributed_keys(&self, _: private::Token) -> bool {
        (**self).__distributed_keys(private::Token(()))
    }

    fn __shared_tenant(
        &self,
        _: private::Token,
        tenant: crate::TenantId,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).__shared_tenant(private::Token(()), tenant)
    }

    #[cfg(feature = "pipeline")]
    fn __route(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> impl Future<Output = Result<Option<crate::pipeline::Route<'_>>>> + Send {
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

/// Whether `conn`'s tables key rows per tenant ([`TenantDb::with_distributed_keys`]).
pub(crate) fn distributed_keys<C: TenantConnection + ?Sized>(conn: &C) -> bool {
    conn.__distributed_keys(private::Token(()))
}

/// A unit of work on `conn` acting for `access` (`None`: no tenant needed).
pub(crate) async fn unit<'c, C: TenantConnection + ?Sized>(
    conn: &'c C,
    access: Option<&Access>,
) -> Result<Unit<'c>> {
    conn.__unit(private::Token(()), access).await
}

/// Refuses `tenant` unless the catalog of `conn` (if any) puts its rows in the shared tables.
pub(crate) async fn shared_tenant<C: TenantConnection + ?Sized>(
    conn: &C,
    tenant: crate::TenantId,
) -> Result<()> {
    conn.__shared_tenant(private::Token(()), tenant).await
}

/// Who an operation on `conn` acts for right now.
pub(crate) fn access<C: TenantConnection + ?Sized>(conn: &C) -> Result<Access> {
    conn.__access(private::Token(()))
}

/// Where an operation on `conn` acting for `access` goes on the pipelined executor, if
/// anywhere, once the catalog (if any) admitted its tenant; its statements run in `span`.
#[cfg(feature = "pipeline")]
pub(crate) async fn route<'c, C: TenantConnection + ?Sized>(
    conn: &'c C,
    access: Option<&Access>,
    span: &tracing::Span,
) -> Result<Option<crate::pipeline::Route<'c>>> {
    let route = conn.__route(private::Token(()), access).await?;
    Ok(route.map(|route| route.in_span(span.clone())))
}
