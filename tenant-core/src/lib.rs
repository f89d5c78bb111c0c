//! The runtime of the [`tenant`](https://docs.rs/tenant) crate: the tenant context, the scoped
//! connection, scoped queries and writes, and the schema a tenancy declaration implies.
//!
//! Users depend on the `tenant` facade, which re-exports this crate and adds the derive.

// Where each guarantee lives, from the ground up:
//
// - `context`, `id`, `entity`: the tenant in scope, its id, and what an entity declared.
// - `ddl`: what a declaration implies in the database (tables, tenant-leading keys, RLS
//   policies), and the identifiers both write.
// - `audit`: whether a live database isolates tenants as the declarations say.
// - `catalog`: the control plane's record of every tenant, and the cached lookup that admits
//   a tenant's operations.
// - `exec`: where and how statements run. `placement` decides, for one unit of work, which pool
//   it runs on and how its tenant is bound there, from the tenant's catalog entry (shared
//   tables, its own schema, or its own database from the pools of `databases`); the sqlx path
//   (`unit`, `pg`) and the pipeline both take that decision. A further tier is one more `Place`
//   there, consumed the same way.
// - `scope`: the scoping rule: whom an operation acts for and its tenant predicate (`plan`),
//   the tenant a write carries (`stamp`), the predicate of a joined entity (`join`).
// - `web`: the tenant of a web request (resolution, the scope around its handler) and errors as
//   HTTP responses.
// - `testing`: the checks a user's own test suite runs on its entities (and ours on ours).
// - `keys`, `jobs`: cache keys, object storage paths and background jobs that carry their
//   tenant.
// - `query`: what users hold and call (`Scoped`, the write builders, `TenantRepo`) and how each
//   read and write runs under the rule, with statements of a fixed shape kept (`template`).

mod audit;
pub mod catalog;
mod context;
mod ddl;
mod entity;
mod error;
mod events;
mod exec;
mod id;
#[cfg(feature = "jobs")]
#[cfg_attr(docsrs, doc(cfg(feature = "jobs")))]
pub mod jobs;
pub mod keys;
pub mod metrics;
mod query;
mod scope;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;

pub use audit::{Finding, FindingKind, Report};
#[cfg(feature = "postgres")]
pub use audit::{audit, audit_in};
pub use context::{SystemScope, current, scope, spawn};
#[expect(deprecated, reason = "the former name stays usable")]
pub use ddl::TenantSchema;
pub use ddl::{ExpectedForeignKey, ExpectedIndex, ExpectedPolicy, ExpectedTable};
pub use ddl::{PolicyForm, Rls};
pub use ddl::{Table, TableStatements, TenantTables, create_schema, table, table_statements};
pub use entity::{Global, IndexSpec, TableSpec, Tenancy, TenantScoped};
pub use error::{Error, Result};
pub use events::{audit_level, set_audit_level};
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub use exec::pipeline;
#[cfg(feature = "pipeline")]
pub use exec::pipeline::Pipeline;
pub use exec::{AssertUnscoped, TenantConnection, TenantDb, TenantDbBuilder, TenantTxn};
#[cfg(feature = "postgres")]
pub use exec::{DatabaseTier, ResolveDatabase, ResolveError};
pub use id::{TenantId, TenantKey};
pub use query::future;
pub use query::{AssertGlobal, GlobalWrites, Scoped, TenantRepo, Update};
pub use query::{CursorOf, DeleteById, Insert, InsertMany, IntoModel, IntoTuple, Paginator};

/// A tenant-scoped select of `E`: what `Entity::find()` returns for an entity declared with
/// `#[derive(TenantScoped)]`, also for entities in SeaORM's dense format, whose `find` stays
/// SeaORM's.
pub fn find<E: Tenancy>() -> Scoped<sea_orm::Select<E>> {
    __private::find::<E>()
}

/// What generated code calls. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::__pg_decoder as pg_decoder;
    pub use crate::context::Access;
    pub use crate::exec::{Exec, Unit};
    pub use crate::scope::TenantTable;
    pub use inventory;
    pub use sea_orm;
    pub use uuid;

    use sea_orm::{EntityTrait, ModelTrait, PrimaryKeyTrait, Related, Select};

    use crate::{Scoped, Tenancy};

    /// `Entity::find()` for a declared entity: SeaORM's select, kept per entity and cloned.
    pub fn find<E: Tenancy>() -> Scoped<Select<E>> {
        Scoped::new(crate::query::template::find::<E>())
    }

    /// `Entity::find_by_id(..)` for a declared entity.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place the select is made; `Scoped` adds the predicate"
    )]
    pub fn find_by_id<E: Tenancy>(
        id: impl Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
    ) -> Scoped<Select<E>> {
        Scoped::new(<E as EntityTrait>::find_by_id(id))
    }

    /// `Model::find_related(..)` for a declared entity. Through a junction (many-to-many)
    /// that is tenant-scoped, the junction is joined on the tenant column as well.
    #[expect(
        clippy::disallowed_methods,
        reason = "SeaORM's builder for a scoped read; the tenant predicate is added here"
    )]
    pub fn find_related<M, R>(model: &M, r: R) -> Scoped<Select<R>>
    where
        M: ModelTrait,
        M::Entity: Related<R> + Tenancy,
        R: Tenancy,
    {
        use crate::scope::junction;
        use sea_orm::{JoinType, QueryFilter, QuerySelect};
        let Some(via) = <M::Entity as Related<R>>::via() else {
            return Scoped::new(ModelTrait::find_related(model, r));
        };
        // SeaORM's `Related::find_related`, with the junction in the model's tenant.
        let to = junction::to_in_tenant::<R>(<M::Entity as Related<R>>::to(), &via);
        let via = junction::via_in_tenant::<M::Entity>(via);
        Scoped::new(
            R::find()
                .join_join_rev(JoinType::InnerJoin, to, Some(via))
                .belongs_to(model),
        )
    }

    /// `Entity::update_many()` for a tenant-scoped entity.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place the update is made; `Scoped` adds the predicate"
    )]
    pub fn update_many<E: crate::TenantScoped>() -> Scoped<sea_orm::UpdateMany<E>> {
        Scoped::new(<E as EntityTrait>::update_many())
    }

    /// `Entity::delete_many()` for a tenant-scoped entity.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place the delete is made; `Scoped` adds the predicate"
    )]
    pub fn delete_many<E: crate::TenantScoped>() -> Scoped<sea_orm::DeleteMany<E>> {
        Scoped::new(<E as EntityTrait>::delete_many())
    }

    /// Asserts at the user's field type that it can hold a tenant id.
    pub const fn assert_tenant_key<T: crate::TenantKey>() {}
}

/// Without the `pipeline` feature there is no pipelined executor and so nothing to decode.
#[cfg(not(feature = "pipeline"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __pg_decoder {
    ($($tokens:tt)*) => {};
}
