//! `#[tenant(..)]` on the `Model`: the container attributes.

use syn::{Ident, LitStr, Path, Token, punctuated::Punctuated};

use crate::ctxt::Ctxt;

pub(crate) const KEYS: &str = "`column`, `index`, `unique`, `global`, `crate`";

/// The parsed container attributes, with the tokens kept for spans.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) column: Option<Ident>,
    pub(crate) indexes: Vec<Vec<Ident>>,
    pub(crate) uniques: Vec<Vec<Ident>>,
    pub(crate) global: Option<Ident>,
    pub(crate) krate: Option<Path>,
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
                    let idents = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                    let key = if path.is_ident("index") {
                        "index"
                    } else {
                        "unique"
                    };
                    if idents.is_empty() {
                        cx.error_spanned_by(
                            path,
                            format_args!("`{key}()` needs at least one field, as in `{key}(slug)`"),
                        );
                    }
                    let list = idents.into_iter().collect();
                    if key == "index" {
                        out.indexes.push(list);
                    } else {
                        out.uniques.push(list);
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
