//! The catalog's table, `tenant_catalog`, as a SeaORM entity: one row per tenant.
//!
//! Usable from `sea-orm-migration` like any entity (`Schema::create_table_from_entity`);
//! [`Catalog::create_table`](super::Catalog::create_table) creates it directly.

use sea_orm::entity::prelude::*;

use super::{TenantStatus, Tier};

/// One tenant's entry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_catalog")]
pub struct Model {
    /// The tenant's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// A short unique name: lowercase letters, digits and hyphens.
    #[sea_orm(unique)]
    pub slug: String,
    /// How the tenant's data is isolated.
    pub tier: Tier,
    /// The tenant's own schema ([`Tier::Schema`]).
    pub schema_name: Option<String>,
    /// A reference the application's secret store resolves to the tenant's database
    /// ([`Tier::Database`]); never a URL with a password.
    pub database_ref: Option<String>,
    /// Where the tenant's data must live, if anywhere in particular.
    pub region: Option<String>,
    /// A host name of the tenant's own (`app.acme.com`) that web requests resolve it by.
    #[sea_orm(unique)]
    pub domain: Option<String>,
    /// Whether the tenant's operations may run.
    pub status: TenantStatus,
    /// The generation of the schema the tenant's data is at, for migrations across tenants.
    pub schema_generation: i64,
}

/// The catalog has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
