//! The tenant catalog: a handle with a catalog runs a tenant's operations only while its entry
//! is active, and refuses every other tenant before any SQL.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::{Error, SystemScope, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

use super::entities::{plan, post};
use super::{Env, new_post};

/// Every kind of operation as `tenant` on `db`, each expected to fail with what `refused` accepts.
async fn all_refused(db: &TenantDb, tenant: TenantId, id: Uuid, refused: impl Fn(&Error) -> bool) {
    let repo = TenantRepo::<post::Entity>::new(db);
    let results = tenant::scope(tenant, async {
        vec![
            ("read", post::Entity::find().all(db).await.map(drop)),
            ("count", post::Entity::find().count(db).await.map(drop)),
            ("find_by_id", repo.find_by_id(id).await.map(drop)),
            ("insert", repo.insert(new_post("refused")).await.map(drop)),
            ("delete", repo.delete_by_id(id).await.map(drop)),
            ("begin", db.begin().await.map(drop)),
        ]
    })
    .await;
    for (what, result) in results {
        match result {
            Err(err) if refused(&err) => {}
            other => panic!("{what} as {tenant}: {other:?}"),
        }
    }
}

pub async fn the_catalog_admits_active_tenants_only(env: &Env) {
    let s = env.seed().await;
    // Cached for an hour: what this catalog has read stands until it is invalidated.
    let catalog = Catalog::with_max_staleness(env.raw.clone(), Duration::from_hours(1));
    catalog.create_table().await.unwrap();
    catalog
        .register(NewTenant::shared(env.acme, "acme").status(TenantStatus::Active))
        .await
        .unwrap();
    let globex = catalog
        .register(NewTenant::shared(env.globex, "globex").region("eu"))
        .await
        .unwrap();
    assert_eq!(globex.status, TenantStatus::Provisioning);
    let db = env.db.clone().with_catalog(catalog.clone());
    let pipelined = || env.pipeline.as_ref().map(tenant::Pipeline::statements);

    let mine = tenant::scope(env.acme, post::Entity::find().all(&db))
        .await
        .unwrap();
    assert_eq!(mine.len(), 2, "an active tenant's operations run");

    // Provisioning: refused, and nothing reached the pipeline either.
    let before = pipelined();
    all_refused(&db, env.globex, s.globex[0], |e| {
        matches!(e, Error::TenantUnavailable { tenant, status: TenantStatus::Provisioning } if *tenant == env.globex)
    })
    .await;
    assert_eq!(pipelined(), before);

    // Activated through the same catalog: admitted at once.
    catalog
        .set_status(env.globex, TenantStatus::Active)
        .await
        .unwrap();
    let theirs = tenant::scope(env.globex, post::Entity::find().count(&db))
        .await
        .unwrap();
    assert_eq!(theirs, 2);

    // Suspended elsewhere: this catalog uses its cached entry until told, then refuses.
    let uncached = Catalog::with_max_staleness(env.raw.clone(), Duration::ZERO);
    uncached
        .set_status(env.acme, TenantStatus::Suspended)
        .await
        .unwrap();
    let cached = tenant::scope(env.acme, post::Entity::find().count(&db)).await;
    assert_eq!(cached.unwrap(), 2, "within the staleness bound");
    catalog.invalidate(env.acme);
    all_refused(
        &db,
        env.acme,
        s.acme[0],
        |e| matches!(e, Error::TenantSuspended { tenant } if *tenant == env.acme),
    )
    .await;

    a_catalog_that_never_caches_sees_every_change(env, &s, &catalog).await;
}

/// The rest of the statuses, unknown tenants, what the catalog leaves alone, and the listing.
async fn a_catalog_that_never_caches_sees_every_change(
    env: &Env,
    s: &super::Seeded,
    catalog: &Catalog,
) {
    let uncached = Catalog::with_max_staleness(env.raw.clone(), Duration::ZERO);
    let db_uncached = env.db.clone().with_catalog(uncached.clone());
    uncached
        .set_status(env.acme, TenantStatus::Moving)
        .await
        .unwrap();
    all_refused(&db_uncached, env.acme, s.acme[0], |e| {
        matches!(
            e,
            Error::TenantUnavailable {
                status: TenantStatus::Moving,
                ..
            }
        )
    })
    .await;
    uncached
        .set_status(env.acme, TenantStatus::Offboarded)
        .await
        .unwrap();
    all_refused(
        &db_uncached,
        env.acme,
        s.acme[0],
        |e| matches!(e, Error::TenantOffboarded { tenant } if *tenant == env.acme),
    )
    .await;
    let stranger = TenantId::from(Uuid::from_u128(0x5757_5757));
    all_refused(
        &db_uncached,
        stranger,
        s.acme[0],
        |e| matches!(e, Error::UnknownTenant { tenant } if *tenant == stranger),
    )
    .await;
    assert!(matches!(
        uncached.set_status(stranger, TenantStatus::Active).await,
        Err(Error::UnknownTenant { .. })
    ));

    // System scopes and global tables act for no tenant: the catalog does not stand in their way.
    let all = SystemScope::assert("test: count every tenant's posts")
        .run(post::Entity::find().count(&db_uncached))
        .await
        .unwrap();
    assert_eq!(all, 4);
    tenant::scope(env.acme, plan::Entity::find().all(&db_uncached))
        .await
        .unwrap();

    // Refused before any SQL: with the table gone, an offboarded tenant still gets the
    // catalog's answer, while an active one reaches the database and its error.
    env.raw
        .execute_unprepared("ALTER TABLE post RENAME TO post_gone")
        .await
        .unwrap();
    let offboarded = tenant::scope(env.acme, post::Entity::find().all(&db_uncached)).await;
    assert!(
        matches!(offboarded, Err(Error::TenantOffboarded { .. })),
        "{offboarded:?}"
    );
    let active = tenant::scope(env.globex, post::Entity::find().all(&db_uncached)).await;
    assert!(matches!(active, Err(Error::Db(_))), "{active:?}");
    env.raw
        .execute_unprepared("ALTER TABLE post_gone RENAME TO post")
        .await
        .unwrap();

    let slugs = |records: Vec<tenant::catalog::TenantRecord>| {
        records.into_iter().map(|r| r.slug).collect::<Vec<_>>()
    };
    assert_eq!(slugs(catalog.list(None).await.unwrap()), ["acme", "globex"]);
    assert_eq!(
        slugs(catalog.list(Some(TenantStatus::Active)).await.unwrap()),
        ["globex"]
    );
    let entry = catalog.get(env.globex).await.unwrap().unwrap();
    assert_eq!(
        (entry.tier, entry.region.as_deref(), entry.schema_generation),
        (tenant::catalog::Tier::Shared, Some("eu"), 0)
    );
    // A taken slug is the database's unique violation.
    let taken = catalog.register(NewTenant::shared(stranger, "acme")).await;
    let Err(Error::Db(err)) = taken else {
        panic!("a second `acme`: {taken:?}");
    };
    assert!(
        matches!(
            err.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{err:?}"
    );
}
