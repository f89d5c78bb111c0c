//! Sample entities for the documentation's examples.

/// A tenant-scoped blog post.
pub mod post {
    use sea_orm::entity::prelude::*;

    /// A post: one row per tenant and slug.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    #[tenant(unique(slug))]
    pub struct Model {
        /// The primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The owning tenant.
        pub tenant_id: Uuid,
        /// Unique within a tenant.
        pub slug: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A global table: one row per plan, shared by every tenant.
pub mod plan {
    use sea_orm::entity::prelude::*;

    /// A plan every tenant may subscribe to.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "plan")]
    #[tenant(global)]
    pub struct Model {
        /// The primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// Its name.
        pub name: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
