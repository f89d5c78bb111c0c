//! Database-per-tenant: a pool per tenant database, opened on first use, under one cap on the
//! connections all of them may hold, the least recently used idle pool closed to make room.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::sqlx::PgPool;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::{Error, Result, TenantId};

/// The error a [`ResolveDatabase`] returns.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

/// Turns the database reference a tenant's catalog entry holds (such as `vault:db/acme`) into
/// the URL to connect with: the application's secret store. Called when a tenant's pool is
/// opened, never per operation.
///
/// # Examples
///
/// ```
/// use tenant_core::{ResolveDatabase, ResolveError, TenantId};
///
/// struct FromEnv;
///
/// #[async_trait::async_trait]
/// impl ResolveDatabase for FromEnv {
///     async fn resolve(&self, _tenant: TenantId, reference: &str) -> Result<String, ResolveError> {
///         // `env:ACME_DB` -> the value of the environment variable `ACME_DB`.
///         let name = reference.strip_prefix("env:").ok_or("not an `env:` reference")?;
///         Ok(std::env::var(name)?)
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait ResolveDatabase: Send + Sync + 'static {
    /// The URL of `tenant`'s database, from its catalog `reference`. The error is reported as
    /// [`Error::DatabaseUnresolved`]; keep secrets out of its message.
    async fn resolve(&self, tenant: TenantId, reference: &str) -> Result<String, ResolveError>;
}

/// The database tier of a [`TenantDb`](crate::TenantDb): where the units of a tenant whose
/// catalog entry is [`Tier::Database`](crate::catalog::Tier::Database) run.
///
/// Each such tenant gets a pool of its own (at most [`per_tenant`](Self::per_tenant)
/// connections, none kept while idle longer than [`idle_timeout`](Self::idle_timeout)), opened
/// on its first operation. All of them together never hold more than
/// [`max_connections`](Self::max_connections): opening one more closes the least recently used
/// pool that no unit of work is using, and when every open pool is in use, the operation waits
/// for one to come free, at most [`acquire_timeout`](Self::acquire_timeout)
/// ([`Error::DatabaseTierFull`]).
///
/// Cheap to clone; clones share the pools.
#[derive(Clone)]
pub struct DatabaseTier {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Box<dyn ResolveDatabase>,
    max_connections: u32,
    per_tenant: u32,
    /// Connections of each tenant database's pipeline (0: none).
    #[cfg(feature = "pipeline")]
    pipeline: usize,
    acquire_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<State>,
    /// Woken whenever a pool stops being in use: a waiting operation may now close it.
    released: tokio::sync::Notify,
    /// How many pools were ever opened, for the tier's figures.
    opened: AtomicUsize,
    /// Statements run on the tenant databases' pipelines, all of them together.
    #[cfg(feature = "pipeline")]
    piped: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Default)]
struct State {
    pools: HashMap<TenantId, Open>,
    /// A logical clock: the pool used last has the highest stamp.
    clock: u64,
}

struct Open {
    /// Told apart from a later pool of the same tenant: the clock when it was opened.
    id: u64,
    pool: PgPool,
    /// Its pipelined executor, when the tier gives each database one.
    #[cfg(feature = "pipeline")]
    pipeline: Option<crate::Pipeline>,
    /// The catalog reference the pool was opened for: a changed one opens a new pool.
    reference: String,
    used: u64,
    /// Units of work holding one of its connections (or about to).
    leases: usize,
}

impl DatabaseTier {
    /// A database tier resolving references with `resolver`: at most 50 connections in all, 2
    /// per tenant database, a 30-second wait for room, idle connections closed after a minute.
    pub fn new(resolver: impl ResolveDatabase) -> Self {
        Self {
            inner: Arc::new(Inner {
                resolver: Box::new(resolver),
                max_connections: 50,
                per_tenant: 2,
                #[cfg(feature = "pipeline")]
                pipeline: 0,
                acquire_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_mins(1),
                state: Mutex::default(),
                released: tokio::sync::Notify::new(),
                opened: AtomicUsize::new(0),
                #[cfg(feature = "pipeline")]
                piped: Arc::default(),
            }),
        }
    }

    /// The most connections all tenant databases hold together.
    #[must_use]
    pub fn max_connections(self, n: u32) -> Self {
        self.set(|inner| inner.max_connections = n)
    }

    /// The most connections one tenant database's pool holds.
    #[must_use]
    pub fn per_tenant(self, n: u32) -> Self {
        self.set(|inner| inner.per_tenant = n)
    }

