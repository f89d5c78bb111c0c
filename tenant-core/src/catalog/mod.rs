//! The tenant catalog: the control-plane table that records every tenant (its id, slug, isolation
//! tier, schema or database reference, region, status and schema generation), and a cached
//! lookup a [`TenantDb`](crate::TenantDb) consults before anything runs for a tenant.
//!
//! A handle given a catalog ([`TenantDb::with_catalog`](crate::TenantDb::with_catalog), or
//! [`TenantDbBuilder::catalog`](crate::TenantDbBuilder::catalog)) admits a tenant's operations
//! only while its entry is [`TenantStatus::Active`]: an unknown, suspended, offboarded,
//! provisioning or moving tenant fails with its own error before any SQL is sent. Lookups are
//! cached for at most the catalog's maximum staleness; [`Catalog::invalidate`] drops an entry at
//! once, and changes made through the same `Catalog` invalidate what they change.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> tenant_core::Result<()> {
//! use tenant_core::catalog::{Catalog, NewTenant, TenantStatus};
//! use tenant_core::{TenantDb, TenantId};
//!
//! let db = TenantDb::connect("sqlite::memory:").await?;
//! let conn = db.unscoped(&tenant_core::AssertUnscoped::new("the catalog's own connection"));
//! let catalog = Catalog::new(conn.clone());
//! catalog.create_table().await?;
//!
//! let acme = TenantId::from(uuid::Uuid::new_v4());
//! catalog.register(NewTenant::shared(acme, "acme")).await?; // provisioning
//! catalog.set_status(acme, TenantStatus::Active).await?;
//! let db = db.with_catalog(catalog);
//! assert_eq!(db.catalog().unwrap().lookup(acme).await?.unwrap().slug, "acme");
//! # Ok(()) }
//! ```

// The catalog is control plane: it reads and writes its own table on its own connection, for no
// tenant, so SeaORM's own executors are the right ones here.
#![expect(
    clippy::disallowed_methods,
    reason = "the control plane: the catalog's table is read and written for no tenant"
)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sea_orm::sea_query::{Expr, StringLen};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Schema,
};

use crate::{Error, Result, TenantId};

pub mod entry;

/// How a tenant's data is isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Tier {
    /// Rows in the shared tables, with a tenant column (and, in RLS mode, policies).
    #[sea_orm(string_value = "shared")]
    Shared,
    /// A schema of its own in the shared database.
    #[sea_orm(string_value = "schema")]
    Schema,
    /// A database of its own.
    #[sea_orm(string_value = "database")]
    Database,
}

/// Whether a tenant's operations may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum TenantStatus {
    /// Registered; its data is being set up. Nothing runs for it yet.
    #[sea_orm(string_value = "provisioning")]
    Provisioning,
    /// Its operations run.
    #[sea_orm(string_value = "active")]
    Active,
    /// Nothing runs for it until it is active again.
    #[sea_orm(string_value = "suspended")]
    Suspended,
    /// Its data is moving to another tier or place. Nothing runs for it until it is active.
    #[sea_orm(string_value = "moving")]
    Moving,
    /// Gone. Nothing runs for it.
    #[sea_orm(string_value = "offboarded")]
    Offboarded,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Shared => "shared",
            Tier::Schema => "schema",
            Tier::Database => "database",
        })
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Moving => "moving",
            TenantStatus::Offboarded => "offboarded",
        })
    }
}

/// One tenant's catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantRecord {
    /// The tenant's id.
    pub id: TenantId,
    /// Its short unique name.
    pub slug: String,
    /// How its data is isolated.
    pub tier: Tier,
    /// Its own schema ([`Tier::Schema`]).
    pub schema_name: Option<String>,
    /// What the application's secret store resolves to its database ([`Tier::Database`]).
    pub database_ref: Option<String>,
    /// Where its data must live, if anywhere in particular.
    pub region: Option<String>,
    /// A host name of its own that web requests resolve it by.
    pub domain: Option<String>,
    /// Whether its operations may run.
    pub status: TenantStatus,
    /// The generation of the schema its data is at.
    pub schema_generation: i64,
}

impl From<entry::Model> for TenantRecord {
    fn from(m: entry::Model) -> Self {
        Self {
            id: TenantId::from(m.id),
            slug: m.slug,
            tier: m.tier,
            schema_name: m.schema_name,
            database_ref: m.database_ref,
            region: m.region,
            domain: m.domain,
            status: m.status,
            schema_generation: m.schema_generation,
        }
    }
}

