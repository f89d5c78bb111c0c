//! The attacks every PostgreSQL deployment must withstand, for any handle an [`Env`] holds: one
//! PostgreSQL, PgBouncer, the tiers, a Citus cluster.
//!
//! - Every operation kind dropped after 1, 2, 3, .. polls until it completes, on a pool of one
//!   connection; after each drop the connection is outside any transaction, with no tenant bound,
//!   and the next tenant's read sees its own rows only.
//! - Session state left on the pooled connection by raw SQL (a temporary table named like a
//!   tenant table, a session `search_path`, an open or aborted transaction) neither captures nor
//!   breaks later units of work.
//! - Raw SQL past the library, bound to a tenant by hand or bound to none, is confined by RLS.
//! - One pooled connection serving thousands of mixed, cancelled, failing and panicking
//!   operations for two tenants never shows a row of the wrong tenant nor keeps a binding.

// Raw SQL on the pooled connection is the attack these tests make.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use sea_orm::sqlx::{self, Row as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    ExecResult, QueryResult, QuerySelect, Statement, TransactionTrait,
};
use tenant::{AssertUnscoped, Error, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

use crate::common::entities::{comment, post};
use crate::common::{Env, new_post};

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
    /// SeaORM's `SelectTwo`: `find_also_related`.
    ReadPair,
    /// SeaORM's `SelectTwoMany`: `find_with_related`.
    ReadGrouped,
    /// A cursor's page (`cursor_by`), which SeaORM builds as it runs.
    Cursor,
    Count,
    Insert,
    Update,
    UpdateMany,
    InsertMany,
    Upsert,
    DeleteMany,
    /// `TenantDb::begin()`, a read in the transaction, and its commit.
    Transaction,
}

const KINDS: [Kind; 12] = [
    Kind::Read,
    Kind::ReadPair,
    Kind::ReadGrouped,
    Kind::Cursor,
    Kind::Count,
    Kind::Insert,
    Kind::Update,
    Kind::UpdateMany,
    Kind::InsertMany,
    Kind::Upsert,
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
            Kind::ReadPair => comment::Entity::find()
                .find_also_related(post::Entity)
                .all(db)
                .await
                .map(drop),
            Kind::ReadGrouped => post::Entity::find()
                .find_with_related(comment::Entity)
                .all(db)
                .await
                .map(drop),
            Kind::Cursor => post::Entity::find()
                .cursor_by(post::Column::Id)
                .last(5)
                .all(db)
                .await
                .map(drop),
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
            Kind::UpdateMany => post::Entity::update_many()
                .col_expr(post::Column::Views, sea_orm::sea_query::Expr::value(9))
                .filter(post::Column::Slug.eq("world"))
                .exec(db)
                .await
                .map(drop),
            Kind::InsertMany => post::Entity::insert_many([new_post("cancelled-many")])
                .exec(db)
                .await
                .map(drop),
            Kind::Upsert => repo.upsert(new_post("cancelled-upsert")).await.map(drop),
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
/// transaction; in RLS mode the connection sees no tenant row. The pipeline's connection too,
/// and no backend on a tenant's own database or a node behind the server.
pub(crate) async fn assert_clean(env: &Env, at: &str) {
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
    // moment later.
    let what = format!("{at}: another backend of the role stays idle in a transaction");
    until_none(&what, async || {
        sqlx::raw_sql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND usename = current_user \
               AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0)
    })
    .await;
    if env.rls {
        assert_eq!(
            row.get::<i64, _>("posts"),
            0,
            "{at}: rows visible with no tenant"
        );
    }
    if let Some(pipeline) = &env.pipeline {
        assert_no_binding_on_pipeline(pipeline).await;
    }
    for (t, place) in &env.places {
        if let crate::common::Place::Database(owner) = place {
            assert_no_open_transaction_on(owner, &format!("{at}: {t}'s database")).await;
        }
    }
    assert_nodes_clean(env, at).await;
}