    /// Gives each tenant database a pipelined executor of `size` connections besides its pool
    /// (see [`TenantDb::with_pipeline`](crate::TenantDb::with_pipeline)): the reads and writes
    /// the pipeline takes on the shared database, it takes on a tenant's own. Its connections
    /// count towards [`max_connections`](Self::max_connections) with the pool's.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    #[must_use]
    pub fn pipeline(self, size: usize) -> Self {
        self.set(|inner| inner.pipeline = size)
    }

    /// How many statements ran on the tenant databases' pipelines, all of them together, since
    /// the tier was made.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    pub fn pipelined_statements(&self) -> u64 {
        self.inner.piped.load(Ordering::Relaxed)
    }

    /// Whether each tenant database has a pipeline.
    #[cfg(feature = "pipeline")]
    pub(crate) fn pipelined(&self) -> bool {
        self.inner.pipeline > 0
    }

    /// The connections one tenant database may hold: its pool's and its pipeline's.
    fn per_database(&self) -> usize {
        let pool = self.inner.per_tenant as usize;
        #[cfg(feature = "pipeline")]
        return pool + self.inner.pipeline;
        #[cfg(not(feature = "pipeline"))]
        pool
    }

    /// How long an operation waits for room (a free connection of its tenant's pool, or a pool
    /// to close) before it fails with [`Error::DatabaseTierFull`].
    #[must_use]
    pub fn acquire_timeout(self, wait: Duration) -> Self {
        self.set(|inner| inner.acquire_timeout = wait)
    }

    /// How long a tenant database's connection is kept while idle.
    #[must_use]
    pub fn idle_timeout(self, idle: Duration) -> Self {
        self.set(|inner| inner.idle_timeout = idle)
    }

    /// A setting changed, before the tier is shared.
    fn set(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => unreachable!("the builder methods take the tier before any clone of it"),
        }
        self
    }

    /// Checks the settings: a tier that could never open a pool is refused at start-up.
    pub(crate) fn validate(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.per_tenant == 0 || self.per_database() > inner.max_connections as usize {
            return Err(Error::InvalidSetting {
                setting: "database tier connections",
                reason: "`per_tenant` must be at least 1, and with the pipeline's connections at most `max_connections`",
            });
        }
        Ok(())
    }

    /// How many tenant databases have a pool open now.
    pub fn open_pools(&self) -> usize {
        self.state().pools.len()
    }

    /// How many pools were opened since the tier was made (a pool closed to make room and
    /// opened again counts twice).
    pub fn pools_opened(&self) -> usize {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// The pool of `tenant`'s database (`reference` in the catalog), opened if need be, with a
    /// lease that keeps it open while a unit of work uses it.
    pub(crate) async fn lease(&self, tenant: TenantId, reference: &str) -> Result<Leased> {
        if let Some(leased) = self.leased(&mut self.state(), tenant, reference) {
            return Ok(leased);
        }
        let url = self
            .inner
            .resolver
            .resolve(tenant, reference)
            .await
            .map_err(|source| Error::DatabaseUnresolved { tenant, source })?;
        let options: PgConnectOptions =
            url.parse()
                .map_err(|source: sea_orm::sqlx::Error| Error::DatabaseUnresolved {
                    tenant,
                    source: source.into(),
                })?;
        // Made up front (it connects lazily, like the pool): nothing fallible under the lock.
        #[cfg(feature = "pipeline")]
        let pipeline = match self.inner.pipeline {
            0 => None,
            size => Some(
                crate::Pipeline::connect(&url, size)?.counting_in(Arc::clone(&self.inner.piped)),
            ),
        };
        let deadline = Instant::now() + self.inner.acquire_timeout;
        loop {
            let released = self.inner.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before the pools are looked at: a release after the look wakes it.
            released.as_mut().enable();
            let opened = {
                let mut state = self.state();
                if let Some(leased) = self.leased(&mut state, tenant, reference) {
                    return Ok(leased);
                }
                self.make_room(&mut state).map(|room| {
                    let pool = PgPoolOptions::new()
                        .max_connections(self.inner.per_tenant)
                        .min_connections(0)
                        .acquire_timeout(self.inner.acquire_timeout)
                        .idle_timeout(self.inner.idle_timeout)
                        .connect_lazy_with(options.clone());
                    let open = Open {
                        id: 0,
                        pool,
                        #[cfg(feature = "pipeline")]
                        pipeline: pipeline.clone(),
                        reference: reference.to_owned(),
                        used: 0,
                        leases: 0,
                    };
                    (self.open(&mut state, tenant, open), room)
                })
            };
            if let Some((leased, room)) = opened {
                // The new pool opens no connection before the evicted one has closed its own:
                // the cap holds on the server too.
                if let Room::Evicted(evicted) = room {
                    evicted.close().await;
                }
                return Ok(leased);
            }
            if tokio::time::timeout_at(deadline.into(), released)
                .await
                .is_err()
            {
                return Err(Error::DatabaseTierFull {
                    tenant,
                    max_connections: self.inner.max_connections,
                    waited: self.inner.acquire_timeout,
                });
            }
        }
    }

    /// A lease on `tenant`'s open pool for `reference`, if there is one; a pool opened for
    /// another reference (the tenant moved) is closed once no unit uses it.
    fn leased(&self, state: &mut State, tenant: TenantId, reference: &str) -> Option<Leased> {
        state.clock += 1;
        let clock = state.clock;
        let open = state.pools.get_mut(&tenant)?;
        if open.reference != reference {
            if let Some(old) = state.pools.remove(&tenant) {
                old.close_soon();
            }
            return None;
        }
        open.used = clock;
        open.leases += 1;
        Some(Leased {
            pool: open.pool.clone(),
            #[cfg(feature = "pipeline")]
            pipeline: open.pipeline.clone(),
            lease: Lease {
                tier: self.clone(),
                tenant,
                pool: open.id,
            },
        })
    }

    /// Room for one more pool, if any: the least recently used pool no unit is using is taken
    /// out to make it when there is none (the caller closes it).
    fn make_room(&self, state: &mut State) -> Option<Room> {
        let max = self.inner.max_connections as usize;
        if (state.pools.len() + 1) * self.per_database() <= max {
            return Some(Room::Free);
        }
        let idle = state
            .pools
            .iter()
            .filter(|(_, open)| open.leases == 0)
            .min_by_key(|(_, open)| open.used)
            .map(|(tenant, _)| *tenant)?;
        state.pools.remove(&idle).map(Room::Evicted)
    }

    /// Puts `open` (the new pool of `tenant`) in the tier, leased once.
    fn open(&self, state: &mut State, tenant: TenantId, mut open: Open) -> Leased {
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
        state.clock += 1;
        open.id = state.clock;
        open.used = state.clock;
        open.leases = 1;
        let leased = Leased {
            pool: open.pool.clone(),
            #[cfg(feature = "pipeline")]
            pipeline: open.pipeline.clone(),
            lease: Lease {
                tier: self.clone(),
                tenant,
                pool: open.id,
            },
        };
        state.pools.insert(tenant, open);
        leased
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every pool; units of work still running finish first.
    pub async fn close(&self) {
        let pools: Vec<Open> = self.state().pools.drain().map(|(_, open)| open).collect();
        for open in pools {
            open.close().await;
        }
    }
}

/// How room for one more pool was made.
enum Room {
    /// There was room.
    Free,
    /// The pool taken out to make it, to close.
    Evicted(Open),
}

impl Open {
    /// Closes the pool (and pipeline): connections in use end as they come back.
    async fn close(self) {
        #[cfg(feature = "pipeline")]
        if let Some(pipeline) = &self.pipeline {
            pipeline.pool().close();
        }
        self.pool.close().await;
    }

    /// [`close`](Self::close) in the background.
    fn close_soon(self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.close());
            }
            // Dropped outside a runtime, the connections close as they are dropped.
            Err(_) => drop(self),
        }
    }
}

/// A unit of work's hold on its tenant database: the pool, its pipeline if any, and the lease.
pub(crate) struct Leased {
    pub(crate) pool: PgPool,
    #[cfg(feature = "pipeline")]
    pub(crate) pipeline: Option<crate::Pipeline>,
    pub(crate) lease: Lease,
}

/// A unit of work's hold on its tenant's pool: while any is held, the pool is not closed to make
/// room for another.
pub(crate) struct Lease {
    tier: DatabaseTier,
    tenant: TenantId,
    /// Which of the tenant's pools: one opened since (the tenant moved) is not this one's.
    pool: u64,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.tier.state();
        if let Some(open) = state.pools.get_mut(&self.tenant)
            && open.id == self.pool
        {
            open.leases -= 1;
        }
        drop(state);
        self.tier.inner.released.notify_waiters();
    }
}

impl fmt::Debug for DatabaseTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseTier")
            .field("max_connections", &self.inner.max_connections)
            .field("per_tenant", &self.inner.per_tenant)
            .field("open_pools", &self.open_pools())
            .finish_non_exhaustive()
    }
}
