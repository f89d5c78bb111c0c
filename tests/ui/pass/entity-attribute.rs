mod tag {
    use sea_orm::entity::prelude::*;

    #[tenant::entity]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "tag")]
    #[tenant(unique(name))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use tenant::{TenantDb, TenantRepo};

async fn _use(db: &TenantDb) -> tenant::Result<()> {
    let tags: Vec<tag::Model> = tag::Entity::find().all(db).await?;
    let _owners: Vec<uuid::Uuid> = tags.iter().map(|t| t.tenant_id).collect();
    let _repo = TenantRepo::<tag::Entity>::new(db);
    let _table = tenant::table::<tag::Entity>();
    Ok(())
}

fn main() {}
