//! [`TenantDb`] and [`TenantTxn`]: the handles scoped operations run on, and the escape hatch.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend, TransactionTrait};

#[cfg(feature = "postgres")]
use super::pg::{PgTxn, PgUnit};
use super::placement::{Placement, Pool};
use super::unit::{Exec, Unit, UnitKind};
use super::{TenantConnection, private};
use crate::context::{self, Access};
use crate::ddl::Rls;
use crate::{Error, Result};

/// A database handle that runs only tenant-scoped statements.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = tenant_core::TenantDb::new(sea_orm::Database::connect("sqlite::memory:").await?);
/// assert_eq!(db.backend(), sea_orm::DbBackend::Sqlite);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TenantDb {
    pub(super) conn: DatabaseConnection,
    pub(super) rls: Option<Arc<Rls>>,
    /// The schemas every bound unit searches after a tenant's own (RLS mode's, or `public`).
    pub(super) search_path: Arc<str>,
    /// A connection whose role bypasses RLS, for system scopes in RLS mode.
    pub(super) system: Option<DatabaseConnection>,
    /// The escape hatch's own pool, when [`TenantDb::connect`] opened one: raw SQL then never
    /// runs on a connection that scoped units use.
    hatch: Option<DatabaseConnection>,
    /// The tenant catalog that admits a tenant's operations, when the handle has one.
    pub(super) catalog: Option<crate::catalog::Catalog>,
    /// Whether a row's key is unique per tenant only (the distributed form of the tables).
    pub(super) distributed_keys: bool,
    /// The pools of database-tier tenants' own databases, when the handle serves that tier.
    #[cfg(feature = "postgres")]
    pub(super) databases: Option<super::DatabaseTier>,
    /// The pipelined executor for the reads it can take.
    #[cfg(feature = "pipeline")]
    pub(super) pipeline: Option<crate::Pipeline>,
}

impl TenantDb {
    /// Wraps a SeaORM connection (pool). Scoping is enforced by this crate's queries (the
    /// app-level filter); see [`with_rls`](Self::with_rls) for the database layer.
    pub fn new(conn: DatabaseConnection) -> Self {
        Self {
            conn,
            rls: None,
            search_path: Arc::from("public"),
            system: None,
            hatch: None,
            catalog: None,
            distributed_keys: false,
            #[cfg(feature = "postgres")]
            databases: None,
            #[cfg(feature = "pipeline")]
            pipeline: None,
        }
    }

    /// Wraps a PostgreSQL connection in RLS mode: every scoped unit of work runs in a
    /// transaction that binds the tenant with `SET LOCAL` first, so the tables' policies
    /// refuse what the app-level filter would have missed. The app-level predicate stays too.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsPostgres`] when the connection is not PostgreSQL.
    pub fn with_rls(conn: DatabaseConnection, rls: Rls) -> Result<Self> {
        if conn.get_database_backend() != DbBackend::Postgres || !cfg!(feature = "postgres") {
            return Err(Error::NeedsPostgres {
                feature: "RLS mode",
                backend: conn.get_database_backend(),
            });
        }
        Ok(Self {
            search_path: Arc::from(rls.search_path()),
            rls: Some(Arc::new(rls)),
            ..Self::new(conn)
        })
    }

