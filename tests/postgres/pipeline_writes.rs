//! Writes on the pipelined executor: scoped and stamped as on sqlx in both modes; a write
//! PostgreSQL refuses reports SeaORM's error; SeaORM hooks keep their semantics (a hook that uses
//! the database runs in the write's own tenant-bound unit); a write cancelled while its
//! transaction is open leaves nothing behind.
#![expect(
    clippy::disallowed_methods,
    reason = "the tests read rows behind the library's back to see what was really written"
)]

use std::time::Duration;

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, SqlErr};
use tenant::{Error, TenantRepo};
use uuid::Uuid;

use crate::common::entities::post;
use crate::common::{Env, new_post};
use crate::pipeline::{create_table, env, pipelined};

async fn every_write_takes_the_pipeline_and_stays_in_its_tenant(rls: bool) {
    let env = env(rls, 1).await;
    let s = env.seed().await;
    let acme = *env.acme.as_uuid();
    tenant::scope(env.acme, async {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        let (new, n) = pipelined(&env, repo.insert(new_post("new"))).await;
        let new = new.unwrap();
        assert_eq!(
            (new.tenant_id, new.title.as_str(), n),
            (acme, "Title new", 1)
        );
        let (newer, n) = pipelined(&env, new_post("newer").insert(&env.db)).await;
        let newer = newer.unwrap();
        assert_eq!((newer.tenant_id, n), (acme, 1), "ActiveModel::insert");

        // Another tenant's id in the row: refused before anything runs.
        let mut foreign = new_post("foreign");
        foreign.tenant_id = Set(*env.globex.as_uuid());
        let (err, n) = pipelined(&env, repo.insert(foreign)).await;
        assert!(matches!(err, Err(Error::CrossTenant { .. })), "{err:?}");
        assert_eq!(n, 0);

        // Updates: its own row, and another tenant's by key (no row comes back: NotFound).
        let own = post::ActiveModel {
            id: Set(s.acme[0]),
            title: Set("edited".into()),
            ..Default::default()
        };
        let (row, n) = pipelined(&env, repo.update(own)).await;
        let row = row.unwrap();
        assert_eq!(
            (row.title.as_str(), row.slug.as_str(), n),
            ("edited", "hello", 1)
        );
        let theirs = post::ActiveModel {
            id: Set(s.globex[0]),
            title: Set("hijacked".into()),
            ..Default::default()
        };
        let (err, n) = pipelined(&env, theirs.clone().update(&env.db)).await;
        assert!(matches!(err, Err(Error::NotFound { .. })), "{err:?}");
        assert_eq!(n, 1);
        let (err, n) = pipelined(&env, theirs.save(&env.db)).await;
        assert!(matches!(err, Err(Error::NotFound { .. })), "{err:?}");
        assert_eq!(n, 1, "save with a key: an update");

        upserts_and_many_row_writes_take_the_pipeline(&env, &repo, &s).await;

        // Deletes: by model and by key, its own and another tenant's.
        let (gone, n) = pipelined(&env, new.delete(&env.db)).await;
        assert_eq!((gone.is_ok(), n), (true, 1), "Model::delete");
        let theirs = env.raw_post(s.globex[1]).await;
        let (err, n) = pipelined(&env, theirs.into_active_model().delete(&env.db)).await;
        assert!(matches!(err, Err(Error::NotFound { .. })), "{err:?}");
        assert_eq!(n, 1);
        let (gone, n) = pipelined(&env, repo.delete_by_id(newer.id)).await;
        assert_eq!((gone.is_ok(), n), (true, 1), "delete_by_id");
        let (err, n) = pipelined(&env, post::Entity::delete_by_id(s.globex[0]).exec(&env.db)).await;
        assert!(matches!(err, Err(Error::NotFound { .. })), "{err:?}");
        assert_eq!(n, 1);
    })
    .await;
    let globex = env.raw_post(s.globex[0]).await;
    assert_eq!(
        (globex.title.as_str(), globex.tenant_id),
        ("Title hello", *env.globex.as_uuid())
    );
    assert_eq!(env.raw_post(s.globex[1]).await.views, 0, "globex's `world`");
    assert_eq!(env.raw_posts().await, 4, "the seeded two of each tenant");
    if rls {
        crate::attacks::assert_no_binding_on_pipeline(env.pipeline.as_ref().unwrap()).await;
    }
}

