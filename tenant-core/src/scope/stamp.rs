//! Writes carry the tenant in scope: an insert is stamped with it, an update can never change it.

use sea_orm::{ActiveModelTrait, ActiveValue, Value};

use crate::context::{Access, audit_system};
use crate::entity::{TenantScoped, table_name};
use crate::{Error, Result, TenantId};

/// Sets the tenant column of an insert to the tenant in scope. A row that already names another
/// tenant is refused, never silently rewritten.
pub(crate) fn stamp<A>(am: &mut A, access: &Access) -> Result<()>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
{
    let column = <A::Entity as TenantScoped>::TENANT_COLUMN;
    let entity = table_name::<A::Entity>();
    let given = match am.get(column) {
        ActiveValue::Set(v) | ActiveValue::Unchanged(v) => Some(v),
        ActiveValue::NotSet => None,
    };
    match access {
        Access::Tenant(id) => {
            let want = id.to_value();
            match given {
                Some(v) if v != want => Err(Error::CrossTenant {
                    entity,
                    scope: *id,
                    found: match v {
                        Value::Uuid(Some(found)) => Some(TenantId::from(found)),
                        _ => None,
                    },
                }),
                _ => {
                    am.set(column, want);
                    Ok(())
                }
            }
        }
        Access::System(reason) => match given {
            Some(v) if v != Value::Uuid(None) => {
                audit_system(reason, "insert", entity);
                am.set(column, v);
                Ok(())
            }
            _ => Err(Error::MissingTenant { entity }),
        },
    }
}

/// The tenant a row names in its tenant column, if it names one.
pub(crate) fn row_tenant<A>(am: &A) -> Option<TenantId>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
{
    match am.get(<A::Entity as TenantScoped>::TENANT_COLUMN) {
        ActiveValue::Set(Value::Uuid(Some(id))) | ActiveValue::Unchanged(Value::Uuid(Some(id))) => {
            Some(TenantId::from(id))
        }
        _ => None,
    }
}

/// Refuses an update that would change the tenant column, and keeps the column out of the `SET`
/// list: the tenant of a row is fixed at insert.
pub(crate) fn freeze_tenant<A>(am: &mut A, access: &Access) -> Result<()>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
{
    let column = <A::Entity as TenantScoped>::TENANT_COLUMN;
    if let (ActiveValue::Set(v), Access::Tenant(id)) = (am.get(column), access)
        && v != id.to_value()
    {
        return Err(Error::TenantChange {
            entity: table_name::<A::Entity>(),
        });
    }
    if let ActiveValue::Set(_) = am.get(column) {
        // Never in the `SET` list: the returned row still carries it, read back from the table.
        am.not_set(column);
    }
    Ok(())
}

/// Stamps an insert with the tenant, or freezes it in an update. After the `before_save` hook,
/// so that a hook cannot move the row to another tenant.
pub(crate) fn hold_tenant<A>(am: &mut A, access: &Access, insert: bool) -> Result<()>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
{
    if insert {
        stamp(am, access)
    } else {
        freeze_tenant(am, access)
    }
}
