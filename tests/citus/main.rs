//! The scenario suite on a real Citus cluster: the tables in the distributed form (distributed by
//! tenant and colocated, the global table a reference table), the handle in RLS mode as an
//! application role that owns nothing, with `citus.propagate_set_commands = 'local'` so that the
//! binding reaches the workers; on sqlx and on the pipeline. Every scenario runs in sequence on
//! one database (the cluster's), the tables emptied in between.
//!
//! Not part of the everyday `cargo test`: it needs a cluster, which `.ci/run` builds and starts.
//!
//! ```text
//! ../shared/citus/build.sh && ../shared/citus/cluster.sh start     # as root
//! CITUS_URL=$(../shared/citus/cluster.sh url) cargo test --all-features --test citus -- --ignored
//! ```

// Tests plant and inspect rows behind the library's back with SeaORM's own entry points.
#![allow(clippy::disallowed_methods)]

#[path = "../support/attacks.rs"]
mod attacks;
#[path = "../common/mod.rs"]
mod common;

use common::Env;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// Operations of each stress run on the cluster, as on one PostgreSQL.
const STRESS: usize = 10_000;

/// The application role the suite creates on the cluster.
const APP_ROLE: &str = "tenant_citus_app";

/// A role like it, without `citus.propagate_set_commands = 'local'`, for the audit.
const UNSET: &str = "tenant_citus_unset";

/// The coordinator's superuser URL.
fn citus_url() -> String {
    std::env::var("CITUS_URL").expect(
        "CITUS_URL names no Citus coordinator: start one with ../shared/citus/cluster.sh start, then \
         CITUS_URL=$(../shared/citus/cluster.sh url) cargo test --all-features --test citus -- --ignored",
    )
}

async fn connect(url: &str, max: u32) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max)
        .min_connections(0)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The application role's URL: the superuser's with the user replaced (trust on loopback).
fn app_url(admin: &str) -> String {
    let (scheme, rest) = admin.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{APP_ROLE}@{host}")
}

/// The role, its privileges and its Citus setting; no tables of an earlier run.
async fn prepare(admin: &DatabaseConnection) {
    for sql in [
        "DROP TABLE IF EXISTS post_tag, comment, tag, post, plan, tenant_catalog CASCADE"
            .to_owned(),
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN \
             CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$"
        ),
        format!("ALTER ROLE {APP_ROLE} SET citus.propagate_set_commands = 'local'"),
        format!("GRANT USAGE ON SCHEMA public TO {APP_ROLE}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
        ),
    ] {
        admin
            .execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A handle on the distributed tables, emptied.
async fn fresh(pipeline: bool) -> Env {
    let url = citus_url();
    let raw = connect(&url, 2).await;
    let app_url = app_url(&url);
    let app = connect(&app_url, 2).await;
    let env = Env::new_distributed(app, raw, true, Box::new(())).await;
    env.raw
        .execute_unprepared("TRUNCATE post_tag, comment, tag, post, plan CASCADE")
        .await
        .expect("empty the tables");
    if pipeline {
        env.with_pipeline(&app_url, 2)
    } else {
        env
    }
}

/// A handle whose application pool (and pipeline, with `pipeline`) has one connection, with the
/// workers as its nodes: the attacks check that no backend there is left in a transaction.
async fn one_connection(pipeline: bool) -> Env {
    let url = citus_url();
    let raw = connect(&url, 1).await;
    let app_url = app_url(&url);
    let app = connect(&app_url, 1).await;
    let mut env = Env::new_distributed(app, raw, true, Box::new(())).await;
    env.raw
        .execute_unprepared("TRUNCATE post_tag, comment, tag, post, plan CASCADE")
        .await
        .expect("empty the tables");
    env.nodes = workers(&env.raw).await;
    if pipeline {
        env.with_pipeline(&app_url, 1)
    } else {
        env
    }
}

/// Superuser connections to each worker of the cluster.
async fn workers(coordinator: &DatabaseConnection) -> Vec<DatabaseConnection> {
    let rows = coordinator
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT nodename::text AS host, nodeport AS port FROM pg_dist_node \
             WHERE noderole = 'primary' AND groupid <> 0 ORDER BY nodeport",
        ))
        .await
        .expect("the workers");
    let mut nodes = Vec::new();
    for row in rows {
        let host: String = row.try_get("", "host").unwrap();
        let port: i32 = row.try_get("", "port").unwrap();
        nodes.push(connect(&format!("postgres://postgres@{host}:{port}/postgres"), 1).await);
    }
    assert!(nodes.len() >= 2, "a cluster of two workers at least");
    nodes
}