/// Upserts, and writes of many rows, as `every_write_takes_the_pipeline_and_stays_in_its_tenant`
/// makes them: one statement each on the pipeline, in the tenant.
async fn upserts_and_many_row_writes_take_the_pipeline(
    env: &Env,
    repo: &TenantRepo<post::Entity>,
    s: &crate::common::Seeded,
) {
    let acme = *env.acme.as_uuid();
    // Upserts: a new row, the tenant's own row, and another tenant's key (left alone).
    let (row, n) = pipelined(env, repo.upsert(new_post("upserted"))).await;
    assert_eq!((row.unwrap().tenant_id, n), (acme, 1), "upsert inserts");
    let mut own = new_post("hello");
    own.id = Set(s.acme[0]);
    own.title = Set("upserted".into());
    let (row, n) = pipelined(env, repo.upsert(own)).await;
    let row = row.unwrap();
    assert_eq!((row.id, row.title.as_str(), n), (s.acme[0], "upserted", 1));
    let mut theirs = new_post("hello");
    theirs.id = Set(s.globex[0]);
    let (err, n) = pipelined(env, repo.upsert(theirs)).await;
    assert!(matches!(err, Err(Error::NotFound { .. })), "{err:?}");
    assert_eq!(n, 1);
    let (row, n) = pipelined(
        env,
        repo.upsert_on(new_post("upserted"), [post::Column::Slug]),
    )
    .await;
    assert_eq!(
        (row.unwrap().slug.as_str(), n),
        ("upserted", 1),
        "upsert_on"
    );
    repo.delete_many(post::Column::Slug.eq("upserted"))
        .await
        .unwrap();

    // Many rows at once: `world` is in both tenants, one of them the tenant's.
    let views = post::Entity::update_many()
        .col_expr(post::Column::Views, sea_orm::sea_query::Expr::value(5))
        .filter(post::Column::Slug.eq("world"));
    let (rows, n) = pipelined(env, views.exec(&env.db)).await;
    assert_eq!((rows.unwrap(), n), (1, 1), "update_many");
    // Nothing to set: SeaORM's no-op, no statement anywhere.
    let (rows, n) = pipelined(env, post::Entity::update_many().exec(&env.db)).await;
    assert_eq!((rows.unwrap(), n), (0, 0));
    let many = post::Entity::insert_many([new_post("doomed"), new_post("doomed too")]);
    let (rows, n) = pipelined(env, many.exec(&env.db)).await;
    let rows = rows.unwrap();
    assert_eq!(n, 1, "insert_many");
    assert_eq!(
        rows.iter()
            .map(|r| (r.slug.as_str(), r.tenant_id))
            .collect::<Vec<_>>(),
        [("doomed", acme), ("doomed too", acme)],
        "stamped, in order"
    );
    let doomed = post::Entity::delete_many().filter(post::Column::Slug.starts_with("doomed"));
    let (rows, n) = pipelined(env, doomed.exec(&env.db)).await;
    assert_eq!((rows.unwrap(), n), (2, 1), "delete_many");
    let (rows, n) = pipelined(
        env,
        post::Entity::delete_many()
            .filter(post::Column::Id.is_in([s.globex[0], s.globex[1]]))
            .exec(&env.db),
    )
    .await;
    assert_eq!((rows.unwrap(), n), (0, 1), "another tenant's rows by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_takes_the_pipeline_and_stays_in_its_tenant_app_level() {
    every_write_takes_the_pipeline_and_stays_in_its_tenant(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_takes_the_pipeline_and_stays_in_its_tenant_under_rls() {
    every_write_takes_the_pipeline_and_stays_in_its_tenant(true).await;
}

/// A statement PostgreSQL refuses runs again on sqlx, so the error is SeaORM's, with its
/// `sql_err()`, as without the pipeline; and the pipelined connection is left clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pipelined_write_reports_seaorms_error() {
    for rls in [false, true] {
        let env = env(rls, 1).await;
        let s = env.seed().await;
        tenant::scope(env.acme, async {
            let mut twin = new_post("twin");
            twin.id = Set(s.acme[0]);
            let (err, n) = pipelined(&env, twin.insert(&env.db)).await;
            assert_unique_violation(err, n, "a duplicate key");
            // The per-tenant unique `(tenant_id, slug)`, on an update.
            let clash = post::ActiveModel {
                id: Set(s.acme[1]),
                slug: Set("hello".into()),
                ..Default::default()
            };
            let (err, n) = pipelined(&env, clash.update(&env.db)).await;
            assert_unique_violation(err, n, "a duplicate slug");
            // A delete the foreign keys refuse (the seeded post has a comment).
            let (err, n) =
                pipelined(&env, post::Entity::delete_by_id(s.acme[0]).exec(&env.db)).await;
            assert_foreign_key_violation(err, n);
            // The same refusals of many-row writes.
            let many = post::Entity::insert_many([new_post("fresh"), new_post("hello")]);
            let (err, n) = pipelined(&env, many.exec(&env.db)).await;
            assert_unique_violation(err, n, "insert_many");
            let clash = post::Entity::update_many()
                .col_expr(post::Column::Slug, sea_orm::sea_query::Expr::value("hello"))
                .filter(post::Column::Slug.eq("world"));
            let (err, n) = pipelined(&env, clash.exec(&env.db)).await;
            assert_unique_violation(err, n, "update_many");
            let referenced = post::Entity::delete_many().filter(post::Column::Id.eq(s.acme[0]));
            let (err, n) = pipelined(&env, referenced.exec(&env.db)).await;
            assert_foreign_key_violation(err, n);
            // And the connection serves the next write.
            let (row, n) = pipelined(&env, new_post("after").insert(&env.db)).await;
            assert_eq!((row.is_ok(), n), (true, 1));
        })
        .await;
        if rls {
            crate::attacks::assert_no_binding_on_pipeline(env.pipeline.as_ref().unwrap()).await;
        }
    }
}

/// `result` is SeaORM's unique violation, after one statement tried on the pipeline.
fn assert_unique_violation<T: std::fmt::Debug>(result: Result<T, Error>, n: u64, what: &str) {
    let Err(Error::Db(err)) = result else {
        panic!("{what}: a database error, not {result:?}");
    };
    assert!(
        matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        "{what}: {err:?}"
    );
    assert_eq!(n, 1, "{what}: tried on the pipeline first");
}

/// `result` is SeaORM's foreign key violation, after one statement tried on the pipeline.
fn assert_foreign_key_violation<T: std::fmt::Debug>(result: Result<T, Error>, n: u64) {
    let Err(Error::Db(err)) = result else {
        panic!("a referenced row is a database error, not {result:?}");
    };
    assert!(
        matches!(
            err.sql_err(),
            Some(SqlErr::ForeignKeyConstraintViolation(_))
        ),
        "{err:?}"
    );
    assert_eq!(n, 1, "tried on the pipeline first");
}

/// RLS mode: a `COMMIT` PostgreSQL refuses (here a deferred unique constraint) rolled the write
/// back; the write runs again on sqlx, which reports the refusal, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_leaves_nothing_written() {
    use sea_orm::ConnectionTrait;

    let env = env(true, 1).await;
    create_table::<hooked::Entity>(&env).await;
    env.raw
        .execute_unprepared(
            "ALTER TABLE hooked ADD CONSTRAINT hooked_note_once UNIQUE (tenant_id, note) \
             DEFERRABLE INITIALLY DEFERRED",
        )
        .await
        .unwrap();
    let row = || hooked::ActiveModel {
        id: Set(Uuid::new_v4()),
        note: Set("once".into()),
        ..Default::default()
    };
    tenant::scope(env.acme, async {
        let (first, n) = pipelined(&env, row().insert(&env.db)).await;
        assert_eq!((first.is_ok(), n), (true, 1));
        let (second, n) = pipelined(&env, row().insert(&env.db)).await;
        assert!(matches!(second, Err(Error::Db(_))), "{second:?}");
        assert_eq!(n, 1, "tried on the pipeline first");
    })
    .await;
    let rows = <hooked::Entity as EntityTrait>::find()
        .all(&env.raw)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the second insert is not written");
    crate::attacks::assert_no_binding_on_pipeline(env.pipeline.as_ref().unwrap()).await;
}

/// An entity with SeaORM hooks, each of which does what the row's `note` says.
#[allow(
    unreachable_pub,
    reason = "entity modules are public by SeaORM's convention"
)]
pub(crate) mod hooked {