/// No backend on any of `env`'s nodes sits idle in a transaction.
async fn assert_nodes_clean(env: &Env, at: &str) {
    for (i, node) in env.nodes.iter().enumerate() {
        assert_no_open_transaction_on(node, &format!("{at}: node {i}")).await;
    }
}

/// No backend of another role than `owner`'s in `owner`'s database sits idle in a transaction.
async fn assert_no_open_transaction_on(owner: &DatabaseConnection, at: &str) {
    let sql = sql("SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND usename <> current_user \
           AND state LIKE 'idle in transaction%'");
    let what = format!("{at}: a connection stays idle in a transaction");
    until_none(&what, async || {
        owner
            .query_one_raw(sql.clone())
            .await
            .unwrap_or_else(|e| panic!("{at}: {e}"))
            .unwrap()
            .try_get("", "n")
            .unwrap()
    })
    .await;
}

/// Waits until `count` reads zero: a connection just closed leaves its backend a moment later.
/// The bound (10 s) is one no loaded machine reaches; past it, `what` is the failure.
async fn until_none(what: &str, mut count: impl AsyncFnMut() -> i64) {
    for _ in 0..1000 {
        if count().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

/// Raw SQL on the application role leaves a temporary `post`, holding a row that claims to be
/// globex's, on the one pooled connection `conn` runs on.
pub(crate) const SHADOW: &str = "CREATE TEMP TABLE post (LIKE public.post INCLUDING ALL); \
     INSERT INTO pg_temp.post (id, tenant_id, slug, title, views) \
     VALUES ('00000000-0000-0000-0000-00000000beef', '00000000-0000-0000-0000-000061061061', \
             'planted', 'Planted', 0)";

/// Globex's scoped writes and reads reach the real table, never the shadow: its new post is in
/// `public.post` and the shadow stays as planted.
pub(crate) async fn the_shadow_captures_nothing(env: &Env, globex_posts: &mut Vec<Uuid>, at: &str) {
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

/// A filter globex writes in SQL that names the table itself reads the real table, not the
/// shadow: the pin covers what the query rewriting never sees, which naming the schema in the
/// statements this crate builds would not. Read through the shadow, the `EXISTS` would hold and
/// return every globex post; read through `public.post`, no post is `planted`.
pub(crate) async fn a_filter_written_in_sql_reads_the_real_table(env: &Env, at: &str) {
    use sea_orm::QueryFilter as _;
    let planted =
        sea_orm::sea_query::Expr::cust("EXISTS (SELECT 1 FROM post WHERE slug = 'planted')");
    let seen = tenant::scope(
        env.globex,
        post::Entity::find().filter(planted).all(&env.db),
    )
    .await
    .unwrap_or_else(|e| panic!("{at}: read: {e}"));
    assert!(
        seen.is_empty(),
        "{at}: the filter's own `post` was the shadow ({} rows)",
        seen.len()
    );
}

/// A temporary `post` and then a session `search_path` putting `pg_temp` first, left on the one
/// pooled connection through the escape hatch, capture none of globex's scoped writes and reads.
pub(crate) async fn session_objects_on_the_pooled_connection_capture_nothing(env: &Env) {
    let s = env.seed().await;
    let hatch = env.db.unscoped(&AssertUnscoped::new(
        "test: leave session objects on the pooled connection",
    ));
    hatch.execute_unprepared(SHADOW).await.unwrap();
    let mut globex = s.globex.to_vec();
    the_shadow_captures_nothing(env, &mut globex, "temporary table").await;
    a_filter_written_in_sql_reads_the_real_table(env, "temporary table").await;
    hatch
        .execute_unprepared("SET search_path = pg_temp, public")
        .await
        .unwrap();
    the_shadow_captures_nothing(env, &mut globex, "session search_path").await;
    a_filter_written_in_sql_reads_the_real_table(env, "session search_path").await;
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

/// A transaction left open and bound to acme by raw SQL, then one left aborted, on the one
/// pooled connection: globex's next units see globex's rows alone and succeed.
pub(crate) async fn a_transaction_left_open_or_aborted_by_raw_sql_does_not_reach_the_next_rls_unit(
    env: &Env,
) {
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
    assert_clean(env, "after an open transaction").await;
    an_aborted_transaction_does_not_fail_the_next_units(env).await;
}

/// Raw SQL leaves the one pooled connection in an aborted transaction, where every statement
/// but `ROLLBACK` fails; globex's reads and writes still succeed, and the connection is clean.
pub(crate) async fn an_aborted_transaction_does_not_fail_the_next_units(env: &Env) {
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

// ---------------------------------------------------------------------------------------------
// Raw SQL past the library.

fn sql(text: impl Into<String>) -> Statement {
    Statement::from_string(DbBackend::Postgres, text)
}

fn uuid_of(row: &QueryResult, col: &str) -> Uuid {
    row.try_get("", col).expect("uuid column")
}

/// `SET LOCAL` binding `tenant`, exactly as an application would write it by hand.
fn bind(tenant: TenantId) -> Statement {
    sql(format!("SET LOCAL app.tenant_id = '{tenant}'"))
}

/// Raw SQL through the escape hatch of `env`'s RLS handle, bound to acme by hand or bound to
/// nobody, reads, changes and writes nothing of globex.
pub(crate) async fn raw_sql_through_the_escape_hatch_is_confined_by_row_level_security(env: &Env) {
    let s = env.seed().await;
    let conn = env.db.unscoped(&AssertUnscoped::new(
        "test: raw SQL must still be confined by RLS",
    ));

    // Not vacuous: the role is an unprivileged application role, subject to the policies.
    let role = conn
        .query_one_raw(sql("SELECT rolsuper, rolbypassrls, \
                    (SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'post' \
                     AND schemaname = 'public') AS owner \
             FROM pg_roles WHERE rolname = current_user"))
        .await
        .unwrap()
        .unwrap();
    assert!(!role.try_get::<bool>("", "owner").unwrap());
    assert!(!role.try_get::<bool>("", "rolsuper").unwrap());
    assert!(!role.try_get::<bool>("", "rolbypassrls").unwrap());

    acme_bound_by_hand_reads_and_writes_only_acme(env, conn, s.acme, s.globex).await;
    acme_bound_by_hand_cannot_write_globex_rows(env, conn, s.acme[0]).await;
    no_tenant_bound_sees_and_touches_nothing(conn, s.globex[0]).await;

    // Globex's rows, as the owner sees them: untouched by all of the above.
    assert_eq!(env.raw_posts().await, 4);
    for (id, slug) in s.globex.iter().zip(["hello", "world"]) {
        let row = env.raw_post(*id).await;
        assert_eq!(
            (row.tenant_id, row.title.as_str(), row.views),
            (*env.globex.as_uuid(), format!("Title {slug}").as_str(), 0)
        );
    }
    // Acme's own edit was committed, and its row stayed acme's.
    let edited = env.raw_post(s.acme[0]).await;
    assert_eq!(
        (edited.title.as_str(), edited.tenant_id),
        ("edited by hand", *env.acme.as_uuid())
    );
}

/// A committed manual transaction bound to acme: cross-tenant reads see nothing of globex,
/// cross-tenant `UPDATE`/`DELETE` affect zero rows, acme's own row is updated.
async fn acme_bound_by_hand_reads_and_writes_only_acme(
    env: &Env,
    conn: &DatabaseConnection,
    acme: [Uuid; 2],
    globex: [Uuid; 2],
) {
    let txn = conn.begin().await.unwrap();
    txn.execute_raw(bind(env.acme)).await.unwrap();

    let rows = txn
        .query_all_raw(sql("SELECT id, tenant_id FROM post ORDER BY slug"))
        .await
        .unwrap();
    let ids: Vec<Uuid> = rows.iter().map(|r| uuid_of(r, "id")).collect();
    assert_eq!(
        ids,
        acme.to_vec(),
        "exactly acme's posts, nothing of globex"
    );
    assert!(
        rows.iter()
            .all(|r| uuid_of(r, "tenant_id") == *env.acme.as_uuid())
    );
    let asked_for_globex = txn
        .query_all_raw(sql(format!(
            "SELECT id FROM post WHERE tenant_id = '{}' OR id IN ('{}', '{}')",
            env.globex, globex[0], globex[1]
        )))
        .await
        .unwrap();
    assert!(
        asked_for_globex.is_empty(),
        "globex's rows asked for by name"
    );
    let comments = txn
        .query_all_raw(sql("SELECT tenant_id FROM comment"))
        .await
        .unwrap();
    assert_eq!(comments.len(), 2);
    assert!(
        comments
            .iter()
            .all(|r| uuid_of(r, "tenant_id") == *env.acme.as_uuid())
    );

    let affected = |res: Result<ExecResult, sea_orm::DbErr>| res.unwrap().rows_affected();
    let g0 = globex[0];
    let g1 = globex[1];
    let updated = txn
        .execute_raw(sql(format!(
            "UPDATE post SET title = 'hijacked', views = 666 WHERE id = '{g0}'"
        )))
        .await;
    assert_eq!(affected(updated), 0, "UPDATE of globex's row by id");
    let deleted = txn
        .execute_raw(sql(format!("DELETE FROM post WHERE id = '{g1}'")))
        .await;
    assert_eq!(affected(deleted), 0, "DELETE of globex's row by id");
    let deleted = txn
        .execute_raw(sql(format!(
            "DELETE FROM comment WHERE tenant_id = '{}'",
            env.globex
        )))
        .await;
    assert_eq!(affected(deleted), 0, "DELETE of globex's comments");
    // The same statements do work on acme's own row.
    let own = txn
        .execute_raw(sql(format!(
            "UPDATE post SET title = 'edited by hand' WHERE id = '{}'",
            acme[0]
        )))
        .await;
    assert_eq!(affected(own), 1, "UPDATE of acme's own row");
    txn.commit().await.unwrap();
}

/// Bound to acme, writing a row that would belong to globex fails the policy's `WITH CHECK`:
/// an `INSERT` naming globex, and an `UPDATE` moving acme's row to globex.
async fn acme_bound_by_hand_cannot_write_globex_rows(
    env: &Env,
    conn: &DatabaseConnection,
    acme_row: Uuid,
) {
    let txn = conn.begin().await.unwrap();
    txn.execute_raw(bind(env.acme)).await.unwrap();
    let smuggled = txn
        .execute_raw(sql(format!(
            "INSERT INTO post (id, tenant_id, slug, title, views) \
             VALUES ('{}', '{}', 'smuggled', 'smuggled', 0)",
            Uuid::new_v4(),
            env.globex
        )))
        .await;
    let err = smuggled.expect_err("INSERT of a globex row").to_string();
    assert!(err.contains("row-level security"), "{err}");
    txn.rollback().await.unwrap();

    let txn = conn.begin().await.unwrap();
    txn.execute_raw(bind(env.acme)).await.unwrap();
    let moved = txn
        .execute_raw(sql(format!(
            "UPDATE post SET tenant_id = '{}' WHERE id = '{acme_row}'",
            env.globex
        )))
        .await;
    let err = moved
        .expect_err("UPDATE moving a row to globex")
        .to_string();
    // Citus refuses a change of the distribution column before the policy is asked.
    assert!(
        err.contains("row-level security")
            || env.distributed_keys && err.contains("modifying the partition value"),
        "{err}"
    );
    txn.rollback().await.unwrap();
}

/// No tenant bound (outside a transaction, and in one that binds nothing): `SELECT` returns no
/// rows, `UPDATE` and `DELETE` affect none, `INSERT` is refused.
async fn no_tenant_bound_sees_and_touches_nothing(conn: &DatabaseConnection, globex_row: Uuid) {
    async fn check<C: ConnectionTrait>(c: &C, globex_row: Uuid, what: &str) {
        for query in ["SELECT id FROM post", "SELECT id FROM comment"] {
            let rows = c.query_all_raw(sql(query)).await.unwrap();
            assert!(
                rows.is_empty(),
                "{what}: {query} returned {} rows",
                rows.len()
            );
        }
        for stmt in [
            "UPDATE post SET title = 'nobody'".to_owned(),
            format!("UPDATE post SET title = 'nobody' WHERE id = '{globex_row}'"),
            format!("DELETE FROM post WHERE id = '{globex_row}'"),
            "DELETE FROM comment".to_owned(),
        ] {
            let n = c.execute_raw(sql(&stmt)).await.unwrap().rows_affected();
            assert_eq!(n, 0, "{what}: {stmt}");
        }
    }
    check(conn, globex_row, "outside a transaction").await;
    let txn = conn.begin().await.unwrap();
    check(&txn, globex_row, "in a transaction binding nothing").await;
    let inserted = txn
        .execute_raw(sql(format!(
            "INSERT INTO post (id, tenant_id, slug, title, views) \
             VALUES ('{}', '{}', 'orphan', 'orphan', 0)",
            Uuid::new_v4(),
            Uuid::from_u128(0x6106_1061)
        )))
        .await;
    let err = inserted
        .expect_err("INSERT with no tenant bound")
        .to_string();
    assert!(err.contains("row-level security"), "{err}");
    txn.rollback().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// One pooled connection under load.

/// Concurrent tasks sharing the one pooled connection.
const TASKS: usize = 8;

/// The payload of the panics the stress test raises on purpose.
#[derive(Debug)]
struct DeliberatePanic;

/// Keeps the deliberate panics out of the test output; every other panic is reported as usual.
fn silence_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<DeliberatePanic>().is_none() {
                previous(info);
            }
        }));
    });
}

