//! The audit events' level is the application's to choose. A test binary of its own: the level
//! is process-wide, and the other suites check the default.

// Shared with the suites that use only part of it.
#[allow(dead_code, unreachable_pub)]
#[path = "common/audit_log.rs"]
mod audit_log;

use tracing::Level;

#[test]
fn audit_events_are_logged_at_the_level_set() {
    assert_eq!(tenant::audit_level(), Level::WARN, "WARN by default");
    for level in [
        Level::INFO,
        Level::DEBUG,
        Level::ERROR,
        Level::TRACE,
        Level::WARN,
    ] {
        tenant::set_audit_level(level);
        assert_eq!(tenant::audit_level(), level);
        let capture = audit_log::Capture::default();
        tracing::subscriber::with_default(capture.clone(), || {
            let _ = tenant::SystemScope::assert("test: a job every five seconds");
        });
        let events = capture.audit_events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].level, level.to_string(), "{events:?}");
        assert_eq!(
            events[0].field("reason"),
            Some("test: a job every five seconds")
        );
    }
}