async fn on_sqlx() -> Env {
    fresh(false).await
}

async fn on_the_pipeline() -> Env {
    fresh(true).await
}

/// Scenarios Citus refuses today, and why: each must still fail (so that a fix shows up here),
/// and none may pass silently.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// Runs each scenario in turn on a fresh handle from `$setup`.
#[macro_export]
macro_rules! in_sequence {
    ($setup:path; $($name:ident),* $(,)?) => {
        $(
            let name = stringify!($name);
            let env = Box::pin($setup()).await;
            if KNOWN_GAPS.iter().any(|(gap, _)| *gap == name) {
                eprintln!("citus: {name}: known gap, must still fail");
                let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                    Box::pin($crate::common::$name(&env)),
                ))
                .await;
                assert!(outcome.is_err(), "{name} now passes on Citus: take it off KNOWN_GAPS");
            } else {
                eprintln!("citus: {name}");
                // Boxed: thirty scenarios' futures inline would overflow the test's stack.
                Box::pin($crate::common::$name(&env)).await;
            }
            drop(env);
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Citus cluster: CITUS_URL=$(../shared/citus/cluster.sh url) cargo test --all-features --test citus -- --ignored"]
async fn every_scenario_holds_on_citus() {
    let admin = connect(&citus_url(), 1).await;
    let version = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT citus_version() AS v",
        ))
        .await
        .expect("CITUS_URL is not a Citus coordinator (citus_version() failed)")
        .expect("a row");
    eprintln!("citus: {}", version.try_get::<String>("", "v").unwrap());
    prepare(&admin).await;
    // The only test of this binary: its subscriber sees every notice sqlx passes on.
    let notices = Notices::default();
    tracing::subscriber::set_global_default(notices.clone()).expect("the only subscriber");
    crate::in_sequence!(on_sqlx; the_catalog_admits_active_tenants_only);
    crate::with_scenarios!(in_sequence(on_sqlx));
    // One pooled connection, on the coordinator and every worker: nothing left behind by an
    // operation dropped at any poll, nor by thousands of mixed, cancelled and panicking ones.
    attacks::cancel_at_every_poll(&one_connection(false).await, "Citus, sqlx").await;
    attacks::stress(&one_connection(false).await, "Citus, sqlx", STRESS).await;
    // `BEGIN` and the binding as two messages: no worker warns of a transaction in progress.
    let warned = notices.matching("there is already a transaction in progress");
    assert_eq!(
        warned, 0,
        "{warned} warnings of a transaction already in progress"
    );
    crate::with_scenarios!(in_sequence(on_the_pipeline));
    attacks::cancel_at_every_poll(&one_connection(true).await, "Citus, pipeline").await;
    attacks::stress(&one_connection(true).await, "Citus, pipeline", STRESS).await;

    // Raw SQL past the library, and session state left on the pooled connection.
    attacks::raw_sql_through_the_escape_hatch_is_confined_by_row_level_security(&on_sqlx().await)
        .await;
    attacks::session_objects_on_the_pooled_connection_capture_nothing(&one_connection(false).await)
        .await;
    attacks::a_transaction_left_open_or_aborted_by_raw_sql_does_not_reach_the_next_rls_unit(
        &one_connection(false).await,
    )
    .await;
    scoped_operations_go_to_one_shard_and_raw_sql_to_all_sees_one_tenant(&notices).await;

    // The tables really are distributed by tenant and colocated, and `plan` is a reference table.
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT logicalrelid::text AS t, partmethod::text AS m, colocationid AS c \
             FROM pg_dist_partition ORDER BY 1",
        ))
        .await
        .unwrap();
    let tables: Vec<(String, String, i32)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "t").unwrap(),
                r.try_get("", "m").unwrap(),
                r.try_get("", "c").unwrap(),
            )
        })
        .collect();
    audit_checks_the_binding_reaches_the_workers(&admin).await;

    let of = |name: &str| {
        tables
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("{name} not distributed: {tables:?}"))
    };
    assert_eq!(of("plan").1, "n", "reference table");
    for name in ["post", "comment", "tag", "post_tag"] {
        assert_eq!(of(name).1, "h", "{name} hash-distributed");
        assert_eq!(of(name).2, of("post").2, "{name} colocated with post");
    }
}

