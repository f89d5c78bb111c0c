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
    /// The pool of a database-tier tenant's own database, leased from the tier.
    #[cfg(feature = "postgres")]
    Database {
        tier: &'a super::DatabaseTier,
        tenant: TenantId,
        reference: String,
    },
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
        let place = match entry {
            Some(entry) => own_place(entry)?,
            None => Place::Shared,
        };
        let schema = if let Place::Schema(schema) = place {
            Some(schema)
        } else {
            None
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
        // The pool a unit acting for the tenant runs on.
        let app = || -> Result<Pool<'_>> {
            match (place, entry) {
                #[cfg(feature = "postgres")]
                (Place::Database(reference), Some(entry)) => match &self.databases {
                    Some(tier) => Ok(Pool::Database {
                        tier,
                        tenant: entry.id,
                        reference: reference.to_owned(),
                    }),
                    None => Err(Error::TierNotServed {
                        tenant: entry.id,
                        tier: Tier::Database,
                    }),
                },
                _ => Ok(Pool::App(&self.conn)),
            }
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
                    split: self.distributed_keys,
                };
                (app()?, Some(bound.sql()))
            }
            // App-level mode: a tenant of its own schema still needs a transaction to bind it.
            (None, _) => (
                app()?,
                schema.map(|schema| {
                    Bound {
                        setting: None,
                        schema: Some(schema),
                        search_path: &self.search_path,
                        split: self.distributed_keys,
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
        let tiered = self
            .databases
            .as_ref()
            .is_some_and(super::DatabaseTier::pipelined);
        if self.pipeline.is_none() && !tiered {
            // No pipeline anywhere: the sqlx path admits and places the unit itself.
            return Ok(None);
        }
        Ok(match self.placement(access).await? {
            Placement {
                pool: Pool::App(_),
                binding,
            } => self
                .pipeline
                .as_ref()
                .map(|pipeline| super::pipeline::Route {
                    pipeline: std::borrow::Cow::Borrowed(pipeline),
                    begin: binding,
                    confine: self.rls.is_some(),
                    lease: None,
                    span: tracing::Span::none(),
                }),
            // A database-tier tenant's own pipeline, when its tier gives each database one (the
            // sqlx path leases the pool itself otherwise).
            Placement {
                pool:
                    Pool::Database {
                        tier,
                        tenant,
                        reference,
                    },
                binding,
            } if tier.pipelined() => {
                let leased = Box::pin(tier.lease(tenant, &reference)).await?;
                leased.pipeline.map(|own| super::pipeline::Route {
                    pipeline: std::borrow::Cow::Owned(own),
                    begin: binding,
                    confine: self.rls.is_some(),
                    lease: Some(leased.lease),
                    span: tracing::Span::none(),
                })
            }
            // A system scope in RLS mode runs on the bypass connection, which is sqlx's; so does a
            // database-tier tenant whose tier gives no pipelines.
            Placement {
                pool: Pool::System(_) | Pool::Database { .. },
                ..
            } => None,
        })
    }
}

/// Where a tenant's rows are, from its catalog entry.
#[derive(Clone, Copy)]
enum Place<'e> {
    /// The shared tables.
    Shared,
    /// Its own schema.
    Schema(&'e str),
    /// Its own database: the catalog's reference to it.
    #[cfg(feature = "postgres")]
    Database(&'e str),
}

/// Where `entry`'s tenant's rows are. The schema name is checked again: the catalog's table may
/// have been changed behind the catalog's back, and the name is written into SQL.
fn own_place(entry: &TenantRecord) -> Result<Place<'_>> {
    match (entry.tier, &entry.schema_name, &entry.database_ref) {
        (Tier::Shared, _, _) => Ok(Place::Shared),
        (Tier::Schema, Some(schema), _) if is_tenant_schema_name(schema) => {
            Ok(Place::Schema(schema))
        }
        (Tier::Schema, _, _) => Err(Error::InvalidTenantEntry {
            field: "schema name",
            reason: "must be a lowercase identifier of its own (not `public`, `information_schema` or `pg_*`)",
        }),
        #[cfg(feature = "postgres")]
        (Tier::Database, _, Some(reference)) => Ok(Place::Database(reference)),
        (tier @ Tier::Database, _, _) => Err(Error::TierNotServed {
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
    /// `BEGIN` apart from the binding ([`SPLIT`]): for Citus, which answers the one-message
    /// form with a warning from every worker.
    split: bool,
}

/// Where an opening splits into two messages, `BEGIN` and the binding: the executors send them
/// one after the other (in one round trip on the pipeline).
pub(super) const SPLIT: &str = ";\n";

/// The messages an opening is sent as: itself, or `BEGIN` and the binding.
#[cfg(feature = "postgres")]
pub(crate) fn opening_messages(opening: &str) -> (&str, Option<&str>) {
    // An opening starts `BEGIN` and then either `; ` or the split: no search needed.
    match opening
        .strip_prefix("BEGIN")
        .and_then(|rest| rest.strip_prefix(SPLIT))
    {
        Some(binding) => ("BEGIN", Some(binding)),
        None => (opening, None),
    }
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
        // Built by hand rather than with `format!`: it runs for every unit of work, and the
        // formatting machinery (the UUID's `Display` above all) cost more than the rest of
        // building it.
        let mut sql = String::with_capacity(128 + self.search_path.len());
        sql.push_str("BEGIN");
        sql.push_str(if self.split { SPLIT } else { "; " });
        // `TenantId` is written as a hyphenated UUID: hex digits and dashes only; the setting
        // and the schemas were validated as identifiers, and the own schema is quoted too.
        if let Some((setting, tenant)) = self.setting {
            let mut uuid = uuid::Uuid::encode_buffer();
            sql.push_str("SET LOCAL ");
            sql.push_str(setting);
            sql.push_str(" = '");
            sql.push_str(tenant.as_uuid().hyphenated().encode_lower(&mut uuid));
            sql.push_str("'; ");
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
                split: false,
            }
            .sql()
        };
        assert_eq!(
            bound(Some(("app.tenant_id", id)), None, "public"),
            "BEGIN; SET LOCAL app.tenant_id = '00000000-0000-0000-0000-000000000001'; \
             SET LOCAL search_path = public, pg_temp"
        );
        // Written as `TenantId` displays: lowercase, hyphenated.
        let hex = TenantId::from(uuid::Uuid::from_u128(
            0xDEAD_BEEF_0123_4567_89AB_CDEF_F00D_CAFE,
        ));
        assert_eq!(
            bound(Some(("app.tenant_id", hex)), None, "public"),
            format!(
                "BEGIN; SET LOCAL app.tenant_id = '{hex}'; SET LOCAL search_path = public, pg_temp"
            )
        );
        assert!(hex.to_string().contains("deadbeef-0123"), "{hex}");
        assert_eq!(
            bound(None, None, "app, public"),
            "BEGIN; SET LOCAL search_path = app, public, pg_temp"
        );
        assert_eq!(
            bound(None, Some("t_acme"), "public"),
            "BEGIN; SET LOCAL search_path = \"t_acme\", public, pg_temp"
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn the_split_binding_is_begin_then_the_binding() {
        let id = TenantId::from(uuid::Uuid::from_u128(1));
        // Split (Citus): `BEGIN` is a message of its own, the binding the next.
        let split = Bound {
            setting: Some(("app.tenant_id", id)),
            schema: None,
            search_path: "public",
            split: true,
        }
        .sql();
        assert_eq!(
            opening_messages(&split),
            (
                "BEGIN",
                Some(
                    "SET LOCAL app.tenant_id = '00000000-0000-0000-0000-000000000001'; \
                     SET LOCAL search_path = public, pg_temp"
                )
            )
        );
        assert_eq!(
            opening_messages("BEGIN; SET LOCAL x = 1"),
            ("BEGIN; SET LOCAL x = 1", None)
        );
    }
}
