//! `#[derive(TenantScoped)]`: checks the declaration, then generates thin impls that call into
//! `tenant-core` through the facade's paths.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

use crate::ast::{Field, Model, unraw};
use crate::ctxt::Ctxt;

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(input) {
        Ok(input) => input,
        Err(err) => return err.into_compile_error(),
    };
    // `#[sea_orm::model]` copies the derive onto `ModelEx`; the entity is declared once, on `Model`.
    if input.ident == "ModelEx" {
        return TokenStream::new();
    }
    let cx = Ctxt::default();
    let model = Model::from_syn(&cx, &input);
    let tenant = model.as_ref().and_then(|m| check(&cx, m));
    match (cx.check(), model) {
        // Only with `#[tenant::entity]` below the derive: that attribute reports the mistake, and
        // the stubs keep this derive quiet.
        (Ok(()), Some(model)) if model.attrs.global.is_none() && tenant.is_none() => {
            fallback(&model, &TokenStream::new())
        }
        (Ok(()), Some(model)) => expand(&model, tenant.map(|i| &model.fields[i])),
        (Err(errors), Some(model)) => fallback(&model, &errors),
        (Err(errors), None) => errors,
        (Ok(()), None) => TokenStream::new(),
    }
}

/// Validates the declaration; returns the index of the tenant field of a tenant-scoped model.
fn check(cx: &Ctxt, model: &Model<'_>) -> Option<usize> {
    let attrs = &model.attrs;
    let names_known = |list: Vec<&[Ident]>, key: &str| {
        for columns in list {
            for column in columns {
                if model.field(column).is_none() {
                    cx.error_spanned_by(
                        column,
                        format_args!(
                            "`#[tenant({key}(..))]` names `{}`, but `{}` has no such field; expected one of {}",
                            unraw(column),
                            model.ident,
                            model.field_names()
                        ),
                    );
                }
            }
        }
    };
    names_known(
        attrs
            .indexes
            .iter()
            .flat_map(|i| [&i.columns[..], &i.include[..]])
            .collect(),
        "index",
    );
    names_known(attrs.uniques.iter().map(Vec::as_slice).collect(), "unique");

    if let Some(global) = &attrs.global {
        if let Some(column) = &attrs.column {
            cx.error_spanned_by(
                column,
                "a `global` entity has no tenant column; remove `column = ..` or `global`",
            );
        }
        if !attrs.indexes.is_empty() || !attrs.uniques.is_empty() {
            cx.error_spanned_by(
                global,
                "`index(..)` and `unique(..)` are per-tenant keys, and a `global` entity has no tenant; declare its keys with SeaORM",
            );
        }
        return None;
    }

    for field in &model.fields {
        if let Some(token) = &field.global_unique {
            cx.error_spanned_by(
                token,
                format_args!(
                    "a global unique on a tenant-scoped entity lets one tenant probe another's values; use `#[tenant(unique({}))]` for a per-tenant unique",
                    unraw(field.ident)
                ),
            );
        }
    }

    let default = Ident::new("tenant_id", model.ident.span());
    let name = attrs.column.as_ref().unwrap_or(&default);
    let found = model
        .fields
        .iter()
        .position(|f| unraw(f.ident) == unraw(name));
    included_apart_from_the_key(cx, attrs, name);
    if found.is_none() && !model.entity_attr_below {
        if attrs.column.is_some() {
            cx.error_spanned_by(
                name,
                format_args!(
                    "`#[tenant(column = ..)]` names `{}`, but `{}` has no such field; expected one of {}",
                    unraw(name),
                    model.ident,
                    model.field_names()
                ),
            );
        } else {
            cx.error_spanned_by(
                model.ident,
                format_args!(
                    "`{}` has no tenant column; add a field `pub tenant_id: Uuid`, name another with `#[tenant(column = ..)]`, write `#[tenant::entity]` above the derives to add it, or mark a table shared by every tenant `#[tenant(global)]`",
                    model.ident
                ),
            );
        }
    }
    found
}

/// Each `include(..)` field of an index is carried once, and is not already in its key.
fn included_apart_from_the_key(cx: &Ctxt, attrs: &crate::attr::Container, tenant: &Ident) {
    for index in &attrs.indexes {
        for (i, carried) in index.include.iter().enumerate() {
            let same = |other: &Ident| unraw(other) == unraw(carried);
            if same(tenant) || index.columns.iter().any(same) {
                cx.error_spanned_by(
                    carried,
                    format_args!(
                        "`{}` is already in this index's key (`{}` and the fields before `include`); `include(..)` carries the other fields a query reads",
                        unraw(carried),
                        unraw(tenant)
                    ),
                );
            } else if index.include[..i].iter().any(same) {
                cx.error_spanned_by(
                    carried,
                    format_args!("`{}` is included twice", unraw(carried)),
                );
            }
        }
    }
}

