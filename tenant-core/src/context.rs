//! The tenant context: a tokio task-local, entered with [`scope`] and read with [`current`].
//!
//! The context belongs to the task, not the thread: a future polled inside [`scope`] sees the
//! tenant wherever it runs, and a task started with plain `tokio::spawn` sees none, so its scoped
//! operations fail with [`Error::NoTenant`] instead of running unscoped. [`spawn`] carries the
//! tenant across.

use std::fmt;
use std::future::Future;

use crate::{Error, Result, TenantId};

/// What the current task is allowed to touch. Public only to appear in the sealed
/// [`TenantConnection`](crate::TenantConnection); not part of the API.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub enum Access {
    /// One tenant's rows.
    Tenant(TenantId),
    /// Every tenant's rows, for an audited reason.
    System(&'static str),
}

tokio::task_local! {
    static CURRENT: Access;
}

/// Runs `fut` with `tenant` as the current tenant.
///
/// Scopes nest: an inner scope replaces the outer tenant for its duration, and the outer one is
/// back when the inner future completes, returns an error, panics or is dropped half-way.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_core::{scope, current, TenantId};
///
/// let acme = TenantId::from(uuid::Uuid::from_u128(1));
/// let seen = scope(acme, async { current() }).await.unwrap();
/// assert_eq!(seen, acme);
/// assert!(current().is_err()); // outside the scope: no tenant
/// # }
/// ```
pub fn scope<F: Future>(tenant: TenantId, fut: F) -> impl Future<Output = F::Output> {
    let span = tracing::debug_span!("tenant.scope", tenant.id = %tenant);
    // No subscriber wants it: a span without metadata, whose enter and exit on every poll are
    // free (a disabled span still reports them to the `log` crate when tracing's `log`
    // feature is on).
    let span = if span.is_disabled() {
        tracing::Span::none()
    } else {
        span
    };
    tracing::Instrument::instrument(CURRENT.scope(Access::Tenant(tenant), fut), span)
}

/// The tenant in scope.
///
/// # Errors
///
/// [`Error::NoTenant`] outside [`scope`], inside a [`SystemScope`], and in a task started
/// with plain `tokio::spawn`.
pub fn current() -> Result<TenantId> {
    match access()? {
        Access::Tenant(id) => Ok(id),
        Access::System(_) => Err(Error::NoTenant),
    }
}

pub(crate) fn access() -> Result<Access> {
    CURRENT.try_with(Clone::clone).map_err(|_| Error::NoTenant)
}

/// Spawns `fut` on the tokio runtime with the current tenant (or system scope) carried into it.
///
/// # Errors
///
/// [`Error::NoTenant`] when called with no tenant in scope: the task is not spawned, since it
/// could do nothing scoped.
///
/// # Panics
///
/// Like `tokio::spawn`, outside a tokio runtime.
pub fn spawn<F>(fut: F) -> Result<tokio::task::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let access = access()?;
    Ok(tokio::spawn(CURRENT.scope(access, fut)))
}

/// The capability to work across every tenant at once, for operators and system jobs.
///
/// It has no `Default` and no public fields; the only way to make one is [`SystemScope::assert`],
/// which needs a reason and logs it to the `tenant::audit` tracing target. Inside
/// [`SystemScope::run`], scoped reads return every tenant's rows, updates and deletes by id are
/// not limited to one tenant, and inserts must name their tenant; each such operation is logged
/// to `tenant::audit` with the reason.
pub struct SystemScope {
    reason: &'static str,
}

impl SystemScope {
    /// Asserts that the work that follows must see every tenant, for `reason`.
    ///
    /// The reason is a `&'static str` so that it is written in the code, where review and `grep`
    /// see it.
    ///
    /// # Panics
    ///
    /// When `reason` is empty or only whitespace: a system scope must say why it exists.
    pub fn assert(reason: &'static str) -> Self {
        assert!(
            !reason.trim().is_empty(),
            "`SystemScope::assert` needs a reason; say why this work must see every tenant"
        );
        crate::events::audit_event!(reason, "system scope created");
        Self { reason }
    }

