//! Expansion snapshots: one per attribute combination, the input kept in the snapshot's `info`.
//! Review with `cargo insta review`, or `INSTA_UPDATE=always cargo test -p tenant-macros` and the
//! diff of `src/snapshots/`.

use proc_macro2::TokenStream;
use quote::quote;

/// Formats tokens as `cargo expand` would show them.
fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(err) => panic!("the expansion is not a Rust file: {err}\n{tokens}"),
    }
}

/// Snapshots `output` under `name`, with `input` formatted into the snapshot's `info`.
fn snapshot(name: &str, input: &TokenStream, output: &TokenStream) {
    let info = insta::internals::Content::from(pretty(input));
    insta::with_settings!({ raw_info => &info, omit_expression => true }, {
        insta::assert_snapshot!(name, pretty(output));
    });
}

fn derive(name: &str, input: &TokenStream) {
    snapshot(name, input, &crate::expand::derive(input.clone()));
}

fn entity(name: &str, input: &TokenStream) {
    snapshot(
        name,
        input,
        &crate::entity::expand(TokenStream::new(), input.clone()),
    );
}

#[test]
fn tenant_entity() {
    derive(
        "tenant_entity",
        &quote! {
            #[sea_orm(table_name = "post")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: Uuid,
                pub tenant_id: Uuid,
                pub title: String,
            }
        },
    );
}

#[test]
fn column_owner() {
    derive(
        "column_owner",
        &quote! {
            #[sea_orm(table_name = "doc")]
            #[tenant(column = owner)]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: Uuid,
                pub owner: Uuid,
                pub body: String,
            }
        },
    );
}

#[test]
fn index_a_b() {
    derive(
        "index_a_b",
        &quote! {
            #[sea_orm(table_name = "post")]
            #[tenant(index(a, b))]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub tenant_id: Uuid,
                pub a: String,
                pub b: i64,
            }
        },
    );
}

#[test]
fn index_including() {
    derive(
        "index_including",
        &quote! {
            #[sea_orm(table_name = "post")]
            #[tenant(index(created_at, include(title, qty)), index(title))]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub tenant_id: Uuid,
                pub title: String,
                pub qty: i32,
                pub created_at: DateTimeUtc,
            }
        },
    );
}

#[test]
fn unique_twice() {
    derive(
        "unique_twice",
        &quote! {
            #[sea_orm(table_name = "member")]
            #[tenant(unique(email), unique(handle))]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub tenant_id: Uuid,
                pub email: String,
                pub handle: String,
            }
        },
    );
}

#[test]
fn global() {
    derive(
        "global",
        &quote! {
            #[sea_orm(table_name = "plan")]
            #[tenant(global)]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                #[sea_orm(unique)]
                pub name: String,
            }
        },
    );
}

#[test]
fn crate_path() {
    derive(
        "crate_path",
        &quote! {
            #[sea_orm(table_name = "post")]
            #[tenant(crate = "::my_tenant")]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub tenant_id: Uuid,
            }
        },
    );
}

#[test]
fn model_ex_expands_to_nothing() {
    derive(
        "model_ex_expands_to_nothing",
        &quote! {
            pub struct ModelEx {
                pub id: i32,
                pub tenant_id: Uuid,
            }
        },
    );
}

/// After an error: the `compile_error!`s, then stubs on another column so uses stay quiet.
#[test]
fn missing_tenant_field_recovers() {
    derive(
        "missing_tenant_field_recovers",
        &quote! {
            #[sea_orm(table_name = "post")]
            #[tenant(colum = tenant_id, index(author))]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub title: String,
            }
        },
    );
}

/// `#[tenant::entity]` below the derive: the attribute reports it, the derive only stubs.
#[test]
fn entity_attribute_below_derive_is_quiet() {
    derive(
        "entity_attribute_below_derive_is_quiet",
        &quote! {
            #[tenant::entity]
            #[sea_orm(table_name = "tag")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: Uuid,
                pub name: String,
            }
        },
    );
}

#[test]
fn entity_attribute_after_primary_key() {
    entity(
        "entity_attribute_after_primary_key",
        &quote! {
            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
            #[sea_orm(table_name = "tag")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: Uuid,
                pub name: String,
            }
        },
    );
}

#[test]
fn entity_attribute_without_primary_key() {
    entity(
        "entity_attribute_without_primary_key",
        &quote! {
            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
            #[sea_orm(table_name = "tag")]
            #[tenant(column = owner)]
            pub struct Model {
                pub name: String,
            }
        },
    );
}

#[test]
fn entity_attribute_below_derive() {
    entity(
        "entity_attribute_below_derive",
        &quote! {
            #[sea_orm(table_name = "tag")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: Uuid,
                pub name: String,
            }
        },
    );
}
