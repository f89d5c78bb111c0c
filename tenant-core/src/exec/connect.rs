//! [`TenantDb::connect`] and [`TenantDbBuilder`]: the library owns connecting, so that an
//! application never holds a raw SeaORM connection (it stays behind
//! [`TenantDb::unscoped`](crate::TenantDb::unscoped)).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::catalog::Catalog;
use crate::{Error, Result, Rls, TenantDb, TenantTables};

/// A pool setting; applied to each pool the builder opens for the URL.
type Tweak = Arc<dyn Fn(&mut ConnectOptions) + Send + Sync>;

impl TenantDb {
    /// Connects to `url` (`sqlite://..`, `postgres://..`) in app-level mode with SeaORM's pool
    /// defaults. [`builder`](Self::builder) sets the pool, RLS mode, the start-up audit, the
    /// system connection and the pipeline.
    ///
    /// # Errors
    ///
    /// The driver's error when the database cannot be reached.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tenant_core::Result<()> {
    /// let db = tenant_core::TenantDb::connect("sqlite::memory:").await?;
    /// assert_eq!(db.backend(), sea_orm::DbBackend::Sqlite);
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// A [`TenantDbBuilder`] for `url`.
    pub fn builder(url: impl Into<String>) -> TenantDbBuilder<'static> {
        TenantDbBuilder {
            url: url.into(),
            tweaks: Vec::new(),
            rls: None,
            audit: None,
            system_url: None,
            catalog: None,
            distributed_keys: false,
            #[cfg(feature = "postgres")]
            databases: None,
            #[cfg(feature = "pipeline")]
            pipeline: Pipelining::Default,
        }
    }
}

/// Whether and how the builder gives the handle a pipeline.
#[cfg(feature = "pipeline")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pipelining {
    /// On PostgreSQL, as many connections as the application pool may open; none elsewhere,
    /// nor where its connections cannot be opened (said at `warn` level).
    Default,
    /// Exactly this size; an error when it cannot connect.
    Size(usize),
    /// None.
    Off,
}

/// Connects a [`TenantDb`]: the pool, RLS mode with its role check, the start-up audit, the
/// system connection and the pipeline, in one place.
///
/// # Examples
///
/// ```no_run
/// # async fn run(schema: tenant_core::TenantTables) -> tenant_core::Result<()> {
/// let db = tenant_core::TenantDb::builder("postgres://app:secret@db/app")
///     .max_connections(16)
///     .rls(tenant_core::Rls::default())
///     .audit(&schema) // refuses to start unless the database isolates tenants as declared
///     .system_url("postgres://owner:secret@db/app")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `.connect().await`"]
pub struct TenantDbBuilder<'s> {
    url: String,
    tweaks: Vec<Tweak>,
    rls: Option<Rls>,
    audit: Option<&'s TenantTables>,
    system_url: Option<String>,
    catalog: Option<Duration>,
    distributed_keys: bool,
    #[cfg(feature = "postgres")]
    databases: Option<super::DatabaseTier>,
    #[cfg(feature = "pipeline")]
    pipeline: Pipelining,
}

impl<'s> TenantDbBuilder<'s> {
    /// The most connections the pool opens.
    pub fn max_connections(self, n: u32) -> Self {
        self.options(move |o| {
            o.max_connections(n);
        })
    }

    /// The connections the pool keeps open when idle.
    pub fn min_connections(self, n: u32) -> Self {
        self.options(move |o| {
            o.min_connections(n);
        })
    }

    /// Any other setting of SeaORM's [`ConnectOptions`] (timeouts, statement logging, sqlx's
    /// own options), applied in order before connecting, to the application pool and to the
    /// escape hatch's.
    pub fn options(mut self, tweak: impl Fn(&mut ConnectOptions) + Send + Sync + 'static) -> Self {
        self.tweaks.push(Arc::new(tweak));
        self
    }

    /// RLS mode ([`TenantDb::with_rls`]). Connecting checks that the role is neither a superuser
    /// nor `BYPASSRLS`, which would skip every policy.
    pub fn rls(mut self, rls: Rls) -> Self {
        self.rls = Some(rls);
        self
    }

