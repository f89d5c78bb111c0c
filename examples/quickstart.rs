//! Two tenants on SQLite: the same query returns different rows, and a cross-tenant delete is
//! refused. Run with `cargo run --example quickstart --features sqlite`.

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, Set};
use tenant::{AssertUnscoped, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

mod post {
    #![allow(
        unreachable_pub,
        reason = "SeaORM's entity layout: `pub` items in a private module"
    )]
    use sea_orm::entity::prelude::*;

    /// A blog post; `#[tenant::entity]` adds the `tenant_id` column.
    #[tenant::entity]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    #[tenant(unique(slug))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub slug: String,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn post(slug: &str, title: &str) -> post::ActiveModel {
    post::ActiveModel {
        id: Set(Uuid::new_v4()),
        slug: Set(slug.to_owned()),
        title: Set(title.to_owned()),
        ..Default::default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = TenantDb::connect("sqlite::memory:").await?;
    // Creating the tables is the one thing here that needs the raw connection.
    let raw = db.unscoped(&AssertUnscoped::new("create the tables"));
    tenant::create_schema(raw, &[tenant::table::<post::Entity>()]).await?;

    let acme = TenantId::from(Uuid::from_u128(0x00ac_eace));
    let globex = TenantId::from(Uuid::from_u128(0x0061_0be5));

    // The same slugs in both tenants: the per-tenant unique is `(tenant_id, slug)`.
    for (t, titles) in [
        (acme, ["Acme launches", "Acme hires"]),
        (globex, ["Globex launches", "Globex hires"]),
    ] {
        tenant::scope(t, async {
            let posts = TenantRepo::<post::Entity>::new(&db);
            posts.insert(post("launch", titles[0])).await?;
            posts.insert(post("hiring", titles[1])).await?;
            Ok::<_, tenant::Error>(())
        })
        .await?;
    }

    let mut globex_launch = None;
    for (name, t) in [("acme", acme), ("globex", globex)] {
        let rows = tenant::scope(t, async {
            post::Entity::find()
                .filter(post::Column::Slug.eq("launch"))
                .order_by_asc(post::Column::Title)
                .all(&db)
                .await
        })
        .await?;
        for row in &rows {
            println!("{name:>6} sees: {} ({})", row.title, row.slug);
        }
        if name == "globex" {
            globex_launch = rows.first().map(|r| r.id);
        }
    }

    let target = globex_launch.expect("globex has a launch post");
    let refused = tenant::scope(
        acme,
        TenantRepo::<post::Entity>::new(&db).delete_by_id(target),
    )
    .await;
    println!(
        "acme deletes globex's post: {}",
        match &refused {
            Err(e) => format!("refused ({e})"),
            Ok(()) => "DELETED (this must never happen)".to_owned(),
        }
    );
    assert!(matches!(refused, Err(tenant::Error::NotFound { .. })));

    let still_there = tenant::scope(globex, post::Entity::find_by_id(target).one(&db)).await?;
    println!("globex's post is still there: {}", still_there.is_some());

    let unscoped = post::Entity::find().all(&db).await;
    println!(
        "a query with no tenant in scope: {}",
        match &unscoped {
            Err(e) => format!("refused ({e})"),
            Ok(rows) => format!("{} rows (this must never happen)", rows.len()),
        }
    );
    assert!(unscoped.is_err());
    Ok(())
}
