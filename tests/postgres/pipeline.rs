//! The pipelined executor (tokio-postgres): the reads it takes are scoped as on sqlx, in both
//! modes; a read it cannot decode runs on sqlx instead, decided before anything runs; a read cancelled
//! mid-flight leaves neither a transaction nor a tenant on the connection. Writes: `pipeline_writes`.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use tenant::{TenantDb, TenantRepo};
use uuid::Uuid;

use crate::common::Env;
use crate::common::entities::{comment, post, tag};

/// The handle in app-level or RLS mode, reading through a pipeline of `size` connections.
pub(crate) async fn env(rls: bool, size: usize) -> Env {
    let (app, raw, keep) = crate::connections().await;
    let url = keep.app_url.clone();
    let env = if rls {
        Env::new_rls(app, raw, Box::new(keep)).await
    } else {
        Env::new(app, raw, Box::new(keep)).await
    };
    env.with_pipeline(&url, size)
}

/// Creates `E`'s table, with its policy when `env` is in RLS mode.
pub(crate) async fn create_table<E: tenant::Tenancy>(env: &Env) {
    let mut schema = tenant::TenantTables::new().table::<E>();
    if env.rls {
        schema = schema.rls(tenant::Rls::default());
    }
    schema.create(&env.raw).await.unwrap();
}

/// How many statements the pipeline ran during `work`.
pub(crate) async fn pipelined<T>(env: &Env, work: impl Future<Output = T>) -> (T, u64) {
    let before = env.pipeline.as_ref().unwrap().statements();
    let out = work.await;
    (out, env.pipeline.as_ref().unwrap().statements() - before)
}

async fn every_read_kind_takes_the_pipeline_and_sees_one_tenant(rls: bool) {
    let env = env(rls, 2).await;
    let s = env.seed().await;
    for (t, mine, theirs) in [(env.acme, s.acme, s.globex), (env.globex, s.globex, s.acme)] {
        tenant::scope(t, async {
            let repo = TenantRepo::<post::Entity>::new(&env.db);
            let (all, n) = pipelined(&env, repo.all()).await;
            let all = all.unwrap();
            assert_eq!((all.len(), n), (2, 1), "all");
            assert!(all.iter().all(|p| p.tenant_id == *t.as_uuid()));

            let (own, n) = pipelined(&env, repo.find_by_id(mine[0])).await;
            assert_eq!((own.unwrap().map(|p| p.id), n), (Some(mine[0]), 1));
            let (other, n) = pipelined(&env, repo.find_by_id(theirs[0])).await;
            assert_eq!((other.unwrap(), n), (None, 1), "another tenant's row by id");

            let (count, n) = pipelined(&env, repo.count()).await;
            assert_eq!((count.unwrap(), n), (2, 1), "count");
            let (exists, n) = pipelined(&env, repo.exists(post::Column::Id.eq(theirs[1]))).await;
            assert_eq!(
                (exists.unwrap(), n),
                (false, 1),
                "exists on another tenant's id"
            );

            let filtered = post::Entity::find()
                .filter(
                    post::Column::Slug
                        .eq("world")
                        .or(post::Column::Id.eq(theirs[0])),
                )
                .order_by_asc(post::Column::Slug);
            let (rows, n) = pipelined(&env, filtered.all(&env.db)).await;
            let rows = rows.unwrap();
            assert_eq!(n, 1);
            assert_eq!(rows.iter().map(|p| p.id).collect::<Vec<_>>(), [mine[1]]);

            let pages = repo.paginate(repo.find().order_by_asc(post::Column::Slug), 1);
            let (first, n) = pipelined(&env, pages.fetch_page(0)).await;
            assert_eq!((first.unwrap()[0].id, n), (mine[0], 1), "first page");
            let (items, n) = pipelined(&env, pages.num_items()).await;
            assert_eq!((items.unwrap(), n), (2, 1), "paginator count");

            // SeaORM's `SelectTwo`: each comment with its post, both of this tenant.
            let also = || {
                comment::Entity::find()
                    .find_also_related(post::Entity)
                    .order_by_asc(comment::Column::Body)
            };
            let (pairs, n) = pipelined(&env, also().all(&env.db)).await;
            let pairs = pairs.unwrap();
            assert_eq!((pairs.len(), n), (2, 1), "find_also_related");
            for (c, p) in &pairs {
                let p = p.as_ref().expect("the comment's post");
                assert_eq!((c.tenant_id, p.tenant_id), (*t.as_uuid(), *t.as_uuid()));
                assert_eq!(p.id, c.post_id);
            }
            let (first, n) = pipelined(&env, also().one(&env.db)).await;
            assert_eq!(
                (first.unwrap().map(|(c, _)| c.id), n),
                (Some(pairs[0].0.id), 1)
            );

            grouped_and_cursor_reads(&env, t, mine).await;
        })
        .await;
    }
    // Reads in a transaction stay on sqlx.
    tenant::scope(env.acme, async {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        let (inserted, n) = pipelined(&env, repo.insert(crate::common::new_post("new"))).await;
        assert_eq!((inserted.is_ok(), n), (true, 1), "insert");
        let txn = env.db.begin().await.unwrap();
        let (rows, n) = pipelined(&env, post::Entity::find().all(&txn)).await;
        assert_eq!((rows.unwrap().len(), n), (3, 0), "read in a transaction");
        txn.commit().await.unwrap();
    })
    .await;
}

