//! Row-Level Security on its own, as the application role `tenant_app`: raw SQL past the library
//! is still confined to the bound tenant, and one pooled connection serving thousands of mixed,
//! cancelled, failing and panicking operations for two tenants never shows a row of the wrong
//! tenant nor keeps a binding afterwards, directly and through PgBouncer in transaction mode.

#[path = "../support/pgbouncer.rs"]
pub(crate) mod pgbouncer;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use sea_orm::sqlx::{self, Row as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, EntityTrait, ExecResult, QueryResult, QuerySelect, Statement, TransactionTrait,
};
use tenant::{AssertUnscoped, Error, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

use crate::common::entities::{comment, post};
use crate::common::{Env, new_post};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_through_the_escape_hatch_is_confined_by_row_level_security() {
    let (app, raw, keep) = crate::connections().await;
    let env = Env::new_rls(app, raw, Box::new(keep)).await;
    let s = env.seed().await;
    let conn = env.db.unscoped(&AssertUnscoped::new(
        "test: raw SQL must still be confined by RLS",
    ));

    // Not vacuous: the role is the unprivileged application role, subject to the policies.
    let role = conn
        .query_one_raw(sql(
            "SELECT current_user::text AS who, rolsuper, rolbypassrls FROM pg_roles \
             WHERE rolname = current_user",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(role.try_get::<String>("", "who").unwrap(), "tenant_app");
    assert!(!role.try_get::<bool>("", "rolsuper").unwrap());
    assert!(!role.try_get::<bool>("", "rolbypassrls").unwrap());

    acme_bound_by_hand_reads_and_writes_only_acme(&env, conn, s.acme, s.globex).await;
    acme_bound_by_hand_cannot_write_globex_rows(&env, conn, s.acme[0]).await;
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
    assert!(err.contains("row-level security"), "{err}");
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

/// Operations in one stress run, all tasks together.
const OPERATIONS: usize = 10_000;
/// Concurrent tasks sharing the one pooled connection.
const TASKS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pooled_connection_serving_ten_thousand_mixed_operations_never_leaks_a_tenant() {
    let test_db = crate::pg::fresh_database().await;
    let options = ConnectOptions::new(test_db.app_url.clone());
    let env = single_connection_env(options, test_db).await;
    stress(&env, "direct").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ten_thousand_operations_with_reads_on_one_pipelined_connection_never_leak_a_tenant()
 {
    let test_db = crate::pg::fresh_database().await;
    let url = test_db.app_url.clone();
    let options = ConnectOptions::new(test_db.app_url.clone());
    let env = single_connection_env(options, test_db)
        .await
        .with_pipeline(&url, 1);
    stress(&env, "pipelined reads, 1 connection").await;
    let pipelined = env.pipeline.as_ref().unwrap().statements();
    assert!(
        pipelined > 1_000,
        "the reads did not take the pipeline: {pipelined} statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ten_thousand_operations_through_pgbouncer_in_transaction_mode_never_leak_a_tenant()
 {
    // Starting it blocks (process start, port wait): keep it off the runtime's workers.
    let bouncer = tokio::task::spawn_blocking(pgbouncer::bouncer)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let test_db = crate::pg::fresh_database().await;
    // With PgBouncer < 1.21 this turns sqlx's statement cache off: see `connect_options`.
    let options = bouncer.connect_options(&test_db.app_url);
    let env = single_connection_env(options, test_db).await;
    let label = format!(
        "PgBouncer {} (pool_mode = transaction, default_pool_size = 2, {})",
        bouncer.version_string(),
        if bouncer.prepared_statements {
            "max_prepared_statements = 100"
        } else {
            "sqlx statement cache off"
        }
    );
    stress(&env, &label).await;
}

/// An RLS-mode environment whose application pool has exactly one connection.
async fn single_connection_env(options: ConnectOptions, test_db: crate::pg::TestDb) -> Env {
    one_connection_env(options, test_db, true, None).await
}

/// An environment, in RLS mode or not, whose application pool (made from `options`) has exactly
/// one connection.
pub(crate) async fn one_connection_env(
    mut options: ConnectOptions,
    test_db: crate::pg::TestDb,
    rls: bool,
    tiers: Option<crate::common::Tiers>,
) -> Env {
    options
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    let app = Database::connect(options)
        .await
        .expect("connect as the app role");
    let mut admin = ConnectOptions::new(test_db.admin_url.clone());
    admin
        .max_connections(1)
        .min_connections(0)
        .sqlx_logging(false);
    let raw = Database::connect(admin)
        .await
        .expect("connect as the owner");
    match tiers {
        Some(tiers) => {
            let role = crate::pg::cluster().app_role().to_owned();
            let databases = crate::tenant_databases(tiers.databases()).await;
            Env::new_tiered(
                app,
                raw,
                &role,
                rls,
                tiers,
                databases,
                false,
                Box::new(test_db),
            )
            .await
        }
        None if rls => Env::new_rls(app, raw, Box::new(test_db)).await,
        None => Env::new(app, raw, Box::new(test_db)).await,
    }
}

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

/// `OPERATIONS` operations from `TASKS` tasks over one pooled connection, alternating tenants,
/// then the checks: no wrong row seen, every row written carries its writer's tenant, nothing
/// rolled back survived, and the connection holds no tenant binding afterwards.
async fn stress(env: &Env, label: &str) {
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
                if n >= OPERATIONS {
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
    assert_eq!(tally.operations, OPERATIONS);
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

/// The kit's RLS check fails where RLS is missing: the same tables with no policies, the same
/// application role, and the rows the app layer wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_rls_check_reports_tables_without_policies() {
    let env = crate::setup().await; // app level: no policies on the tables
    env.seed().await;
    let tenants = tenant::testing::TwoTenants {
        a: env.acme,
        b: env.globex,
    };
    let app = env
        .db
        .unscoped(&AssertUnscoped::new("the kit's raw queries"));
    let rls = tenant::Rls::default();
    let caught = std::panic::AssertUnwindSafe(tenant::testing::assert_rls_refuses::<post::Entity>(
        app, &rls, &tenants,
    ))
    .catch_unwind()
    .await;
    let message = *caught
        .expect_err("no policies, and the check passed")
        .downcast::<String>()
        .unwrap();
    for breach in [
        "read with no tenant bound",
        "read of b's rows bound to a",
        "delete of b's rows bound to a",
        "a's rows moved to b, bound to a",
    ] {
        assert!(message.contains(breach), "{breach}: {message}");
    }
}
