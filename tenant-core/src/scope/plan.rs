//! [`Plan`]: whom one operation acts for, and the predicate that limits it to that tenant.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};

use crate::Result;
use crate::context::{Access, audit_system};
use crate::entity::{Tenancy, table_name};
use crate::exec::{self, TenantConnection, Unit};

/// How one operation on `E` runs: the predicate that limits it to the tenant, and whom the
/// unit of work acts for.
pub(crate) struct Plan {
    /// Builds the tenant predicate for the tenant's value: built only where a statement is
    /// built, since a kept statement ([`template`](crate::query)) takes the value alone.
    predicate: Option<fn(sea_orm::Value) -> Expr>,
    access: Option<Access>,
    /// `tenant.op`, with the tenant (or `system`), the operation and the entity, around the
    /// operation's statements; a span without metadata when no subscriber wants it.
    span: tracing::Span,
}

impl Plan {
    /// The plan for `E` on `conn`: `E`'s tenant predicate for the tenant `conn` acts for, none
    /// for a global `E` or under a system scope (logged). Fails closed with no tenant.
    pub(crate) fn of<E: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        operation: &'static str,
    ) -> Result<Self> {
        if E::tenant_column().is_none() {
            return Ok(Self {
                predicate: None,
                access: None,
                span: tracing::Span::none(),
            });
        }
        Ok(Self::acting_for::<E>(exec::access(conn)?, operation))
    }

    /// The plan for `R` joined to an operation whose own plan counted it already
    /// ([`metrics`](crate::metrics)): the same as [`of`](Self::of), not counted again.
    pub(crate) fn of_joined<R: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        operation: &'static str,
    ) -> Result<Self> {
        if R::tenant_column().is_none() {
            return Self::of::<R, C>(conn, operation);
        }
        Ok(Self::build::<R>(exec::access(conn)?, operation, false))
    }

    /// The plan for tenant-scoped `E` acting for `access`.
    pub(crate) fn acting_for<E: Tenancy>(access: Access, operation: &'static str) -> Self {
        Self::build::<E>(access, operation, true)
    }

    fn build<E: Tenancy>(access: Access, operation: &'static str, counted: bool) -> Self {
        if counted {
            crate::metrics::operation(&access, operation, table_name::<E>());
        }
        let predicate = match (&access, E::tenant_column()) {
            (_, None) => None,
            (Access::Tenant(_), Some(_)) => Some(tenant_predicate::<E> as fn(_) -> _),
            (Access::System(reason), Some(_)) => {
                audit_system(reason, operation, table_name::<E>());
                None
            }
        };
        let span = match &access {
            Access::Tenant(id) => tracing::debug_span!(
                "tenant.op",
                tenant.id = %id,
                op = operation,
                entity = table_name::<E>()
            ),
            Access::System(_) => tracing::debug_span!(
                "tenant.op",
                tenant.id = "system",
                op = operation,
                entity = table_name::<E>()
            ),
        };
        Self {
            predicate,
            access: Some(access),
            // As `tenant::scope`'s: a disabled span still costs its enter and exit on each poll.
            span: if span.is_disabled() {
                tracing::Span::none()
            } else {
                span
            },
        }
    }

    /// The operation's span (`tenant.op`), to run its statements in.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Whom the operation acts for; `None` when only global tables are involved.
    pub(crate) fn access(&self) -> Option<&Access> {
        self.access.as_ref()
    }

    /// This plan's predicate, acting also for whoever `other` acts for (a joined entity).
    pub(crate) fn with(self, other: Plan) -> Self {
        Self {
            predicate: self.predicate,
            access: self.access.or(other.access),
            span: self.span,
        }
    }

    /// `query` with the tenant predicate added.
    pub(crate) fn apply<Q: QueryFilter>(&self, query: Q) -> Q {
        match self.predicate() {
            Some(p) => query.filter(p),
            None => query,
        }
    }

    /// Whether the operation is limited to a tenant (a tenant-scoped entity, acting for a
    /// tenant).
    pub(crate) fn is_scoped(&self) -> bool {
        self.predicate.is_some()
    }

    /// The predicate, for statements that take it elsewhere (an upsert's `WHERE`).
    pub(crate) fn predicate(&self) -> Option<Expr> {
        Some((self.predicate?)(self.tenant_value()?))
    }

    /// The value the predicate compares the tenant column with, if there is a predicate.
    pub(crate) fn tenant_value(&self) -> Option<sea_orm::Value> {
        match (&self.predicate, &self.access) {
            (Some(_), Some(Access::Tenant(id))) => Some(id.to_value()),
            _ => None,
        }
    }

    /// Opens the unit of work this plan's statements run in.
    pub(crate) async fn unit<'c, C: TenantConnection + ?Sized>(
        &self,
        conn: &'c C,
    ) -> Result<Unit<'c>> {
        exec::unit(conn, self.access.as_ref()).await
    }
}

/// `E`'s tenant column equal to `tenant`.
fn tenant_predicate<E: Tenancy>(tenant: sea_orm::Value) -> Expr {
    let column = E::tenant_column().expect("built only for a tenant-scoped entity");
    column.eq(tenant)
}
