//! What a tenancy declaration implies in the database, from the entities' own declarations: the
//! tables and their tenant-leading keys ([`TenantTables`]), the Row-Level Security policies and
//! their settings ([`Rls`]), and the identifiers both write.

mod ident;
mod rls;
mod schema;

pub(crate) use ident::quote_ident;
pub(crate) use ident::{is_tenant_schema_name, search_path};
pub use rls::{PolicyForm, Rls};
#[expect(deprecated, reason = "the former name stays usable")]
pub use schema::TenantSchema;
pub use schema::{
    ExpectedForeignKey, ExpectedIndex, ExpectedPolicy, ExpectedTable, Table, TableStatements,
    TenantTables, create_schema, table, table_statements,
};
