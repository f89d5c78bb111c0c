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
use sea_orm::sqlx::PgPool;
use sea_orm::sqlx::postgres::PgPoolOptions;
use tenant::catalog::Catalog;
use tenant::{DatabaseTier, Rls, TenantDb, TenantId, TenantRepo};

use crate::Result;
use crate::args::Args;
use crate::data::{Rng, uuid};
use crate::databases::{self, TenantDatabases};
use crate::entity::item;
use crate::pg;
use crate::setup::{one_connection, pg_options};

pub(crate) async fn main(args: &Args, databases: usize, cap: u32) -> Result<()> {
    let workers = args.workers[0];
    let started = Instant::now();
    let control = pg::fresh_database().await;
    let admin = one_connection(&control.admin_url).await?;
    tenant::TenantTables::new()
        .table::<item::Entity>()
        .rls(Rls::default())
        .create(&SqlxPostgresConnector::from_sqlx_postgres_pool(
            admin.clone(),
        ))
        .await?;
    let fleet = TenantDatabases::create(&admin, databases).await?;
    let outcome = measure(args, &control, &admin, &fleet, cap, workers).await;
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
    fleet: &TenantDatabases,
    cap: u32,
    workers: usize,
) -> Result<(Run, Run, usize)> {
    let owner = SqlxPostgresConnector::from_sqlx_postgres_pool(admin.clone());
    let catalog = Catalog::with_max_staleness(owner, Duration::from_hours(1));
    catalog.create_table().await?;
    let tenants: Vec<TenantId> = (0..fleet.names().len())
        .map(|i| TenantId::from(uuid(args.seed, &[0xf1ee7, i as u64])))
        .collect();
    databases::register(&catalog, &tenants).await?;
    let app = PgPoolOptions::new()
        .max_connections(u32::try_from(workers)?)
        .connect_with(pg_options(&control.app_url)?)
        .await?;
    let shared = TenantDb::with_rls(
        SqlxPostgresConnector::from_sqlx_postgres_pool(app),
        Rls::default(),
    )?;
    let tier = DatabaseTier::new(fleet.resolver())
        .max_connections(cap)
        .per_tenant(1)
        .acquire_timeout(Duration::from_mins(2));
    let tiered = shared
        .clone()
        .with_catalog(catalog)
        .with_database_tier(tier)?;
    let tenants = Arc::new(tenants);
    eprintln!("  database tier: {workers} workers, {} requests", args.ops);
    let on_tiers = requests(args, &tiered, &tenants, workers).await;
    let pools_opened = tiered.database_tier().map_or(0, DatabaseTier::pools_opened);
    if let Some(tier) = tiered.database_tier() {
        tier.close().await;
    }
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
