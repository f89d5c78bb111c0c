use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
#[tenant::entity]
#[sea_orm(table_name = "tag")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
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