/// A tenant to register: [`Tier::Shared`] and [`TenantStatus::Provisioning`] unless set
/// otherwise.
#[derive(Clone, Debug)]
#[must_use = "a new tenant is registered with `Catalog::register`"]
pub struct NewTenant {
    id: TenantId,
    slug: String,
    tier: Tier,
    schema_name: Option<String>,
    database_ref: Option<String>,
    region: Option<String>,
    domain: Option<String>,
    status: TenantStatus,
}

impl NewTenant {
    /// A tenant in the shared tables.
    pub fn shared(id: TenantId, slug: impl Into<String>) -> Self {
        Self {
            id,
            slug: slug.into(),
            tier: Tier::Shared,
            schema_name: None,
            database_ref: None,
            region: None,
            domain: None,
            status: TenantStatus::Provisioning,
        }
    }

    /// A tenant with a schema of its own, `schema` (a lowercase identifier).
    pub fn schema(id: TenantId, slug: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            tier: Tier::Schema,
            schema_name: Some(schema.into()),
            ..Self::shared(id, slug)
        }
    }

    /// A tenant with a database of its own, which the application's secret store resolves from
    /// `reference` (such as `vault:db/acme`). A URL carrying a password is refused: the catalog
    /// never holds a secret.
    pub fn database(id: TenantId, slug: impl Into<String>, reference: impl Into<String>) -> Self {
        Self {
            tier: Tier::Database,
            database_ref: Some(reference.into()),
            ..Self::shared(id, slug)
        }
    }

    /// Where the tenant's data must live (letters, digits, `-` and `_`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// A host name of its own (`app.acme.com`; lowercase letters, digits, `-` and `.`), by
    /// which [`Catalog::find_domain`] and the web resolver's custom domains find it.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The status it is registered with.
    pub fn status(mut self, status: TenantStatus) -> Self {
        self.status = status;
        self
    }

    /// Refuses what the catalog must not hold.
    fn validate(&self) -> Result<()> {
        let invalid = |field, reason| Err(Error::InvalidTenantEntry { field, reason });
        if !is_slug(&self.slug) {
            return invalid(
                "slug",
                "must be 1 to 63 lowercase letters, digits and hyphens, not starting with a hyphen",
            );
        }
        if let Some(schema) = &self.schema_name
            && !crate::ddl::is_tenant_schema_name(schema)
        {
            return invalid(
                "schema name",
                "must be a lowercase identifier of its own (not `public`, `information_schema` or `pg_*`)",
            );
        }
        if let Some(reference) = &self.database_ref {
            if reference.is_empty()
                || reference.len() > 255
                || reference.chars().any(char::is_whitespace)
            {
                return invalid(
                    "database reference",
                    "must be 1 to 255 characters without whitespace",
                );
            }
            if carries_password(reference) {
                return invalid(
                    "database reference",
                    "carries a password; store a name the secret store resolves (such as `vault:db/acme`), never the secret",
                );
            }
        }
        if let Some(region) = &self.region {
            let region_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if region.is_empty() || region.len() > 63 || !region.chars().all(region_char) {
                return invalid("region", "must be 1 to 63 letters, digits, `-` and `_`");
            }
        }
        if let Some(domain) = &self.domain
            && !is_host_name(domain)
        {
            return invalid("domain", DOMAIN_RULE);
        }
        match (self.tier, &self.schema_name, &self.database_ref) {
            (Tier::Shared, None, None)
            | (Tier::Schema, Some(_), None)
            | (Tier::Database, None, Some(_)) => Ok(()),
            (Tier::Schema, _, _) => invalid(
                "schema name",
                "is needed by a schema-tier tenant, which has no database reference",
            ),
            (Tier::Database, _, _) => invalid(
                "database reference",
                "is needed by a database-tier tenant, which has no schema name",
            ),
            (Tier::Shared, _, _) => invalid(
                "tier",
                "is shared, which has neither a schema name nor a database reference",
            ),
        }
    }
}

/// What a tenant's own domain must look like.
const DOMAIN_RULE: &str = "must be a lowercase host name: labels of letters, digits and `-` joined by `.`, at most 253 characters";

/// Whether `name` is a lowercase DNS host name: 1 to 63 letters, digits and hyphens per label
/// (not at either end), labels joined by dots, at most 253 characters.
pub(crate) fn is_host_name(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label)
}

