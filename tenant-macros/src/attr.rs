//! `#[tenant(..)]` on the `Model`: the container attributes.

use syn::{Ident, LitStr, Path, Token, punctuated::Punctuated};

use crate::ctxt::Ctxt;

pub(crate) const KEYS: &str = "`column`, `index`, `unique`, `global`, `crate`";

/// The parsed container attributes, with the tokens kept for spans.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) column: Option<Ident>,
    pub(crate) indexes: Vec<IndexDecl>,
    pub(crate) uniques: Vec<Vec<Ident>>,
    pub(crate) global: Option<Ident>,
    pub(crate) krate: Option<Path>,
}

/// `index(a, b, include(c, d))`: the key after the tenant column, and the columns carried beside it.
pub(crate) struct IndexDecl {
    pub(crate) columns: Vec<Ident>,
    pub(crate) include: Vec<Ident>,
}

/// The fields of `index(..)` or `unique(..)`: key fields, and for `index` one `include(..)`.
fn key_fields(
    cx: &Ctxt,
    key: &str,
    content: syn::parse::ParseStream<'_>,
) -> syn::Result<IndexDecl> {
    let mut decl = IndexDecl {
        columns: Vec::new(),
        include: Vec::new(),
    };
    let mut seen_include = false;
    while !content.is_empty() {
        let ident: Ident = content.parse()?;
        if ident == "include" && content.peek(syn::token::Paren) {
            let inner;
            syn::parenthesized!(inner in content);
            let carried = Punctuated::<Ident, Token![,]>::parse_terminated(&inner)?;
            if key != "index" {
                cx.error_spanned_by(
                    &ident,
                    "`include(..)` belongs in `index(..)`: every column of a per-tenant unique is part of its key",
                );
            } else if seen_include {
                cx.error_spanned_by(
                    &ident,
                    "duplicate `include(..)`; list every carried field in one",
                );
            } else if carried.is_empty() {
                cx.error_spanned_by(
                    &ident,
                    "`include()` needs at least one field, as in `index(created_at, include(title))`",
                );
            }
            seen_include = true;
            decl.include.extend(carried);
        } else {
            decl.columns.push(ident);
        }
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(decl)
}

impl Container {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut out = Container::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("tenant")) {
            let syn::Meta::List(_) = &attr.meta else {
                cx.error_spanned_by(
                    attr,
                    format_args!("`#[tenant]` needs arguments; expected one of {KEYS}, as in `#[tenant(unique(slug))]`"),
                );
                continue;
            };
            let parsed = attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                if path.is_ident("column") {
                    let ident: Ident = meta.value()?.parse()?;
                    if out.column.is_some() {
                        cx.error_spanned_by(
                            &ident,
                            "duplicate `column`; a model has one tenant column",
                        );
                    } else {
                        out.column = Some(ident);
                    }
                } else if path.is_ident("index") || path.is_ident("unique") {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let key = if path.is_ident("index") {
                        "index"
                    } else {
                        "unique"
                    };
                    let decl = key_fields(cx, key, &content)?;
                    if decl.columns.is_empty() && !decl.include.is_empty() {
                        cx.error_spanned_by(
                            path,
                            "`index(..)` needs a key field before `include(..)`, as in `index(created_at, include(title))`",
                        );
                    } else if decl.columns.is_empty() {
                        let example = if key == "index" {
                            "`index(created_at)`"
                        } else {
                            "`unique(slug)`"
                        };
                        cx.error_spanned_by(
                            path,
                            format_args!("`{key}()` needs at least one key field, as in {example}"),
                        );
                    }
                    if key == "index" {
                        out.indexes.push(decl);
                    } else {
                        out.uniques.push(decl.columns);
                    }
                } else if path.is_ident("global") {
                    let ident = path.get_ident().cloned().expect("checked by is_ident");
                    if out.global.is_some() {
                        cx.error_spanned_by(&ident, "duplicate `global`; write it once");
                    } else {
                        out.global = Some(ident);
                    }
                } else if path.is_ident("crate") {
                    let lit: LitStr = meta.value()?.parse()?;
                    match lit.parse::<Path>() {
                        Ok(p) => out.krate = Some(p),
                        Err(_) => cx.error_spanned_by(
                            &lit,
                            "`crate` must be a path, as in `crate = \"::tenant\"`",
                        ),
                    }
                } else {
                    let key = quote::quote!(#path).to_string().replace(' ', "");
                    cx.syn_error(meta.error(format_args!(
                        "unknown `tenant` attribute `{key}`; expected one of {KEYS}"
                    )));
                    // Skip its value and go on, so that the keys after it are checked too.
                    if meta.input.peek(Token![=]) {
                        meta.value()?.parse::<syn::Expr>()?;
                    } else if meta.input.peek(syn::token::Paren) {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        content.parse::<proc_macro2::TokenStream>()?;
                    }
                }
                Ok(())
            });
            if let Err(e) = parsed {
                cx.syn_error(e);
            }
        }
        out
    }
}
