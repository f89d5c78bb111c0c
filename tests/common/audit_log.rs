//! Captures the events logged to the `tenant::audit` target, to check that escape hatches and
//! system scopes leave a trail.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event: its message and fields as text.
#[derive(Debug, Clone, Default)]
pub struct Logged {
    pub target: String,
    pub level: String,
    pub fields: Vec<(String, String)>,
}

impl Logged {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A subscriber that keeps every `tenant::audit` and `tenant::pipeline` event and every
/// `tenant.op` span.
#[derive(Clone, Default)]
pub struct Capture {
    pub events: Arc<Mutex<Vec<Logged>>>,
    pub spans: Arc<Mutex<Vec<Logged>>>,
}

impl Capture {
    pub fn audit_events(&self) -> Vec<Logged> {
        self.events_of("tenant::audit")
    }

    /// The events logged to `target`.
    pub fn events_of(&self, target: &str) -> Vec<Logged> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }

    /// The `tenant.op` spans opened, with their fields.
    pub fn operations(&self) -> Vec<Logged> {
        self.spans.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        matches!(metadata.target(), "tenant::audit" | "tenant::pipeline")
            || metadata.name() == "tenant.op"
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        if span.metadata().name() == "tenant.op" {
            let mut logged = Logged {
                target: span.metadata().target().to_owned(),
                level: span.metadata().level().to_string(),
                fields: Vec::new(),
            };
            span.record(&mut Fields(&mut logged.fields));
            self.spans.lock().unwrap().push(logged);
        }
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut logged = Logged {
            target: event.metadata().target().to_owned(),
            level: event.metadata().level().to_string(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut logged.fields));
        self.events.lock().unwrap().push(logged);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