fn root(model: &Model<'_>) -> TokenStream {
    model
        .attrs
        .krate
        .as_ref()
        .map_or_else(|| quote!(::tenant), |p| quote!(#p))
}

fn expand(model: &Model<'_>, tenant: Option<&Field<'_>>) -> TokenStream {
    let root = root(model);
    let key = |columns: &[Ident]| -> TokenStream {
        let variants = columns.iter().map(|name| model.variant_of(name));
        quote!([#(Column::#variants),*])
    };
    let indexes = model.attrs.indexes.iter().map(|i| {
        let columns = key(&i.columns);
        if i.include.is_empty() {
            quote!(.index(&#columns))
        } else {
            let include = key(&i.include);
            quote!(.index_including(&#columns, &#include))
        }
    });
    let uniques = model.attrs.uniques.iter().map(|u| key(u));
    let spec = quote! {
        #root::TableSpec::new()
            #(#indexes)*
            #(.unique(&#uniques))*
    };
    // At the user's type, so that a wrong type is reported there and not in generated code.
    let assert_key = tenant.map(|field| {
        let ty = field.ty;
        quote_spanned! {ty.span()=>
            const _: () = #root::__private::assert_tenant_key::<#ty>();
        }
    });
    impls(
        &root,
        tenant.map(Field::variant).as_ref(),
        &spec,
        assert_key.as_ref(),
        model.dense,
        &crate::pipeline::decoder(&root, model),
    )
}

/// The impls of a declared entity: tenant-scoped with the `Column` variant `tenant`, or global.
fn impls(
    root: &TokenStream,
    tenant: Option<&Ident>,
    spec: &TokenStream,
    asserts: Option<&TokenStream>,
    dense: bool,
    decoder: &TokenStream,
) -> TokenStream {
    let sea_orm = quote!(#root::__private::sea_orm);
    // The dense format's generated code (`Entity::load()`, `ActiveModelEx`) calls `Entity::find()`,
    // `Model::find_related` and the `ActiveModel` writes expecting SeaORM's types and a raw
    // connection, so a dense entity keeps SeaORM's spellings there; its scoped reads are
    // `tenant::find::<Entity>()` and `TenantRepo`.
    let reads = if dense {
        TokenStream::new()
    } else {
        reads(root, tenant.is_none())
    };
    // On the trait impls: when an entity lacks one, rustc would list the entities that have it
    // ("the trait `Tenancy` is implemented for `post::Entity`", even the docs' sample entities),
    // which teaches nothing; the traits' own `on_unimplemented` note says what to write.
    let derived = quote! {
        #[automatically_derived]
        #[diagnostic::do_not_recommend]
    };

    let Some(variant) = tenant else {
        return quote! {
            const _: () = {
                #derived
                impl #root::Tenancy for Entity {
                    #[inline]
                    fn tenant_column() -> ::core::option::Option<Column> {
                        ::core::option::Option::None
                    }

                    #[inline]
                    fn table_spec() -> #root::TableSpec<Self> {
                        #spec
                    }

                    #decoder
                }

                #derived
                impl #root::Global for Entity {}

                #reads
            };
        };
    };

    let key = quote!(impl ::core::convert::Into<<<Self as #sea_orm::EntityTrait>::PrimaryKey as #sea_orm::PrimaryKeyTrait>::ValueType>);
    let model_writes = model_writes(root, dense);
    quote! {
        const _: () = {
            #derived
            impl #root::Tenancy for Entity {
                #[inline]
                fn tenant_column() -> ::core::option::Option<Column> {
                    ::core::option::Option::Some(Column::#variant)
                }

                #[inline]
                fn table_spec() -> #root::TableSpec<Self> {
                    #spec
                }

                #decoder
            }

            #derived
            impl #root::TenantScoped for Entity {
                const TENANT_COLUMN: Column = Column::#variant;
            }

            // The table and its tenant column, for joins through it as a many-to-many junction.
            #root::__private::inventory::submit! {
                #root::__private::TenantTable::of(&Entity)
            }

            #asserts

            #reads

            impl Entity {
                /// Tenant-scoped insert, stamped with the tenant in scope.
                #[inline]
                pub fn insert(model: ActiveModel) -> #root::Insert<ActiveModel> {
                    #root::Insert::new(model)
                }

                /// Tenant-scoped insert of many rows, each stamped with the tenant in scope.
                #[inline]
                pub fn insert_many(
                    models: impl ::core::iter::IntoIterator<Item = ActiveModel>,
                ) -> #root::InsertMany<ActiveModel> {
                    #root::InsertMany::new(models)
                }

                /// Tenant-scoped update by primary key; another tenant's row is `NotFound`.
                #[inline]
                pub fn update(model: ActiveModel) -> #root::Update<ActiveModel> {
                    #root::Update::new(model)
                }

                /// Tenant-scoped update of every matching row of the tenant in scope.
                #[inline]
                pub fn update_many() -> #root::Scoped<#sea_orm::UpdateMany<Self>> {
                    #root::__private::update_many::<Self>()
                }

                /// Tenant-scoped delete by primary key; another tenant's row is `NotFound`.
                #[inline]
                pub fn delete_by_id(id: #key) -> #root::DeleteById<Self> {
                    #root::DeleteById::new(id)
                }

                /// Tenant-scoped delete of every matching row of the tenant in scope.
                #[inline]
                pub fn delete_many() -> #root::Scoped<#sea_orm::DeleteMany<Self>> {
                    #root::__private::delete_many::<Self>()
                }
            }

            #model_writes
        };
    }
}