/// What the tasks did and saw, summed over all of them.
#[derive(Debug, Default)]
struct Tally {
    operations: usize,
    /// Rows of the other tenant returned by any read: must stay zero.
    wrong_rows: usize,
    /// Reads that returned none of the tenant's own rows (the binding did not work): zero.
    blind_reads: usize,
    reads: usize,
    rows_read: usize,
    /// Successful plain inserts, per tenant: `[acme, globex]`.
    inserts: [usize; 2],
    updates: usize,
    /// Operations that returned the expected error (duplicate slug, foreign row).
    errors: usize,
    /// Transactions dropped after a write without commit.
    dropped_txns: usize,
    /// Operations cancelled by a timeout, a `select!` or a single poll.
    cancelled: usize,
    /// Operations that completed before their timeout / `select!` could cancel them.
    not_cancelled: usize,
    panics: usize,
}

impl Tally {
    fn add(&mut self, o: &Self) {
        self.operations += o.operations;
        self.wrong_rows += o.wrong_rows;
        self.blind_reads += o.blind_reads;
        self.reads += o.reads;
        self.rows_read += o.rows_read;
        self.inserts[0] += o.inserts[0];
        self.inserts[1] += o.inserts[1];
        self.updates += o.updates;
        self.errors += o.errors;
        self.dropped_txns += o.dropped_txns;
        self.cancelled += o.cancelled;
        self.not_cancelled += o.not_cancelled;
        self.panics += o.panics;
    }
}

