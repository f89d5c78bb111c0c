//! A typed view of the `Model` the derive is on, with the user's tokens kept for spans.

use proc_macro2::TokenStream;
use syn::{DeriveInput, Ident, Type};

use crate::attr::Container;
use crate::ctxt::Ctxt;

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// `unique` or `unique_key` inside `#[sea_orm(..)]`, when present.
    pub(crate) global_unique: Option<TokenStream>,
}

pub(crate) struct Model<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) attrs: Container,
    pub(crate) fields: Vec<Field<'a>>,
}

impl<'a> Model<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let syn::Data::Struct(data) = &input.data else {
            cx.error_spanned_by(
                &input.ident,
                "`TenantScoped` goes on an entity's `Model` struct, beside `DeriveEntityModel`",
            );
            return None;
        };
        let syn::Fields::Named(named) = &data.fields else {
            cx.error_spanned_by(
                &input.ident,
                "`TenantScoped` needs a struct with named fields, as SeaORM's `Model` has",
            );
            return None;
        };
        let fields = named
            .named
            .iter()
            .filter_map(|f| {
                Some(Field {
                    ident: f.ident.as_ref()?,
                    ty: &f.ty,
                    global_unique: sea_orm_unique(f),
                })
            })
            .collect();
        Some(Model {
            ident: &input.ident,
            attrs: Container::from_attrs(cx, &input.attrs),
            fields,
        })
    }

    pub(crate) fn field(&self, name: &Ident) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| unraw(f.ident) == unraw(name))
    }

    pub(crate) fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| format!("`{}`", unraw(f.ident)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `unique`/`unique_key` token of a field's `#[sea_orm(..)]`, read leniently: anything we do
/// not recognise belongs to SeaORM.
fn sea_orm_unique(field: &syn::Field) -> Option<TokenStream> {
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("sea_orm")) {
        let syn::Meta::List(list) = &attr.meta else {
            continue;
        };
        for token in list.tokens.clone() {
            if let proc_macro2::TokenTree::Ident(ident) = &token
                && (ident == "unique" || ident == "unique_key")
            {
                return Some(token.into());
            }
        }
    }
    None
}

/// The field name without `r#`.
pub(crate) fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map_or(s.clone(), str::to_owned)
}

/// `tenant_id` -> `TenantId`: the `Column` variant `DeriveEntityModel` generates for a field.
pub(crate) fn column_variant(ident: &Ident) -> Ident {
    let camel: String = unraw(ident)
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect();
    Ident::new(&camel, ident.span())
}
