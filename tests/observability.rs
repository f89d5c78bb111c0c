//! What a subscriber sees: audit events at the level the application chooses, a trail for global
//! writes, and a span naming the tenant around every scoped operation. A test binary of its own
//! with one test: the level is process-wide, the other suites check the default, and no other
//! test hits these call sites while they are captured (tracing caches per call site whether
//! anyone listens, and a call site first reached on another thread at the same moment can be
//! missed).

// Shared with the suites that use only part of it.
#[allow(dead_code, unreachable_pub)]
#[path = "common/audit_log.rs"]
mod audit_log;

use tracing::Level;

#[cfg(all(feature = "postgres", feature = "pipeline"))]
#[path = "support/postgres.rs"]
mod pg;

#[test]
fn audit_events_and_operation_spans_reach_a_subscriber() {
    audit_events_are_logged_at_the_level_set();
    #[cfg(feature = "sqlite")]
    {
        global_writes_are_logged_with_their_reason();
        every_scoped_operation_runs_in_a_span_naming_its_tenant();
    }
    #[cfg(all(feature = "postgres", feature = "pipeline"))]
    operations_that_leave_the_pipeline_say_so_and_why();
}

/// On a handle with a pipeline, an operation that runs on sqlx says so at debug level, and the
/// pipeline says why when it declined a statement; one that runs on the pipeline says nothing.
#[cfg(all(feature = "postgres", feature = "pipeline"))]
fn operations_that_leave_the_pipeline_say_so_and_why() {
    use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
    use tenant::doc_support::post;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let test_db = runtime.block_on(pg::fresh_database());
    let capture = audit_log::Capture::default();
    let acme = tenant::TenantId::from(uuid::Uuid::from_u128(0xac));
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let owner = tenant::TenantDb::connect(&test_db.admin_url).await.unwrap();
            let raw = owner.unscoped(&tenant::AssertUnscoped::new("test: create the table"));
            tenant::create_schema(raw, &[tenant::table::<post::Entity>()])
                .await
                .unwrap();
            let db = tenant::TenantDb::builder(test_db.app_url.clone())
                .pipeline(1)
                .connect()
                .await
                .unwrap();
            let start = capture.events.lock().unwrap().len();
            let said = |since: usize| capture.events.lock().unwrap()[since..].to_vec();
            tenant::scope(acme, async {
                let repo = tenant::TenantRepo::<post::Entity>::new(&db);
                let hello = post::ActiveModel {
                    id: sea_orm::Set(uuid::Uuid::new_v4()),
                    slug: sea_orm::Set("hello".into()),
                    ..Default::default()
                };
                repo.insert(hello).await.unwrap();
                repo.all().await.unwrap();
                assert_eq!(
                    said(start).len(),
                    0,
                    "the pipeline ran both: {:?}",
                    said(start)
                );

                let before = capture.events.lock().unwrap().len();
                post::Entity::find()
                    .select_only()
                    .column(post::Column::Slug)
                    .into_tuple::<String>()
                    .all(&db)
                    .await
                    .unwrap();
                let events = said(before);
                assert_eq!(events.len(), 1, "{events:?}");
                assert_eq!(events[0].target, "tenant::pipeline");
                assert!(
                    events[0].field("message").unwrap().contains("runs on sqlx"),
                    "{events:?}"
                );

                let before = capture.events.lock().unwrap().len();
                let refused = post::Entity::find()
                    .filter(sea_orm::sea_query::Expr::cust("no_such_column = 1"))
                    .filter(post::Column::Slug.eq("hello"))
                    .all(&db)
                    .await;
                assert!(refused.is_err(), "PostgreSQL refuses the column");
                let events = said(before);
                let reasons: Vec<_> = events.iter().filter_map(|e| e.field("reason")).collect();
                assert_eq!(
                    reasons,
                    ["PostgreSQL refused to prepare the statement; sqlx reports its error"],
                    "{events:?}"
                );
                assert!(
                    events.iter().any(|e| e
                        .field("message")
                        .is_some_and(|m| m.contains("runs on sqlx"))),
                    "{events:?}"
                );
            })
            .await;
        });
    });
}

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

/// Every global write logs its reason, operation and entity.
#[cfg(feature = "sqlite")]
fn global_writes_are_logged_with_their_reason() {
    use tenant::doc_support::plan;
    let capture = audit_log::Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let db = tenant::TenantDb::connect("sqlite::memory:").await.unwrap();
            let raw = db.unscoped(&tenant::AssertUnscoped::new("test: create the table"));
            tenant::create_schema(raw, &[tenant::table::<plan::Entity>()])
                .await
                .unwrap();
            db.global_writes(&tenant::AssertGlobal::new("test: new plan"))
                .insert(plan::ActiveModel {
                    id: sea_orm::Set(9),
                    name: sea_orm::Set("nine".into()),
                })
                .await
                .unwrap();
        });
    });
    let events = capture.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e.field("reason") == Some("test: new plan")
                && e.field("operation") == Some("insert")
                && e.field("entity") == Some("plan")
                && e.level == "WARN"),
        "{events:?}"
    );
}

/// Every scoped operation runs in a `tenant.op` span naming its tenant (or `system`), the
/// operation and the entity.
#[cfg(feature = "sqlite")]
fn every_scoped_operation_runs_in_a_span_naming_its_tenant() {
    use tenant::doc_support::post;
    let capture = audit_log::Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (acme, globex) = (
        tenant::TenantId::from(uuid::Uuid::from_u128(0xac)),
        tenant::TenantId::from(uuid::Uuid::from_u128(0x61)),
    );
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let db = tenant::TenantDb::connect("sqlite::memory:").await.unwrap();
            let raw = db.unscoped(&tenant::AssertUnscoped::new("test: create the table"));
            tenant::create_schema(raw, &[tenant::table::<post::Entity>()])
                .await
                .unwrap();
            for t in [acme, globex] {
                let hello = post::ActiveModel {
                    id: sea_orm::Set(uuid::Uuid::new_v4()),
                    slug: sea_orm::Set("hello".into()),
                    ..Default::default()
                };
                tenant::scope(
                    t,
                    tenant::TenantRepo::<post::Entity>::new(&db).insert(hello),
                )
                .await
                .unwrap();
            }
            tenant::SystemScope::assert("test: spans")
                .run(post::Entity::find().count(&db))
                .await
                .unwrap();
            tenant::scope(acme, tenant::TenantRepo::<post::Entity>::new(&db).all())
                .await
                .unwrap();
        });
    });
    let ops = capture.operations();
    let seen = |tenant: &str, op: &str| {
        ops.iter().any(|s| {
            s.field("tenant.id") == Some(tenant)
                && s.field("op") == Some(op)
                && s.field("entity") == Some("post")
        })
    };
    for t in [acme, globex] {
        assert!(seen(&t.to_string(), "insert"), "{t}: {ops:?}");
    }
    assert!(seen(&acme.to_string(), "select"), "{ops:?}");
    assert!(seen("system", "count"), "{ops:?}");
    assert!(ops.iter().all(|s| s.level == "DEBUG"), "{ops:?}");
}
