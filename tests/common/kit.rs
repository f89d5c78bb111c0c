//! The testing kit (`tenant::testing`) on every handle: each tenant entity of the suite passes
//! `assert_isolated` (and, in RLS mode on the shared tables, `assert_rls_refuses`).

use sea_orm::ActiveValue::Set;
use tenant::testing::{TwoTenants, assert_isolated};
use uuid::Uuid;

use super::entities::{comment, post, post_tag, tag};
use super::{Env, new_post};

pub async fn the_testing_kit_finds_every_entity_isolated(env: &Env) {
    // The handle's own two tenants: on a tiered handle they are the ones its catalog places.
    let tenants = TwoTenants {
        a: env.acme,
        b: env.globex,
    };
    let db = &env.db;
    let fresh = || Uuid::new_v4().to_string();
    assert_isolated::<post::Entity, _, _>(db, &tenants, || async { new_post(&fresh()) }).await;
    assert_isolated::<comment::Entity, _, _>(db, &tenants, || async {
        let parent = db
            .repo::<post::Entity>()
            .insert(new_post(&fresh()))
            .await
            .unwrap();
        comment::ActiveModel {
            id: Set(Uuid::new_v4()),
            post_id: Set(parent.id),
            body: Set("kit".into()),
            ..Default::default()
        }
    })
    .await;
    assert_isolated::<tag::Entity, _, _>(db, &tenants, || async {
        tag::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(fresh()),
            ..Default::default()
        }
    })
    .await;
    // A junction: a composite key, every column a key.
    assert_isolated::<post_tag::Entity, _, _>(db, &tenants, || async {
        let post = db
            .repo::<post::Entity>()
            .insert(new_post(&fresh()))
            .await
            .unwrap();
        let tag = db
            .repo::<tag::Entity>()
            .insert(tag::ActiveModel {
                id: Set(Uuid::new_v4()),
                name: Set(fresh()),
                ..Default::default()
            })
            .await
            .unwrap();
        post_tag::ActiveModel {
            post_id: Set(post.id),
            tag_id: Set(tag.id),
            ..Default::default()
        }
    })
    .await;
    // RLS alone, on the shared tables: raw SQL as the application role, past the app layer.
    if env.rls && env.places.is_empty() {
        let app = env.db.unscoped(&tenant::AssertUnscoped::new(
            "the kit's raw queries as the application role",
        ));
        let rls = tenant::Rls::default();
        tenant::testing::assert_rls_refuses::<post::Entity>(app, &rls, &tenants).await;
        tenant::testing::assert_rls_refuses::<comment::Entity>(app, &rls, &tenants).await;
        tenant::testing::assert_rls_refuses::<post_tag::Entity>(app, &rls, &tenants).await;
    }
}