/// The reads every declared entity has, global ones included; `global` only changes the docs.
fn reads(root: &TokenStream, global: bool) -> TokenStream {
    let sea_orm = quote!(#root::__private::sea_orm);
    // A space first, as `///` would have.
    let (find, find_by_id) = if global {
        (
            " `find` of a table shared by every tenant: runs on a `TenantDb`, without a tenant filter.",
            " `find_by_id` of a table shared by every tenant: runs on a `TenantDb`, without a tenant filter.",
        )
    } else {
        (
            " Tenant-scoped `find`: only the rows of the tenant in scope, when run on a `TenantDb`.",
            " Tenant-scoped `find_by_id`: another tenant's row is not found.",
        )
    };
    quote! {
        impl Entity {
            #[doc = #find]
            #[inline]
            pub fn find() -> #root::Scoped<#sea_orm::Select<Self>> {
                #root::__private::find::<Self>()
            }

            #[doc = #find_by_id]
            #[inline]
            pub fn find_by_id(
                id: impl ::core::convert::Into<<<Self as #sea_orm::EntityTrait>::PrimaryKey as #sea_orm::PrimaryKeyTrait>::ValueType>,
            ) -> #root::Scoped<#sea_orm::Select<Self>> {
                #root::__private::find_by_id::<Self>(id)
            }
        }

        impl Model {
            /// `find_related`: the related rows, only those of the tenant in scope when `R` is tenant-scoped.
            #[inline]
            pub fn find_related<R>(&self, related: R) -> #root::Scoped<#sea_orm::Select<R>>
            where
                R: #root::Tenancy,
                Entity: #sea_orm::Related<R>,
            {
                #root::__private::find_related(self, related)
            }
        }
    }
}

/// After an error: the errors, plus the impls other code relies on, so that one mistake is
/// reported once rather than again at every use of the entity (`TenantRepo<Entity>`,
/// `Entity::find()`, `am.insert(&db)`). They are the real impls without the user's keys, on any
/// column when the tenant column is missing; the build fails on `errors`, so they never run.
fn fallback(model: &Model<'_>, errors: &TokenStream) -> TokenStream {
    let root = root(model);
    let tenant = if model.attrs.global.is_some() {
        None
    } else {
        let declared = model
            .attrs
            .column
            .as_ref()
            .and_then(|name| model.field(name));
        declared
            .or_else(|| model.fields.iter().find(|f| unraw(f.ident) == "tenant_id"))
            .or_else(|| model.fields.iter().find(|f| !f.ignored))
            .map(Field::variant)
    };
    let impls = impls(
        &root,
        tenant.as_ref(),
        &quote!(#root::TableSpec::new()),
        None,
        model.dense,
        &TokenStream::new(),
    );
    quote! {
        #errors
        #impls
    }
}

/// The `ActiveModel` and `Model` write shadows of a tenant-scoped entity; none for the dense
/// format, whose generated code needs SeaORM's own.
fn model_writes(root: &TokenStream, dense: bool) -> TokenStream {
    // The write shadows only build tenant-core's named futures: the write's bounds are then
    // checked where it is awaited, not once per entity here, and no opaque type is left for the
    // user's crate to type- and borrow-check.
    let future = quote!(#root::future);
    if dense {
        // See `reads` above: the scoped spellings stay `Entity::insert(am)`, `Entity::update(am)`,
        // `Entity::delete_by_id(id)` and `TenantRepo`.
        TokenStream::new()
    } else {
        quote! {
            impl ActiveModel {
                /// Tenant-scoped insert, stamped with the tenant in scope.
                #[inline]
                pub fn insert<C: #root::TenantConnection>(self, db: &C) -> #future::Insert<'_, C, ActiveModel> {
                    #future::Insert::new(db, self)
                }

                /// Tenant-scoped update; another tenant's row is `NotFound`, and the tenant column never changes.
                #[inline]
                pub fn update<C: #root::TenantConnection>(self, db: &C) -> #future::Update<'_, C, ActiveModel> {
                    #future::Update::new(db, self)
                }

                /// Tenant-scoped insert or update, by whether the primary key is set.
                #[inline]
                pub fn save<C: #root::TenantConnection>(self, db: &C) -> #future::Save<'_, C, ActiveModel> {
                    #future::Save::new(db, self)
                }

                /// Tenant-scoped delete; another tenant's row is `NotFound`.
                #[inline]
                pub fn delete<C: #root::TenantConnection>(self, db: &C) -> #future::Delete<'_, C, ActiveModel> {
                    #future::Delete::new(db, self)
                }
            }

            impl Model {
                /// Tenant-scoped delete; another tenant's row is `NotFound`.
                #[inline]
                pub fn delete<C: #root::TenantConnection>(self, db: &C) -> #future::Delete<'_, C, ActiveModel> {
                    #future::Delete::new(db, <ActiveModel as ::core::convert::From<Self>>::from(self))
                }
            }
        }
    }
}
