//! What a pooled connection carries from one unit of work to the next: nothing.
//!
//! Every operation kind is dropped after 1, 2, 3, .. polls until it completes, on a pool of one
//! connection, on sqlx, on the pipeline and through PgBouncer; after each drop the one connection
//! is checked to be outside any transaction, with no tenant bound, and the next tenant's read
//! sees its own rows only. Session state left on a pooled connection by raw SQL (a temporary
//! table named like a tenant table, a session `search_path`, an open or aborted transaction)
//! neither captures nor breaks later units of work.

// Raw SQL on the pooled connection is the attack these tests make.
#![allow(clippy::disallowed_methods)]

use std::pin::pin;
use std::task::Poll;

use sea_orm::sqlx::{self, Row as _};
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use tenant::{AssertUnscoped, TenantRepo};
use uuid::Uuid;

use crate::common::entities::post;
use crate::common::{Env, new_post};
use crate::rls::{one_connection_env, pgbouncer};

/// Polls `fut` at most `polls` times, each time after it asked to be woken, then drops it.
/// `None`: it had not finished.
async fn poll_then_drop<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut left = polls;
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => {
            left -= 1;
            if left == 0 {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    })
    .await
}

/// The operations cancelled: each acts for acme and holds a pooled connection while it runs.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Read,
    Count,
    Insert,
    Update,
    DeleteMany,
    /// `TenantDb::begin()`, a read in the transaction, and its commit.
    Transaction,
}

const KINDS: [Kind; 6] = [
    Kind::Read,
    Kind::Count,
    Kind::Insert,
    Kind::Update,
    Kind::DeleteMany,
    Kind::Transaction,
];

async fn run(env: &Env, kind: Kind, acme_post: Uuid) {
    use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};
    let db = &env.db;
    tenant::scope(env.acme, async {
        let repo = TenantRepo::<post::Entity>::new(db);
        // Errors are not the point here (a unique key may refuse a repeated insert): what is
        // left on the connection is.
        let _ = match kind {
            Kind::Read => repo.all().await.map(drop),
            Kind::Count => repo.count().await.map(drop),
            Kind::Insert => repo.insert(new_post("cancelled")).await.map(drop),
            Kind::Update => repo
                .update(post::ActiveModel {
                    id: Set(acme_post),
                    views: Set(7),
                    ..Default::default()
                })
                .await
                .map(drop),
            Kind::DeleteMany => post::Entity::delete_many()
                .filter(post::Column::Slug.eq("cancelled"))
                .exec(db)
                .await
                .map(drop),
            Kind::Transaction => async {
                let txn = db.begin().await?;
                post::Entity::find().all(&txn).await?;
                txn.commit().await
            }
            .await
            .map(drop),
        };
    })
    .await;
}

/// Drops every operation kind after 1, 2, 3, .. polls until it completes, checking the one
/// pooled connection (and the pipeline's, if any) after each drop.
pub(crate) async fn cancel_at_every_poll(env: &Env, label: &str) {
    let s = env.seed().await;
    for kind in KINDS {
        let mut polls = 1;
        let mut tries = 0;
        loop {
            let done = poll_then_drop(run(env, kind, s.acme[0]), polls)
                .await
                .is_some();
            let at = format!("{label}: {kind:?} dropped after {polls} poll(s)");
            assert_clean(env, &at).await;
            let mut next =
                tenant::scope(env.globex, TenantRepo::<post::Entity>::new(&env.db).all())
                    .await
                    .unwrap_or_else(|e| panic!("{at}: the next read failed: {e:?}"));
            next.sort_by_key(|p| p.id);
            let mut want = s.globex.to_vec();
            want.sort();
            assert_eq!(
                next.iter().map(|p| p.id).collect::<Vec<_>>(),
                want,
                "{at}: the next read is globex's alone"
            );
            // On loopback an answer can be there by the time it is first read: then the
            // operation finishes at its first poll, and nothing was cancelled. Try again.
            if done && polls == 1 {
                tries += 1;
                assert!(tries < 50, "{at}: never pending, so nothing was cancelled");
                continue;
            }
            if done {
                break;
            }
            polls += 1;
            assert!(polls < 500, "{at}: still not finished");
        }
    }
}

