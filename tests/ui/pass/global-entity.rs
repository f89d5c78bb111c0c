mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "plan")]
    #[tenant(global)]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        #[sea_orm(unique)]
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use tenant::TenantDb;

async fn _use(db: &TenantDb) -> tenant::Result<()> {
    let _plans: Vec<plan::Model> = plan::Entity::find().all(db).await?;
    let _free = plan::Entity::find_by_id(1).one(db).await?;
    let _table = tenant::table::<plan::Entity>();
    Ok(())
}

fn main() {}