    /// Runs the start-up [`audit`](crate::audit()) of `schema` on the new connection and refuses
    /// to start on any finding ([`TenantDb::with_rls_checked`]). In RLS mode the schema must
    /// declare the same [`Rls`].
    pub fn audit<'a>(self, schema: &'a TenantTables) -> TenantDbBuilder<'a>
    where
        's: 'a,
    {
        TenantDbBuilder {
            url: self.url,
            tweaks: self.tweaks,
            rls: self.rls,
            audit: Some(schema),
            system_url: self.system_url,
            catalog: self.catalog,
            distributed_keys: self.distributed_keys,
            #[cfg(feature = "postgres")]
            databases: self.databases,
            #[cfg(feature = "pipeline")]
            pipeline: self.pipeline,
        }
    }

    /// The tables are in the distributed form ([`TenantDb::with_distributed_keys`]); implied
    /// when the schema given to [`audit`](Self::audit) is
    /// [`distributed`](TenantTables::distributed).
    pub fn distributed_keys(mut self) -> Self {
        self.distributed_keys = true;
        self
    }

    /// A second connection, for system scopes in RLS mode: its role must bypass RLS
    /// ([`TenantDb::with_system_connection`]). Opened with no idle connections.
    pub fn system_url(mut self, url: impl Into<String>) -> Self {
        self.system_url = Some(url.into());
        self
    }

    /// The tenant catalog ([`TenantDb::with_catalog`]), its lookups cached for at most
    /// `max_staleness`: read on the system connection when there is one, else on the
    /// application's pool. The table must exist ([`Catalog::create_table`]).
    pub fn catalog(mut self, max_staleness: Duration) -> Self {
        self.catalog = Some(max_staleness);
        self
    }

    /// Serves database-tier tenants on their own databases under `tier`
    /// ([`TenantDb::with_database_tier`]); needs the [`catalog`](Self::catalog).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn database_tier(mut self, tier: super::DatabaseTier) -> Self {
        self.databases = Some(tier);
        self
    }

    /// The pipelined executor ([`TenantDb::with_pipeline`]) with `max_size` connections to the
    /// same URL, instead of the default: on PostgreSQL every handle the builder connects has one,
    /// as large as the application pool. Connecting then fails if its connections cannot be
    /// opened, where the default goes without.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    pub fn pipeline(mut self, max_size: usize) -> Self {
        self.pipeline = Pipelining::Size(max_size);
        self
    }

    /// No pipelined executor: every statement on sqlx. For PgBouncer before 1.21 in transaction
    /// mode, which cannot keep the pipeline's prepared statements.
    #[cfg(feature = "pipeline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
    pub fn without_pipeline(mut self) -> Self {
        self.pipeline = Pipelining::Off;
        self
    }

    /// Connects.
    ///
    /// # Errors
    ///
    /// The driver's error when a database cannot be reached; [`Error::NeedsPostgres`] for RLS
    /// mode or the pipeline on another database; [`Error::BypassingRole`] when RLS mode connects
    /// as a superuser or `BYPASSRLS` role; [`Error::Audit`] or [`Error::RlsMismatch`] from the
    /// audit; [`Error::PipelineSetup`].
    pub async fn connect(self) -> Result<TenantDb> {
        let conn = open(&self.url, &self.tweaks).await?;
        // On PostgreSQL the escape hatch gets a pool of its own, so that whatever raw SQL leaves
        // on a session (a temporary table, `SET search_path`, an open transaction, `SET ROLE`)
        // never reaches a connection that scoped units use. Opened on first use.
        #[cfg(feature = "postgres")]
        let hatch = if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
            let mut tweaks = self.tweaks.clone();
            tweaks.push(Arc::new(|o: &mut ConnectOptions| {
                o.min_connections(0).connect_lazy(true);
            }));
            Some(open(&self.url, &tweaks).await?)
        } else {
            None
        };
        let mut db = match self.rls {
            Some(rls) => {
                let db = TenantDb::with_rls(conn, rls)?;
                #[cfg(feature = "postgres")]
                if self.audit.is_none() {
                    check_role(&db).await?;
                }
                db
            }
            None => TenantDb::new(conn),
        };
        #[cfg(feature = "postgres")]
        if let Some(schema) = self.audit {
            if let Some(rls) = db.rls()
                && schema.rls_settings() != Some(rls)
            {
                return Err(Error::RlsMismatch {
                    schema: schema.rls_settings().cloned(),
                    handle: rls.clone(),
                });
            }
            crate::audit(db.raw(), schema).await?.into_result()?;
        }
        #[cfg(not(feature = "postgres"))]
        if self.audit.is_some() {
            return Err(Error::NeedsPostgres {
                feature: "the audit",
                backend: db.backend(),
            });
        }
        let mut system = None;
        if let Some(url) = self.system_url {
            let tweaks: Vec<Tweak> = vec![Arc::new(|o: &mut ConnectOptions| {
                o.min_connections(0);
            })];
            let conn = open(&url, &tweaks).await?;
            system = Some(conn.clone());
            db = db.with_system_connection(conn);
        }
        if let Some(max_staleness) = self.catalog {
            let conn = system.unwrap_or_else(|| db.conn.clone());
            db = db.with_catalog(Catalog::with_max_staleness(conn, max_staleness));
        }
        #[cfg(feature = "postgres")]
        if let Some(tier) = self.databases {
            if db.catalog.is_none() {
                return Err(Error::InvalidSetting {
                    setting: "database tier",
                    reason: "a tenant's database is found through the tenant catalog: add `.catalog(..)`",
                });
            }
            db = db.with_database_tier(tier)?;
        }
        #[cfg(feature = "pipeline")]
        if let Some(pipeline) = pipeline(&self.url, self.pipeline, &db).await? {
            db = db.with_pipeline(pipeline)?;
        }
        #[cfg(feature = "postgres")]
        if let Some(hatch) = hatch {
            db = db.with_escape_hatch(hatch);
        }
        if self.distributed_keys || self.audit.is_some_and(TenantTables::is_distributed) {
            db = db.with_distributed_keys();
        }
        Ok(db)
    }
}

