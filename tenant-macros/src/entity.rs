//! `#[tenant::entity]`: adds the tenant column to a `Model` before the derives see it.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Ident, ItemStruct};

use crate::attr::Container;
use crate::ctxt::Ctxt;

/// The struct with the tenant column added. After a mistake, the error and the struct as written
/// (or with the column, when only the arguments are wrong), so that the derives still expand and
/// the mistake is the only error.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item = match syn::parse2::<ItemStruct>(input) {
        Ok(item) => item,
        Err(err) => return err.into_compile_error(),
    };
    // Arguments are reported and ignored: the column is still added, so the derives stay quiet.
    let args = (!args.is_empty()).then(|| {
        syn::Error::new_spanned(
            args,
            "`#[tenant::entity]` takes no arguments; configure the entity with `#[tenant(..)]`",
        )
        .into_compile_error()
    });
    let error = add_tenant_column(&mut item)
        .err()
        .map(syn::Error::into_compile_error);
    quote!(#args #error #item)
}

fn add_tenant_column(item: &mut ItemStruct) -> syn::Result<()> {
    // Derives listed above this attribute have already seen the struct without the new field;
    // then the column would silently be missing from the entity. (`TenantScoped` sees this
    // attribute among its input's and stays quiet, so this is the only error.)
    if !item.attrs.iter().any(|a| a.path().is_ident("derive")) {
        return Err(syn::Error::new(
            Span::call_site(),
            "`#[tenant::entity]` must be written above `#[derive(..)]`; derives listed before it do not see the tenant column it adds",
        ));
    }
    // Mistakes in `#[tenant(..)]` are the derive's to report, once; here the defaults stand in.
    let cx = Ctxt::default();
    let container = Container::from_attrs(&cx, &item.attrs);
    let _reported_by_the_derive = cx.check();
    if let Some(global) = &container.global {
        return Err(syn::Error::new_spanned(
            global,
            "a `global` entity has no tenant column; remove `#[tenant::entity]`",
        ));
    }
    let name = container
        .column
        .unwrap_or_else(|| Ident::new("tenant_id", Span::call_site()));
    let root = container
        .krate
        .map_or_else(|| quote!(::tenant), |p| quote!(#p));
    let syn::Fields::Named(fields) = &mut item.fields else {
        return Err(syn::Error::new_spanned(
            &item.ident,
            "`#[tenant::entity]` needs a struct with named fields, as SeaORM's `Model` has",
        ));
    };
    if let Some(existing) = fields
        .named
        .iter()
        .find(|f| f.ident.as_ref() == Some(&name))
    {
        return Err(syn::Error::new_spanned(
            existing.ident.as_ref(),
            format_args!("`{name}` is already declared; remove the field or `#[tenant::entity]`"),
        ));
    }
    let field: syn::Field = syn::parse_quote! {
        /// The tenant that owns this row; stamped on insert, never updated.
        pub #name: #root::__private::uuid::Uuid
    };
    // After the primary key, where a reader of the table expects it.
    let position = fields
        .named
        .iter()
        .rposition(|f| f.attrs.iter().any(is_primary_key))
        .map_or(0, |i| i + 1);
    fields.named.insert(position, field);
    Ok(())
}

fn is_primary_key(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("sea_orm")
        && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string().contains("primary_key"))
}