    /// [`with_rls`](Self::with_rls) that refuses to start unless the start-up
    /// [`audit`](crate::audit()) of `schema` on this connection is clean: the role cannot bypass
    /// the policies, every tenant table is under the declared policy, and the declared keys exist.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] listing every finding with its fix; [`Error::RlsMismatch`] when `schema`
    /// declares no RLS or other settings than `rls`; [`Error::NeedsPostgres`] when the connection
    /// is not PostgreSQL; or the database's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(tables: Vec<tenant_core::Table>) -> tenant_core::Result<()> {
    /// # let conn: sea_orm::DatabaseConnection = unimplemented!();
    /// let rls = tenant_core::Rls::default();
    /// let schema = tenant_core::TenantTables::new().tables(tables).rls(rls.clone());
    /// let db = tenant_core::TenantDb::with_rls_checked(conn, rls, &schema).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn with_rls_checked(
        conn: DatabaseConnection,
        rls: Rls,
        schema: &crate::TenantTables,
    ) -> Result<Self> {
        if schema.rls_settings() != Some(&rls) {
            return Err(Error::RlsMismatch {
                schema: schema.rls_settings().cloned(),
                handle: rls,
            });
        }
        let db = Self::with_rls(conn, rls)?;
        crate::audit(&db.conn, schema).await?.into_result()?;
        Ok(db)
    }

    /// The schemas the shared tables and the global tables live in, searched after a
    /// schema-tier tenant's own schema (default: `public`; in RLS mode, the
    /// [`Rls`](crate::Rls)'s search path, which this replaces).
    ///
    /// A tenant whose catalog entry puts it on the schema tier runs every unit of work in a
    /// transaction that begins `SET LOCAL search_path = <its schema>, <these>, pg_temp`: its own
    /// tables come first, and the global tables its statements join are found after them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `schemas` is empty or a name is not a lowercase identifier.
    pub fn with_search_path(mut self, schemas: &[&str]) -> Result<Self> {
        let path = crate::ddl::search_path(schemas)?;
        if let Some(rls) = &self.rls {
            self.rls = Some(Arc::new(rls.as_ref().clone().with_search_path(schemas)?));
        }
        self.search_path = Arc::from(path);
        Ok(self)
    }

    /// The connection system scopes use in RLS mode: its role must bypass RLS (or own the
    /// tables without `FORCE`), since the application role sees no rows without a tenant.
    #[must_use]
    pub fn with_system_connection(mut self, conn: DatabaseConnection) -> Self {
        self.system = Some(conn);
        self
    }

    /// The pipelined executor, if the handle has one: [`TenantDbBuilder`](crate::TenantDbBuilder)
    /// gives one to every PostgreSQL handle unless told otherwise.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    pub fn pipeline(&self) -> Option<&crate::Pipeline> {
        self.pipeline.as_ref()
    }

    /// Runs the reads that return whole models or a count (`all`, `one`, `exists`,
    /// `find_by_id`, `count`, paginator pages) and the writes (insert, update, delete by key,
    /// `insert_many`, `update_many`, `delete_many`, upserts) on `pipeline`, which sends the
    /// tenant binding, the statement and the `COMMIT` of an RLS-mode statement together: one
    /// round trip instead of three.
    ///
    /// The same tenant predicate and, in RLS mode, the same `BEGIN; SET LOCAL ..` are sent; only
    /// the driver differs. Transactions, system scopes, joins, partial models and tuples, and
    /// models with a field type tokio-postgres cannot decode stay on the SeaORM connection; so
    /// does a write whose SeaORM hooks use the database. Each such operation says so at debug
    /// level on the `tenant::pipeline` target. See [`pipeline`](crate::pipeline).
    ///
    /// Connect the pipeline as the same role as this handle's connection. In RLS mode its reads
    /// and writes fail with [`Error::BypassingRole`] when that role is a superuser or has `BYPASSRLS`
    /// (checked once, on the first statement).
    ///
    /// # Errors
    ///
    /// [`Error::NeedsPostgres`] when this handle is not on PostgreSQL.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    pub fn with_pipeline(mut self, pipeline: crate::Pipeline) -> Result<Self> {
        if self.backend() != DbBackend::Postgres {
            return Err(Error::NeedsPostgres {
                feature: "the pipelined executor",
                backend: self.backend(),
            });
        }
        self.pipeline = Some(pipeline);
        Ok(self)
    }

    /// The pool, for this crate's own queries of PostgreSQL's system catalogs (the role check,
    /// the audit); no audit log line, unlike `unscoped`.
    #[cfg(feature = "postgres")]
    pub(crate) fn raw(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The RLS settings, when in RLS mode.
    pub fn rls(&self) -> Option<&Rls> {
        self.rls.as_deref()
    }

    /// The database backend.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Begins a transaction bound to the tenant in scope.
    ///
    /// Every scoped API accepts the returned [`TenantTxn`] in place of the [`TenantDb`]. Using it
    /// inside another tenant's scope fails with [`Error::ScopeMismatch`].
    ///
    /// # Errors
    ///
    /// [`Error::NoTenant`] outside a scope, or the database's error.
    pub async fn begin(&self) -> Result<TenantTxn> {
        let access = context::access()?;
        let txn = match self.unit(Some(&access)).await?.kind {
            UnitKind::Shared(Exec::Db(conn)) => TxnKind::Orm(conn.begin().await?),
            // On PostgreSQL the unit's connection is held by this crate, so that a `TenantTxn`
            // dropped while its `BEGIN` is in flight never goes back to the pool inside a
            // transaction. In RLS mode the unit has begun already, with the tenant bound.
            #[cfg(feature = "postgres")]
            UnitKind::Bound(mut txn) => {
                txn.get_mut().begin_if_idle().await?;
                TxnKind::Pg(txn)
            }
            UnitKind::Shared(_) => unreachable!("a `TenantDb` unit runs on its own pool"),
        };
        Ok(TenantTxn {
            txn,
            access,
            catalog: self.catalog.clone(),
            distributed_keys: self.distributed_keys,
        })
    }

    /// A unit of work acting for `access` (`None`: no tenant needed, such as a global table),
    /// once the catalog (if any) admitted its tenant.
    async fn unit(&self, access: Option<&Access>) -> Result<Unit<'_>> {
        let Placement { pool, binding } = self.placement(access).await?;
        // Where the pipeline could have run it: say so, so that no one is on the slow path
        // without knowing (the pipeline says first why, when it declined).
        #[cfg(feature = "pipeline")]
        if self.pipeline.is_some() && matches!(pool, Pool::App(_)) {
            tracing::debug!(
                target: "tenant::pipeline",
                "runs on sqlx: the operation has no pipelined form, or the pipeline declined it"
            );
        }
        let conn = match pool {
            Pool::App(conn) | Pool::System(conn) => conn,
            #[cfg(feature = "postgres")]
            Pool::Database {
                tier,
                tenant,
                reference,
            } => {
                // Boxed, as below; the lease keeps the tenant's pool open while the unit runs.
                let leased = Box::pin(tier.lease(tenant, &reference)).await?;
                let commits = binding.is_some();
                let txn = match binding {
                    Some(begin) => Box::pin(PgUnit::begin(&leased.pool, begin)).await?,
                    None => Box::pin(PgUnit::acquire(&leased.pool)).await?,
                };
                return Ok(Unit {
                    kind: UnitKind::Bound(tokio::sync::Mutex::new(txn.leasing(leased.lease))),
                    commits,
                });
            }
        };
        // On PostgreSQL the unit holds its connection: see `PgUnit`.
        #[cfg(feature = "postgres")]
        if conn.get_database_backend() == DbBackend::Postgres {
            let pool = conn.get_postgres_connection_pool();
            // Boxed: the acquire-and-begin future is large, and an unboxed one would make
            // every operation's future that large.
            let commits = binding.is_some();
            let txn = match binding {
                Some(begin) => Box::pin(PgUnit::begin(pool, begin)).await?,
                None => Box::pin(PgUnit::acquire(pool)).await?,
            };
            return Ok(Unit {
                kind: UnitKind::Bound(tokio::sync::Mutex::new(txn)),
                commits,
            });
        }
        debug_assert!(binding.is_none(), "`with_rls` refuses without PostgreSQL");
        Ok(Unit::shared(Exec::Db(conn)))
    }

    /// Says that this handle's tables are in the distributed form
    /// ([`TenantTables::distributed`](crate::TenantTables::distributed), for Citus): a row's key
    /// is unique per tenant, so upserts find the row by `(tenant, key)` instead of the key alone.
    /// Each bound unit also opens with `BEGIN` and its binding as two messages, the form Citus
    /// runs without a warning from every worker (`there is already a transaction in progress`):
    /// one round trip more on sqlx, none on the pipeline, which sends both at once.
    /// Without it, an upsert on such tables fails (`no unique or exclusion constraint matching
    /// the ON CONFLICT specification`); with it on tables of the standard form, it fails the
    /// same way unless the `(tenant, key)` unique the standard form also creates is there.
    #[must_use]
    pub fn with_distributed_keys(mut self) -> Self {
        self.distributed_keys = true;
        self
    }

    /// Admits only the operations of tenants whose entry in `catalog` is active: an unknown,
    /// suspended, offboarded, provisioning or moving tenant's operations fail with their own
    /// error ([`Error::UnknownTenant`], [`Error::TenantSuspended`], ..) before any SQL is sent.
    /// System scopes and global tables act for no tenant and are not checked, but a row a system
    /// scope inserts must be for a tenant of the shared tables ([`Error::TenantElsewhere`]).
    ///
    /// Give the catalog a pool of its own, or one that units of work do not exhaust: a lookup
    /// that misses the cache inside a unit (a system scope's insert whose hook changed the row's
    /// tenant) waits for a connection of the catalog's pool.
    #[must_use]
    pub fn with_catalog(mut self, catalog: crate::catalog::Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Serves the tenants whose catalog entry puts them on the database tier: each one's units
    /// run on a pool of its own database, which `tier` opens and closes under its cap (see
    /// [`DatabaseTier`](crate::DatabaseTier)). In RLS mode they bind the tenant there as here.
    /// Their operations run on sqlx, not on the pipeline.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when the tier's `per_tenant` is 0 or above its
    /// `max_connections`.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn with_database_tier(mut self, tier: super::DatabaseTier) -> Result<Self> {
        tier.validate()?;
        self.databases = Some(tier);
        Ok(self)
    }

    /// Audits every tenant the catalog puts on a schema or database of its own, as the start-up
    /// audit does the shared tables: each schema tenant's copies with
    /// [`audit_in`](crate::audit_in) on this handle's pool, each database tenant's database with
    /// [`audit`](crate::audit) on its tier's pool (role checks included, since its role may
    /// differ). Offboarded tenants are skipped. Every finding names its schema
    /// ([`Finding::schema`](crate::Finding::schema)) or database reference
    /// ([`Finding::database`](crate::Finding::database)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] without a catalog; [`Error::TierNotServed`] for a database
    /// tenant without a database tier; the database's error.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn audit_tenants(&self, tables: &crate::TenantTables) -> Result<crate::Report> {
        use crate::catalog::{TenantStatus, Tier};
        let Some(catalog) = &self.catalog else {
            return Err(Error::InvalidSetting {
                setting: "tenant audit",
                reason: "the tenants to audit are the catalog's: give the handle one",
            });
        };
        let mut report = crate::Report::default();
        for entry in catalog.list(None).await? {
            if entry.status == TenantStatus::Offboarded {
                continue;
            }
            match (entry.tier, &entry.schema_name, &entry.database_ref) {
                (Tier::Schema, Some(schema), _) => {
                    report.extend(crate::audit_in(&self.conn, tables, schema).await?);
                }
                (Tier::Database, _, Some(reference)) => {
                    let Some(tier) = &self.databases else {
                        return Err(Error::TierNotServed {
                            tenant: entry.id,
                            tier: entry.tier,
                        });
                    };
                    let leased = tier.lease(entry.id, reference).await?;
                    let conn = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(leased.pool);
                    let found = crate::audit(&conn, tables).await?;
                    drop(leased.lease);
                    report.extend(found.in_database(reference));
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// The database tier, when the handle serves it.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn database_tier(&self) -> Option<&super::DatabaseTier> {
        self.databases.as_ref()
    }

    /// The tenant catalog, when the handle has one.
    pub fn catalog(&self) -> Option<&crate::catalog::Catalog> {
        self.catalog.as_ref()
    }

    /// The raw connection, past every tenant check. This is the escape hatch.
    ///
    /// The [`AssertUnscoped`] names the reason, and every call logs it to the `tenant::audit`
    /// tracing target (at [`audit_level`](crate::audit_level)).
    ///
    /// On PostgreSQL, a handle from [`TenantDb::connect`] or [`TenantDb::builder`] gives the
    /// escape hatch a pool of its own (same URL and options, no idle connections, opened on
    /// first use): session state that raw SQL leaves behind (a temporary table, a session
    /// `search_path`, an open transaction) never reaches a connection that scoped units use. A
    /// handle wrapped around a connection of the caller's ([`TenantDb::new`],
    /// [`TenantDb::with_rls`]) returns that connection.
    pub fn unscoped(&self, assert: &AssertUnscoped) -> &DatabaseConnection {
        crate::events::audit_event!(
            reason = assert.reason,
            tenant.id = ?context::current().ok(),
            "unscoped database access"
        );
        self.hatch.as_ref().unwrap_or(&self.conn)
    }

    /// Gives the escape hatch `conn`, a pool of its own to the same database.
    #[cfg(feature = "postgres")]
    pub(crate) fn with_escape_hatch(mut self, conn: DatabaseConnection) -> Self {
        self.hatch = Some(conn);
        self
    }

    /// The underlying pool, to close it.
    ///
    /// # Errors
    ///
    /// The driver's error on close.
    pub async fn close(self) -> Result<()> {
        if let Some(hatch) = self.hatch {
            hatch.close().await?;
        }
        self.conn.close().await.map_err(Error::from)
    }
}

impl fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantDb")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// A transaction begun with [`TenantDb::begin`], bound to one tenant.
///
/// Dropped without [`commit`](Self::commit), it rolls back.
pub struct TenantTxn {
    txn: TxnKind,
    access: Access,
    /// The handle's catalog, which says where a system scope's rows may be written.
    catalog: Option<crate::catalog::Catalog>,
    /// The handle's [`TenantDb::with_distributed_keys`].
    distributed_keys: bool,
}

enum TxnKind {
    Orm(DatabaseTransaction),
    #[cfg(feature = "postgres")]
    Pg(PgTxn),
}

impl TenantTxn {
    /// Commits the transaction.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn commit(self) -> Result<()> {
        match self.txn {
            TxnKind::Orm(txn) => txn.commit().await.map_err(Error::from),
            #[cfg(feature = "postgres")]
            TxnKind::Pg(txn) => txn.into_inner().commit().await,
        }
    }

    /// Rolls the transaction back.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn rollback(self) -> Result<()> {
        match self.txn {
            TxnKind::Orm(txn) => txn.rollback().await.map_err(Error::from),
            #[cfg(feature = "postgres")]
            TxnKind::Pg(txn) => txn.into_inner().rollback().await,
        }
    }
}

