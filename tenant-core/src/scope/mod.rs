//! The scoping rule, in one place: whom an operation acts for and the predicate that limits it to
//! that tenant ([`Plan`]), the tenant a write carries ([`stamp`], [`freeze_tenant`]), and the
//! tenant predicate of a joined entity ([`tenant_on`]) and of the junction of a many-to-many
//! relation ([`junction`]).

mod join;
pub(crate) mod junction;
mod plan;
mod stamp;

pub(crate) use join::{Pin, tenant_on};
pub use junction::TenantTable;
pub(crate) use plan::Plan;
pub(crate) use stamp::{hold_tenant, row_tenant, stamp};
