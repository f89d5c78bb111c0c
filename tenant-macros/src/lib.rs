//! Procedural macros of the [`tenant`](https://docs.rs/tenant) crate. Use them through the
//! facade: `tenant::TenantScoped` and `#[tenant::entity]`.

mod ast;
mod attr;
mod ctxt;
mod entity;
mod expand;
mod pipeline;
#[cfg(test)]
mod tests;

/// Declares the tenancy of a SeaORM entity: written beside `DeriveEntityModel` on the `Model`.
///
/// ```ignore
/// #[derive(Clone, Debug, PartialEq, DeriveEntityModel, tenant::TenantScoped)]
/// #[sea_orm(table_name = "post")]
/// #[tenant(unique(slug), index(published_at))]
/// pub struct Model {
///     #[sea_orm(primary_key, auto_increment = false)]
///     pub id: Uuid,
///     pub tenant_id: Uuid,
///     pub slug: String,
///     pub published_at: DateTimeUtc,
/// }
/// ```
///
/// # Container attributes
///
/// - `#[tenant(column = <field>)]`: the tenant column. Default `tenant_id`; its type must be
///   `Uuid`.
/// - `#[tenant(index(a, b, ..))]`: a composite index `(tenant_id, a, b, ..)`. Repeatable. With
///   `include(c, d, ..)` last, as in `index(created_at, include(title))`, it also carries those
///   columns (PostgreSQL's `INCLUDE`; further key columns on SQLite): a covering index, which
///   answers a query that reads only them without visiting the table.
/// - `#[tenant(unique(a, b, ..))]`: a per-tenant unique `(tenant_id, a, b, ..)`. Repeatable.
///   `#[sea_orm(unique)]` and `unique_key` are refused on a tenant entity: a global unique tells
///   one tenant whether another holds a value.
/// - `#[tenant(global)]`: a table shared by every tenant; read through `TenantDb` without a
///   tenant predicate. It takes no `column`, `index` or `unique`.
/// - `#[tenant(crate = "path")]`: where the `tenant` crate is. Default `::tenant`.
///
/// # What it generates
///
/// One `const _: () = { .. };` with `impl tenant::Tenancy for Entity` (the tenant column and
/// the declared keys), `impl tenant::TenantScoped for Entity`, an assertion at the tenant field's
/// type, and inherent methods that shadow SeaORM's with tenant-scoped ones running only on a
/// `TenantDb` or `TenantTxn`: `Entity::{find, find_by_id, insert, insert_many, update,
/// update_many, delete_by_id, delete_many}`, `ActiveModel::{insert, update, save, delete}`,
/// `Model::{delete, find_related}`. SeaORM's unscoped forms stay reachable as trait methods
/// (`<Entity as EntityTrait>::find()`) on a raw connection, which a `TenantDb` only hands out
/// through `TenantDb::unscoped(&AssertUnscoped::new("reason"))`. Every body is one call into
/// `tenant-core`.
///
/// Entities in SeaORM's dense format (`#[sea_orm::model]`) keep SeaORM's `find`,
/// `find_related` and `ActiveModel` methods, which SeaORM's own generated code calls; see the
/// crate docs.
#[proc_macro_derive(TenantScoped, attributes(tenant))]
pub fn derive_tenant_scoped(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::derive(input.into()).into()
}

/// Adds the tenant column (`pub tenant_id: Uuid`, or the `#[tenant(column = ..)]` name) to an
/// entity's `Model`, after the primary key.
///
/// Write it above `#[derive(..)]`: derives listed before an attribute macro see the struct
/// without the new field, and the macro reports that placement as an error.
///
/// ```ignore
/// #[tenant::entity]
/// #[derive(Clone, Debug, PartialEq, DeriveEntityModel, tenant::TenantScoped)]
/// #[sea_orm(table_name = "tag")]
/// pub struct Model {
///     #[sea_orm(primary_key, auto_increment = false)]
///     pub id: Uuid,
///     pub name: String,
/// }
/// ```
#[proc_macro_attribute]
pub fn entity(
    args: proc_macro::TokenStream,
    input: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    entity::expand(args.into(), input.into()).into()
}