impl fmt::Debug for TenantTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantTxn")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// The typed speed bump in front of [`TenantDb::unscoped`].
///
/// Greppable (`rg AssertUnscoped`), and it needs a reason written in the code.
#[derive(Debug)]
pub struct AssertUnscoped {
    reason: &'static str,
}

impl AssertUnscoped {
    /// Asserts that what follows must run without the tenant filter, for `reason`.
    ///
    /// # Panics
    ///
    /// When `reason` is empty or only whitespace.
    pub fn new(reason: &'static str) -> Self {
        assert!(
            !reason.trim().is_empty(),
            "`AssertUnscoped::new` needs a reason; say why this access must skip the tenant filter"
        );
        Self { reason }
    }
}

impl TenantConnection for TenantDb {
    fn __unit(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> impl Future<Output = Result<Unit<'_>>> + Send {
        self.unit(access)
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        context::access()
    }

    fn __shared_tenant(
        &self,
        _: private::Token,
        tenant: crate::TenantId,
    ) -> impl Future<Output = Result<()>> + Send {
        shared_tenant(self.catalog.as_ref(), tenant)
    }

    fn __distributed_keys(&self, _: private::Token) -> bool {
        self.distributed_keys
    }

    #[cfg(feature = "pipeline")]
    fn __route(
        &self,
        _: private::Token,
        access: Option<&Access>,
    ) -> impl Future<Output = Result<Option<crate::pipeline::Route<'_>>>> + Send {
        self.route(access)
    }
}