/// Whether `reference` embeds a password: a URL with `user:password@`, or a `password=` key.
fn carries_password(reference: &str) -> bool {
    let lower = reference.to_ascii_lowercase();
    if lower.contains("password=") || lower.contains("passwd=") {
        return true;
    }
    // `scheme://user:password@host..`: a colon in the authority's user information.
    lower.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// The tenant catalog: its table on a connection of its own, and a cached lookup.
///
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    conn: DatabaseConnection,
    max_staleness: Duration,
    cache: RwLock<HashMap<TenantId, Cached>>,
    /// Which tenant a slug or a domain named when it was read (`None`: none).
    names: RwLock<HashMap<Name, (Option<TenantId>, Instant)>>,
    /// Bumped by every invalidation, so that a lookup that read the table before it does not
    /// put what it read back into the cache.
    epoch: AtomicU64,
}

struct Cached {
    known: Known,
    read_at: Instant,
}

/// A name a tenant is found by.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Name {
    Slug(String),
    Domain(String),
}

/// What the table said of a tenant when it was read.
#[derive(Clone)]
enum Known {
    Entry(Arc<TenantRecord>),
    Absent,
}

impl Catalog {
    /// How long a cached entry is used by default before the table is read again.
    pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);

    /// The catalog in `conn`'s database. Lookups are cached for at most
    /// [`DEFAULT_MAX_STALENESS`](Self::DEFAULT_MAX_STALENESS).
    pub fn new(conn: DatabaseConnection) -> Self {
        Self::with_max_staleness(conn, Self::DEFAULT_MAX_STALENESS)
    }

    /// The catalog in `conn`'s database, its lookups cached for at most `max_staleness`
    /// (`Duration::ZERO`: every lookup reads the table). A change made elsewhere (another
    /// process, raw SQL) is seen within that bound, or at once after [`invalidate`](Self::invalidate).
    pub fn with_max_staleness(conn: DatabaseConnection, max_staleness: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                max_staleness,
                cache: RwLock::new(HashMap::new()),
                names: RwLock::new(HashMap::new()),
                epoch: AtomicU64::new(0),
            }),
        }
    }

    /// The most a cached entry can lag behind the table.
    pub fn max_staleness(&self) -> Duration {
        self.inner.max_staleness
    }

    /// Creates the catalog's table (`tenant_catalog`) if it does not exist.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn create_table(&self) -> Result<()> {
        let conn = &self.inner.conn;
        let mut table =
            Schema::new(conn.get_database_backend()).create_table_from_entity(entry::Entity);
        table.if_not_exists();
        conn.execute(&table).await?;
        Ok(())
    }

    /// Registers a tenant and returns its entry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTenantEntry`] for a slug, schema name, database reference or region the
    /// catalog does not accept; the database's error for a taken id or slug.
    pub async fn register(&self, tenant: NewTenant) -> Result<TenantRecord> {
        tenant.validate()?;
        let row = entry::ActiveModel {
            id: Set(tenant.id.into()),
            slug: Set(tenant.slug),
            tier: Set(tenant.tier),
            schema_name: Set(tenant.schema_name),
            database_ref: Set(tenant.database_ref),
            region: Set(tenant.region),
            domain: Set(tenant.domain),
            status: Set(tenant.status),
            schema_generation: Set(0),
        };
        let model = entry::Entity::insert(row)
            .exec_with_returning(&self.inner.conn)
            .await?;
        self.invalidate(tenant.id);
        Ok(model.into())
    }

    /// Sets a tenant's status. Lifecycle rules (which change may follow which) are the caller's.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTenant`] when the catalog has no such tenant; the database's error.
    pub async fn set_status(&self, tenant: TenantId, status: TenantStatus) -> Result<()> {
        self.set(tenant, entry::Column::Status, Expr::value(status))
            .await
    }

    /// Sets one column of `tenant`'s entry, and drops what the cache knew of it.
    async fn set(&self, tenant: TenantId, column: entry::Column, value: Expr) -> Result<()> {
        let done = entry::Entity::update_many()
            .col_expr(column, value)
            .filter(entry::Column::Id.eq(uuid::Uuid::from(tenant)))
            .exec(&self.inner.conn)
            .await?;
        self.invalidate(tenant);
        if done.rows_affected == 0 {
            return Err(Error::UnknownTenant { tenant });
        }
        Ok(())
    }

    /// Sets or clears a tenant's own host name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTenantEntry`] for a malformed host name; [`Error::UnknownTenant`] when
    /// the catalog has no such tenant; the database's error for a domain another tenant has.
    pub async fn set_domain(&self, tenant: TenantId, domain: Option<&str>) -> Result<()> {
        if let Some(domain) = domain
            && !is_host_name(domain)
        {
            return Err(Error::InvalidTenantEntry {
                field: "domain",
                reason: DOMAIN_RULE,
            });
        }
        let value = Expr::value(domain.map(str::to_owned));
        self.set(tenant, entry::Column::Domain, value).await
    }

    /// A tenant's entry, read from the table now.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn get(&self, tenant: TenantId) -> Result<Option<TenantRecord>> {
        Ok(entry::Entity::find_by_id(uuid::Uuid::from(tenant))
            .one(&self.inner.conn)
            .await?
            .map(TenantRecord::from))
    }

    /// Every tenant's entry, or those with `status`, by slug.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn list(&self, status: Option<TenantStatus>) -> Result<Vec<TenantRecord>> {
        let mut select = entry::Entity::find().order_by_asc(entry::Column::Slug);
        if let Some(status) = status {
            select = select.filter(entry::Column::Status.eq(status));
        }
        Ok(select
            .all(&self.inner.conn)
            .await?
            .into_iter()
            .map(TenantRecord::from)
            .collect())
    }

    /// A tenant's entry, from the cache when it was read at most the maximum staleness ago.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn lookup(&self, tenant: TenantId) -> Result<Option<TenantRecord>> {
        Ok(match self.known(tenant).await? {
            Known::Entry(entry) => Some((*entry).clone()),
            Known::Absent => None,
        })
    }

    /// The entry of the tenant with `slug`, cached like [`lookup`](Self::lookup).
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn find_slug(&self, slug: &str) -> Result<Option<TenantRecord>> {
        self.find_name(Name::Slug(slug.to_owned())).await
    }

    /// The entry of the tenant whose own host name is `domain` (compared in lowercase), cached
    /// like [`lookup`](Self::lookup).
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn find_domain(&self, domain: &str) -> Result<Option<TenantRecord>> {
        self.find_name(Name::Domain(domain.to_ascii_lowercase()))
            .await
    }

    /// Drops `tenant`'s cached entry, and every cached slug and domain: the next lookup reads
    /// the table.
    pub fn invalidate(&self, tenant: TenantId) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache_mut().remove(&tenant);
        // A name cached as naming no tenant may name this one now: names go all at once.
        self.names_mut().clear();
    }

    /// Drops every cached entry.
    pub fn invalidate_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache_mut().clear();
        self.names_mut().clear();
    }

    async fn find_name(&self, name: Name) -> Result<Option<TenantRecord>> {
        Ok(match self.named(name).await? {
            Some(tenant) => self.lookup(tenant).await?,
            None => None,
        })
    }

    /// Which tenant has `slug`, cached.
    #[cfg(feature = "axum")]
    pub(crate) async fn named_slug(&self, slug: &str) -> Result<Option<TenantId>> {
        self.named(Name::Slug(slug.to_owned())).await
    }

    /// Which tenant has the host name `domain` (lowercase), cached.
    #[cfg(feature = "axum")]
    pub(crate) async fn named_domain(&self, domain: &str) -> Result<Option<TenantId>> {
        self.named(Name::Domain(domain.to_owned())).await
    }

    /// Which tenant `name` names, from the cache when it was read at most the maximum staleness
    /// ago.
    async fn named(&self, name: Name) -> Result<Option<TenantId>> {
        {
            let names = self
                .inner
                .names
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((tenant, read_at)) = names.get(&name)
                && read_at.elapsed() < self.inner.max_staleness
            {
                return Ok(*tenant);
            }
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let read_at = Instant::now();
        let column = match &name {
            Name::Slug(slug) => entry::Column::Slug.eq(slug.as_str()),
            Name::Domain(domain) => entry::Column::Domain.eq(domain.as_str()),
        };
        let tenant = entry::Entity::find()
            .filter(column)
            .one(&self.inner.conn)
            .await?
            .map(|m| TenantId::from(m.id));
        let mut names = self.names_mut();
        if self.inner.epoch.load(Ordering::Acquire) == epoch {
            names.insert(name, (tenant, read_at));
        }
        Ok(tenant)
    }

    /// Admits an operation of `tenant`: its entry, only while it is active.
    pub(crate) async fn admit(&self, tenant: TenantId) -> Result<Arc<TenantRecord>> {
        let entry = match self.known(tenant).await? {
            Known::Entry(entry) => entry,
            Known::Absent => return Err(Error::UnknownTenant { tenant }),
        };
        match entry.status {
            TenantStatus::Active => Ok(entry),
            TenantStatus::Suspended => Err(Error::TenantSuspended { tenant }),
            TenantStatus::Offboarded => Err(Error::TenantOffboarded { tenant }),
            status @ (TenantStatus::Provisioning | TenantStatus::Moving) => {
                Err(Error::TenantUnavailable { tenant, status })
            }
        }
    }

    /// What the cache knows of `tenant`, if it was read recently enough.
    fn cached(&self, tenant: TenantId) -> Option<Known> {
        let cache = self
            .inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let cached = cache.get(&tenant)?;
        (cached.read_at.elapsed() < self.inner.max_staleness).then(|| cached.known.clone())
    }

    /// What the cache knows of `tenant`, reading the table when it knows nothing recent.
    async fn known(&self, tenant: TenantId) -> Result<Known> {
        if let Some(known) = self.cached(tenant) {
            return Ok(known);
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let read_at = Instant::now();
        let known = match self.get(tenant).await? {
            Some(entry) => Known::Entry(Arc::new(entry)),
            None => Known::Absent,
        };
        let mut cache = self.cache_mut();
        // An invalidation while the table was read may have been about what was read.
        if self.inner.epoch.load(Ordering::Acquire) == epoch {
            cache.insert(
                tenant,
                Cached {
                    known: known.clone(),
                    read_at,
                },
            );
        }
        Ok(known)
    }

    fn names_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<Name, (Option<TenantId>, Instant)>> {
        self.inner
            .names
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, Cached>> {
        self.inner
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("max_staleness", &self.inner.max_staleness)
            .finish_non_exhaustive()
    }
}

/// Whether `text` is a slug the catalog accepts: 1 to 63 lowercase letters, digits and hyphens,
/// not starting with a hyphen. Request resolution asks the same, so that what no tenant could be
/// called is malformed rather than unknown.
pub(crate) fn is_slug(text: &str) -> bool {
    let slug_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    !text.is_empty() && text.len() <= 63 && text.chars().all(slug_char) && !text.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TenantId {
        TenantId::from(uuid::Uuid::from_u128(7))
    }

    fn refused(t: &NewTenant) -> &'static str {
        match t.validate() {
            Err(Error::InvalidTenantEntry { field, .. }) => field,
            other => panic!("{t:?}: {other:?}"),
        }
    }

    #[test]
    fn entries_of_each_tier_are_accepted() {
        NewTenant::shared(id(), "acme").validate().unwrap();
        NewTenant::schema(id(), "acme-2", "tenant_acme")
            .region("eu-west_1")
            .validate()
            .unwrap();
        NewTenant::database(id(), "a", "vault:db/acme")
            .validate()
            .unwrap();
        NewTenant::database(id(), "b", "postgres://app@db.internal/acme")
            .validate()
            .unwrap();
    }

    #[test]
    fn malformed_entries_are_refused_naming_the_field() {
        assert_eq!(refused(&NewTenant::shared(id(), "")), "slug");
        assert_eq!(refused(&NewTenant::shared(id(), "Acme")), "slug");
        assert_eq!(refused(&NewTenant::shared(id(), "-acme")), "slug");
        assert_eq!(refused(&NewTenant::shared(id(), "ac me")), "slug");
        assert_eq!(
            refused(&NewTenant::schema(id(), "a", "public")),
            "schema name"
        );
        assert_eq!(
            refused(&NewTenant::schema(id(), "a", "pg_temp")),
            "schema name"
        );
        assert_eq!(
            refused(&NewTenant::schema(id(), "a", "A; DROP")),
            "schema name"
        );
        assert_eq!(
            refused(&NewTenant::database(id(), "a", "")),
            "database reference"
        );
        assert_eq!(
            refused(&NewTenant::shared(id(), "a").region("eu west")),
            "region"
        );
    }

    #[test]
    fn a_database_reference_carrying_a_password_is_refused_without_repeating_it() {
        for secret in [
            "postgres://app:hunter2@db/acme",
            "postgresql://app:hunter2@db:5432/acme?sslmode=require",
            "host=db user=app password=hunter2",
            "mysql://u:hunter2@h/d",
        ] {
            let err = NewTenant::database(id(), "a", secret)
                .validate()
                .unwrap_err();
            assert!(matches!(
                err,
                Error::InvalidTenantEntry {
                    field: "database reference",
                    ..
                }
            ));
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