/// The handle's one pooled connection is outside any transaction and has no tenant bound, and
/// no other backend of the role (the pipeline's, one PgBouncer holds) sits idle in a
/// transaction; in RLS mode the connection sees no tenant row. The pipeline's connection too.
async fn assert_clean(env: &Env, at: &str) {
    let hatch = env
        .db
        .unscoped(&AssertUnscoped::new("test: look for state left behind"));
    let pool = hatch.get_postgres_connection_pool();
    assert!(
        pool.size() <= 1,
        "{at}: the pool has one connection at most"
    );
    // The simple protocol, one message: outside a transaction it is its own, so `now()` equals
    // `statement_timestamp()`; inside one left open, `now()` is older.
    let row = sqlx::raw_sql(
        "SELECT coalesce(current_setting('app.tenant_id', true), '') AS setting, \
                current_schema()::text AS schema, \
                now() = statement_timestamp() AS own_transaction, \
                (SELECT count(*) FROM post) AS posts",
    )
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("{at}: the pooled connection is unusable: {e}"));
    assert!(
        row.get::<bool, _>("own_transaction"),
        "{at}: the pooled connection was left inside a transaction"
    );
    assert_eq!(
        row.get::<String, _>("setting"),
        "",
        "{at}: a tenant binding was left"
    );
    assert_eq!(
        row.get::<String, _>("schema"),
        "public",
        "{at}: a tenant's schema was left on the search path"
    );
    // A connection closed with its transaction open (the pipeline's way with a write dropped
    // mid-transaction) is out of every pool at once; its backend notices the closed socket a
    // moment later. Wait for that, up to a bound no loaded machine reaches.
    let mut waited = 0;
    loop {
        let others: i64 = sqlx::raw_sql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND usename = current_user \
               AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0);
        if others == 0 {
            break;
        }
        waited += 1;
        assert!(
            waited < 1000,
            "{at}: another backend of the role stays idle in a transaction"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if env.rls {
        assert_eq!(
            row.get::<i64, _>("posts"),
            0,
            "{at}: rows visible with no tenant"
        );
    }
    if let Some(pipeline) = &env.pipeline {
        crate::rls::assert_no_binding_on_pipeline(pipeline).await;
    }
    for (t, place) in &env.places {
        if let crate::common::Place::Database(owner) = place {
            assert_no_open_transaction_in(owner, &format!("{at}: {t}'s database")).await;
        }
    }
}

/// No backend of the application role in `owner`'s database sits idle in a transaction.
async fn assert_no_open_transaction_in(owner: &sea_orm::DatabaseConnection, at: &str) {
    let open = app_backends(owner, "state LIKE 'idle in transaction%'", 0).await;
    assert_eq!(open, 0, "{at}: a connection stays idle in a transaction");
}

