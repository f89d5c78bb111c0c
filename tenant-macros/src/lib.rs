//! Procedural macros of the [`tenant`](https://docs.rs/tenant) crate. Use them through the
//! facade: `tenant::TenantScoped` and `#[tenant::entity]`.

mod ast;
mod attr;
mod ctxt;
mod entity;
mod expand;
#[cfg(test)]
mod tests;

/// Declares the tenancy of a SeaORM entity; see the `tenant` crate for the attribute reference.
#[proc_macro_derive(TenantScoped, attributes(tenant))]
pub fn derive_tenant_scoped(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::derive(input.into()).into()
}

/// Adds the tenant column to an entity's `Model`; write it above `#[derive(..)]`.
#[proc_macro_attribute]
pub fn entity(
    args: proc_macro::TokenStream,
    input: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    entity::expand(args.into(), input.into()).into()
}
