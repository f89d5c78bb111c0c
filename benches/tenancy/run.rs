//! The schedule: per data set and concurrency, a warm-up, then `rounds` rounds; in each round
//! every operation group runs one block per implementation, the implementations in a rotating
//! order, so that drift of the machine (another build, a checkpoint) hits all of them alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Result;
use crate::args::{Args, Layout, Mode};
use crate::data::{DataSet, Key, Rng};
use crate::ops::{Group, Imp, Op, Target};
use crate::report::{self, Backend, CellKey, Results};
use crate::setup::{self, Tiers, timed};

/// `--cluster`, `--covering`: changes the seeded table's layout, and says so in the report's
/// notes (once, however many data sets).
async fn lay_out(layout: Layout, seeded: &setup::PgData, notes: &mut Vec<String>) -> Result<()> {
    let note = match layout {
        Layout::AsWritten => return Ok(()),
        Layout::Covering => {
            let index = timed("covering index", seeded.cover()).await?;
            format!(
                "covering index: after seeding, `ix_item_tenant_id_created_at` replaced by \
                 `{index}` (tenant_id, created_at) INCLUDE (id, label, qty); `VACUUM (ANALYZE) item`"
            )
        }
        Layout::Clustered => {
            let index = timed("cluster", seeded.cluster()).await?;
            format!(
                "rows clustered: after seeding, `CLUSTER item USING {index}; VACUUM (ANALYZE) \
                 item` (each tenant's rows on adjacent pages)"
            )
        }
    };
    if !notes.contains(&note) {
        notes.push(note);
    }
    Ok(())
}

