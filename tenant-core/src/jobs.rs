//! Background jobs that carry their tenant (feature `jobs`).
//!
//! A job queued from a request loses the request's scope: the worker that runs it is another
//! task, often another process. [`TenantJob`] puts the tenant in the job itself, serialized with
//! it by whatever format the queue uses; a message without a valid tenant does not deserialize,
//! so a worker never runs one. [`TenantJob::run`] runs the work inside a fresh
//! [`scope`](crate::scope) of the job's tenant, so nothing of one job's tenant is left for the
//! next. A job for every tenant is a [`fan_out`] over the catalog: one job per active tenant,
//! never one job across all of them.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tenant_core::jobs::TenantJob;
//! use tenant_core::TenantId;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice: u64 }
//!
//! let acme = TenantId::from(uuid::Uuid::from_u128(0xac));
//! // Queued inside the request's scope: the job takes its tenant.
//! let job = tenant_core::scope(acme, async { TenantJob::new(SendInvoice { invoice: 42 }) }).await?;
//! let message = serde_json::to_string(&job)?;
//!
//! // The worker: the work runs in the job's tenant scope, and only there.
//! let job: TenantJob<SendInvoice> = serde_json::from_str(&message)?;
//! let ran_for = job.run(|p| async move { (tenant_core::current(), p.invoice) }).await;
//! assert_eq!(ran_for.0?, acme);
//! assert!(tenant_core::current().is_err());
//!
//! // A message without its tenant is refused.
//! assert!(serde_json::from_str::<TenantJob<SendInvoice>>(r#"{"payload":{"invoice":1}}"#).is_err());
//! # Ok(()) }
//! ```

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, TenantStatus};
use crate::{Result, TenantId, context};

/// A job for one tenant: the tenant it runs for and its payload.
///
/// Serialized as `{"tenant": "<uuid>", "payload": ..}`; unknown fields, a missing tenant and a
/// tenant that is not a UUID are refused when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantJob<P> {
    tenant: TenantId,
    payload: P,
}

impl<P> TenantJob<P> {
    /// A job for the tenant in scope.
    ///
    /// # Errors
    ///
    /// [`Error::NoTenant`](crate::Error::NoTenant) outside a tenant scope (a system scope has no
    /// tenant: name it with [`for_tenant`](Self::for_tenant), or [`fan_out`]).
    pub fn new(payload: P) -> Result<Self> {
        Ok(Self::for_tenant(context::current()?, payload))
    }

    /// A job for `tenant`.
    pub fn for_tenant(tenant: TenantId, payload: P) -> Self {
        Self { tenant, payload }
    }

    /// The tenant it runs for.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The payload.
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// Runs `work` on the payload inside a fresh scope of the job's tenant, and returns what it
    /// returns. The scope ends with the work: the next job starts with none.
    pub async fn run<F, Fut>(self, work: F) -> Fut::Output
    where
        F: FnOnce(P) -> Fut,
        Fut: Future,
    {
        let Self { tenant, payload } = self;
        context::scope(tenant, work(payload)).await
    }
}

/// One job of `payload` for every tenant the catalog lists as active, in slug order: the way
/// a system task (a nightly report, a cleanup) reaches every tenant, each job in its own
/// tenant's scope. Logged to the `tenant::audit` target ([`set_audit_level`](crate::set_audit_level)).
///
/// # Errors
///
/// The database's error reading the catalog.
pub async fn fan_out<P: Clone>(catalog: &Catalog, payload: P) -> Result<Vec<TenantJob<P>>> {
    let tenants = catalog.list(Some(TenantStatus::Active)).await?;
    crate::events::audit_event!(
        tenants = tenants.len(),
        "a job fanned out to every active tenant"
    );
    Ok(tenants
        .into_iter()
        .map(|entry| TenantJob::for_tenant(entry.id, payload.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> TenantId {
        TenantId::from(uuid::Uuid::from_u128(n))
    }

    #[tokio::test]
    async fn one_jobs_tenant_never_reaches_the_next() {
        let jobs = [
            TenantJob::for_tenant(id(1), 1),
            TenantJob::for_tenant(id(2), 2),
        ];
        let mut seen = Vec::new();
        for job in jobs {
            seen.push(
                job.run(|n| async move { (context::current().ok(), n) })
                    .await,
            );
            assert!(context::current().is_err(), "no scope outlives its job");
        }
        assert_eq!(seen, [(Some(id(1)), 1), (Some(id(2)), 2)]);
        // A job queued from one tenant's scope runs for that tenant, whatever scope the worker
        // is in.
        let queued = crate::scope(id(3), async { TenantJob::new("x") })
            .await
            .unwrap();
        let ran = crate::scope(id(4), queued.run(|_| async { context::current().ok() })).await;
        assert_eq!(ran, Some(id(3)));
        assert!(matches!(TenantJob::new(()), Err(crate::Error::NoTenant)));
    }

    #[test]
    fn a_message_without_a_valid_tenant_does_not_deserialize() {
        let job = TenantJob::for_tenant(id(1), 7_u32);
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(
            text,
            r#"{"tenant":"00000000-0000-0000-0000-000000000001","payload":7}"#
        );
        assert_eq!(serde_json::from_str::<TenantJob<u32>>(&text).unwrap(), job);
        for bad in [
            r#"{"payload":7}"#,
            r#"{"tenant":null,"payload":7}"#,
            r#"{"tenant":"acme","payload":7}"#,
            r#"{"tenant":"00000000-0000-0000-0000-000000000001","payload":7,"as":"other"}"#,
        ] {
            assert!(
                serde_json::from_str::<TenantJob<u32>>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