/// The two tenants and their seeded posts, as every task sees them.
#[derive(Clone, Copy)]
struct Tenants {
    ids: [TenantId; 2],
    posts: [[Uuid; 2]; 2],
}

impl Tenants {
    const NAMES: [&'static str; 2] = ["acme", "globex"];
}

/// `operations` operations from `TASKS` tasks over one pooled connection, alternating tenants,
/// then the checks: no wrong row seen, every row written carries its writer's tenant, nothing
/// rolled back survived, and the connection holds no tenant binding afterwards.
pub(crate) async fn stress(env: &Env, label: &str, operations: usize) {
    silence_deliberate_panics();
    let seeded = env.seed().await;
    let tenants = Tenants {
        ids: [env.acme, env.globex],
        posts: [seeded.acme, seeded.globex],
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let db = env.db.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= operations {
                    break tally;
                }
                operation(&db, tenants, n, &mut tally).await;
                tally.operations += 1;
            }
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(&task.await.expect("a stress task failed"));
    }
    let elapsed = started.elapsed();
    println!(
        "stress [{label}]: {} operations from {TASKS} tasks on 1 connection in {elapsed:.2?} \
         ({:.0} ops/s): {tally:?}",
        tally.operations,
        f64::from(u32::try_from(tally.operations).unwrap()) / elapsed.as_secs_f64()
    );
    assert_eq!(tally.operations, operations);
    assert_eq!(tally.wrong_rows, 0, "rows of the wrong tenant were seen");
    assert_eq!(
        tally.blind_reads, 0,
        "reads that saw none of their own rows"
    );
    assert!(tally.panics > 0 && tally.cancelled > 0 && tally.dropped_txns > 0);