impl TenantConnection for TenantTxn {
    fn __unit(
        &self,
        _: private::Token,
        _: Option<&Access>,
    ) -> impl Future<Output = Result<Unit<'_>>> + Send {
        let exec = match &self.txn {
            TxnKind::Orm(txn) => Exec::Txn(txn),
            #[cfg(feature = "postgres")]
            TxnKind::Pg(txn) => Exec::Pg(txn),
        };
        std::future::ready(Ok(Unit::shared(exec)))
    }

    fn __shared_tenant(
        &self,
        _: private::Token,
        tenant: crate::TenantId,
    ) -> impl Future<Output = Result<()>> + Send {
        shared_tenant(self.catalog.as_ref(), tenant)
    }

    fn __distributed_keys(&self, _: private::Token) -> bool {
        self.distributed_keys
    }

    fn __access(&self, _: private::Token) -> Result<Access> {
        let now = context::access()?;
        match (&self.access, &now) {
            (Access::Tenant(bound), Access::Tenant(scope)) if bound == scope => Ok(now),
            (Access::System(_), Access::System(_)) => Ok(now),
            (bound, scope) => Err(Error::ScopeMismatch {
                bound: describe(bound),
                scope: describe(scope),
            }),
        }
    }
}

/// Refuses `tenant` when `catalog` puts its rows in a schema or database of its own.
async fn shared_tenant(
    catalog: Option<&crate::catalog::Catalog>,
    tenant: crate::TenantId,
) -> Result<()> {
    let Some(catalog) = catalog else {
        return Ok(());
    };
    match Box::pin(catalog.lookup(tenant)).await? {
        Some(entry) if entry.tier != crate::catalog::Tier::Shared => Err(Error::TenantElsewhere {
            tenant,
            tier: entry.tier,
        }),
        _ => Ok(()),
    }
}

fn describe(access: &Access) -> Option<crate::TenantId> {
    match access {
        Access::Tenant(id) => Some(*id),
        Access::System(_) => None,
    }
}
