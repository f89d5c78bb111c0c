//! `--fleet N --cap C`: the database tier under load. N tenant databases (copies of one
//! template holding `item` with its policy), a catalog listing every tenant on the database tier,
//! and a `DatabaseTier` of at most C connections in all. Workers send requests (an insert, then a
//! get by id of the row inserted) for tenants drawn at random from all N; every request must
//! succeed. The same requests then run on the shared tier (one database, RLS mode) for
//! comparison.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::ActiveValue::Set;
use sea_orm::SqlxPostgresConnector;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::{self, ConnectOptions as _, PgPool};
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::{DatabaseTier, ResolveDatabase, ResolveError, Rls, TenantDb, TenantId, TenantRepo};

use crate::Result;
use crate::args::Args;
use crate::data::{Rng, uuid};
use crate::entity::item;
use crate::pg;

/// Resolves `fleet:<n>` to the `n`th tenant database's URL.
struct Urls(Vec<String>);

#[async_trait::async_trait]
impl ResolveDatabase for Urls {
    async fn resolve(&self, _: TenantId, reference: &str) -> Result<String, ResolveError> {
        let n: usize = reference
            .strip_prefix("fleet:")
            .ok_or("not a `fleet:` reference")?
            .parse()?;
        Ok(self.0.get(n).ok_or("no such fleet database")?.clone())
    }
}

fn options(url: &str) -> Result<PgConnectOptions> {
    Ok(url.parse::<PgConnectOptions>()?.disable_statement_logging())
}

/// `url` naming database `name` instead.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, _) = url.rsplit_once('/').ok_or("a URL with a database name")?;
    Ok(format!("{base}/{name}"))
}

/// The tenant databases, dropped when this is.
struct Databases {
    admin: PgPool,
    names: Vec<String>,
}

impl Databases {
    async fn drop_all(&self) {
        for name in &self.names {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&self.admin)
                .await
            {
                eprintln!("warning: could not drop {name}: {e}");
            }
        }
    }
}

pub(crate) async fn main(args: &Args, databases: usize, cap: u32) -> Result<()> {
    let workers = args.workers[0];
    let started = Instant::now();
    let control = pg::fresh_database().await;
    let template = pg::fresh_database().await;
    let tables = tenant::TenantTables::new()
        .table::<item::Entity>()
        .rls(Rls::default());
    for db in [&control, &template] {
        let owner = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options(&db.admin_url)?)
            .await?;
        tables
            .create(&SqlxPostgresConnector::from_sqlx_postgres_pool(
                owner.clone(),
            ))
            .await?;
        owner.close().await;
    }
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options(&control.admin_url)?)
        .await?;
    let mut fleet = Databases {
        admin: admin.clone(),
        names: Vec::new(),
    };
    let made = Instant::now();
    let mut urls = Vec::new();
    for i in 0..databases {
        let name = format!("{}_f{i}", template.name);
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{}\"", template.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await?;
        urls.push(with_database(&template.app_url, &name)?);
        fleet.names.push(name);
    }
    eprintln!(
        "  {databases} tenant databases: {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let outcome = measure(args, &control, &admin, urls, databases, cap, workers).await;
    fleet.drop_all().await;
    admin.close().await;
    let (tiered, shared, pools_opened) = outcome?;
    let seed_note = format!(
        "seed {}, {workers} workers, tokio threads {}",
        args.seed, args.threads
    );
    println!("# Database tier under load\n");
    println!(
        "- {databases} tenant databases behind a `DatabaseTier` of {cap} connections (1 per tenant \
         database), {} requests (insert, then get by id), tenants drawn uniformly; {seed_note}",
        args.ops
    );
    println!(
        "- pools opened: {pools_opened} (a pool closed to make room and opened again counts twice)"
    );
    println!("- total time {:.0} s\n", started.elapsed().as_secs_f64());
    println!("| tier | requests | failed | requests/s | p50 µs | p99 µs | max µs |");
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for (label, run) in [
        ("database tier", &tiered),
        ("shared tier (one database, RLS)", &shared),
    ] {
        println!(
            "| {label} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            run.latencies.len() + run.failed,
            run.failed,
            run.per_second(),
            run.percentile(50),
            run.percentile(99),
            run.percentile(100),
        );
    }
    if let Some(first) = &tiered.first_error {
        println!("\nfirst failure: {first}");
    }
    Ok(())
}

