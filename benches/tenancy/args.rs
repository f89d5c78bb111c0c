//! Command-line arguments, parsed by hand: the bench has no dependencies of its own.

use crate::databases::MAX_TENANTS;
use crate::ops::{Group, Imp};
use crate::report::Backend;

pub(crate) const USAGE: &str = "\
usage: cargo bench --all-features --bench tenancy -- [options]

  --tenants LIST     tenant counts T, one data set each        [10,1000,10000]
  --rows N           rows per tenant R                         [100]
  --workers LIST     concurrent workers C, over a pool of C    [1,8]
  --ops N            measured operations per cell, i.e. per
                     (implementation, operation, T, C)         [20000]
  --rounds N         interleaved blocks each cell is split in  [20]
  --backend LIST     postgres, sqlite, citus (only when named:
                     the Citus cluster of CITUS_URL)           [postgres,sqlite]
  --impls LIST       sqlx, tokio-pg, seaorm, repo, repo-pipe, rls,
                     rls-pipe, sqlx-txn, tokio-pg-rls,
                     tokio-pg-rls-pin (tokio-pg:
                     raw sqlx's SQL on tokio-postgres, prepared, as
                     the plain role; tokio-pg-rls: the same as the
                     RLS role, `BEGIN; SET LOCAL ..`, the statement
                     and `COMMIT` issued together, one round trip;
                     tokio-pg-rls-pin: with the library's
                     `search_path` pin too; the three PostgreSQL
                     only, the last two not on Citus); and, only
                     when named,
                     sqlx-set-local (`sqlx-txn` binding with SET
                     LOCAL; on Citus it replaces `sqlx-txn`),
                     repo-catalog (`repo` with a tenant catalog),
                     schema-rls, schema-rls-pipe (`rls` with every
                     tenant on a schema of its own; the last three
                     not on Citus), db-rls, db-rls-pipe (`rls` with
                     every tenant on a database of its own, T <= 200;
                     `--backend postgres` only), typeorm,
                     typeorm-rls (the TypeORM control on Node,
                     benches/typeorm/bench.js: the seeds'
                     TenantRepository with AsyncLocalStorage as the
                     plain role, and the same inside
                     withTenantTransaction, `set_config`, as the RLS
                     role; PostgreSQL only, not on Citus; needs Node
                     and `npm ci --prefix benches/typeorm`)    [all]
  --only LIST        get, page, count, write (= insert, update
                     and delete), many (= update many: qty + 1
                     on 5 rows of a tenant)                    [all]
  --cluster          after seeding each PostgreSQL data set (not on Citus):
                     `CLUSTER item USING` its (tenant_id, created_at) index,
                     then `VACUUM (ANALYZE) item`: each tenant's rows together
  --covering         after seeding each PostgreSQL data set (not on Citus):
                     replace the (tenant_id, created_at) index by the covering
                     one `index(created_at, include(id, label, qty))` declares,
                     then `VACUUM (ANALYZE) item`: the page from the index alone
  --threads N        tokio worker threads of the client; 0: one thread
                     (current-thread runtime)                  [2]
  --seed N           seed of the data and of the key choices   [20251125]
  --ping-on-acquire  sqlx's default `test_before_acquire(true)`: one more round
                     trip per pool checkout, for every implementation
  --no-cpu-qos       do not hold /dev/cpu_dma_latency at 0 while measuring (see
                     BENCHMARKS.md: idle vCPUs then halt, and the cost of waking
                     one varies between runs)
  --statements       instead of measuring, print what each implementation sends
                     to PostgreSQL for one operation of each kind (server log)
  --fleet N          instead of measuring, N tenant databases behind a database
                     tier: `--ops` requests (insert, then get by id) from the
                     first `--workers` count, spread over all of them; failures,
                     p50, p99 and pools opened, beside the same requests on the
                     shared tier
  --cap C            the database tier's connection cap with `--fleet`  [50]
  --quick            the CI smoke run: T=10, R=20, C=2, 10 ops per cell, 2 rounds;
                     explicit options still apply
  --help             this text

With DATABASE_URL (a superuser URL) the PostgreSQL runs use that server; otherwise a
throwaway cluster is started from the installed initdb/pg_ctl, like the tests do.