    use sea_orm::entity::prelude::*;
    use sea_orm::{ActiveValue::Set, DbBackend, Statement};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "hooked")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub note: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    /// The tenant the hook's connection is bound to (empty when none).
    async fn bound<C: ConnectionTrait>(db: &C) -> Result<String, DbErr> {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT coalesce(current_setting('app.tenant_id', true), '') AS bound",
            ))
            .await?
            .expect("one row");
        row.try_get("", "bound")
    }

    #[async_trait::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        async fn before_save<C: ConnectionTrait>(
            mut self,
            db: &C,
            _insert: bool,
        ) -> Result<Self, DbErr> {
            if let sea_orm::ActiveValue::Set(note) = &self.note
                && note == "before uses the database"
            {
                self.note = Set(format!("before saw {}", bound(db).await?));
            }
            Ok(self)
        }

        async fn after_save<C: ConnectionTrait>(
            mut model: Model,
            db: &C,
            _insert: bool,
        ) -> Result<Model, DbErr> {
            match model.note.as_str() {
                "after uses the database" => {
                    model.note = format!("after saw {}", bound(db).await?);
                }
                "after fails" => return Err(DbErr::Custom("after_save says no".into())),
                "after hangs" => std::future::pending::<()>().await,
                _ => {}
            }
            Ok(model)
        }
    }
}