    check_rows_as_owner(env, tenants, &tally).await;
    check_no_binding_left(env, label).await;
}

/// One operation for tenant `n % 2`, its kind picked by `n`.
async fn operation(db: &TenantDb, tenants: Tenants, n: usize, tally: &mut Tally) {
    let me = n % 2;
    let (tenant, name) = (tenants.ids[me], Tenants::NAMES[me]);
    let mine = tenants.posts[me];
    let theirs = tenants.posts[1 - me];
    let slug = |kind: &str| format!("{name}-{kind}-{n}");
    let views = i32::try_from(n).expect("small n");
    tenant::scope(tenant, async {
        match (n / 2) % 20 {
            0..=7 => read(db, tenant, n, tally).await,
            8 | 9 => {
                let row = new_post(&slug("ins")).insert(db).await.unwrap();
                tally.wrong_rows += usize::from(row.tenant_id != *tenant.as_uuid());
                tally.inserts[me] += 1;
            }
            10 => {
                let am = post::ActiveModel {
                    id: Set(mine[n % 4 / 2]),
                    title: Set(format!("{name} {n}")),
                    ..Default::default()
                };
                let row = am.update(db).await.unwrap();
                tally.wrong_rows += usize::from(row.tenant_id != *tenant.as_uuid());
                tally.updates += 1;
            }
            11 => {
                // `world` exists in both tenants: one row is ours.
                let am = post::ActiveModel {
                    views: Set(views),
                    ..Default::default()
                };
                let n = TenantRepo::<post::Entity>::new(db)
                    .update_many(am, post::Column::Slug.eq("world"))
                    .await
                    .unwrap();
                assert_eq!(n, 1, "update_many touched another tenant's `world`");
                tally.updates += 1;
            }
            12 => {
                let am = post::ActiveModel {
                    id: Set(theirs[0]),
                    title: Set(format!("{name} took this")),
                    ..Default::default()
                };
                let err = am.update(db).await.unwrap_err();
                assert!(matches!(err, Error::NotFound { .. }), "{err}");
                tally.errors += 1;
            }
            13 => {
                let err = new_post("hello").insert(db).await.unwrap_err();
                assert!(matches!(err, Error::Db(_)), "{err}");
                tally.errors += 1;
            }
            14 => {
                let txn = db.begin().await.unwrap();
                new_post(&slug("dropped")).insert(&txn).await.unwrap();
                drop(txn);
                tally.dropped_txns += 1;
            }
            15..=17 => cancelled(db, tenant, n, &slug("cancelled"), tally).await,
            18 => panicking(db, tenant, &slug("panic"), tally).await,
            _ => {
                let err = TenantRepo::<post::Entity>::new(db)
                    .delete_by_id(theirs[1])
                    .await
                    .unwrap_err();
                assert!(matches!(err, Error::NotFound { .. }), "{err}");
                tally.errors += 1;
            }
        }
    })
    .await;
}