`--backend citus` needs CITUS_URL, a superuser URL of a Citus coordinator's database, such as
CITUS_URL=$(../shared/citus/cluster.sh url): the table `item` is created there in the
distributed form (and any earlier `item` dropped), then dropped at the end.";

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) tenants: Vec<u64>,
    pub(crate) rows: u64,
    pub(crate) workers: Vec<usize>,
    pub(crate) ops: usize,
    pub(crate) rounds: usize,
    pub(crate) backends: Vec<Backend>,
    pub(crate) impls: Vec<Imp>,
    pub(crate) groups: Vec<Group>,
    pub(crate) seed: u64,
    pub(crate) threads: usize,
    pub(crate) ping_on_acquire: bool,
    pub(crate) cpu_qos: bool,
    pub(crate) layout: Layout,
    pub(crate) mode: Mode,
    pub(crate) quick: bool,
}

/// Measure, show the statements, or load a fleet of tenant databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Measure,
    Statements,
    /// `--fleet N --cap C`: N tenant databases behind a database tier of C connections.
    Fleet {
        databases: usize,
        cap: u32,
    },
}

/// The order of the seeded PostgreSQL table's rows on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Layout {
    /// As written: round `r` of every tenant, then round `r + 1`.
    #[default]
    AsWritten,
    /// `--cluster`: ordered by `(tenant_id, created_at)`.
    Clustered,
    /// `--covering`: as written, with a covering `(tenant_id, created_at)` index instead.
    Covering,
}

pub(crate) enum Parsed {
    Run(Args),
    Help,
}

#[derive(Default)]
struct Given {
    tenants: Option<Vec<u64>>,
    rows: Option<u64>,
    workers: Option<Vec<usize>>,
    ops: Option<usize>,
    rounds: Option<usize>,
    backends: Option<Vec<String>>,
    impls: Option<Vec<Imp>>,
    groups: Option<Vec<Group>>,
    seed: Option<u64>,
    threads: Option<usize>,
    ping_on_acquire: bool,
    no_cpu_qos: bool,
    layout: Layout,
    mode: Option<Mode>,
    quick: bool,
    fleet: Option<usize>,
    cap: Option<u32>,
}