/// `find_with_related` and cursor pages on the pipeline, as `t` with its posts `mine`: one
/// statement each, and the same models as SeaORM's own code returns on sqlx.
async fn grouped_and_cursor_reads(env: &Env, t: tenant::TenantId, mine: [Uuid; 2]) {
    // SeaORM's `SelectTwoMany`: each post once, with its comments, grouped and ordered as
    // SeaORM groups and orders them (the same read in a transaction runs on sqlx).
    comment::Entity::insert(comment::ActiveModel {
        id: Set(Uuid::new_v4()),
        post_id: Set(mine[0]),
        body: Set("zzz: a second comment".into()),
        ..Default::default()
    })
    .exec(&env.db)
    .await
    .unwrap();
    let with = || {
        post::Entity::find()
            .find_with_related(comment::Entity)
            .order_by_asc(comment::Column::Body)
    };
    let (grouped, n) = pipelined(env, with().all(&env.db)).await;
    let grouped = grouped.unwrap();
    assert_eq!(n, 1, "find_with_related");
    let mut shape: Vec<_> = grouped.iter().map(|(p, cs)| (p.id, cs.len())).collect();
    shape.sort_by_key(|&(_, n)| n);
    assert_eq!(shape, [(mine[1], 1), (mine[0], 2)]);
    assert!(grouped.iter().all(|(p, cs)| {
        p.tenant_id == *t.as_uuid()
            && cs
                .iter()
                .all(|c| c.post_id == p.id && c.tenant_id == *t.as_uuid())
    }));
    // Many-to-many through the junction, and a post without any tag.
    let tagged = || post::Entity::find().find_with_related(tag::Entity);
    let (by_tag, n) = pipelined(env, tagged().all(&env.db)).await;
    let by_tag = by_tag.unwrap();
    assert_eq!(n, 1, "find_with_related through a junction");
    let txn = env.db.begin().await.unwrap();
    let (on_sqlx, n) = pipelined(env, with().all(&txn)).await;
    assert_eq!(
        (on_sqlx.unwrap(), n),
        (grouped, 0),
        "grouped as SeaORM groups"
    );
    let (on_sqlx, n) = pipelined(env, tagged().all(&txn)).await;
    assert_eq!((on_sqlx.unwrap(), n), (by_tag.clone(), 0));
    txn.commit().await.unwrap();
    let shape: Vec<_> = by_tag.iter().map(|(p, ts)| (p.id, ts.len())).collect();
    assert!(shape.contains(&(mine[0], 1)) && shape.contains(&(mine[1], 0)));
    assert_eq!(shape.len(), 2, "{shape:?}");

    // Cursors: SeaORM builds the page (its order, limit and bounds) and the pipeline runs
    // it; the last `n` rows come back turned round, as SeaORM returns them on sqlx.
    let lowest = *mine.iter().min().unwrap();
    let cursor = |i: usize| {
        let c = post::Entity::find().cursor_by(post::Column::Id);
        match i {
            0 => c.first(1),
            1 => c.last(2),
            2 => c.desc().last(1),
            _ => c.after(lowest).first(5),
        }
    };
    for i in 0..4 {
        let (page, n) = pipelined(env, cursor(i).all(&env.db)).await;
        let page = page.unwrap();
        assert_eq!(n, 1, "cursor {i}");
        assert!(!page.is_empty() && page.iter().all(|p| mine.contains(&p.id)));
        let txn = env.db.begin().await.unwrap();
        let (on_sqlx, n) = pipelined(env, cursor(i).all(&txn)).await;
        txn.commit().await.unwrap();
        assert_eq!((on_sqlx.unwrap(), n), (page, 0), "cursor {i} as on sqlx");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_kind_takes_the_pipeline_and_sees_one_tenant_app_level() {
    every_read_kind_takes_the_pipeline_and_sees_one_tenant(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_kind_takes_the_pipeline_and_sees_one_tenant_under_rls() {
    every_read_kind_takes_the_pipeline_and_sees_one_tenant(true).await;
}

/// Under RLS the pipelined read's own statement is confined by the policy: a filter that would
/// match every tenant's rows still returns the bound tenant's only, because the transaction the
/// pipeline opens binds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_read_runs_inside_its_tenant_binding() {
    let env = env(true, 1).await;
    env.seed().await;
    tenant::scope(env.acme, async {
        let setting = Expr::cust("current_setting('app.tenant_id', true)");
        let rows = post::Entity::find()
            .filter(setting.eq(env.acme.to_string()))
            .all(&env.db);
        let (rows, n) = pipelined(&env, rows).await;
        assert_eq!(
            (rows.unwrap().len(), n),
            (2, 1),
            "bound to acme while it ran"
        );
    })
    .await;
    crate::attacks::assert_no_binding_on_pipeline(env.pipeline.as_ref().unwrap()).await;
}

/// A read dropped after its messages were sent, while PostgreSQL is still running its statement:
/// the `COMMIT` went with it, so the one connection is free, unbound and outside any transaction
/// for the next read, which sees its own tenant's rows only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cancelled_mid_flight_leaves_no_transaction_nor_tenant() {
    let env = env(true, 1).await;
    let s = env.seed().await;
    let slow = || {
        tenant::scope(env.acme, async {
            post::Entity::find()
                .filter(Expr::cust("(SELECT true FROM pg_sleep(0.05))"))
                .all(&env.db)
                .await
        })
    };
    // Once in full, so that the statement is prepared and the cancelled rounds send it at once.
    let (rows, n) = pipelined(&env, slow()).await;
    assert_eq!((rows.unwrap().len(), n), (2, 1));
    let counter = env.pipeline.as_ref().unwrap();
    for round in 0..20_u64 {
        // Polled until its messages are issued, then dropped: the statement sleeps on the
        // server, so it cannot have finished (no clock decides when to cancel).
        let before = counter.statements();
        let finished = {
            let mut slow = std::pin::pin!(slow());
            std::future::poll_fn(|cx| match slow.as_mut().poll(cx) {
                std::task::Poll::Ready(_) => std::task::Poll::Ready(true),
                std::task::Poll::Pending if counter.statements() > before => {
                    std::task::Poll::Ready(false)
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            })
            .await
            // The read is dropped here.
        };
        assert!(!finished, "round {round}: the slow read finished at once");
        assert_eq!(
            counter.statements() - before,
            1,
            "the cancelled read was on the pipeline"
        );
        let next = tenant::scope(env.globex, post::Entity::find().all(&env.db))
            .await
            .unwrap();
        let mut ids: Vec<Uuid> = next.iter().map(|p| p.id).collect();
        ids.sort();
        let mut want = s.globex.to_vec();
        want.sort();
        assert_eq!(ids, want, "round {round}: the next read is globex's alone");
    }
    crate::attacks::assert_no_binding_on_pipeline(env.pipeline.as_ref().unwrap()).await;
}

/// An entity the pipeline cannot decode: a newtype field, which has no tokio-postgres decoding
/// (known at compile time).
#[allow(
    unreachable_pub,
    reason = "entity modules are public by SeaORM's convention"
)]
mod labelled {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveValueType)]
    pub struct Label(pub String);

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "labelled")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub label: Label,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_pipeline_cannot_decode_runs_on_sqlx_and_is_still_scoped() {
    for rls in [false, true] {
        let env = env(rls, 1).await;
        create_table::<labelled::Entity>(&env).await;
        env.seed().await;
        for t in [env.acme, env.globex] {
            tenant::scope(t, async {
                labelled::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    label: Set(labelled::Label(format!("of {t}"))),
                    ..Default::default()
                }
                .insert(&env.db)
                .await
                .unwrap();
            })
            .await;
        }
        tenant::scope(env.acme, async {
            let (labels, n) = pipelined(&env, labelled::Entity::find().all(&env.db)).await;
            assert_eq!(n, 0, "no decoding for the newtype: sqlx (rls: {rls})");
            let labels = labels.unwrap();
            assert_eq!(labels.len(), 1);
            assert_eq!(labels[0].label.0, format!("of {}", env.acme));
            // Counts have no model to decode: they take the pipeline whatever the entity.
            let (count, n) = pipelined(&env, labelled::Entity::find().count(&env.db)).await;
            assert_eq!((count.unwrap(), n), (1, 1));

            // Known only once the statement is prepared: the result lacks the model's columns.
            // sqlx then runs it and reports what plain SeaORM would.
            let partial = post::Entity::find()
                .select_only()
                .column(post::Column::Id)
                .all(&env.db);
            let (partial, n) = pipelined(&env, partial).await;
            assert_eq!(
                n, 0,
                "a result without the model's columns: sqlx (rls: {rls})"
            );
            assert!(matches!(partial, Err(tenant::Error::Db(_))), "{partial:?}");
        })
        .await;
    }
}
/// In RLS mode a pipeline whose role skips the policies (here the superuser) is refused on every
/// read and write rather than allowed to reach every tenant's rows; app-level mode has no
/// policies to skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_rls_a_pipeline_as_a_role_that_bypasses_the_policies_is_refused() {
    let (app, raw, keep) = crate::connections().await;
    let admin_url = keep.admin_url.clone();
    let env = Env::new_rls(app, raw, Box::new(keep)).await;
    let s = env.seed().await;
    let env = env.with_pipeline(&admin_url, 1);
    tenant::scope(env.acme, async {
        let (inserted, n) = pipelined(&env, crate::common::new_post("new").insert(&env.db)).await;
        let err = inserted.unwrap_err();
        assert!(matches!(err, tenant::Error::BypassingRole { .. }), "{err}");
        assert_eq!(n, 0, "nothing ran");
        let err = post::Entity::delete_by_id(s.acme[0])
            .exec(&env.db)
            .await
            .unwrap_err();
        assert!(matches!(err, tenant::Error::BypassingRole { .. }), "{err}");
        for _ in 0..2 {
            let (rows, n) = pipelined(&env, post::Entity::find().all(&env.db)).await;
            let err = rows.unwrap_err();
            assert!(
                matches!(
                    err,
                    tenant::Error::BypassingRole {
                        right: "is a superuser",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("is a superuser"), "{err}");
            assert_eq!(n, 0, "nothing ran");
        }
        let count = post::Entity::find().count(&env.db).await.unwrap_err();
        assert!(
            matches!(count, tenant::Error::BypassingRole { .. }),
            "{count}"
        );
    })
    .await;
    assert_eq!(env.raw_posts().await, 4, "nothing written, nothing deleted");
    // The same superuser pipeline on an app-level handle: no policies to skip, it reads.
    let db = TenantDb::new(env.raw.clone())
        .with_pipeline(env.pipeline.clone().unwrap())
        .unwrap();
    let rows = tenant::scope(env.acme, post::Entity::find().all(&db)).await;
    assert_eq!(rows.unwrap().len(), 2);
}

/// Every distinct statement is prepared on its connection; the cache is bounded, so a program
/// with many query shapes does not pile up prepared statements on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_per_pipelined_connection_are_bounded() {
    let env = env(false, 1).await;
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        for n in 1..=300 {
            // `IN` lists of n values: n distinct statements.
            let ids: Vec<Uuid> = std::iter::repeat_n(s.acme[0], n).collect();
            let (rows, ran) = pipelined(
                &env,
                post::Entity::find()
                    .filter(post::Column::Id.is_in(ids))
                    .all(&env.db),
            )
            .await;
            assert_eq!((rows.unwrap().len(), ran), (1, 1));
        }
    })
    .await;
    let client = env.pipeline.as_ref().unwrap().pool().get().await.unwrap();
    let held: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        (1..=257).contains(&held),
        "{held} prepared statements held by one connection"
    );
}