/// A read of posts or comments; counts rows of the other tenant.
async fn read(db: &TenantDb, tenant: TenantId, n: usize, tally: &mut Tally) {
    let owners: Vec<Uuid> = if n % 4 < 2 {
        post::Entity::find()
            .limit(25)
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.tenant_id)
            .collect()
    } else {
        comment::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.tenant_id)
            .collect()
    };
    tally.reads += 1;
    tally.rows_read += owners.len();
    tally.blind_reads += usize::from(owners.is_empty());
    tally.wrong_rows += owners.iter().filter(|t| *t != tenant.as_uuid()).count();
}

/// An insert (or a whole transaction) cancelled part-way: by a timeout of a few dozen µs, by a
/// `select!` against a branch that is ready on its second poll, or by polling it once.
async fn cancelled(db: &TenantDb, tenant: TenantId, n: usize, slug: &str, tally: &mut Tally) {
    let completed = match n % 4 {
        3 => {
            // A read: on the pipelined executor its three messages are sent, its answers not
            // read, when it is dropped.
            let micros = 20 + u64::try_from(n % 17).unwrap() * 40;
            match tokio::time::timeout(Duration::from_micros(micros), post::Entity::find().all(db))
                .await
            {
                Ok(rows) => {
                    tally.wrong_rows += rows
                        .unwrap()
                        .iter()
                        .filter(|p| p.tenant_id != *tenant.as_uuid())
                        .count();
                    true
                }
                Err(_) => false,
            }
        }
        0 => {
            let micros = 20 + u64::try_from(n % 13).unwrap() * 30;
            tokio::time::timeout(Duration::from_micros(micros), new_post(slug).insert(db))
                .await
                .is_ok_and(|r| r.is_ok())
        }
        1 => {
            let work = async {
                let txn = db.begin().await.unwrap();
                new_post(slug).insert(&txn).await.unwrap();
                let seen = post::Entity::find().all(&txn).await.unwrap();
                tally.wrong_rows += seen
                    .iter()
                    .filter(|p| p.tenant_id != *tenant.as_uuid())
                    .count();
                txn.commit().await.unwrap();
            };
            tokio::select! {
                () = work => true,
                () = tokio::task::yield_now() => false,
            }
        }
        _ => {
            // Mid-transaction: the statement is sent, its answer not read, when it is dropped.
            let txn = db.begin().await.unwrap();
            let once = new_post(slug).insert(&txn).now_or_never();
            drop(txn);
            tally.dropped_txns += 1;
            once.is_some()
        }
    };
    if completed {
        tally.not_cancelled += 1;
    } else {
        tally.cancelled += 1;
    }
}

