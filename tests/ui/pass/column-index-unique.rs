mod doc {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "doc")]
    #[tenant(column = owner, index(a, b), unique(a), unique(b, a))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub owner: Uuid,
        pub a: String,
        pub b: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use tenant::{TenantDb, TenantRepo, TenantScoped};

async fn _use(db: &TenantDb) -> tenant::Result<()> {
    let _docs: Vec<doc::Model> = doc::Entity::find().all(db).await?;
    let _repo = TenantRepo::<doc::Entity>::new(db);
    let _table = tenant::table::<doc::Entity>();
    let _column: doc::Column = <doc::Entity as TenantScoped>::TENANT_COLUMN;
    Ok(())
}

fn main() {}
