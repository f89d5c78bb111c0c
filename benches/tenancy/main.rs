//! What tenancy costs: the same operations on the same data through raw sqlx, plain SeaORM,
//! `TenantRepo` (app-level), RLS mode, hand-written raw sqlx with `set_config`, and raw
//! tokio-postgres without and with an RLS binding pipelined by hand, on a
//! throwaway PostgreSQL (started like the tests' one) and on SQLite; and, when asked for, on a
//! Citus cluster, the table distributed by tenant (`set_config` replaced by `SET LOCAL` there);
//! and, when named, the seeds' `TypeORM` repository on Node (`benches/typeorm`), without and with
//! its RLS transaction.
//!
//! ```sh
//! cargo bench --all-features --bench tenancy                  # the full run of BENCHMARKS.md
//! cargo bench --all-features --bench tenancy -- --quick       # a few hundred operations: does it still work?
//! cargo bench --all-features --bench tenancy -- --help        # every option
//! cargo bench --all-features --bench tenancy -- --fleet 1000 --cap 50 --workers 16 --ops 20000
//! CITUS_URL=$(../shared/citus/cluster.sh url) cargo bench --all-features --bench tenancy -- --backend citus
//! ```
//!
//! Prints markdown tables (ops/s, p50, p99 per operation and the ratio to plain SeaORM) on
//! stdout and progress on stderr. See `BENCHMARKS.md` for the method and one full run.

#[path = "../../tests/support/postgres.rs"]
mod pg;

mod args;
mod data;
mod databases;
mod entity;
mod fleet;
mod ops;
mod report;
mod run;
mod setup;
mod tokio_pg;
mod typeorm;

use std::process::ExitCode;

/// Any error of the benchmark: it only ever reports them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args = match args::Args::parse(std::env::args().skip(1)) {
        Ok(args::Parsed::Run(args)) => args,
        Ok(args::Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let mut builder = if args.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::main(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
