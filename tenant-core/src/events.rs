//! The audit trail of escape hatches and system scopes: events on the `tenant::audit` tracing
//! target, at a level the application chooses.

use std::sync::atomic::{AtomicU8, Ordering};

use tracing::Level;

/// The level of audit events, as [`code`] gives it; `WARN` until set.
static LEVEL: AtomicU8 = AtomicU8::new(1);

fn code(level: Level) -> u8 {
    match level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

/// Sets the level of the audit events this crate logs to the `tenant::audit` target: each use
/// of the escape hatch ([`TenantDb::unscoped`](crate::TenantDb::unscoped)), each
/// [`SystemScope`](crate::SystemScope) made and each operation under one, each job
/// [`fan_out`](crate::jobs::fan_out). `WARN` by default; a system job that runs every few
/// seconds may want `INFO` or `DEBUG`, and a subscriber's filter on the target decides what is
/// kept. The start-up audit's findings stay at `WARN`.
pub fn set_audit_level(level: Level) {
    LEVEL.store(code(level), Ordering::Relaxed);
}

/// The level audit events are logged at.
pub fn audit_level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::ERROR,
        1 => Level::WARN,
        2 => Level::INFO,
        3 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Logs an audit event (`tracing` fields and message) at [`audit_level`].
macro_rules! audit_event {
    ($($arg:tt)+) => {
        match $crate::events::audit_level() {
            ::tracing::Level::ERROR => ::tracing::error!(target: "tenant::audit", $($arg)+),
            ::tracing::Level::WARN => ::tracing::warn!(target: "tenant::audit", $($arg)+),
            ::tracing::Level::INFO => ::tracing::info!(target: "tenant::audit", $($arg)+),
            ::tracing::Level::DEBUG => ::tracing::debug!(target: "tenant::audit", $($arg)+),
            ::tracing::Level::TRACE => ::tracing::trace!(target: "tenant::audit", $($arg)+),
        }
    };
}
pub(crate) use audit_event;