async fn hooks_keep_their_semantics(rls: bool) {
    let env = env(rls, 1).await;
    create_table::<hooked::Entity>(&env).await;
    let acme = env.acme.to_string();
    // What a hook that asks sees: the bound tenant in RLS mode, none in app-level mode.
    let seen = if rls { acme.as_str() } else { "" };
    let raw = &env.raw;
    let stored = |id: Uuid| async move {
        <hooked::Entity as EntityTrait>::find_by_id(id)
            .one(raw)
            .await
            .unwrap()
    };
    let row = |note: &str| hooked::ActiveModel {
        id: Set(Uuid::new_v4()),
        note: Set(note.to_owned()),
        ..Default::default()
    };
    tenant::scope(env.acme, async {
        // Hooks that do not touch the database: the pipeline, one statement.
        let (model, n) = pipelined(&env, row("plain").insert(&env.db)).await;
        let model = model.unwrap();
        assert_eq!((model.note.as_str(), n), ("plain", 1));
        assert_eq!(stored(model.id).await.unwrap().note, "plain");

        // `before_save` uses the database: it runs in the write's own unit (bound to the
        // tenant in RLS mode), and so does the write, on sqlx.
        let (model, n) = pipelined(&env, row("before uses the database").insert(&env.db)).await;
        let model = model.unwrap();
        assert_eq!(model.note, format!("before saw {seen}"));
        // App-level mode: the hook ran on the pool, the statement on the pipeline.
        assert_eq!(n, u64::from(!rls), "rls: {rls}");
        assert_eq!(stored(model.id).await.unwrap().note, model.note);

        // `after_save` uses the database. It runs once the pipelined insert has committed, as
        // SeaORM's does on a pool: on the pool in app-level mode, in a unit of its own bound to
        // the tenant in RLS mode.
        let (model, n) = pipelined(&env, row("after uses the database").insert(&env.db)).await;
        let model = model.unwrap();
        assert_eq!(model.note, format!("after saw {seen}"));
        assert_eq!(n, 1);
        assert_eq!(
            stored(model.id).await.unwrap().note,
            "after uses the database",
            "stored once, as the insert wrote it"
        );
        let all = <hooked::Entity as EntityTrait>::find()
            .all(&env.raw)
            .await
            .unwrap();
        assert_eq!(all.len(), 3, "no row twice");

        // `after_save` fails: its error is returned, and the insert, committed before the hook
        // ran, stands in both modes, as SeaORM's on a pool does.
        let failing = row("after fails");
        let id = match &failing.id {
            sea_orm::ActiveValue::Set(id) => *id,
            _ => unreachable!(),
        };
        let (err, n) = pipelined(&env, failing.insert(&env.db)).await;
        let err = format!("{:?}", err.unwrap_err());
        assert!(err.contains("after_save says no"), "{err}");
        assert_eq!(n, 1);
        assert!(stored(id).await.is_some(), "rls: {rls}");

        // The same for updates and deletes.
        let edit = hooked::ActiveModel {
            id: Set(model.id),
            note: Set("after uses the database".into()),
            ..Default::default()
        };
        let (edited, n) = pipelined(&env, edit.update(&env.db)).await;
        assert_eq!((edited.unwrap().note, n), (format!("after saw {seen}"), 1));
        let (gone, n) = pipelined(&env, hooked::Entity::delete_by_id(model.id).exec(&env.db)).await;
        assert_eq!((gone.is_ok(), n), (true, 1));
        assert!(stored(model.id).await.is_none());
    })
    .await;
    if rls {
        crate::attacks::assert_no_binding_on_pipeline(env.pipeline.as_ref().unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_keep_their_semantics_app_level() {
    hooks_keep_their_semantics(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_keep_their_semantics_under_rls() {
    hooks_keep_their_semantics(true).await;
}

/// RLS mode: a write dropped while its `after_save` hook runs has committed (the hook runs once
/// the write has, as SeaORM's does on a pool) and leaves its pipelined connection unbound and
/// outside any transaction. The hook never returns, so the write is dropped inside it whatever
/// the machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_dropped_in_its_after_save_hook_has_committed_and_leaves_nothing_open() {
    let env: Env = env(true, 1).await;
    create_table::<hooked::Entity>(&env).await;
    env.seed().await;
    let pipeline = env.pipeline.as_ref().unwrap();
    for round in 0..5 {
        let id = Uuid::new_v4();
        let hanging = hooked::ActiveModel {
            id: Set(id),
            note: Set("after hangs".into()),
            ..Default::default()
        };
        let before = pipeline.statements();
        let mut write = Box::pin(tenant::scope(env.acme, hanging.insert(&env.db)));
        // Polled until the insert is stored: from then on the hook is running.
        loop {
            let polled = tokio::time::timeout(Duration::from_millis(10), &mut write).await;
            assert!(polled.is_err(), "round {round}: the hook never returns");
            let stored = <hooked::Entity as EntityTrait>::find_by_id(id)
                .one(&env.raw)
                .await
                .unwrap();
            if stored.is_some() {
                break;
            }
        }
        drop(write);
        assert_eq!(
            pipeline.statements(),
            before + 1,
            "round {round}: pipelined"
        );
        // The next statement on the pipeline is outside any transaction, unbound.
        crate::attacks::assert_no_binding_on_pipeline(pipeline).await;
        let (rows, n) = pipelined(
            &env,
            tenant::scope(env.globex, post::Entity::find().all(&env.db)),
        )
        .await;
        let rows = rows.unwrap();
        assert_eq!(n, 1);
        assert!(rows.iter().all(|p| p.tenant_id == *env.globex.as_uuid()));
        assert_eq!(rows.len(), 2, "round {round}");
    }
}

/// RLS mode on sqlx (no pipeline): the same hook semantics. Outside a `TenantTxn` the write
/// commits before `after_save` runs, and a hook that uses the database gets a unit of its own
/// bound to the tenant; inside a `TenantTxn` the hook runs in it, and the caller's rollback takes
/// the write back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_save_on_sqlx_under_rls_runs_once_the_write_committed() {
    let (app, raw, keep) = crate::connections().await;
    let env = Env::new_rls(app, raw, Box::new(keep)).await;
    create_table::<hooked::Entity>(&env).await;
    let acme = env.acme.to_string();
    let stored = |id: Uuid| {
        let raw = env.raw.clone();
        async move {
            <hooked::Entity as EntityTrait>::find_by_id(id)
                .one(&raw)
                .await
                .unwrap()
        }
    };
    let row = |note: &str| {
        let id = Uuid::new_v4();
        let am = hooked::ActiveModel {
            id: Set(id),
            note: Set(note.to_owned()),
            ..Default::default()
        };
        (id, am)
    };
    tenant::scope(env.acme, async {
        let (id, am) = row("before uses the database");
        let model = am.insert(&env.db).await.unwrap();
        assert_eq!(model.note, format!("before saw {acme}"));
        assert_eq!(stored(id).await.unwrap().note, model.note);

        let (id, am) = row("after uses the database");
        let model = am.insert(&env.db).await.unwrap();
        assert_eq!(model.note, format!("after saw {acme}"));
        assert_eq!(stored(id).await.unwrap().note, "after uses the database");

        let (id, am) = row("after fails");
        let err = am.insert(&env.db).await.unwrap_err();
        assert!(format!("{err:?}").contains("after_save says no"), "{err:?}");
        assert!(stored(id).await.is_some(), "committed before the hook ran");

        let txn = env.db.begin().await.unwrap();
        let (id, am) = row("after fails");
        let err = am.insert(&txn).await.unwrap_err();
        assert!(format!("{err:?}").contains("after_save says no"), "{err:?}");
        txn.rollback().await.unwrap();
        assert!(
            stored(id).await.is_none(),
            "in a transaction, the caller decides"
        );
    })
    .await;
}