/// A task that writes in a transaction, then panics inside `tenant::scope`.
async fn panicking(db: &TenantDb, tenant: TenantId, slug: &str, tally: &mut Tally) {
    let db = db.clone();
    let slug = slug.to_owned();
    let task = tokio::spawn(tenant::scope(tenant, async move {
        let txn = db.begin().await.unwrap();
        new_post(&slug).insert(&txn).await.unwrap();
        std::panic::panic_any(DeliberatePanic);
    }));
    let err = task.await.expect_err("the task panicked");
    assert!(
        err.into_panic().downcast_ref::<DeliberatePanic>().is_some(),
        "an unexpected panic"
    );
    tally.panics += 1;
}

/// As the owner: every post carries the tenant of the operation that wrote it, nothing of a
/// dropped or panicked transaction survived, and the counts add up.
#[expect(
    clippy::disallowed_methods,
    reason = "the owner inspects every row behind the library's back"
)]
async fn check_rows_as_owner(env: &Env, tenants: Tenants, tally: &Tally) {
    let rows = <post::Entity as EntityTrait>::find()
        .all(&env.raw)
        .await
        .unwrap();
    let mut inserted = [0; 2];
    for row in &rows {
        let who = tenants
            .ids
            .iter()
            .position(|t| t.as_uuid() == &row.tenant_id)
            .expect("a row of an unknown tenant");
        let name = Tenants::NAMES[who];
        if tenants.posts[who].contains(&row.id) {
            // Seeded: its title, if updated, and its views were written by its own tenant's
            // operations, whose numbers have the tenant's parity.
            if let Some(n) = row.title.strip_prefix(&format!("{name} ")) {
                assert_eq!(n.parse::<usize>().unwrap() % 2, who, "{row:?}");
            } else {
                assert!(row.title.starts_with("Title "), "{row:?}");
            }
            assert!(row.views == 0 || usize::try_from(row.views).unwrap() % 2 == who);
            continue;
        }
        let (prefix, kind) = row
            .slug
            .split_once('-')
            .map(|(p, rest)| (p, rest.split('-').next().unwrap_or("")))
            .unwrap_or_default();
        assert_eq!(
            prefix, name,
            "row written for one tenant, owned by another: {row:?}"
        );
        assert!(
            kind == "ins" || kind == "cancelled",
            "a rolled-back write survived: {row:?}"
        );
        if kind == "ins" {
            inserted[who] += 1;
        }
    }
    assert_eq!(inserted, tally.inserts, "committed inserts per tenant");
    let comments = <comment::Entity as EntityTrait>::find()
        .all(&env.raw)
        .await
        .unwrap();
    assert_eq!(comments.len(), 4);
}