    /// The reason given to [`SystemScope::assert`].
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Runs `fut` with access to every tenant.
    pub async fn run<F: Future>(self, fut: F) -> F::Output {
        let span = tracing::info_span!(
            "tenant.scope",
            tenant.id = "system",
            tenant.reason = self.reason
        );
        tracing::Instrument::instrument(CURRENT.scope(Access::System(self.reason), fut), span).await
    }
}

impl fmt::Debug for SystemScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemScope")
            .field("reason", &self.reason)
            .finish()
    }
}

/// Logs one system-scope operation to `tenant::audit`.
pub(crate) fn audit_system(reason: &'static str, operation: &'static str, entity: &'static str) {
    crate::events::audit_event!(
        reason,
        operation,
        entity,
        "cross-tenant operation under a system scope"
    );
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use uuid::Uuid;

    use super::*;

    fn tenant(n: u128) -> TenantId {
        TenantId::from(Uuid::from_u128(n))
    }

    #[tokio::test]
    async fn outside_any_scope_there_is_no_tenant() {
        assert!(matches!(current(), Err(Error::NoTenant)));
    }

    #[tokio::test]
    async fn an_inner_scope_replaces_the_outer_tenant_and_restores_it() {
        let (a, b) = (tenant(1), tenant(2));
        scope(a, async {
            assert_eq!(current().unwrap(), a);
            scope(b, async { assert_eq!(current().unwrap(), b) }).await;
            assert_eq!(current().unwrap(), a);
        })
        .await;
        assert!(current().is_err());
    }

    #[tokio::test]
    async fn the_outer_tenant_is_back_after_an_error_in_the_inner_scope() {
        let (a, b) = (tenant(1), tenant(2));
        scope(a, async {
            let inner: Result<()> = scope(b, async { Err(Error::NoTenant) }).await;
            assert!(inner.is_err());
            assert_eq!(current().unwrap(), a);
        })
        .await;
    }

    #[tokio::test]
    async fn the_outer_tenant_is_back_after_a_panic_in_the_inner_scope() {
        let (a, b) = (tenant(1), tenant(2));
        scope(a, async {
            let caught = AssertUnwindSafe(scope(b, async {
                assert_eq!(current().unwrap(), b);
                panic!("inside tenant b");
            }))
            .catch_unwind()
            .await;
            assert!(caught.is_err());
            assert_eq!(current().unwrap(), a);
        })
        .await;
    }

    #[tokio::test]
    async fn the_outer_tenant_is_back_when_the_inner_scope_is_dropped_half_way() {
        let (a, b) = (tenant(1), tenant(2));
        scope(a, async {
            let mut inner = Box::pin(scope(b, async {
                assert_eq!(current().unwrap(), b);
                std::future::pending::<()>().await;
            }));
            // Polled once, so the inner scope was entered, then dropped mid-way.
            assert!(futures::poll!(inner.as_mut()).is_pending());
            drop(inner);
            assert_eq!(current().unwrap(), a);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokio_spawn_does_not_inherit_the_tenant_and_tenant_spawn_does() {
        let a = tenant(1);
        scope(a, async {
            let plain = tokio::spawn(async { current().is_err() }).await.unwrap();
            assert!(plain, "a plain `tokio::spawn` must start with no tenant");
            let carried = spawn(async { current().unwrap() }).unwrap().await.unwrap();
            assert_eq!(carried, a);
        })
        .await;
    }

    #[tokio::test]
    async fn a_system_scope_is_not_a_tenant() {
        SystemScope::assert("unit test")
            .run(async {
                assert!(matches!(current(), Err(Error::NoTenant)));
                assert!(matches!(access(), Ok(Access::System("unit test"))));
            })
            .await;
    }

    #[test]
    #[should_panic(expected = "needs a reason")]
    fn a_system_scope_needs_a_reason() {
        let _ = SystemScope::assert("  ");
    }
}