impl fmt::Debug for TenantDbBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry passwords.
        f.debug_struct("TenantDbBuilder")
            .field("options", &self.tweaks.len())
            .field("rls", &self.rls)
            .field("audit", &self.audit.is_some())
            .field("system", &self.system_url.is_some())
            .finish_non_exhaustive()
    }
}

/// The pipeline `how` asks for on `db`, its connections opened (as many as the application
/// pool keeps idle, one at least) so that the first requests do not pay for them and a role the
/// policies do not confine is refused now.
#[cfg(feature = "pipeline")]
async fn pipeline(url: &str, how: Pipelining, db: &TenantDb) -> Result<Option<crate::Pipeline>> {
    let pool = match db.backend() {
        sea_orm::DbBackend::Postgres => db.conn.get_postgres_connection_pool(),
        _ if how == Pipelining::Default => return Ok(None),
        backend => {
            return Err(Error::NeedsPostgres {
                feature: "the pipelined executor",
                backend,
            });
        }
    };
    let size = match how {
        Pipelining::Off => return Ok(None),
        Pipelining::Size(size) => size,
        Pipelining::Default => pool.options().get_max_connections() as usize,
    };
    let warm = (pool.options().get_min_connections() as usize).clamp(1, size.max(1));
    let opened = async {
        let pipeline = crate::Pipeline::connect(url, size)?;
        pipeline.warm(warm, db.rls.is_some()).await?;
        Ok::<_, Error>(pipeline)
    }
    .await;
    match opened {
        Ok(pipeline) => Ok(Some(pipeline)),
        // A role the policies do not confine is refused whatever asked for the pipeline.
        Err(err @ Error::BypassingRole { .. }) => Err(err),
        Err(err) if how == Pipelining::Default => {
            tracing::warn!(
                target: "tenant::pipeline",
                error = %err,
                "the pipeline cannot connect (a server that requires TLS, say: give the handle \
                 one with `Pipeline::new`); running on sqlx alone"
            );
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "the one place this crate opens a pool; the connection goes into a `TenantDb`"
)]
async fn open(url: &str, tweaks: &[Tweak]) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    for tweak in tweaks {
        tweak(&mut options);
    }
    Database::connect(options).await.map_err(tls_hint)
}

/// A TLS refusal of the server's certificate, told with what works: Citus (and any server with a
/// self-generated certificate) presents one that rustls refuses under the default `sslmode`.
fn tls_hint(error: sea_orm::DbErr) -> Error {
    let text = error.to_string();
    if text.contains("invalid peer certificate") || text.contains("UnsupportedCertVersion") {
        return Error::TlsRefused { source: error };
    }
    Error::Db(error)
}

/// Refuses an RLS-mode connection whose role skips every policy.
#[cfg(feature = "postgres")]
#[expect(
    clippy::disallowed_methods,
    reason = "a catalog query this crate writes"
)]
async fn check_role(db: &TenantDb) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let row = db
        .raw()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles \
             WHERE rolname = current_user",
        ))
        .await?;
    let Some(row) = row else { return Ok(()) };
    let (role, superuser, bypass): (String, bool, bool) = (
        row.try_get_by_index(0)?,
        row.try_get_by_index(1)?,
        row.try_get_by_index(2)?,
    );
    let right = match (superuser, bypass) {
        (false, false) => return Ok(()),
        (true, _) => "is a superuser",
        (false, true) => "has `BYPASSRLS`",
    };
    Err(Error::BypassingRole {
        connection: "application",
        role,
        right,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_names_what_works() {
        let refused = sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(
            "error communicating with database: invalid peer certificate: UnsupportedCertVersion"
                .to_owned(),
        ));
        let error = tls_hint(refused);
        assert!(matches!(error, Error::TlsRefused { .. }));
        assert!(error.to_string().contains("sslmode=disable"), "{error}");
        let other = sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal("refused".to_owned()));
        assert!(matches!(tls_hint(other), Error::Db(_)));
    }
}
