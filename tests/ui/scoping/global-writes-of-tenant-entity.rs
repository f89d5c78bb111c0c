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

async fn _write(db: &tenant::TenantDb, am: post::ActiveModel) -> tenant::Result<()> {
    let writes = db.global_writes(&tenant::AssertGlobal::new("pricing page"));
    writes.insert(am).await?;
    Ok(())
}

fn main() {}