/// The audit as the suite's role (the setting on) is clean; as a role without the setting it
/// reports that the binding would never reach the workers, and the builder refuses to start.
async fn audit_checks_the_binding_reaches_the_workers(admin: &DatabaseConnection) {
    let plain = tenant::Rls::default().with_policy_form(tenant::PolicyForm::Plain);
    let schema = tenant::TenantTables::new()
        .tables(common::entities::tables())
        .distributed()
        .rls(plain.clone());
    let url = citus_url();
    let app = connect(&app_url(&url), 1).await;
    let report = tenant::audit(&app, &schema).await.unwrap();
    assert!(report.is_clean(), "{report}");

    for sql in [
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{UNSET}') THEN \
             CREATE ROLE {UNSET} LOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$"
        ),
        format!("GRANT USAGE ON SCHEMA public TO {UNSET}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {UNSET}"),
    ] {
        admin.execute_unprepared(&sql).await.unwrap();
    }
    let unset_url = app_url(&url).replace(APP_ROLE, UNSET);
    let unset = connect(&unset_url, 1).await;
    let report = tenant::audit(&unset, &schema).await.unwrap();
    let kinds: Vec<_> = report.findings().iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [tenant::FindingKind::CitusBindingNotPropagated],
        "{report}"
    );
    assert!(
        report.findings()[0]
            .fix
            .contains("citus.propagate_set_commands = 'local'")
    );
    let refused = tenant::TenantDb::builder(unset_url)
        .rls(plain)
        .audit(&schema)
        .connect()
        .await;
    assert!(
        matches!(refused, Err(tenant::Error::Audit(_))),
        "{refused:?}"
    );
}

/// Counts the notices sqlx passes on from the server (`sqlx::postgres::notice`), by message.
#[derive(Clone, Default)]
struct Notices(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Notices {
    fn matching(&self, needle: &str) -> usize {
        let seen = self.0.lock().unwrap();
        seen.iter().filter(|m| m.contains(needle)).count()
    }

    /// How many notices were seen so far.
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The commands sent to a worker (`citus.log_remote_commands`) since `mark` that name a
    /// shard of a table (`public.<table>_<shard id>`): one per task.
    fn shard_commands_since(&self, mark: usize) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen[mark..]
            .iter()
            .filter(|m| m.contains("issuing") && names_a_shard(m))
            .cloned()
            .collect()
    }
}