/// What one run of requests gave.
struct Run {
    latencies: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
    first_error: Option<String>,
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `percent`th percentile in µs (nearest rank).
    fn percentile(&self, percent: usize) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = (percent * sorted.len())
            .div_ceil(100)
            .clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1e6
    }
}

async fn measure(
    args: &Args,
    control: &pg::TestDb,
    admin: &PgPool,
    urls: Vec<String>,
    databases: usize,
    cap: u32,
    workers: usize,
) -> Result<(Run, Run, usize)> {
    let owner = SqlxPostgresConnector::from_sqlx_postgres_pool(admin.clone());
    let catalog = Catalog::with_max_staleness(owner, Duration::from_hours(1));
    catalog.create_table().await?;
    let tenant = |i: usize| TenantId::from(uuid(args.seed, &[0xf1ee7, i as u64]));
    for i in 0..databases {
        catalog
            .register(
                NewTenant::database(tenant(i), format!("f{i}"), format!("fleet:{i}"))
                    .status(TenantStatus::Active),
            )
            .await?;
        catalog.lookup(tenant(i)).await?;
    }
    let app = PgPoolOptions::new()
        .max_connections(u32::try_from(workers)?)
        .connect_with(options(&control.app_url)?)
        .await?;
    let shared = TenantDb::with_rls(
        SqlxPostgresConnector::from_sqlx_postgres_pool(app),
        Rls::default(),
    )?;
    let tier = DatabaseTier::new(Urls(urls))
        .max_connections(cap)
        .per_tenant(1)
        .acquire_timeout(Duration::from_mins(2));
    let tiered = shared
        .clone()
        .with_catalog(catalog)
        .with_database_tier(tier)?;
    let tenants: Arc<Vec<TenantId>> = Arc::new((0..databases).map(tenant).collect());
    eprintln!("  database tier: {workers} workers, {} requests", args.ops);
    let on_tiers = requests(args, &tiered, &tenants, workers).await;
    let pools_opened = tiered.database_tier().map_or(0, DatabaseTier::pools_opened);
    eprintln!("  shared tier: the same requests");
    let on_shared = requests(args, &shared, &tenants, workers).await;
    Ok((on_tiers, on_shared, pools_opened))
}

/// `args.ops` requests from `workers` workers, each for a tenant drawn from `tenants`.
async fn requests(args: &Args, db: &TenantDb, tenants: &Arc<Vec<TenantId>>, workers: usize) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let ops = args.ops;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let (db, tenants, next) = (db.clone(), Arc::clone(tenants), Arc::clone(&next));
        let seed = args.seed;
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed, &[0xf1ee7, w as u64]);
            let created_at =
                sea_orm::prelude::DateTimeUtc::from_timestamp(1_735_689_600, 0).unwrap_or_default();
            let mut latencies = Vec::new();
            let (mut failed, mut first_error) = (0, None);
            while next.fetch_add(1, Ordering::Relaxed) < ops {
                let t = tenants[usize::try_from(rng.below(tenants.len() as u64)).unwrap_or(0)];
                let id = uuid(seed, &[0x1d, w as u64, rng.next_u64()]);
                let begun = Instant::now();
                let done = tenant::scope(t, async {
                    let repo = TenantRepo::<item::Entity>::new(&db);
                    repo.insert(item::ActiveModel {
                        id: Set(id),
                        label: Set("fleet".to_owned()),
                        qty: Set(1),
                        created_at: Set(created_at),
                        ..Default::default()
                    })
                    .await?;
                    // The row read back must be there, and the tenant's.
                    match repo.find_by_id(id).await? {
                        Some(row) if row.tenant_id == *t.as_uuid() => Ok(()),
                        _ => Err(tenant::Error::NotFound { entity: "item" }),
                    }
                })
                .await;
                match done {
                    Ok(()) => latencies.push(begun.elapsed()),
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (latencies, failed, first_error)
        }));
    }
    let mut run = Run {
        latencies: Vec::new(),
        failed: 0,
        elapsed: Duration::ZERO,
        first_error: None,
    };
    for handle in handles {
        let (latencies, failed, first_error) = handle.await.unwrap_or_default();
        run.latencies.extend(latencies);
        run.failed += failed;
        if run.first_error.is_none() {
            run.first_error = first_error;
        }
    }
    run.elapsed = started.elapsed();
    run
}