/// How many backends of the application role in `owner`'s database meet `condition` (SQL on
/// `pg_stat_activity`), once at most `at_most`: a connection just closed leaves its backend a
/// moment later, so that is waited for, up to a bound no loaded machine reaches.
pub(crate) async fn app_backends(
    owner: &sea_orm::DatabaseConnection,
    condition: &str,
    at_most: i64,
) -> i64 {
    let role = crate::pg::cluster().app_role().to_owned();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND usename = $1 AND ({condition})"
    );
    let mut waited = 0;
    loop {
        let n: i64 = owner
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                &sql,
                [role.clone().into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        if n <= at_most || waited >= 1000 {
            return n;
        }
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn direct(rls: bool) -> Env {
    let test_db = crate::pg::fresh_database().await;
    one_connection_env(
        ConnectOptions::new(test_db.app_url.clone()),
        test_db,
        rls,
        None,
    )
    .await
}

async fn pipelined(rls: bool) -> Env {
    let test_db = crate::pg::fresh_database().await;
    let url = test_db.app_url.clone();
    one_connection_env(ConnectOptions::new(url.clone()), test_db, rls, None)
        .await
        .with_pipeline(&url, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_operations_dropped_at_every_poll_leave_their_connection_clean() {
    cancel_at_every_poll(&direct(true).await, "RLS, sqlx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_level_operations_dropped_at_every_poll_leave_their_connection_clean() {
    cancel_at_every_poll(&direct(false).await, "app level, sqlx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_rls_operations_dropped_at_every_poll_leave_both_connections_clean() {
    let env = pipelined(true).await;
    let before = env.pipeline.as_ref().unwrap().statements();
    cancel_at_every_poll(&env, "RLS, pipeline").await;
    assert!(
        env.pipeline.as_ref().unwrap().statements() > before,
        "nothing ran on the pipeline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_operations_dropped_at_every_poll_through_pgbouncer_leave_no_state() {
    // Starting it blocks (process start, port wait): keep it off the runtime's workers.
    let bouncer = tokio::task::spawn_blocking(pgbouncer::bouncer)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let test_db = crate::pg::fresh_database().await;
    let options = bouncer.connect_options(&test_db.app_url);
    let env = one_connection_env(options, test_db, true, None).await;
    cancel_at_every_poll(&env, "RLS, PgBouncer").await;
}

/// Raw SQL on the application role leaves a temporary `post`, holding a row that claims to be
/// globex's, on the one pooled connection `conn` runs on.
const SHADOW: &str = "CREATE TEMP TABLE post (LIKE public.post INCLUDING ALL); \
     INSERT INTO pg_temp.post (id, tenant_id, slug, title, views) \
     VALUES ('00000000-0000-0000-0000-00000000beef', '00000000-0000-0000-0000-000061061061', \
             'planted', 'Planted', 0)";

/// Globex's scoped writes and reads reach the real table, never the shadow: its new post is in
/// `public.post` and the shadow stays as planted.
async fn the_shadow_captures_nothing(env: &Env, globex_posts: &mut Vec<Uuid>, at: &str) {
    let fresh = tenant::scope(
        env.globex,
        TenantRepo::<post::Entity>::new(&env.db).insert(new_post(at)),
    )
    .await
    .unwrap_or_else(|e| panic!("{at}: insert: {e:?}"));
    let mut seen: Vec<Uuid> = tenant::scope(env.globex, post::Entity::find().all(&env.db))
        .await
        .unwrap_or_else(|e| panic!("{at}: read: {e}"))
        .iter()
        .map(|p| p.id)
        .collect();
    seen.sort();
    globex_posts.push(fresh.id);
    globex_posts.sort();
    assert_eq!(
        &seen, globex_posts,
        "{at}: globex reads the real table alone"
    );
    assert_eq!(
        env.raw_post(fresh.id).await.slug,
        at,
        "{at}: the insert reached public.post"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_table_or_session_search_path_left_on_the_pooled_connection_captures_nothing() {
    let env = direct(true).await;
    let s = env.seed().await;
    let hatch = env.db.unscoped(&AssertUnscoped::new(
        "test: leave session objects on the pooled connection",
    ));
    hatch.execute_unprepared(SHADOW).await.unwrap();
    let mut globex = s.globex.to_vec();
    the_shadow_captures_nothing(&env, &mut globex, "temporary table").await;
    hatch
        .execute_unprepared("SET search_path = pg_temp, public")
        .await
        .unwrap();
    the_shadow_captures_nothing(&env, &mut globex, "session search_path").await;
    // The shadow is still there and untouched: the connection was the same one throughout.
    let shadow = hatch
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_temp.post",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shadow.try_get::<i64>("", "n").unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_table_left_on_the_pipelined_connection_captures_nothing() {
    let env = pipelined(true).await;
    let s = env.seed().await;
    let client = env.pipeline.as_ref().unwrap().pool().get().await.unwrap();
    client.batch_execute(SHADOW).await.unwrap();
    drop(client);
    let before = env.pipeline.as_ref().unwrap().statements();
    the_shadow_captures_nothing(
        &env,
        &mut s.globex.to_vec(),
        "temporary table on the pipeline",
    )
    .await;
    assert!(
        env.pipeline.as_ref().unwrap().statements() >= before + 2,
        "the insert and the read ran on the pipeline"
    );
    let client = env.pipeline.as_ref().unwrap().pool().get().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM pg_temp.post", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the shadow is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_or_aborted_by_raw_sql_does_not_reach_the_next_rls_unit() {
    let env = direct(true).await;
    env.seed().await;
    let hatch = env.db.unscoped(&AssertUnscoped::new(
        "test: abandon a transaction on the pooled connection",
    ));
    // Open, and bound to acme by hand.
    hatch
        .execute_unprepared(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", env.acme))
        .await
        .unwrap();
    let seen = tenant::scope(env.globex, TenantRepo::<post::Entity>::new(&env.db).all())
        .await
        .unwrap();
    assert!(
        seen.iter().all(|p| p.tenant_id == *env.globex.as_uuid()) && seen.len() == 2,
        "globex's read after an open transaction bound to acme"
    );
    assert_clean(&env, "after an open transaction").await;
    an_aborted_transaction_does_not_fail_the_next_units(&env).await;
}

/// Without RLS there is no transaction to begin, so an open one left behind is not seen (see
/// the README's limits); an aborted one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_aborted_by_raw_sql_does_not_fail_the_next_app_level_unit() {
    let env = direct(false).await;
    env.seed().await;
    an_aborted_transaction_does_not_fail_the_next_units(&env).await;
}

/// Raw SQL leaves the one pooled connection in an aborted transaction, where every statement
/// but `ROLLBACK` fails; globex's reads and writes still succeed, and the connection is clean.
async fn an_aborted_transaction_does_not_fail_the_next_units(env: &Env) {
    let hatch = env.db.unscoped(&AssertUnscoped::new(
        "test: abandon a failed transaction on the pooled connection",
    ));
    hatch.execute_unprepared("BEGIN").await.unwrap();
    assert!(hatch.execute_unprepared("SELECT 1/0").await.is_err());
    for round in 0..2 {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        let seen = tenant::scope(env.globex, repo.all())
            .await
            .unwrap_or_else(|e| panic!("round {round} after an aborted transaction: {e}"));
        assert_eq!(seen.len(), 2 + round, "round {round}");
        tenant::scope(env.globex, repo.insert(new_post(&format!("after {round}"))))
            .await
            .unwrap_or_else(|e| panic!("round {round}: insert: {e}"));
    }
    assert_clean(env, "after an aborted transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_client_connections_through_pgbouncer_share_its_server_connections() {
    let bouncer = tokio::task::spawn_blocking(pgbouncer::bouncer)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let test_db = crate::pg::fresh_database().await;
    let mut options = bouncer.connect_options(&test_db.app_url);
    // More client connections than PgBouncer has server connections (2), each counting its
    // statements from 1.
    options.max_connections(6).min_connections(6);
    let app = Database::connect(options)
        .await
        .expect("connect through PgBouncer");
    let raw = Database::connect(test_db.admin_url.clone())
        .await
        .expect("connect as the owner");
    let env = Env::new_rls(app, raw, Box::new(test_db)).await;
    crate::common::concurrent_tasks_alternating_tenants_never_see_wrong_rows(&env).await;
}