/// The pipeline is for PostgreSQL; a SQLite handle refuses it.
#[tokio::test]
async fn a_pipeline_on_a_sqlite_handle_is_refused() {
    let sqlite = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
    let pipeline = tenant::Pipeline::connect("postgres://nobody@localhost/none", 1).unwrap();
    let err = TenantDb::new(sqlite).with_pipeline(pipeline).unwrap_err();
    assert!(
        matches!(
            err,
            tenant::Error::NeedsPostgres {
                backend: sea_orm::DbBackend::Sqlite,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        tenant::Pipeline::connect("postgres://x@localhost/db", 0),
        Err(tenant::Error::PipelineSetup { .. })
    ));
    assert!(matches!(
        tenant::Pipeline::connect("not a url", 1),
        Err(tenant::Error::PipelineSetup { .. })
    ));
}

/// A statement PostgreSQL refuses to prepare (here a column that does not exist) runs on sqlx
/// instead, so its error is SeaORM's, as without the pipeline; nothing ran on the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_postgres_cannot_prepare_reports_seaorms_error() {
    for rls in [false, true] {
        let env = env(rls, 1).await;
        env.seed().await;
        tenant::scope(env.acme, async {
            let broken = post::Entity::find()
                .filter(Expr::cust("no_such_column = 1"))
                .all(&env.db);
            let (result, n) = pipelined(&env, broken).await;
            assert_eq!(n, 0, "rls: {rls}");
            let Err(tenant::Error::Db(err)) = result else {
                panic!("a database error: {result:?}");
            };
            assert!(
                matches!(
                    err,
                    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(_))
                ),
                "sqlx's error, as SeaORM reports it: {err:?}"
            );
        })
        .await;
    }
}