pub(crate) async fn main(args: &Args) -> Result<()> {
    // Checked first, as Citus is: a missing install should not wait for the seeding.
    check_typeorm(args)?;
    if args.mode == Mode::Statements {
        // Boxed: the future is larger than clippy's limit for the stack.
        return Box::pin(statements(args)).await;
    }
    if let Mode::Fleet { databases, cap } = args.mode {
        return crate::fleet::main(args, databases, cap).await;
    }
    let started = Instant::now();
    let mut results = Results {
        cells: BTreeMap::new(),
        postgres_version: None,
        sqlite_version: None,
        citus_version: None,
        notes: Vec::new(),
    };
    // Checked first: a wrong CITUS_URL should not wait for the other backends' runs.
    let citus = if args.backends.contains(&Backend::Citus) {
        let citus = setup::Citus::connect().await?;
        results.citus_version = Some(citus.description.clone());
        results
            .notes
            .extend(implementations(args, Backend::Citus).1);
        Some(citus)
    } else {
        None
    };
    let _qos = if args.cpu_qos {
        let held = cpu_latency_qos();
        results.notes.push(match &held {
            Ok(_) => {
                "CPU latency QoS: /dev/cpu_dma_latency held at 0 µs while measuring".to_owned()
            }
            Err(e) => format!("CPU latency QoS not held ({e}): idle CPUs may halt"),
        });
        held.ok()
    } else {
        results
            .notes
            .push("CPU latency QoS: not requested (`--no-cpu-qos` or `--quick`)".to_owned());
        None
    };
    for &backend in &args.backends {
        for &tenants in &args.tenants {
            let data = DataSet {
                seed: args.seed,
                tenants,
                rows: args.rows,
            };
            eprintln!("{}: {tenants} tenants × {} rows", backend.name(), args.rows);
            match backend {
                Backend::Postgres => {
                    let seeded = timed("seed", setup::pg_seed(&data)).await?;
                    lay_out(args.layout, &seeded, &mut results.notes).await?;
                    if results.postgres_version.is_none() {
                        results.postgres_version = Some(setup::pg_version(&seeded.admin).await?);
                        // Every data set's, before the first is measured.
                        setup::check_connections(&seeded.admin, args).await?;
                    }
                    for &workers in &args.workers {
                        let target = seeded
                            .target(&data, workers, args.ping_on_acquire, Tiers::of(&args.impls))
                            .await?;
                        measure(args, backend, &data, workers, target, &mut results).await?;
                    }
                    seeded.finish().await?;
                }
                Backend::Citus => {
                    let citus = citus.as_ref().ok_or("Citus was not connected")?;
                    on_citus(args, citus, &data, &mut results).await?;
                }
                Backend::Sqlite => {
                    let seeded = timed("seed", setup::sqlite_seed(&data)).await?;
                    for &workers in &args.workers {
                        let target = seeded.target(&data, workers, args.ping_on_acquire).await?;
                        if results.sqlite_version.is_none() {
                            results.sqlite_version = Some(setup::sqlite_version(&target).await?);
                        }
                        measure(args, backend, &data, workers, target, &mut results).await?;
                    }
                }
            }
        }
    }
    results.notes.push(format!(
        "total time {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    report::print(args, &results);
    Ok(())
}

/// Node and the packages of the `TypeORM` control, when it runs.
fn check_typeorm(args: &Args) -> Result<()> {
    if args.impls.iter().any(|imp| imp.typeorm())
        && (args.mode == Mode::Statements || args.backends.contains(&Backend::Postgres))
    {
        crate::typeorm::check_installed()?;
    }
    Ok(())
}

/// Every cell of one data set on Citus; the table is dropped afterwards, whether or not the
/// measurement failed.
async fn on_citus(
    args: &Args,
    citus: &setup::Citus,
    data: &DataSet,
    results: &mut Results,
) -> Result<()> {
    let seeded = timed("seed", setup::citus_seed(citus, data)).await?;
    let measured = async {
        for &workers in &args.workers {
            let target = seeded
                .target(data, workers, args.ping_on_acquire, Tiers::default())
                .await?;
            measure(args, Backend::Citus, data, workers, target, results).await?;
        }
        Ok::<_, crate::BoxError>(())
    }
    .await;
    let finished = seeded.finish().await;
    measured?;
    finished
}

/// Every cell of one data set at one concurrency.
async fn measure(
    args: &Args,
    backend: Backend,
    data: &DataSet,
    workers: usize,
    target: Target,
    results: &mut Results,
) -> Result<()> {
    let start = Instant::now();
    let target = Arc::new(target);
    let imps = implementations(args, backend).0;
    let per_block = args.ops / args.rounds;
    let run = Runner {
        target: &target,
        data,
        workers,
    };
    run.warm_tenant_databases(&imps).await?;
    // Warm-up: connections, prepared statements, the buffer cache, the allocator.
    for &group in &args.groups {
        for &imp in &imps {
            let warm = (per_block / 2).max(2 * workers);
            run.block(imp, group, warm, u64::MAX).await?;
        }
    }
    for round in 0..args.rounds {
        for &group in &args.groups {
            for i in 0..imps.len() {
                let imp = imps[(i + round) % imps.len()];
                let measured = run.block(imp, group, per_block, round as u64).await?;
                for (op, wall, latencies) in measured {
                    let cell = results
                        .cells
                        .entry(CellKey {
                            backend,
                            tenants: data.tenants,
                            workers,
                            op,
                            imp,
                        })
                        .or_default();
                    cell.wall += wall;
                    cell.latencies_ns.extend(latencies);
                }
            }
        }
    }
    if let Some(tier) = &target.db_rls {
        results
            .notes
            .push(tier.describe(&imps, data.tenants, workers));
    }
    if let Some(node) = &target.typeorm {
        let summary = node.finish().await?;
        typeorm_summary(&summary, backend, data, workers, results)?;
        if !results.notes.contains(&node.note) {
            results.notes.push(node.note.clone());
        }
    }
    target.close().await;
    eprintln!(
        "  {workers} worker(s): {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Shows the `TypeORM` node process's own figures of a cell on stderr, after checking that it
/// counted what the cells hold.
fn typeorm_summary(
    summary: &serde_json::Value,
    backend: Backend,
    data: &DataSet,
    workers: usize,
    results: &Results,
) -> Result<()> {
    for imp in [Imp::TypeOrm, Imp::TypeOrmRls] {
        let variant = if imp == Imp::TypeOrm {
            "typeorm"
        } else {
            "typeorm-rls"
        };
        for op in Op::ALL {
            let key = CellKey {
                backend,
                tenants: data.tenants,
                workers,
                op,
                imp,
            };
            let Some(cell) = results.cells.get(&key) else {
                continue;
            };
            let name = crate::typeorm::op_name(op);
            let own = &summary[variant][name];
            if own["count"].as_u64() != Some(cell.latencies_ns.len() as u64) {
                return Err(format!(
                    "{variant} {name}: the node process counted {} measured operations, the \
                     report {}",
                    own["count"],
                    cell.latencies_ns.len()
                )
                .into());
            }
            eprintln!(
                "  {variant} {name} (node's own summary): {} ops, {:.0} ops/s, p50 {:.1} µs, \
                 p99 {:.1} µs",
                own["count"],
                own["ops_per_s"].as_f64().unwrap_or(f64::NAN),
                own["p50_us"].as_f64().unwrap_or(f64::NAN),
                own["p99_us"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    Ok(())
}

/// The implementations of `args` that run on `backend`, and what the report should say about
/// the ones Citus runs differently or not at all.
fn implementations(args: &Args, backend: Backend) -> (Vec<Imp>, Vec<String>) {
    match backend {
        Backend::Postgres => (args.impls.clone(), Vec::new()),
        Backend::Sqlite => (
            args.impls
                .iter()
                .copied()
                .filter(|imp| !imp.postgres_only())
                .collect(),
            Vec::new(),
        ),
        Backend::Citus => {
            let mut imps = Vec::new();
            let mut notes = Vec::new();
            for &imp in &args.impls {
                match imp {
                    Imp::SqlxTxn => {
                        if !args.impls.contains(&Imp::SqlxSetLocal) {
                            imps.push(Imp::SqlxSetLocal);
                        }
                        notes.push(format!(
                            "Citus: `{}` replaced by `{}` (`SET LOCAL app.tenant_id = ..` as a \
                             message of its own after `BEGIN`): Citus never propagates \
                             `set_config` to the workers, which would see no rows",
                            Imp::SqlxTxn.name(),
                            Imp::SqlxSetLocal.name()
                        ));
                    }
                    Imp::RepoCatalog => notes.push(format!(
                        "Citus: `{}` not run: the catalog costs the client what it costs on \
                         PostgreSQL, and its table would go in the coordinator's database, \
                         beside other users' tables",
                        imp.name()
                    )),
                    Imp::TokioPgRls | Imp::TokioPgRlsPin => notes.push(format!(
                        "Citus: `{}` not run: it sends `BEGIN; SET LOCAL ..` as one message, \
                         and Citus needs the two as messages of their own",
                        imp.name()
                    )),
                    Imp::TypeOrm | Imp::TypeOrmRls => notes.push(format!(
                        "Citus: `{}` not run: the TypeORM control runs on PostgreSQL only \
                         (`set_config`, which its RLS transaction binds with, never reaches \
                         Citus's workers)",
                        imp.name()
                    )),
                    Imp::SchemaRls | Imp::SchemaRlsPipe => notes.push(format!(
                        "Citus: `{}` not run: a schema per tenant is the alternative to a table \
                         distributed by tenant, not a form of it",
                        imp.name()
                    )),
                    _ => imps.push(imp),
                }
            }
            (imps, notes)
        }
    }
}

struct Runner<'a> {
    target: &'a Arc<Target>,
    data: &'a DataSet,
    workers: usize,
}

/// Wall time and per-operation latencies of one operation's phase of a block.
pub(crate) type Phase = (Op, Duration, Vec<u64>);

impl Runner<'_> {
    /// Opens every tenant database's connections and prepares every operation's statements on
    /// them before anything is measured: the warm-up blocks' random keys reach each tenant only
    /// by chance, and a pool opened or a statement prepared inside a measured block would be
    /// counted against the operation. Each tenant's operations run `per_tenant` at a time, so
    /// that every connection of its pool (and pipeline) takes them.
    async fn warm_tenant_databases(&self, imps: &[Imp]) -> Result<()> {
        let Some(tier) = &self.target.db_rls else {
            return Ok(());
        };
        let data = self.data;
        let at_once = u64::from(tier.per_tenant);
        for &imp in imps.iter().filter(|imp| imp.database_tier()) {
            for t in 0..data.tenants {
                let reads: Vec<Key> = (0..at_once)
                    .map(|j| Key::read_of(data, t, j % data.rows))
                    .collect();
                let writes: Vec<Key> = (0..at_once)
                    .map(|j| Key::write_for(data, t, &[0xdb_3a4, imp as u64, t, j]))
                    .collect();
                for op in Op::ALL {
                    let keys = if op.is_read() { &reads } else { &writes };
                    futures::future::try_join_all(
                        keys.iter().map(|key| self.target.run(imp, op, key)),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// `n` operations of `group` through `imp`, split over the workers. The keys depend on the
    /// round, not on the implementation: every implementation reads the same rows.
    async fn block(&self, imp: Imp, group: Group, n: usize, round: u64) -> Result<Vec<Phase>> {
        let data = self.data;
        let workers = self.workers;
        let keys: Vec<Arc<Vec<Key>>> = (0..workers)
            .map(|w| {
                let count = n / workers + usize::from(w < n % workers);
                let tag = [data.tenants, workers as u64, group.tag(), round, w as u64];
                let mut rng = Rng::new(data.seed, &tag);
                let keys = (0..count)
                    .map(|i| match group {
                        Group::Write => Key::write(
                            data,
                            &mut rng,
                            &[
                                0x5717e, imp as u64, tag[0], tag[1], round, w as u64, i as u64,
                            ],
                        ),
                        _ => Key::read(data, &mut rng),
                    })
                    .collect();
                Arc::new(keys)
            })
            .collect();
        if imp.typeorm() {
            let node = self
                .target
                .typeorm
                .as_ref()
                .ok_or("TypeORM runs on PostgreSQL only")?;
            return node.block(imp, group.ops(), &keys, round != u64::MAX).await;
        }
        let mut phases = Vec::new();
        for &op in group.ops() {
            phases.push(self.phase(imp, op, &keys).await?);
        }
        Ok(phases)
    }

    /// Every worker runs `op` on its keys, one after the other; all workers at once.
    async fn phase(&self, imp: Imp, op: Op, keys: &[Arc<Vec<Key>>]) -> Result<Phase> {
        let start = Instant::now();
        let tasks: Vec<_> = keys
            .iter()
            .map(|keys| {
                let target = Arc::clone(self.target);
                let keys = Arc::clone(keys);
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(keys.len());
                    for key in keys.iter() {
                        let t0 = Instant::now();
                        target.run(imp, op, key).await?;
                        latencies.push(nanos(t0.elapsed()));
                    }
                    Ok::<_, crate::BoxError>(latencies)
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        Ok((op, start.elapsed(), latencies))
    }
}

/// Asks the kernel to keep idle CPUs out of sleep states that take longer than 0 µs to leave
/// (a power-management quality-of-service request, what the `latency-performance` profile of `tuned` does), for as long as the file is
/// open.
///
/// On the KVM guest this was measured on, the `haltpoll` cpuidle driver otherwise halts an idle
/// vCPU after an adaptive polling window, and the cost of waking it (every round trip wakes the
/// server or the client) depended on that window's state: single-worker cells of the same
/// implementation differed by up to 3× between runs. Needs root; the request ends with the
/// process.
fn cpu_latency_qos() -> std::io::Result<std::fs::File> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")?;
    file.write_all(&0i32.to_ne_bytes())?;
    Ok(file)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `--statements`: what each implementation sends to PostgreSQL for one operation of each
/// kind, from the server log with `log_min_duration_statement = 0` on the database.
async fn statements(args: &Args) -> Result<()> {
    let Some(dir) = crate::pg::cluster().tmp_dir() else {
        return Err(
            "`--statements` reads the log of the throwaway server; unset DATABASE_URL".into(),
        );
    };
    let log = dir.join("server.log");
    let data = DataSet {
        seed: args.seed,
        tenants: 10,
        rows: args.rows,
    };
    let seeded = setup::pg_seed(&data).await?;
    let db = seeded.database().ok_or("not a fresh database")?;
    sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" SET log_min_duration_statement = 0",
        db.name
    )))
    .execute(&seeded.admin)
    .await?;
    let target = seeded
        .target(&data, 1, args.ping_on_acquire, Tiers::of(&args.impls))
        .await?;
    // The tenant databases log too; their pools connect on first use, after this.
    for name in seeded.tenant_databases() {
        sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" SET log_min_duration_statement = 0"
        )))
        .execute(&seeded.admin)
        .await?;
    }
    // Sessions read the setting when they start: the markers need a connection of their own.
    let markers = sea_orm::sqlx::PgPool::connect(&db.admin_url).await?;
    let marker = |text: String| {
        let admin = markers.clone();
        async move {
            sea_orm::sqlx::query("SELECT $1::text")
                .bind(text)
                .execute(&admin)
                .await
        }
    };
    let before = std::fs::metadata(&log).map_or(0, |m| m.len());
    let mut rng = Rng::new(args.seed, &[0x57a7]);
    for &imp in &args.impls {
        // Once to prepare every statement, once to show.
        for pass in 0..2u64 {
            if pass == 0 {
                marker(format!("--- (warm-up of {})", imp.name())).await?;
            }
            let read = Key::read(&data, &mut rng);
            let write = Key::write(&data, &mut rng, &[0x57a7, imp as u64, pass]);
            for op in Op::ALL {
                let key = if op.is_read() { &read } else { &write };
                if pass == 1 {
                    marker(format!("--- {} / {}", imp.name(), op.name())).await?;
                }
                target.run(imp, op, key).await?;
            }
        }
    }
    marker("--- end".to_owned()).await?;
    target.close().await;
    let text = std::fs::read(&log)?;
    let text = String::from_utf8_lossy(&text[usize::try_from(before)?..]);
    println!("# Statements per operation (PostgreSQL log, `log_min_duration_statement = 0`)\n");
    println!(
        "Each line is one protocol step the server timed. Not shown: sqlx's `Sync`-only ping \
         when a connection goes back to the pool (one more round trip per checkout; \
         `--ping-on-acquire` adds another on checkout).\n"
    );
    let mut section = String::new();
    for line in text.lines() {
        if let Some((_, title)) = line.split_once("$1 = '--- ") {
            let title = title.trim_end_matches('\'');
            if title == "end" {
                break;
            }
            if title != section && !title.starts_with('(') {
                println!("\n## {title}\n");
            }
            title.clone_into(&mut section);
        } else if section.is_empty() || section.starts_with('(') || line.contains("SELECT $1::text")
        {
        } else if let Some((_, rest)) = line.split_once("LOG:  ") {
            println!("    {rest}");
        } else if let Some((_, rest)) = line.split_once("DETAIL:  ") {
            println!("        {rest}");
        }
    }
    Ok(())
}
