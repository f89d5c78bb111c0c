//! Markdown: one table per backend, data set and concurrency, then the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::args::Args;
use crate::ops::{Imp, Op};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
    /// A Citus cluster's coordinator (`CITUS_URL`), the table distributed by tenant.
    Citus,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
            Backend::Citus => "Citus",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CellKey {
    pub(crate) backend: Backend,
    pub(crate) tenants: u64,
    pub(crate) workers: usize,
    pub(crate) op: Op,
    pub(crate) imp: Imp,
}

/// The measurements of one (backend, T, C, operation, implementation).
#[derive(Debug, Default)]
pub(crate) struct Cell {
    /// Summed over the blocks: the time from the first worker's start to the last one's end.
    pub(crate) wall: Duration,
    pub(crate) latencies_ns: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) cells: BTreeMap<CellKey, Cell>,
    pub(crate) postgres_version: Option<String>,
    pub(crate) sqlite_version: Option<String>,
    /// Citus's version, the coordinator's PostgreSQL and the cluster's shape.
    pub(crate) citus_version: Option<String>,
    pub(crate) notes: Vec<String>,
}

/// What a cell comes to.
#[derive(Debug, Clone, Copy)]
struct Stats {
    ops: usize,
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

#[expect(
    clippy::cast_precision_loss,
    reason = "counts and nanoseconds far below 2^52"
)]
fn stats(cell: &Cell) -> Stats {
    let mut sorted = cell.latencies_ns.clone();
    sorted.sort_unstable();
    let ops = sorted.len();
    // Nearest rank: the smallest value with at least `percent`% of the values at or below it.
    let rank = |percent: usize| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let idx = (percent * ops).div_ceil(100).clamp(1, ops) - 1;
        sorted[idx] as f64 / 1_000.0
    };
    Stats {
        ops,
        ops_per_s: ops as f64 / cell.wall.as_secs_f64(),
        p50_us: rank(50),
        p99_us: rank(99),
    }
}

fn us(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "–".to_owned()
    }
}

/// `ok` as a mark for the target tables.
fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

pub(crate) fn print(args: &Args, results: &Results) {
    print!("{}", render(args, results));
}