/// A column's type changes under statements prepared and cached on every connection (the
/// result type of `SELECT *` and of `.. RETURNING *` with it): every later read and write
/// succeeds, on the pipeline and on sqlx, in both modes.
async fn a_column_type_changed_under_cached_statements(rls: bool, pipelined: bool) {
    let env = if pipelined {
        env(rls, 1).await
    } else {
        let (app, raw, keep) = crate::connections().await;
        if rls {
            Env::new_rls(app, raw, Box::new(keep)).await
        } else {
            Env::new(app, raw, Box::new(keep)).await
        }
    };
    let s = env.seed().await;
    let work = |round: usize| {
        let env = &env;
        tenant::scope(env.acme, async move {
            let repo = TenantRepo::<post::Entity>::new(&env.db);
            let all = repo.all().await?;
            let one = repo.find_by_id(s.acme[0]).await?;
            let count = repo.count().await?;
            let added = repo
                .insert(crate::common::new_post(&format!("r{round}")))
                .await?;
            let updated = repo
                .update(post::ActiveModel {
                    id: Set(added.id),
                    title: Set(format!("round {round}")),
                    ..Default::default()
                })
                .await?;
            Ok::<_, tenant::Error>((all.len(), one.is_some(), count, updated.title))
        })
    };
    // Twice on each connection, so that every statement is prepared and cached.
    for round in 0..2 {
        work(round).await.unwrap();
    }
    env.plant(
        env.acme,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "ALTER TABLE post ALTER COLUMN title TYPE varchar(200)",
        ),
    )
    .await;
    for round in 2..6 {
        let before = env.pipeline.as_ref().map(tenant::Pipeline::statements);
        let (all, one, count, title) = work(round)
            .await
            .unwrap_or_else(|e| panic!("round {round} after the change: {e}"));
        // The two seeded posts and one per earlier round.
        assert_eq!((all, one, count), (round + 2, true, round as u64 + 2));
        assert_eq!(title, format!("round {round}"));
        if let (Some(pipeline), Some(before), 5) = (&env.pipeline, before, round) {
            // Prepared afresh: the last round's five statements ran on the pipeline again.
            assert_eq!(pipeline.statements() - before, 5, "round {round}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_type_changed_under_cached_statements_on_the_pipeline() {
    a_column_type_changed_under_cached_statements(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_type_changed_under_cached_statements_on_the_pipeline_in_rls_mode() {
    a_column_type_changed_under_cached_statements(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_type_changed_under_cached_statements_on_sqlx() {
    a_column_type_changed_under_cached_statements(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_type_changed_under_cached_statements_on_sqlx_in_rls_mode() {
    a_column_type_changed_under_cached_statements(true, false).await;
}
