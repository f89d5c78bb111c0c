//! The one tenant-scoped table, declared twice over the same columns: with the derive (what
//! `TenantRepo` and RLS mode use) and as plain SeaORM (the baseline, with hand-written filters).

/// `item`: uuid id, tenant, a short text, an integer, a timestamp; `(tenant_id, created_at)`
/// indexed for the page of newest rows.
pub(crate) mod item {
    #![allow(
        unreachable_pub,
        reason = "SeaORM's entity layout: `pub` items in a private module"
    )]
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "item")]
    #[tenant(index(created_at))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub label: String,
        pub qty: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The same table declared with a covering index in place of `index(created_at)`: `--covering`
/// creates its index (what the declaration makes) so that the page of newest rows is read from
/// the index alone.
pub(crate) mod covering {
    #![allow(
        unreachable_pub,
        reason = "SeaORM's entity layout: `pub` items in a private module"
    )]
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "item")]
    #[tenant(index(created_at, include(id, label, qty)))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub label: String,
        pub qty: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The same table as a plain SeaORM entity: what an application without this crate declares.
pub(crate) mod plain {
    #![allow(
        unreachable_pub,
        reason = "SeaORM's entity layout: `pub` items in a private module"
    )]
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub label: String,
        pub qty: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
