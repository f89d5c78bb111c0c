//! The derive's expansion under strict lints, so that `cargo clippy --all-targets -- -D warnings`
//! checks the code it generates in a user's crate (thiserror `tests/test_lints.rs`).

#![deny(unused_qualifications, clippy::pedantic, clippy::allow_attributes)]

/// A tenant-scoped entity with every container key.
pub mod post {
    use sea_orm::entity::prelude::*;

    /// A post: one row per tenant and slug.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    #[tenant(unique(slug), index(title, views))]
    pub struct Model {
        /// The primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The owning tenant.
        pub tenant_id: Uuid,
        /// Unique within a tenant.
        pub slug: String,
        /// Indexed with `views`.
        pub title: String,
        /// How often it was read.
        pub views: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A tenant-scoped entity whose tenant column `#[tenant::entity]` adds.
pub mod tag {
    use sea_orm::entity::prelude::*;

    /// A tag.
    #[tenant::entity]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "tag")]
    pub struct Model {
        /// The primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The tag's name.
        pub name: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A table shared by every tenant.
pub mod plan {
    use sea_orm::entity::prelude::*;

    /// A plan.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "plan")]
    #[tenant(global)]
    pub struct Model {
        /// The primary key.
        #[sea_orm(primary_key)]
        pub id: i32,
        /// Unique across tenants.
        #[sea_orm(unique)]
        pub name: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[test]
fn declared_entities_have_tables() {
    let tables = [
        tenant::table::<post::Entity>(),
        tenant::table::<tag::Entity>(),
        tenant::table::<plan::Entity>(),
    ];
    assert_eq!(tables.len(), 3);
}
