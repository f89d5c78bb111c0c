//! The tenant predicate of a joined entity, in the join's `ON` clause.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, IdenStatic, RelationDef};

use crate::TenantId;
use crate::entity::Tenancy;

/// The `ON` predicate for joined tenant-scoped `R`: equal to the base entity's tenant column,
/// or (base entity global) to the tenant in scope now, pinned and re-checked at execution.
pub(crate) fn tenant_on<E: Tenancy, R: Tenancy>(
    r_col: R::Column,
    rel: &RelationDef,
) -> (
    impl Fn(sea_orm::sea_query::DynIden, sea_orm::sea_query::DynIden) -> Condition
    + Send
    + Sync
    + 'static,
    Pin,
) {
    let previous = rel.on_condition.clone();
    let r_name = sea_orm::sea_query::Alias::new(r_col.as_str());
    let (base, pin) = if let Some(e_col) = E::tenant_column() {
        (
            Target::Column(Expr::col((e_col.entity_name(), e_col))),
            Pin::Free,
        )
    } else {
        let now = crate::context::current().ok();
        (
            Target::Value(now.map_or(sea_orm::Value::Uuid(None), TenantId::to_value)),
            now.map_or(Pin::NoTenant, Pin::Tenant),
        )
    };
    let on = move |from: sea_orm::sea_query::DynIden, to: sea_orm::sea_query::DynIden| {
        let r_tenant = Expr::col((to.clone(), r_name.clone()));
        let this = match &base {
            Target::Column(e) => r_tenant.eq(e.clone()),
            Target::Value(v) => r_tenant.eq(v.clone()),
        };
        let mut cond = Condition::all().add(this);
        if let Some(prev) = &previous {
            cond = cond.add(prev(from, to));
        }
        cond
    };
    (on, pin)
}

/// What the joined-entity predicate of a query was built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pin {
    /// The base entity's own tenant column: valid in any scope.
    Free,
    /// A value: the tenant in scope when the query was built, re-checked at execution.
    Tenant(TenantId),
    /// Built outside any tenant scope: refused at execution.
    NoTenant,
}

enum Target {
    Column(Expr),
    Value(sea_orm::Value),
}
