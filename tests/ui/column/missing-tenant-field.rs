use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
#[sea_orm(table_name = "post")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub title: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

// Uses of the entity: the stubs emitted after the error keep them quiet.
async fn _use(db: &tenant::TenantDb, am: ActiveModel) -> tenant::Result<()> {
    let _rows = Entity::find().all(db).await?;
    let _repo = tenant::TenantRepo::<Entity>::new(db);
    let _row = am.insert(db).await?;
    Ok(())
}

fn main() {}
