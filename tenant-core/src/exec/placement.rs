//! Where a unit of work runs and how its tenant is bound there: decided once, here, for the
//! sqlx path and the pipeline alike.

use sea_orm::DatabaseConnection;

use super::TenantDb;
use crate::catalog::Catalog;
use crate::context::Access;
use crate::ddl::Rls;
use crate::{Error, Result, TenantId};

/// Where one unit of work runs, and the message that binds its tenant there.
pub(super) struct Placement<'a> {
    /// The pool its statements run on.
    pub(super) pool: Pool<'a>,
    /// What opens its transaction and binds the tenant (RLS mode); `None`: the unit runs without
    /// a transaction of its own.
    pub(super) binding: Option<String>,
}

/// Which of a handle's pools a unit runs on.
pub(super) enum Pool<'a> {
    /// The application's pool; the pipeline may stand in for it.
    App(&'a DatabaseConnection),
    /// The connection for system scopes in RLS mode, whose role bypasses the policies.
    System(&'a DatabaseConnection),
}

impl<'a> Pool<'a> {
    /// The connection itself.
    pub(super) fn connection(&self) -> &'a DatabaseConnection {
        match self {
            Pool::App(conn) | Pool::System(conn) => conn,
        }
    }
}

impl TenantDb {
    /// Refuses, before anything runs, an operation of a tenant the catalog does not admit.
    pub(super) async fn admit(&self, access: Option<&Access>) -> Result<()> {
        match self.admission(access) {
            Some((catalog, tenant)) => catalog.admit(tenant).await,
            None => Ok(()),
        }
    }

    /// The catalog and tenant an operation acting for `access` must be admitted by first.
    fn admission(&self, access: Option<&Access>) -> Option<(&Catalog, TenantId)> {
        match (&self.catalog, access) {
            (Some(catalog), Some(Access::Tenant(id))) => Some((catalog, *id)),
            _ => None,
        }
    }

    /// Where a unit of work acting for `access` runs (`None`: no tenant needed, such as a global
    /// table).
    pub(super) fn place(&self, access: Option<&Access>) -> Result<Placement<'_>> {
        // In RLS mode every unit runs in a transaction, global reads included: behind
        // PgBouncer's transaction pooling a statement outside a transaction may be prepared on
        // one server connection and executed on another.
        let (pool, binding) = match (self.rls.as_deref(), access) {
            (Some(_), Some(Access::System(_))) => match &self.system {
                Some(system) => (Pool::System(system), None),
                None => return Err(Error::SystemNeedsBypass),
            },
            (Some(rls), access) => {
                let tenant = match access {
                    Some(Access::Tenant(id)) => Some(*id),
                    _ => None,
                };
                (Pool::App(&self.conn), Some(binding(rls, tenant)))
            }
            (None, _) => (Pool::App(&self.conn), None),
        };
        Ok(Placement { pool, binding })
    }

    /// Where a read or write acting for `access` goes on the pipeline, if this handle has one:
    /// the application pool's units only, with the same binding.
    #[cfg(feature = "pipeline")]
    pub(super) fn route(&self, access: Option<&Access>) -> Option<super::pipeline::Route<'_>> {
        let pipeline = self.pipeline.as_ref()?;
        match self.place(access).ok()? {
            Placement {
                pool: Pool::App(_),
                binding,
            } => Some(super::pipeline::Route {
                pipeline,
                begin: binding,
                admission: self.admission(access),
            }),
            // A system scope in RLS mode runs on the bypass connection, which is sqlx's.
            Placement {
                pool: Pool::System(_),
                ..
            } => None,
        }
    }
}

/// The message that opens an RLS unit of work for `tenant`:
/// `BEGIN; SET LOCAL <setting> = '<tenant id>'; SET LOCAL search_path = <schemas>, pg_temp`.
///
/// One message, so the binding costs no round trip of its own. `search_path` is pinned with
/// `pg_temp` last, so that no temporary table or session `SET search_path` left on a pooled
/// connection can stand in for a tenant table.
pub(super) fn binding(rls: &Rls, tenant: Option<TenantId>) -> String {
    let path = format!("SET LOCAL search_path = {}, pg_temp", rls.search_path());
    match tenant {
        // `TenantId` displays as a hyphenated UUID: hex digits and dashes only; the setting and
        // the schemas were validated as identifiers when the `Rls` was made.
        Some(tenant) => format!("BEGIN; SET LOCAL {} = '{tenant}'; {path}", rls.setting()),
        None => format!("BEGIN; {path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_is_one_message_with_begin_and_pins_the_search_path() {
        let id = TenantId::from(uuid::Uuid::from_u128(1));
        assert_eq!(
            binding(&Rls::default(), Some(id)),
            "BEGIN; SET LOCAL app.tenant_id = '00000000-0000-0000-0000-000000000001'; \
             SET LOCAL search_path = public, pg_temp"
        );
        let app_first = Rls::default().with_search_path(&["app", "public"]).unwrap();
        assert_eq!(
            binding(&app_first, None),
            "BEGIN; SET LOCAL search_path = app, public, pg_temp"
        );
    }
}
