//! A typed view of the `Model` the derive is on, with the user's tokens kept for spans.

use proc_macro2::TokenStream;
use quote::ToTokens as _;
use syn::{DeriveInput, Ident, Type};

use crate::attr::Container;
use crate::ctxt::Ctxt;

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// `unique` or `unique_key` inside `#[sea_orm(..)]`, when present.
    pub(crate) global_unique: Option<TokenStream>,
    /// `#[sea_orm(ignore)]`: not a column, so `Column` has no variant for it.
    pub(crate) ignored: bool,
    /// `#[sea_orm(enum_name = "..")]`: the name of its `Column` variant, when not the default.
    pub(crate) enum_name: Option<Ident>,
}

impl Field<'_> {
    /// The `Column` variant `DeriveEntityModel` generates for this field.
    pub(crate) fn variant(&self) -> Ident {
        self.enum_name
            .clone()
            .unwrap_or_else(|| column_variant(self.ident))
    }
}

pub(crate) struct Model<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) attrs: Container,
    pub(crate) fields: Vec<Field<'a>>,
    /// `#[tenant::entity]` written below the derive: the derive then runs before the attribute
    /// has added the tenant column, and the attribute reports the misplacement.
    pub(crate) entity_attr_below: bool,
    /// The dense format: `#[sea_orm::model]` marks the `Model` it rewrites `#[sea_orm(model_ex)]`.
    /// SeaORM's generated `ActiveModelEx` then calls `ActiveModel::insert(db)` and friends with a
    /// raw connection, so those must keep SeaORM's meaning.
    pub(crate) dense: bool,
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
                    global_unique: sea_orm_flag(f, &["unique", "unique_key"]),
                    ignored: sea_orm_flag(f, &["ignore"]).is_some(),
                    enum_name: sea_orm_enum_name(f),
                })
            })
            .collect();
        Some(Model {
            ident: &input.ident,
            attrs: Container::from_attrs(cx, &input.attrs),
            fields,
            entity_attr_below: input.attrs.iter().any(is_entity_attr),
            dense: input.attrs.iter().any(is_model_ex),
        })
    }

    pub(crate) fn field(&self, name: &Ident) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| unraw(f.ident) == unraw(name))
    }

    /// The `Column` variant of the field `name` (the default spelling when there is none).
    pub(crate) fn variant_of(&self, name: &Ident) -> Ident {
        self.field(name)
            .map_or_else(|| column_variant(name), Field::variant)
    }

    pub(crate) fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| format!("`{}`", unraw(f.ident)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The first of `keys` that a field's `#[sea_orm(..)]` names, as the user's token, read
/// leniently: anything we do not recognise belongs to SeaORM.
fn sea_orm_flag(field: &syn::Field, keys: &[&str]) -> Option<TokenStream> {
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("sea_orm")) {
        let syn::Meta::List(list) = &attr.meta else {
            continue;
        };
        for token in list.tokens.clone() {
            if let proc_macro2::TokenTree::Ident(ident) = &token
                && keys.iter().any(|key| ident == key)
            {
                return Some(token.into());
            }
        }
    }
    None
}

/// `enum_name = "Name"` inside a field's `#[sea_orm(..)]`, as an identifier spanned at the
/// string; anything else there belongs to SeaORM, which also reports a malformed one.
fn sea_orm_enum_name(field: &syn::Field) -> Option<Ident> {
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("sea_orm")) {
        let syn::Meta::List(list) = &attr.meta else {
            continue;
        };
        let tokens: Vec<_> = list.tokens.clone().into_iter().collect();
        for window in tokens.windows(3) {
            if let [
                proc_macro2::TokenTree::Ident(key),
                proc_macro2::TokenTree::Punct(eq),
                proc_macro2::TokenTree::Literal(lit),
            ] = window
                && key == "enum_name"
                && eq.as_char() == '='
                && let Ok(name) = syn::parse2::<syn::LitStr>(lit.clone().into_token_stream())
                && let Ok(ident) = syn::parse_str::<Ident>(&name.value())
            {
                return Some(Ident::new(&ident.to_string(), name.span()));
            }
        }
    }
    None
}

/// `#[tenant::entity]` (or `#[entity]` imported from `tenant`).
fn is_entity_attr(attr: &syn::Attribute) -> bool {
    let path = attr.path();
    let named = |i: usize, name: &str| path.segments.get(i).is_some_and(|s| s.ident == name);
    path.is_ident("entity")
        || (path.segments.len() == 2 && named(0, "tenant") && named(1, "entity"))
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

/// `#[sea_orm(.., model_ex, ..)]`, which `#[sea_orm::model]` puts on the `Model` it rewrites.
fn is_model_ex(attr: &syn::Attribute) -> bool {
    let syn::Meta::List(list) = &attr.meta else {
        return false;
    };
    attr.path().is_ident("sea_orm")
        && list
            .tokens
            .clone()
            .into_iter()
            .any(|t| matches!(&t, proc_macro2::TokenTree::Ident(ident) if ident == "model_ex"))
}
