//! Per-tenant counters (feature `metrics`), through the [`metrics`](https://docs.rs/metrics)
//! facade: whatever exporter the application installs (Prometheus, `StatsD`, ..) reads them.
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `tenant_operations_total` | `tenant` (a tenant id, or `system`), `operation`, `entity` | every scoped read and write, when it starts, once per operation (a join counts once) |
//!
//! One series per tenant, operation and entity: with many thousands of tenants, aggregate or
//! drop the `tenant` label in the exporter if its backend prices series. Without the feature
//! nothing is counted and nothing is linked.

use crate::context::Access;

/// The name of the operations counter.
pub const OPERATIONS: &str = "tenant_operations_total";

/// Counts one operation of `access` on `entity`.
#[cfg(feature = "metrics")]
pub(crate) fn operation(access: &Access, operation: &'static str, entity: &'static str) {
    let tenant = match access {
        // Encoded directly: `to_string` goes through the formatting machinery, on every
        // operation.
        Access::Tenant(id) => {
            let mut buf = uuid::Uuid::encode_buffer();
            id.as_uuid().hyphenated().encode_lower(&mut buf).to_owned()
        }
        Access::System(_) => "system".to_owned(),
    };
    metrics::counter!(OPERATIONS, "tenant" => tenant, "operation" => operation, "entity" => entity)
        .increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline]
pub(crate) fn operation(_: &Access, _: &'static str, _: &'static str) {}
