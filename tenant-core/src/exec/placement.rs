//! Where a unit of work runs and how its tenant is bound there: decided once, here, for the
//! sqlx path and the pipeline alike.

use sea_orm::{DatabaseConnection, DbBackend};

use super::TenantDb;
use crate::catalog::{TenantRecord, Tier};
use crate::context::Access;
use crate::ddl::{is_tenant_schema_name, quote_ident};
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
    /// Where a unit of work acting for `access` runs, once the catalog (if any) admitted its
    /// tenant: the one decision the sqlx path and the pipeline both follow. `None`: no tenant
    /// needed, such as a global table.
    pub(super) async fn placement(&self, access: Option<&Access>) -> Result<Placement<'_>> {
        let entry = match (&self.catalog, access) {
            // Boxed: a lookup that misses the cache holds a SeaORM query's future, which would
            // otherwise make every operation's future that large.
            (Some(catalog), Some(Access::Tenant(id))) => Some(Box::pin(catalog.admit(*id)).await?),
            _ => None,
        };
        self.place(access, entry.as_deref())
    }

    /// Where a unit acting for `access` runs, given its tenant's catalog `entry` (if the handle
    /// has a catalog).
    fn place(
        &self,
        access: Option<&Access>,
        entry: Option<&TenantRecord>,
    ) -> Result<Placement<'_>> {
        let schema = match entry {
            Some(entry) => own_schema(entry)?,
            None => None,
        };
        if schema.is_some() && self.backend() != DbBackend::Postgres {
            return Err(Error::NeedsPostgres {
                feature: "schema-per-tenant",
                backend: self.backend(),
            });
        }
        let tenant = match access {
            Some(Access::Tenant(id)) => Some(*id),
            _ => None,
        };
        // In RLS mode every unit runs in a transaction, global reads included: behind
        // PgBouncer's transaction pooling a statement outside a transaction may be prepared on
        // one server connection and executed on another.
        let (pool, binding) = match (self.rls.as_deref(), access) {
            (Some(_), Some(Access::System(_))) => match &self.system {
                Some(system) => (Pool::System(system), None),
                None => return Err(Error::SystemNeedsBypass),
            },
            (Some(rls), _) => {
                let bound = Bound {
                    setting: tenant.map(|t| (rls.setting(), t)),
                    schema,
                    search_path: &self.search_path,
                };
                (Pool::App(&self.conn), Some(bound.sql()))
            }
            // App-level mode: a tenant of its own schema still needs a transaction to bind it.
            (None, _) => (
                Pool::App(&self.conn),
                schema.map(|schema| {
                    Bound {
                        setting: None,
                        schema: Some(schema),
                        search_path: &self.search_path,
                    }
                    .sql()
                }),
            ),
        };
        Ok(Placement { pool, binding })
    }

    /// Where a read or write acting for `access` goes on the pipeline, if this handle has one:
    /// the application pool's units only, with the same binding. The catalog admits the tenant
    /// first.
    #[cfg(feature = "pipeline")]
    pub(super) async fn route(
        &self,
        access: Option<&Access>,
    ) -> Result<Option<super::pipeline::Route<'_>>> {
        let Some(pipeline) = self.pipeline.as_ref() else {
            return Ok(None);
        };
        Ok(match self.placement(access).await? {
            Placement {
                pool: Pool::App(_),
                binding,
            } => Some(super::pipeline::Route {
                pipeline,
                begin: binding,
                confine: self.rls.is_some(),
            }),
            // A system scope in RLS mode runs on the bypass connection, which is sqlx's.
            Placement {
                pool: Pool::System(_),
                ..
            } => None,
        })
    }
}

/// The schema of a tenant on the schema tier, checked again: the catalog's table may have been
/// changed behind the catalog's back, and the name is written into SQL.
fn own_schema(entry: &TenantRecord) -> Result<Option<&str>> {
    match (entry.tier, entry.schema_name.as_deref()) {
        (Tier::Shared, _) => Ok(None),
        (Tier::Schema, Some(schema)) if is_tenant_schema_name(schema) => Ok(Some(schema)),
        (Tier::Schema, _) => Err(Error::InvalidTenantEntry {
            field: "schema name",
            reason: "must be a lowercase identifier of its own (not `public`, `information_schema` or `pg_*`)",
        }),
        (tier @ Tier::Database, _) => Err(Error::TierNotServed {
            tenant: entry.id,
            tier,
        }),
    }
}

/// What opens a bound unit of work: the tenant setting (RLS mode), the tenant's own schema
/// (schema tier), and the schemas every unit searches.
struct Bound<'a> {
    setting: Option<(&'a str, TenantId)>,
    schema: Option<&'a str>,
    search_path: &'a str,
}

impl Bound<'_> {
    /// `BEGIN; [SET LOCAL <setting> = '<tenant id>';] SET LOCAL search_path = [<own schema>, ]
    /// <schemas>, pg_temp`.
    ///
    /// One message, so the binding costs no round trip of its own. `search_path` is pinned with
    /// `pg_temp` last, so that no temporary table or session `SET search_path` left on a pooled
    /// connection can stand in for a tenant table; a tenant's own schema comes first, so its
    /// tables are the ones its statements name.
    fn sql(&self) -> String {
        use std::fmt::Write as _;
        let mut sql = String::from("BEGIN; ");
        // `TenantId` displays as a hyphenated UUID: hex digits and dashes only; the setting and
        // the schemas were validated as identifiers, and the own schema is quoted too.
        if let Some((setting, tenant)) = self.setting {
            let _ = write!(sql, "SET LOCAL {setting} = '{tenant}'; ");
        }
        sql.push_str("SET LOCAL search_path = ");
        if let Some(schema) = self.schema {
            sql.push_str(&quote_ident(schema));
            sql.push_str(", ");
        }
        sql.push_str(self.search_path);
        sql.push_str(", pg_temp");
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_is_one_message_with_begin_and_pins_the_search_path() {
        let id = TenantId::from(uuid::Uuid::from_u128(1));
        let bound = |setting, schema, search_path| {
            Bound {
                setting,
                schema,
                search_path,
            }
            .sql()
        };
        assert_eq!(
            bound(Some(("app.tenant_id", id)), None, "public"),
            "BEGIN; SET LOCAL app.tenant_id = '00000000-0000-0000-0000-000000000001'; \
             SET LOCAL search_path = public, pg_temp"
        );
        assert_eq!(
            bound(None, None, "app, public"),
            "BEGIN; SET LOCAL search_path = app, public, pg_temp"
        );
        assert_eq!(
            bound(None, Some("t_acme"), "public"),
            "BEGIN; SET LOCAL search_path = \"t_acme\", public, pg_temp"
        );
    }
}