fn render(args: &Args, results: &Results) -> String {
    let mut out = String::new();
    let all: BTreeMap<CellKey, Stats> = results.cells.iter().map(|(k, c)| (*k, stats(c))).collect();
    let get = |backend, tenants, workers, op, imp| {
        all.get(&CellKey {
            backend,
            tenants,
            workers,
            op,
            imp,
        })
        .copied()
    };
    let _ = writeln!(
        out,
        "# Tenancy benchmark{}\n",
        if args.quick {
            " (quick smoke run: not a measurement)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- arguments: tenants {:?}, rows {}, workers {:?}, {} measured ops per cell in {} rounds, seed {}{}",
        args.tenants,
        args.rows,
        args.workers,
        args.ops / args.rounds * args.rounds,
        args.rounds,
        args.seed,
        if args.ping_on_acquire {
            ", ping on acquire"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "- machine: {} CPUs; PostgreSQL: {}; SQLite: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        results.postgres_version.as_deref().unwrap_or("not run"),
        results.sqlite_version.as_deref().unwrap_or("not run"),
    );
    if let Some(citus) = &results.citus_version {
        let _ = writeln!(out, "- Citus: {citus}");
    }
    for note in &results.notes {
        let _ = writeln!(out, "- {note}");
    }

    // One table per backend, T and C.
    let mut sections: Vec<(Backend, u64, usize)> = all
        .keys()
        .map(|k| (k.backend, k.tenants, k.workers))
        .collect();
    sections.dedup();
    for &(backend, tenants, workers) in &sections {
        let _ = writeln!(
            out,
            "\n## {}: {tenants} tenants × {} rows, {workers} worker{} (pool of {workers})\n",
            backend.name(),
            args.rows,
            if workers == 1 { "" } else { "s" },
        );
        let _ = writeln!(
            out,
            "| operation | implementation | ops/s | p50 µs | p99 µs | × SeaORM |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|");
        for op in Op::ALL {
            let base = get(backend, tenants, workers, op, Imp::SeaOrm);
            for imp in Imp::EVERY {
                let Some(s) = get(backend, tenants, workers, op, imp) else {
                    continue;
                };
                let vs = base.map_or(f64::NAN, |b| s.ops_per_s / b.ops_per_s);
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {} | {} | {} |",
                    op.name(),
                    imp.name(),
                    s.ops_per_s,
                    us(s.p50_us),
                    us(s.p99_us),
                    ratio(vs),
                );
            }
        }
    }

    targets(&mut out, &sections, &get);
    let counted: usize = all.values().map(|s| s.ops).sum();
    let _ = writeln!(out, "\n{counted} measured operations in all.");
    out
}

type Lookup<'a> = dyn Fn(Backend, u64, usize, Op, Imp) -> Option<Stats> + 'a;

/// The targets, each cell marked.
fn targets(out: &mut String, sections: &[(Backend, u64, usize)], get: &Lookup<'_>) {
    let _ = writeln!(out, "\n## Targets");
    ratio_table(
        out,
        "`TenantRepo` (app-level) ≥ 0.97× plain SeaORM (ops/s ratio)",
        sections,
        get,
        (Imp::Repo, Imp::SeaOrm),
        |_| Some(0.97),
    );
    // RLS needs PostgreSQL: plain or Citus.
    let pg: Vec<_> = sections
        .iter()
        .filter(|s| s.0 != Backend::Sqlite)
        .copied()
        .collect();
    if !pg.is_empty() {
        ratio_table(
            out,
            "RLS mode ≥ 0.85× `TenantRepo` (app-level) on reads (ops/s ratio; writes shown, no target)",
            &pg,
            get,
            (Imp::Rls, Imp::Repo),
            |op| op.is_read().then_some(0.85),
        );
        for (hand, what) in HAND_WRITTEN {
            ratio_table(
                out,
                &format!("RLS mode faster than hand-written sqlx {what} (ops/s ratio > 1)"),
                &pg,
                get,
                (Imp::Rls, hand),
                |_| Some(1.0),
            );
        }
        ratio_table(
            out,
            "RLS mode with the pipeline ≥ 0.85× `TenantRepo` (app-level) on reads (ops/s ratio)",
            &pg,
            get,
            (Imp::RlsPipe, Imp::Repo),
            |op| op.is_read().then_some(0.85),
        );
        for (hand, what) in HAND_WRITTEN {
            ratio_table(
                out,
                &format!(
                    "RLS mode with the pipeline faster than hand-written sqlx {what} (ops/s ratio > 1)"
                ),
                &pg,
                get,
                (Imp::RlsPipe, hand),
                |_| Some(1.0),
            );
        }
        ratio_table(
            out,
            "RLS mode with the pipeline ≥ 0.9× the same binding pipelined by hand on tokio-postgres, `search_path` pin included (ops/s ratio)",
            &pg,
            get,
            (Imp::RlsPipe, Imp::TokioPgRlsPin),
            |_| Some(0.9),
        );
        ratio_table(
            out,
            "RLS mode with the pipeline against the hand-written RLS pipeline without the pin (ops/s ratio)",
            &pg,
            get,
            (Imp::RlsPipe, Imp::TokioPgRls),
            |_| None,
        );
        ratio_table(
            out,
            "The `search_path` pin's price: the hand-written RLS pipeline with the pin ÷ without (ops/s ratio)",
            &pg,
            get,
            (Imp::TokioPgRlsPin, Imp::TokioPgRls),
            |_| None,
        );
        typeorm_tables(out, &pg, get);
        ratio_table(
            out,
            "`TenantRepo` (app-level) with the pipeline faster than plain SeaORM (ops/s ratio > 1)",
            &pg,
            get,
            (Imp::RepoPipe, Imp::SeaOrm),
            |_| Some(1.0),
        );
        ratio_table(
            out,
            "RLS mode with the pipeline faster than plain SeaORM without RLS (ops/s ratio > 1)",
            &pg,
            get,
            (Imp::RlsPipe, Imp::SeaOrm),
            |_| Some(1.0),
        );
    }
    scaling_table(out, sections, get);
}

/// RLS mode over the seeds' `TypeORM` pattern with RLS (the target), and `TenantRepo` over
/// the same pattern without RLS.
fn typeorm_tables(out: &mut String, pg: &[(Backend, u64, usize)], get: &Lookup<'_>) {
    for (imp, what) in [
        (Imp::Rls, "RLS mode"),
        (Imp::RlsPipe, "RLS mode with the pipeline"),
    ] {
        ratio_table(
            out,
            &format!(
                "{what} ≥ 3× the TypeORM seed pattern with RLS (`withTenantTransaction`) on \
                 reads, ≥ 2.5× on writes (ops/s ratio)"
            ),
            pg,
            get,
            (imp, Imp::TypeOrmRls),
            |op| Some(if op.is_read() { 3.0 } else { 2.5 }),
        );
    }
    for (imp, what) in [
        (Imp::Repo, "`TenantRepo` (app-level)"),
        (Imp::RepoPipe, "`TenantRepo` (app-level) with the pipeline"),
    ] {
        ratio_table(
            out,
            &format!("{what} over the TypeORM seed pattern without RLS (ops/s ratio; no target)"),
            pg,
            get,
            (imp, Imp::TypeOrm),
            |_| None,
        );
    }
}

/// The hand-written RLS transactions RLS mode is compared with: `set_config` on PostgreSQL,
/// `SET LOCAL` on Citus, which never propagates `set_config` to the workers.
const HAND_WRITTEN: [(Imp, &str); 2] = [
    (Imp::SqlxTxn, "`BEGIN; set_config; query; COMMIT`"),
    (Imp::SqlxSetLocal, "`BEGIN; SET LOCAL; query; COMMIT`"),
];

/// ops/s of `imps.0` over ops/s of `imps.1` per section and operation, marked against `min(op)`.
fn ratio_table(
    out: &mut String,
    title: &str,
    sections: &[(Backend, u64, usize)],
    get: &Lookup<'_>,
    imps: (Imp, Imp),
    min: impl Fn(Op) -> Option<f64>,
) {
    // Only where both were measured: the opt-in implementations' runs leave most pairs out.
    let sections: Vec<_> = sections
        .iter()
        .filter(|&&(b, t, c)| {
            Op::ALL
                .iter()
                .any(|&op| get(b, t, c, op, imps.0).is_some() && get(b, t, c, op, imps.1).is_some())
        })
        .copied()
        .collect();
    if sections.is_empty() {
        return;
    }
    let _ = write!(out, "\n### {title}\n\n| backend, T, C |");
    for op in Op::ALL {
        let _ = write!(out, " {} |", op.name());
    }
    let _ = write!(out, "\n|---|");
    for _ in Op::ALL {
        let _ = write!(out, "--:|");
    }
    out.push('\n');
    for &(b, t, c) in &sections {
        let _ = write!(out, "| {} T={t} C={c} |", b.name());
        for op in Op::ALL {
            let num = get(b, t, c, op, imps.0);
            let den = get(b, t, c, op, imps.1);
            let cell = match (num, den, min(op)) {
                (Some(n), Some(d), Some(min)) => {
                    let r = n.ops_per_s / d.ops_per_s;
                    format!("{} {}", ratio(r), mark(r >= min))
                }
                (Some(n), Some(d), None) => ratio(n.ops_per_s / d.ops_per_s),
                _ => "–".to_owned(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
}

/// p50 at the most tenants over p50 at the fewest, per implementation.
fn scaling_table(out: &mut String, sections: &[(Backend, u64, usize)], get: &Lookup<'_>) {
    let (Some(few), Some(many)) = (
        sections.iter().map(|s| s.1).min(),
        sections.iter().map(|s| s.1).max(),
    ) else {
        return;
    };
    if few == many {
        return;
    }
    let _ = writeln!(
        out,
        "\n### p50 at {many} tenants ≤ 1.15× p50 at {few} tenants (get by id, page)\n"
    );
    let _ = writeln!(
        out,
        "| backend, C | implementation | get by id p50 µs ({few} → {many}) | ratio | page p50 µs ({few} → {many}) | ratio |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|");
    let mut bc: Vec<(Backend, usize)> = sections.iter().map(|s| (s.0, s.2)).collect();
    bc.sort_unstable();
    bc.dedup();
    for (b, c) in bc {
        for imp in Imp::EVERY {
            let mut row = format!("| {} C={c} | {} |", b.name(), imp.name());
            let mut any = false;
            for op in [Op::Get, Op::Page] {
                match (get(b, few, c, op, imp), get(b, many, c, op, imp)) {
                    (Some(lo), Some(hi)) => {
                        any = true;
                        let r = hi.p50_us / lo.p50_us;
                        let _ = write!(
                            row,
                            " {} → {} | {} {} |",
                            us(lo.p50_us),
                            us(hi.p50_us),
                            ratio(r),
                            mark(r <= 1.15)
                        );
                    }
                    _ => row.push_str(" – | – |"),
                }
            }
            if any {
                let _ = writeln!(out, "{row}");
            }
        }
    }
}
