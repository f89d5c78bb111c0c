//! `#[tenant::entity]`: adds the tenant column to a `Model` before the derives see it.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, ItemStruct};

use crate::attr::Container;
use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return syn::Error::new_spanned(
            args,
            "`#[tenant::entity]` takes no arguments; configure the entity with `#[tenant(..)]`",
        )
        .into_compile_error();
    }
    let mut item = match syn::parse2::<ItemStruct>(input) {
        Ok(item) => item,
        Err(err) => return err.into_compile_error(),
    };
    // Derives listed above this attribute have already seen the struct without the new field;
    // then the column would silently be missing from the entity.
    if !item.attrs.iter().any(|a| a.path().is_ident("derive")) {
        return syn::Error::new_spanned(
            &item.ident,
            "`#[tenant::entity]` must be written above `#[derive(..)]`: derives listed before it do not see the tenant column it adds",
        )
        .into_compile_error();
    }
    let cx = Ctxt::default();
    let container = Container::from_attrs(&cx, &item.attrs);
    if let Err(errors) = cx.check() {
        return quote!(#errors #item);
    }
    if let Some(global) = &container.global {
        return syn::Error::new_spanned(
            global,
            "a `global` entity has no tenant column; remove `#[tenant::entity]`",
        )
        .into_compile_error();
    }
    let name = container
        .column
        .unwrap_or_else(|| Ident::new("tenant_id", proc_macro2::Span::call_site()));
    let root = container
        .krate
        .map_or_else(|| quote!(::tenant), |p| quote!(#p));
    let syn::Fields::Named(fields) = &mut item.fields else {
        return syn::Error::new_spanned(
            &item.ident,
            "`#[tenant::entity]` needs a struct with named fields",
        )
        .into_compile_error();
    };
    if let Some(existing) = fields
        .named
        .iter()
        .find(|f| f.ident.as_ref() == Some(&name))
    {
        return syn::Error::new_spanned(
            existing.ident.as_ref(),
            format_args!("`{name}` is already declared; remove the field or `#[tenant::entity]`"),
        )
        .into_compile_error();
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
    quote!(#item)
}

fn is_primary_key(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("sea_orm")
        && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string().contains("primary_key"))
}
