//! Per-tenant counters (`tenant::metrics`), read through the `metrics` facade by a recorder as an
//! exporter would: one count per operation, labelled with its tenant, operation and entity.

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tenant::{SystemScope, TenantId, TenantRepo};

use crate::common::entities::{comment, post};
use crate::common::new_post;

/// `(tenant, operation, entity)` to count, for the operations counter.
type Counts = BTreeMap<(String, String, String), u64>;

fn counts(recorder: &DebuggingRecorder) -> Counts {
    let mut out = Counts::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let key = key.key();
        if key.name() != tenant::metrics::OPERATIONS {
            continue;
        }
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        let DebugValue::Counter(n) = value else {
            panic!("{key:?} is not a counter")
        };
        out.insert((label("tenant"), label("operation"), label("entity")), n);
    }
    out
}

#[test]
fn every_operation_is_counted_once_for_its_tenant() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = runtime.block_on(crate::setup());
    let recorder = DebuggingRecorder::new();
    // A recorder of this thread only: the runtime is current-thread, so every poll is here.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let repo = TenantRepo::<post::Entity>::new(&env.db);
            tenant::scope(env.acme, async {
                repo.insert(new_post("a")).await.unwrap();
                repo.insert(new_post("b")).await.unwrap();
                repo.all().await.unwrap();
                repo.count().await.unwrap();
                // A join: one operation, counted once.
                post::Entity::find()
                    .find_also_related(comment::Entity)
                    .all(&env.db)
                    .await
                    .unwrap();
            })
            .await;
            tenant::scope(env.globex, repo.all()).await.unwrap();
            SystemScope::assert("test: count every tenant's posts")
                .run(repo.count())
                .await
                .unwrap();
        });
    });
    let (acme, globex): (TenantId, TenantId) = (env.acme, env.globex);
    let key = |t: &str, op: &str| (t.to_owned(), op.to_owned(), "post".to_owned());
    let expected: Counts = [
        (key(&acme.to_string(), "insert"), 2),
        (key(&acme.to_string(), "select"), 2),
        (key(&acme.to_string(), "count"), 1),
        (key(&globex.to_string(), "select"), 1),
        (key("system", "count"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts(&recorder), expected);
}
