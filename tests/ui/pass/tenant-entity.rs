mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use sea_orm::{ColumnTrait, QueryFilter, Set};
use tenant::{TenantDb, TenantRepo};

async fn _use(db: &TenantDb) -> tenant::Result<()> {
    let _all: Vec<post::Model> = post::Entity::find()
        .filter(post::Column::Title.contains("rust"))
        .all(db)
        .await?;
    let _one = post::Entity::find_by_id(uuid::Uuid::nil()).one(db).await?;
    let am = post::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        title: Set("hello".to_owned()),
        ..Default::default()
    };
    let created = am.insert(db).await?;
    created.delete(db).await?;
    let repo = TenantRepo::<post::Entity>::new(db);
    let _n = repo.count().await?;
    let _table = tenant::table::<post::Entity>();
    Ok(())
}

fn main() {}
