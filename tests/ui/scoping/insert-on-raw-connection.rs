mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub tenant_id: Uuid,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use sea_orm::Set;

async fn _create(raw_conn: &sea_orm::DatabaseConnection) {
    let am = post::ActiveModel {
        title: Set("hello".to_owned()),
        ..Default::default()
    };
    let _ = am.insert(raw_conn).await;
}

fn main() {}
