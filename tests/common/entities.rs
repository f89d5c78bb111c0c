//! The entities the integration tests share: posts with comments (one-to-many), tags
//! (many-to-many through a junction), and a global table.

pub mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    #[tenant(unique(slug), index(title), index(views, include(title)))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub slug: String,
        pub title: String,
        pub views: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::comment::Entity")]
        Comment,
    }

    impl Related<super::comment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Comment.def()
        }
    }

    impl Related<super::tag::Entity> for Entity {
        fn to() -> RelationDef {
            super::post_tag::Relation::Tag.def()
        }

        fn via() -> Option<RelationDef> {
            Some(super::post_tag::Relation::Post.def().rev())
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod comment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "comment")]
    #[tenant(index(post_id))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub post_id: Uuid,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id"
        )]
        Post,
    }

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tag {
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

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            super::post_tag::Relation::Post.def()
        }

        fn via() -> Option<RelationDef> {
            Some(super::post_tag::Relation::Tag.def().rev())
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod post_tag {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post_tag")]
    #[expect(
        clippy::struct_field_names,
        reason = "a junction: every column is a key"
    )]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub post_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tag_id: Uuid,
        pub tenant_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id"
        )]
        Post,
        #[sea_orm(
            belongs_to = "super::tag::Entity",
            from = "Column::TagId",
            to = "super::tag::Column::Id"
        )]
        Tag,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "plan")]
    #[tenant(global)]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every table, parents first.
pub fn tables() -> Vec<tenant::Table> {
    vec![
        tenant::table::<plan::Entity>(),
        tenant::table::<post::Entity>(),
        tenant::table::<comment::Entity>(),
        tenant::table::<tag::Entity>(),
        tenant::table::<post_tag::Entity>(),
    ]
}
