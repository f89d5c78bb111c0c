//! The traits `#[derive(TenantScoped)]` implements: every entity reachable through
//! [`TenantDb`](crate::TenantDb) must have declared whether it is tenant-owned or shared.

use std::fmt;

use sea_orm::{EntityTrait, IdenStatic};

/// An entity that has declared its tenancy: tenant-owned ([`TenantScoped`]) or deliberately
/// shared across tenants (`#[tenant(global)]`).
///
/// Only such entities can be queried through [`TenantDb`](crate::TenantDb). Implemented by
/// `#[derive(TenantScoped)]`; do not implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has not declared its tenancy",
    label = "this entity cannot be used through `TenantDb`",
    note = "add `#[derive(TenantScoped)]` to the entity's `Model` (with `#[tenant(global)]` for a table shared by every tenant)"
)]
pub trait Tenancy: EntityTrait<Model: Send + Sync> {
    /// The tenant column, or `None` for a global entity.
    fn tenant_column() -> Option<Self::Column>;

    /// The indexes, uniques and keys the declaration asks for.
    fn table_spec() -> TableSpec<Self>;

    /// Decodes `Self::Model` from the pipelined executor's rows; `None` when a field's type has
    /// no tokio-postgres decoding. Written by the derive.
    #[cfg(feature = "pipeline")]
    #[doc(hidden)]
    fn __pg_decoder() -> Option<&'static crate::pipeline::Decoder<Self::Model>> {
        None
    }
}

/// A tenant-owned entity: every row belongs to exactly one tenant.
///
/// Implemented by `#[derive(TenantScoped)]` on an entity's `Model`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not tenant-scoped",
    label = "`TenantRepo` needs an entity with a tenant column",
    note = "add `#[derive(TenantScoped)]` to the entity's `Model` with a `tenant_id: Uuid` field; a table shared by every tenant is `#[tenant(global)]`, read with `Entity::find()` and written with `db.global_writes(..)`"
)]
pub trait TenantScoped: Tenancy {
    /// The column that holds the owning tenant's id.
    const TENANT_COLUMN: Self::Column;
}

/// A global entity (`#[tenant(global)]`): one table every tenant shares, written through
/// [`TenantDb::global_writes`](crate::TenantDb::global_writes).
///
/// Implemented by `#[derive(TenantScoped)]` with `#[tenant(global)]`; do not implement it by
/// hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a global entity",
    label = "global writes are for tables every tenant shares",
    note = "a tenant-owned entity is written inside `tenant::scope(..)` (`am.insert(&db)`, `TenantRepo`); a table shared by every tenant is declared `#[tenant(global)]`"
)]
pub trait Global: Tenancy {}

/// The table name of `E`, for messages.
pub(crate) fn table_name<E: EntityTrait>() -> &'static str {
    // `table_name` returns `&'static str` for every derived entity; the schema name is not part
    // of the messages.
    E::default().table_name()
}

/// The keys an entity's `#[tenant(..)]` attribute declares, in declaration order.
pub struct TableSpec<E: EntityTrait> {
    indexes: Vec<IndexSpec<E>>,
    uniques: Vec<Vec<E::Column>>,
}

/// A composite index `(tenant column, columns..)` declared with `#[tenant(index(..))]`, and the
/// columns it carries beside its key (`include(..)`): with them a query that reads only those
/// columns is answered from the index alone.
pub struct IndexSpec<E: EntityTrait> {
    columns: Vec<E::Column>,
    include: Vec<E::Column>,
}

impl<E: EntityTrait> IndexSpec<E> {
    /// The key columns, without the leading tenant column.
    pub fn columns(&self) -> &[E::Column] {
        &self.columns
    }

    /// The columns carried beside the key (PostgreSQL's `INCLUDE`; appended to the key on
    /// SQLite, which has no `INCLUDE`); empty for a plain index.
    pub fn include(&self) -> &[E::Column] {
        &self.include
    }
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
    pub fn index(self, columns: &[E::Column]) -> Self {
        self.index_including(columns, &[])
    }

    /// A composite index `(tenant column, columns..)` carrying `include` beside its key.
    #[doc(hidden)]
    #[must_use]
    pub fn index_including(mut self, columns: &[E::Column], include: &[E::Column]) -> Self {
        self.indexes.push(IndexSpec {
            columns: columns.to_vec(),
            include: include.to_vec(),
        });
        self
    }

    /// A per-tenant unique `(tenant column, columns..)`.
    #[doc(hidden)]
    #[must_use]
    pub fn unique(mut self, columns: &[E::Column]) -> Self {
        self.uniques.push(columns.to_vec());
        self
    }

    /// The declared composite indexes.
    pub fn indexes(&self) -> &[IndexSpec<E>] {
        &self.indexes
    }

    /// The declared per-tenant uniques, without the leading tenant column.
    pub fn uniques(&self) -> &[Vec<E::Column>] {
        &self.uniques
    }
}

/// A key's column names, for `Debug`.
fn names<C: IdenStatic>(columns: &[C]) -> Vec<&'static str> {
    columns.iter().map(IdenStatic::as_str).collect()
}

impl<E: EntityTrait> fmt::Debug for IndexSpec<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexSpec")
            .field("columns", &names(&self.columns))
            .field("include", &names(&self.include))
            .finish()
    }
}

impl<E: EntityTrait> fmt::Debug for TableSpec<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uniques: Vec<_> = self.uniques.iter().map(|u| names(u)).collect();
        f.debug_struct("TableSpec")
            .field("indexes", &self.indexes)
            .field("uniques", &uniques)
            .finish()
    }
}
