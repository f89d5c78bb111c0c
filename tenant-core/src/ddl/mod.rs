//! What a tenancy declaration implies in the database, from the entities' own declarations: the
//! tables and their tenant-leading keys ([`TenantSchema`]), the Row-Level Security policies and
//! their settings ([`Rls`]), and the identifiers both write.

mod ident;
mod rls;
mod schema;

pub(crate) use ident::is_plain_ident;
#[cfg(feature = "postgres")]
pub(crate) use ident::quote_ident;
pub use rls::{PolicyForm, Rls};
pub use schema::{
    ExpectedForeignKey, ExpectedIndex, ExpectedPolicy, ExpectedTable, Table, TableStatements,
    TenantSchema, create_schema, table, table_statements,
};
