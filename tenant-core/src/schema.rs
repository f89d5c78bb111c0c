//! The schema a tenancy declaration implies: the table with its tenant column, the composite
//! `(tenant_id, ..)` indexes, the per-tenant uniques, and the `(tenant_id, <primary key>)` unique
//! that lets children reference a row tenant-consistently.

use std::fmt;

use sea_orm::sea_query::{Index, IndexCreateStatement, TableCreateStatement};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable, PrimaryKeyToColumn, Schema,
};

use crate::Result;
use crate::entity::Tenancy;

/// The keys an entity's `#[tenant(..)]` attribute declares, in declaration order.
pub struct TableSpec<E: EntityTrait> {
    indexes: Vec<Vec<E::Column>>,
    uniques: Vec<Vec<E::Column>>,
}

impl<E: EntityTrait> TableSpec<E> {
    /// No extra keys.
    #[doc(hidden)]
    pub fn new() -> Self {
        Self {
            indexes: Vec::new(),
            uniques: Vec::new(),
        }
    }

    /// A composite index `(tenant column, columns..)`.
    #[doc(hidden)]
    #[must_use]
    pub fn index(mut self, columns: &[E::Column]) -> Self {
        self.indexes.push(columns.to_vec());
        self
    }

    /// A per-tenant unique `(tenant column, columns..)`.
    #[doc(hidden)]
    #[must_use]
    pub fn unique(mut self, columns: &[E::Column]) -> Self {
        self.uniques.push(columns.to_vec());
        self
    }

    /// The declared composite indexes, without the leading tenant column.
    pub fn indexes(&self) -> &[Vec<E::Column>] {
        &self.indexes
    }

    /// The declared per-tenant uniques, without the leading tenant column.
    pub fn uniques(&self) -> &[Vec<E::Column>] {
        &self.uniques
    }
}

impl<E: EntityTrait> fmt::Debug for TableSpec<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |keys: &[Vec<E::Column>]| -> Vec<Vec<String>> {
            keys.iter()
                .map(|k| k.iter().map(|c| c.as_str().to_owned()).collect())
                .collect()
        };
        f.debug_struct("TableSpec")
            .field("indexes", &names(&self.indexes))
            .field("uniques", &names(&self.uniques))
            .finish()
    }
}

/// The statements that create one entity's table and keys, in the order to run them.
#[derive(Debug)]
pub struct TableStatements {
    /// `CREATE TABLE IF NOT EXISTS ..` with every column of the model, the tenant column included.
    pub table: TableCreateStatement,
    /// `CREATE [UNIQUE] INDEX IF NOT EXISTS ..`: the tenant-leading keys.
    pub indexes: Vec<IndexCreateStatement>,
}

/// The statements for `E` on `backend`, usable from a `sea-orm-migration` migration:
///
/// ```ignore
/// let s = tenant::table_statements::<post::Entity>(manager.get_database_backend());
/// manager.create_table(s.table).await?;
/// for index in s.indexes { manager.create_index(index).await?; }
/// ```
pub fn table_statements<E: Tenancy>(backend: DbBackend) -> TableStatements {
    let entity = E::default();
    let table_name = entity.table_name();
    let mut table = Schema::new(backend).create_table_from_entity(entity);
    table.if_not_exists();
    let mut indexes = Vec::new();
    if let Some(tenant) = E::tenant_column() {
        let spec = E::table_spec();
        let pk: Vec<E::Column> = E::PrimaryKey::iter()
            .map(PrimaryKeyToColumn::into_column)
            .collect();
        let mut keyed = |unique: bool, columns: &[E::Column]| {
            if unique && columns.iter().any(|c| c.as_str() == tenant.as_str()) {
                return;
            }
            let mut name = format!(
                "{}_{}_{}",
                if unique { "ux" } else { "ix" },
                table_name,
                tenant.as_str()
            );
            let mut index = Index::create();
            index.if_not_exists().table(entity).col(tenant);
            for c in columns {
                name.push('_');
                name.push_str(c.as_str());
                index.col(*c);
            }
            if unique {
                index.unique();
            }
            indexes.push(index.name(name).to_owned());
        };
        keyed(true, &pk);
        for u in spec.uniques() {
            keyed(true, u);
        }
        for i in spec.indexes() {
            keyed(false, i);
        }
    }
    TableStatements { table, indexes }
}

/// One entity's schema, type-erased so that a list of them can be created together.
pub struct Table {
    name: &'static str,
    statements: fn(DbBackend) -> TableStatements,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `E`'s schema, for [`create_schema`].
pub fn table<E: Tenancy>() -> Table {
    Table {
        name: E::default().table_name(),
        statements: table_statements::<E>,
    }
}

/// Creates the tables (in the order given: parents first) and their tenant-leading keys, if
/// they do not exist yet. For quick starts and tests; production schemas belong in migrations.
///
/// It takes the raw connection, before it is wrapped in a [`TenantDb`](crate::TenantDb): DDL is
/// not tenant-scoped.
pub async fn create_schema<C: ConnectionTrait>(conn: &C, tables: &[Table]) -> Result<()> {
    let backend = conn.get_database_backend();
    for t in tables {
        let s = (t.statements)(backend);
        conn.execute(&s.table).await?;
        for index in &s.indexes {
            conn.execute(index).await?;
        }
    }
    Ok(())
}