/// On the one pooled connection, outside any transaction: `app.tenant_id` reads `''` or NULL,
/// and no tenant row is visible. Through PgBouncer the check runs repeatedly, so that it lands
/// on each server connection of the pool.
async fn check_no_binding_left(env: &Env, label: &str) {
    let conn = env.db.unscoped(&AssertUnscoped::new(
        "test: look for a tenant binding left behind",
    ));
    let pool = conn.get_postgres_connection_pool();
    assert_eq!(pool.size(), 1, "the pool has one connection");
    let mut backends = BTreeSet::new();
    let mut prepared = 0_i64;
    for _ in 0..8 {
        // The simple protocol (one message): no prepared statement, so PgBouncer may hand out a
        // different server connection for each of these.
        let row = sqlx::raw_sql(
            "SELECT current_setting('app.tenant_id', true) AS setting, pg_backend_pid() AS pid, \
                    (SELECT count(*) FROM post) AS posts, \
                    (SELECT count(*) FROM pg_prepared_statements) AS prepared",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let setting: Option<String> = row.try_get("setting").unwrap();
        assert!(
            setting.as_deref().is_none_or(str::is_empty),
            "a tenant binding was left on the connection: {setting:?}"
        );
        assert_eq!(
            row.try_get::<i64, _>("posts").unwrap(),
            0,
            "rows visible with no tenant"
        );
        backends.insert(row.try_get::<i32, _>("pid").unwrap());
        prepared = prepared.max(row.try_get::<i64, _>("prepared").unwrap());
    }
    println!(
        "stress [{label}]: no binding left on server connection(s) {backends:?}; \
         at most {prepared} named prepared statements held by one of them"
    );
    if let Some(pipeline) = &env.pipeline {
        assert_no_binding_on_pipeline(pipeline).await;
    }
    assert_nodes_clean(env, label).await;
}

/// The same check on the pipeline's one connection: outside any transaction, no tenant bound,
/// no row visible.
pub(crate) async fn assert_no_binding_on_pipeline(pipeline: &tenant::Pipeline) {
    assert_eq!(
        pipeline.pool().status().max_size,
        1,
        "one pipelined connection"
    );
    let client = pipeline.pool().get().await.unwrap();
    // The simple protocol: one message, so that outside a transaction the statement is its own
    // transaction and `now()` equals `statement_timestamp()`; in one left open, `now()` is older.
    let messages = client
        .simple_query(
            "SELECT coalesce(current_setting('app.tenant_id', true), '') AS setting, \
                    current_schema()::text AS schema, \
                    (SELECT count(*) FROM post) AS posts, \
                    now() = statement_timestamp() AS own_transaction",
        )
        .await
        .unwrap();
    let row = messages
        .iter()
        .find_map(|m| match m {
            tenant::pipeline::tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get("setting"), Some(""), "a tenant binding was left");
    assert_eq!(
        row.get("schema"),
        Some("public"),
        "a tenant schema was left"
    );
    assert_eq!(row.get("posts"), Some("0"), "rows visible with no tenant");
    assert_eq!(
        row.get("own_transaction"),
        Some("t"),
        "the pipelined connection was left inside a transaction"
    );
}