/// Whether `command` names a shard: `public.` then a name ending in `_` and six digits or more.
fn names_a_shard(command: &str) -> bool {
    command.match_indices("public.").any(|(at, _)| {
        let name: String = command[at + "public.".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        name.rsplit_once('_')
            .is_some_and(|(_, id)| id.len() >= 6 && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

impl tracing::Subscriber for Notices {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::postgres::notice"
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, "{value:?} ");
            }
            fn record_str(&mut self, _: &tracing::field::Field, value: &str) {
                self.0.push_str(value);
                self.0.push(' ');
            }
        }
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        self.0.lock().unwrap().push(text);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Every scoped operation names its tenant, so Citus routes it to the one shard group holding
/// the tenant's rows: one task, seen in the commands the coordinator sends to the workers
/// (`citus.log_remote_commands`). Raw SQL through the escape hatch that does not name the
/// tenant goes to every shard, and the policy still returns the bound tenant's rows alone.
async fn scoped_operations_go_to_one_shard_and_raw_sql_to_all_sees_one_tenant(notices: &Notices) {
    use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter, QuerySelect};
    use tenant::TenantRepo;

    use common::entities::{comment, plan, post, tag};

    let url = citus_url();
    let raw = connect(&url, 1).await;
    // The session settings ride on the connection string: the handle's own connection logs.
    let logged = format!(
        "{}?options=-c%20citus.log_remote_commands%3Don%20-c%20client_min_messages%3Dlog",
        app_url(&url)
    );
    let env = Env::new_distributed(connect(&logged, 1).await, raw, true, Box::new(())).await;
    env.raw
        .execute_unprepared("TRUNCATE post_tag, comment, tag, post, plan CASCADE")
        .await
        .unwrap();
    let s = env.seed().await;
    let db = &env.db;
    let acme = *env.acme.as_uuid();

    one_task(&env, notices, "get by id", async {
        let row = post::Entity::find_by_id(s.acme[0]).one(db).await.unwrap();
        assert_eq!(row.unwrap().tenant_id, acme);
    })
    .await;
    one_task(&env, notices, "a page", async {
        let rows = post::Entity::find().limit(50).all(db).await.unwrap();
        assert_eq!(rows.len(), 2);
    })
    .await;
    one_task(&env, notices, "count", async {
        assert_eq!(post::Entity::find().count(db).await.unwrap(), 2);
    })
    .await;
    one_task(&env, notices, "a join of colocated tables", async {
        let rows = comment::Entity::find()
            .find_also_related(post::Entity)
            .all(db)
            .await
            .unwrap();
        assert!(
            rows.iter()
                .all(|(_, p)| p.as_ref().unwrap().tenant_id == acme)
        );
    })
    .await;
    one_task(&env, notices, "insert", async {
        TenantRepo::<post::Entity>::new(db)
            .insert(common::new_post("routed"))
            .await
            .unwrap();
    })
    .await;
    one_task(&env, notices, "update by id", async {
        let am = post::ActiveModel {
            id: Set(s.acme[1]),
            views: Set(3),
            ..Default::default()
        };
        TenantRepo::<post::Entity>::new(db)
            .update(am)
            .await
            .unwrap();
    })
    .await;
    one_task(&env, notices, "delete many", async {
        let gone = post::Entity::delete_many()
            .filter(post::Column::Slug.eq("routed"))
            .exec(db)
            .await
            .unwrap();
        assert_eq!(gone, 1);
    })
    .await;
    one_task(&env, notices, "many-to-many through the junction", async {
        let rows = post::Entity::find()
            .find_with_related(tag::Entity)
            .all(db)
            .await
            .unwrap();
        assert_eq!(rows.iter().map(|(_, tags)| tags.len()).sum::<usize>(), 1);
    })
    .await;
    // A reference table is read from one replica, the coordinator's own when it holds one.
    let mark = notices.len();
    let plans = tenant::scope(env.acme, plan::Entity::find().all(db)).await;
    assert_eq!(plans.unwrap().len(), 1);
    let tasks = notices.shard_commands_since(mark);
    assert!(tasks.len() <= 1, "a reference table: {tasks:#?}");
    raw_sql_naming_no_tenant_asks_every_shard_and_sees_one(&env, notices).await;
}

/// Runs `op` in acme's scope: the coordinator sent one command naming a shard.
async fn one_task(env: &Env, notices: &Notices, what: &str, op: impl Future<Output = ()>) {
    let mark = notices.len();
    tenant::scope(env.acme, op).await;
    let tasks = notices.shard_commands_since(mark);
    assert_eq!(tasks.len(), 1, "{what}: one task, not {tasks:#?}");
}

/// Raw SQL naming no tenant, in a unit bound to acme: every shard asked, acme's rows only.
async fn raw_sql_naming_no_tenant_asks_every_shard_and_sees_one(env: &Env, notices: &Notices) {
    use sea_orm::TransactionTrait;
    use tenant::AssertUnscoped;

    let acme = *env.acme.as_uuid();
    let shards: i64 = env
        .raw
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_dist_shard WHERE logicalrelid = 'post'::regclass",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    let hatch = env
        .db
        .unscoped(&AssertUnscoped::new("test: raw SQL without the tenant"));
    let mark = notices.len();
    let txn = hatch.begin().await.unwrap();
    txn.execute_unprepared(&format!("SET LOCAL app.tenant_id = '{acme}'"))
        .await
        .unwrap();
    let rows = txn
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT tenant_id FROM post",
        ))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let tasks = notices.shard_commands_since(mark);
    assert_eq!(
        i64::try_from(tasks.len()).unwrap(),
        shards,
        "every shard of post asked: {tasks:#?}"
    );
    let owners: Vec<uuid::Uuid> = rows
        .iter()
        .map(|r| r.try_get("", "tenant_id").unwrap())
        .collect();
    assert_eq!(owners, [acme, acme], "acme's rows alone");
}