impl Args {
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
        let mut given = Given::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("`{key}` needs a value"))
            };
            match key.as_str() {
                "--tenants" => given.tenants = Some(list(&value()?, "--tenants")?),
                "--rows" => given.rows = Some(number(&value()?, "--rows")?),
                "--workers" => given.workers = Some(list(&value()?, "--workers")?),
                "--ops" => given.ops = Some(number(&value()?, "--ops")?),
                "--rounds" => given.rounds = Some(number(&value()?, "--rounds")?),
                "--seed" => given.seed = Some(number(&value()?, "--seed")?),
                "--threads" => given.threads = Some(number(&value()?, "--threads")?),
                "--backend" => {
                    given.backends = Some(value()?.split(',').map(str::to_owned).collect());
                }
                "--impls" => {
                    given.impls = Some(
                        value()?
                            .split(',')
                            .map(|s| Imp::parse(s.trim()))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "--only" => {
                    given.groups = Some(
                        value()?
                            .split(',')
                            .map(|s| Group::parse(s.trim()))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "--ping-on-acquire" => given.ping_on_acquire = true,
                "--no-cpu-qos" => given.no_cpu_qos = true,
                "--cluster" | "--covering" if given.layout != Layout::AsWritten => {
                    return Err("`--cluster` and `--covering` are two layouts: pick one".into());
                }
                "--cluster" => given.layout = Layout::Clustered,
                "--covering" => given.layout = Layout::Covering,
                "--statements" => given.mode = Some(Mode::Statements),
                "--fleet" => given.fleet = Some(number(&value()?, "--fleet")?),
                "--cap" => given.cap = Some(number(&value()?, "--cap")?),
                "--quick" => given.quick = true,
                // `cargo bench` passes `--bench`; `cargo test --benches` does not.
                "--bench" => {}
                "--help" | "-h" => return Ok(Parsed::Help),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Args::from_given(given).map(Parsed::Run)
    }

    fn from_given(g: Given) -> Result<Self, String> {
        let quick = g.quick;
        let backends = match &g.backends {
            None => vec![Backend::Postgres, Backend::Sqlite],
            Some(list) => {
                let mut backends = Vec::new();
                for b in list {
                    let backend = match b.trim() {
                        "postgres" | "pg" | "postgresql" => Backend::Postgres,
                        "sqlite" => Backend::Sqlite,
                        "citus" => Backend::Citus,
                        other => {
                            return Err(format!(
                                "unknown backend `{other}`; expected `postgres`, `sqlite` or `citus`"
                            ));
                        }
                    };
                    if !backends.contains(&backend) {
                        backends.push(backend);
                    }
                }
                backends
            }
        };
        let args = Args {
            tenants: g.tenants.unwrap_or_else(|| {
                if quick {
                    vec![10]
                } else {
                    vec![10, 1_000, 10_000]
                }
            }),
            rows: g.rows.unwrap_or(if quick { 20 } else { 100 }),
            workers: g
                .workers
                .unwrap_or_else(|| if quick { vec![2] } else { vec![1, 8] }),
            ops: g.ops.unwrap_or(if quick { 10 } else { 20_000 }),
            rounds: g.rounds.unwrap_or(if quick { 2 } else { 20 }),
            backends,
            impls: g.impls.unwrap_or_else(|| Imp::ALL.to_vec()),
            groups: g.groups.unwrap_or_else(|| Group::ALL.to_vec()),
            seed: g.seed.unwrap_or(20_251_125),
            threads: g.threads.unwrap_or(2),
            ping_on_acquire: g.ping_on_acquire,
            // The smoke run measures nothing; it needs no root.
            cpu_qos: !g.no_cpu_qos && !quick,
            layout: g.layout,
            mode: match (g.fleet, g.mode) {
                (Some(databases), None) => Mode::Fleet {
                    databases,
                    cap: g.cap.unwrap_or(50),
                },
                (Some(_), Some(_)) => {
                    return Err("`--fleet` and `--statements` are two modes: pick one".to_owned());
                }
                (None, mode) => mode.unwrap_or(Mode::Measure),
            },
            quick,
        };
        if args.mode != Mode::Measure && args.backends.contains(&Backend::Citus) {
            return Err(
                "`--statements` and `--fleet` run on the throwaway PostgreSQL, not on Citus"
                    .to_owned(),
            );
        }
        if let Mode::Fleet { databases, cap } = args.mode
            && (databases == 0 || cap == 0)
        {
            return Err("`--fleet` and `--cap` must be at least 1".to_owned());
        }
        if args.mode == Mode::Measure && args.impls.iter().any(|i| i.database_tier()) {
            if args.backends != [Backend::Postgres] {
                return Err(
                    "`db-rls` and `db-rls-pipe` (a database per tenant) run on PostgreSQL only, \
                     not on SQLite or Citus: give `--backend postgres`"
                        .to_owned(),
                );
            }
            if let Some(&many) = args.tenants.iter().find(|&&t| t > MAX_TENANTS) {
                return Err(format!(
                    "the database tier's per-operation run (`db-rls`, `db-rls-pipe`) takes at most \
                     {MAX_TENANTS} tenants, a database each with its pool open throughout, not \
                     {many}; for more tenant databases behind a cap, `--fleet N --cap C` \
                     measures the database tier under load"
                ));
            }
        }
        if args.tenants.contains(&0) || args.rows == 0 || args.workers.contains(&0) {
            return Err("tenants, rows and workers must be at least 1".to_owned());
        }
        if args.rounds == 0 || args.ops < args.rounds {
            return Err("`--ops` must be at least `--rounds`, which must be at least 1".to_owned());
        }
        Ok(args)
    }
}

fn number<T: std::str::FromStr>(s: &str, key: &str) -> Result<T, String> {
    s.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{key}` expects a number, not `{s}`"))
}

fn list<T: std::str::FromStr>(s: &str, key: &str) -> Result<Vec<T>, String> {
    s.split(',').map(|part| number(part, key)).collect()
}
