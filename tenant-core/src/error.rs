//! The one error type of the crate.

/// Everything a tenant-scoped operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No tenant is in scope: the operation was refused rather than run unscoped.
    #[error(
        "no tenant in scope; run this inside `tenant::scope(id, ..)`, or use `tenant::spawn` instead of `tokio::spawn` to carry the tenant into a task"
    )]
    NoTenant,
    /// The row does not exist in the current tenant (it may exist in another one; we do not say).
    #[error("no `{entity}` row with this key in the current tenant")]
    NotFound {
        /// The table name of the entity.
        entity: &'static str,
    },
    /// An insert carried a tenant id other than the one in scope.
    #[error(
        "`{entity}` row carries {}, but the scope is tenant {scope}; leave the tenant column unset and the scope stamps it",
        .found.map_or_else(|| "no tenant id".to_owned(), |t| format!("tenant {t}"))
    )]
    CrossTenant {
        /// The table name of the entity.
        entity: &'static str,
        /// The tenant in scope.
        scope: crate::TenantId,
        /// The tenant the row carried (`None`: NULL).
        found: Option<crate::TenantId>,
    },
    /// An update tried to change the tenant column: a row's tenant is fixed at insert.
    #[error(
        "`{entity}` rows cannot move to another tenant; leave the tenant column out of the update (a row's tenant is fixed at insert)"
    )]
    TenantChange {
        /// The table name of the entity.
        entity: &'static str,
    },
    /// A scoped query with a hand-written join (`QuerySelect::join`, `join_rev`, `join_as`, ..):
    /// the joined table would get no tenant predicate, so the query is refused.
    #[error(
        "a hand-written join on a tenant-scoped query (`{query}`) is refused: the joined table would get no tenant predicate; use `.left_join(Related)`, `.inner_join(Related)`, `.find_also_related(..)` or `.find_with_related(..)`, which scope it"
    )]
    UnscopedJoin {
        /// The SeaORM query type that was joined by hand.
        query: &'static str,
    },
    /// A transaction begun for one tenant was used inside another tenant's scope.
    #[error(
        "this transaction belongs to {}, but the scope is {}; begin a new transaction inside the inner scope",
        acting(.bound.as_ref()),
        acting(.scope.as_ref())
    )]
    ScopeMismatch {
        /// The tenant the transaction (or query) was begun for; `None`: a system scope.
        bound: Option<crate::TenantId>,
        /// The tenant in scope at the time of use; `None`: a system scope.
        scope: Option<crate::TenantId>,
    },
    /// A write referenced a parent row that does not exist in the current tenant: the
    /// tenant-consistent foreign key `(tenant, parent key)` refused it.
    #[error(
        "`{entity}` row references a parent that does not exist in the current tenant; rows can only point at parents of their own tenant"
    )]
    ParentNotFound {
        /// The table name of the entity written.
        entity: &'static str,
        /// The database's error.
        #[source]
        source: sea_orm::DbErr,
    },
    /// A system scope tried to insert a row without saying which tenant owns it.
    #[error(
        "`{entity}` row has no tenant id and a system scope has no tenant to stamp; set the tenant column explicitly"
    )]
    MissingTenant {
        /// The table name of the entity.
        entity: &'static str,
    },
    /// The operation needs PostgreSQL (RLS mode, the pipeline, the audit) and the connection is
    /// to another database.
    #[error(
        "{feature} needs PostgreSQL, and this connection is {backend:?}; SQLite keeps the app-level guarantees only"
    )]
    NeedsPostgres {
        /// What needed PostgreSQL.
        feature: &'static str,
        /// The connection's database.
        backend: sea_orm::DbBackend,
    },
    /// A name this crate would write into SQL is not of the form it lets through.
    #[error("`{name}` is not a valid {what}; expected {expected}")]
    InvalidName {
        /// What the name is for (a custom setting, a search path, a role).
        what: &'static str,
        /// The refused name, as given.
        name: String,
        /// The form that is accepted.
        expected: &'static str,
    },
    /// The pipelined executor cannot be set up as asked.
    #[error("the pipeline cannot be set up: {reason}")]
    PipelineSetup {
        /// Why not.
        reason: String,
    },
    /// A connection meant for RLS mode runs as a role that skips row-level security.
    #[error(
        "the {connection} connects as `{role}`, which {right} and so skips row-level security; connect it as the application role"
    )]
    BypassingRole {
        /// Which connection (`pipeline`).
        connection: &'static str,
        /// The role it connects as.
        role: String,
        /// Why the role skips the policies (`is a superuser`, `has BYPASSRLS`).
        right: &'static str,
    },
    /// The schema given to `TenantDb::with_rls_checked` declares other RLS settings than the
    /// handle's.
    #[error(
        "the schema's RLS settings ({schema:?}) are not the handle's ({handle:?}); build the schema with `.rls(rls.clone())` from the same `Rls`"
    )]
    RlsMismatch {
        /// The schema's settings (`None`: it declares no RLS).
        schema: Option<crate::Rls>,
        /// The handle's settings.
        handle: crate::Rls,
    },
    /// A system scope under RLS, on a `TenantDb` with no connection that may bypass RLS.
    #[error(
        "a system scope cannot run under RLS on the application role; give the `TenantDb` a connection whose role bypasses RLS with `TenantDb::with_system_connection`"
    )]
    SystemNeedsBypass,
    /// Text that is not a valid tenant id.
    #[error(
        "`{input}` is not a tenant id; expected a UUID such as `6f1c2a9e-1d4b-4c3e-9f5a-2b7d8e9f0a1b`"
    )]
    InvalidTenantId {
        /// The rejected input (at most 64 characters of it).
        input: String,
        /// Why the UUID parser rejected it.
        #[source]
        source: uuid::Error,
    },
    /// The tenant in scope is not in the handle's tenant catalog.
    #[error(
        "tenant {tenant} is not in the tenant catalog; register it with `Catalog::register` before it runs anything"
    )]
    UnknownTenant {
        /// The tenant in scope.
        tenant: crate::TenantId,
    },
    /// The tenant in scope is suspended: nothing runs for it until it is active again.
    #[error("tenant {tenant} is suspended; nothing runs for it until it is active again")]
    TenantSuspended {
        /// The tenant in scope.
        tenant: crate::TenantId,
    },
    /// The tenant in scope was offboarded: nothing runs for it any more.
    #[error("tenant {tenant} was offboarded; nothing runs for it any more")]
    TenantOffboarded {
        /// The tenant in scope.
        tenant: crate::TenantId,
    },
    /// The tenant in scope is being provisioned or moved: nothing runs for it until it is
    /// active.
    #[error("tenant {tenant} is {status}, not active; nothing runs for it until it is active")]
    TenantUnavailable {
        /// The tenant in scope.
        tenant: crate::TenantId,
        /// Its status in the catalog.
        status: crate::catalog::TenantStatus,
    },
    /// The tenant in scope is on an isolation tier this handle does not serve: nothing runs for
    /// it here.
    #[error(
        "tenant {tenant} is on the {tier} tier, which this handle does not serve; a handle serves the database tier once given one (`TenantDb::with_database_tier`)"
    )]
    TierNotServed {
        /// The tenant in scope.
        tenant: crate::TenantId,
        /// Its tier in the catalog.
        tier: crate::catalog::Tier,
    },
    /// A system scope inserted a row for a tenant whose rows the catalog puts in a schema or
    /// database of its own: a system scope writes the shared tables, where that tenant would
    /// never see the row.
    #[error(
        "tenant {tenant}'s rows are on the {tier} tier, and a system scope writes the shared tables; write them inside `tenant::scope({tenant}, ..)`"
    )]
    TenantElsewhere {
        /// The tenant the row names.
        tenant: crate::TenantId,
        /// Its tier in the catalog.
        tier: crate::catalog::Tier,
    },
    /// The database tier's resolver could not turn a tenant's database reference into a URL,
    /// or the URL is not one PostgreSQL's driver accepts.
    #[error("the database of tenant {tenant} could not be resolved: {source}")]
    DatabaseUnresolved {
        /// The tenant in scope.
        tenant: crate::TenantId,
        /// The resolver's or the driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every connection the database tier may hold was in use for longer than its acquire
    /// timeout.
    #[error(
        "no room for tenant {tenant}'s database within {waited:?}: every pool under the database tier's {max_connections} connections was in use; raise `DatabaseTier::max_connections` or `acquire_timeout`"
    )]
    DatabaseTierFull {
        /// The tenant in scope.
        tenant: crate::TenantId,
        /// The tier's cap.
        max_connections: u32,
        /// How long the operation waited.
        waited: std::time::Duration,
    },
    /// A setting of this crate's is out of its range.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// What is accepted.
        reason: &'static str,
    },
    /// A tenant catalog entry is not of a form the catalog accepts. The refused value is not
    /// repeated: a database reference may carry what must not reach a log.
    #[error("invalid tenant catalog entry: the {field} {reason}")]
    InvalidTenantEntry {
        /// Which field (`slug`, `tier`, `schema name`, `database reference`, `region`).
        field: &'static str,
        /// What is wrong with it, and what is accepted.
        reason: &'static str,
    },
    /// A table of a [`TenantTables`](crate::TenantTables) in the distributed (Citus) form that
    /// a distributed database cannot create.
    #[error("`{table}` cannot be distributed: {reason}")]
    NotDistributable {
        /// The table.
        table: &'static str,
        /// Why, and what to change.
        reason: String,
    },
    /// The server's TLS certificate was refused when connecting.
    #[error(
        "the server's TLS certificate was refused ({source}); Citus nodes present a self-generated certificate, which rustls refuses: on loopback or a private network add `sslmode=disable` to the URL, otherwise give the nodes a certificate your trust store accepts (or name its CA with `sslrootcert=`)"
    )]
    TlsRefused {
        /// The driver's error.
        source: sea_orm::DbErr,
    },
    /// The start-up audit found problems; `TenantDb::with_rls_checked` refuses to start.
    #[error("the start-up audit refused this database; {0}")]
    Audit(crate::Report),
    /// The database refused or failed the statement; displays the database's message.
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

/// Whom a scope acts for, in a message.
fn acting(tenant: Option<&crate::TenantId>) -> String {
    tenant.map_or_else(|| "a system scope".to_owned(), |t| format!("tenant {t}"))
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
