//! The `TypeORM` control (`typeorm`, `typeorm-rls`; PostgreSQL only, when named): the seeds'
//! `TenantRepository` with `AsyncLocalStorage` on Node, without and inside
//! `withTenantTransaction`, in `benches/typeorm/bench.js`.
//!
//! One `node` process per data set and concurrency, started once the data set is seeded and
//! driven by one JSON object per line on its stdin. The schedule hands it its blocks in their
//! place among the other implementations' (the same rotation, the same rounds); each block
//! carries its keys, made here as for every implementation, so it reads the same rows. The
//! process times every operation itself (`process.hrtime`) and answers with each phase's wall
//! time and latencies, which fill the same cells as the Rust implementations'. Sending the keys
//! and reading the answer happen outside the timed part.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::Result;
use crate::data::Key;
use crate::ops::{Imp, Op};
use crate::run::Phase;

/// Where `bench.js` and its `node_modules` are, relative to the crate.
const DIR: &str = "benches/typeorm";

/// What to do when Node or the packages are missing.
const INSTALL: &str = "install Node 20 or later and run `npm ci --prefix benches/typeorm` \
                       (from the crate's directory)";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Node's version, if `node` runs and the packages are installed; a clear error otherwise. Asked
/// before anything is seeded: a missing install should not wait for the other backends' runs.
pub(crate) fn check_installed() -> Result<String> {
    let what = "`typeorm` and `typeorm-rls` run TypeORM on Node";
    let version = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => {
            return Err(format!(
                "{what}, but `node --version` failed ({}): {INSTALL}",
                out.status
            )
            .into());
        }
        Err(e) => return Err(format!("{what}, but `node` cannot be run ({e}): {INSTALL}").into()),
    };
    let modules = manifest_dir().join(DIR).join("node_modules");
    for package in ["typeorm", "pg"] {
        if !modules.join(package).join("package.json").is_file() {
            return Err(format!(
                "{what}, but {} has no `{package}`: {INSTALL}",
                modules.display()
            )
            .into());
        }
    }
    Ok(version)
}

/// Which variants a target's node process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Variants {
    /// `typeorm`: the repository as the plain role.
    pub(crate) plain: bool,
    /// `typeorm-rls`: the repository inside `withTenantTransaction`, as the RLS role.
    pub(crate) rls: bool,
}

impl Variants {
    /// The variants `imps` name.
    pub(crate) fn of(imps: &[Imp]) -> Self {
        Self {
            plain: imps.contains(&Imp::TypeOrm),
            rls: imps.contains(&Imp::TypeOrmRls),
        }
    }

    /// Pools of the node process: one per variant.
    pub(crate) fn pools(self) -> u64 {
        u64::from(self.plain) + u64::from(self.rls)
    }

    fn names(self) -> Vec<&'static str> {
        [(self.plain, "typeorm"), (self.rls, "typeorm-rls")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

/// The variant `bench.js` runs for `imp`.
fn variant(imp: Imp) -> Result<&'static str> {
    match imp {
        Imp::TypeOrm => Ok("typeorm"),
        Imp::TypeOrmRls => Ok("typeorm-rls"),
        other => Err(format!("`{}` is not a TypeORM implementation", other.name()).into()),
    }
}

/// The operation's name in `bench.js`.
pub(crate) fn op_name(op: Op) -> &'static str {
    match op {
        Op::Get => "get",
        Op::Page => "page",
        Op::Count => "count",
        Op::Insert => "insert",
        Op::Update => "update",
        Op::Delete => "delete",
        Op::UpdateMany => "update_many",
    }
}

fn key_json(key: &Key) -> Value {
    json!({
        "tenant": key.tenant.to_string(),
        "id": key.id.to_string(),
        "label": key.label,
        "updated": key.updated,
        "qty": key.qty,
        "created_at": key.created_at.timestamp(),
        "from": key.from.timestamp(),
        "until": key.until.timestamp(),
    })
}

/// The `node bench.js` of one data set at one concurrency.
#[derive(Debug)]
pub(crate) struct TypeOrm {
    node: Arc<Mutex<Node>>,
    /// Versions, and what the operations do differently from the Rust implementations': for
    /// the report's header.
    pub(crate) note: String,
}

#[derive(Debug)]
struct Node {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Told to quit, and exited.
    done: bool,
}

impl Node {
    /// One request line, one answer line.
    fn request(&mut self, request: &Value) -> Result<Value> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.flush()?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer)? == 0 {
            let status = self.child.wait()?;
            self.done = true;
            return Err(
                format!("`node {DIR}/bench.js` exited ({status}); its stderr says why").into(),
            );
        }
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|e| format!("`node {DIR}/bench.js` answered {answer:?}: {e}"))?;
        if answer["ok"] == json!(true) {
            Ok(answer)
        } else {
            Err(format!(
                "`node {DIR}/bench.js`: {}",
                answer["error"]
                    .as_str()
                    .unwrap_or("failed without saying why")
            )
            .into())
        }
    }

    /// Asks the process to close its pools and exit, and waits for it.
    fn quit(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let asked = self.request(&json!({ "cmd": "quit" }));
        let status = self.wait(Duration::from_secs(30))?;
        self.done = true;
        asked?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`node {DIR}/bench.js` exited with {status}").into())
        }
    }
}

impl Node {
    /// Waits for the process to exit, at most `patience`; then kills it.
    fn wait(&mut self, patience: Duration) -> Result<std::process::ExitStatus> {
        let until = std::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= until {
                let _ = self.child.kill();
                self.child.wait()?;
                return Err(format!(
                    "`node {DIR}/bench.js` had not exited {} s after `quit`; killed",
                    patience.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A run that failed half-way: the process would otherwise outlive the bench's database.
        if !self.done && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl TypeOrm {
    /// Starts `node benches/typeorm/bench.js` with a `TypeORM` `DataSource` per variant over a
    /// pool of `workers` connections (all made before this returns): as the plain role for
    /// `typeorm`, as the RLS role for `typeorm-rls`. `None` without variants.
    pub(crate) async fn start(
        plain_url: &str,
        app_url: &str,
        workers: usize,
        rows: u64,
        variants: Variants,
    ) -> Result<Option<Self>> {
        if variants.pools() == 0 {
            return Ok(None);
        }
        check_installed()?;
        let script = format!("{DIR}/bench.js");
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(manifest_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start `node {script}`: {e}; {INSTALL}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("`node bench.js` has no stdin or stdout".into());
        };
        let mut typeorm = Self {
            node: Arc::new(Mutex::new(Node {
                child,
                stdin,
                stdout: BufReader::new(stdout),
                done: false,
            })),
            note: String::new(),
        };
        let answer = typeorm
            .call(json!({
                "cmd": "init",
                "plain_url": plain_url,
                "app_url": app_url,
                "pool": workers,
                "rows": rows,
                "variants": variants.names(),
            }))
            .await?;
        let versions = &answer["versions"];
        let differences: Vec<&str> = answer["differences"]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        typeorm.note = format!(
            "TypeORM control ({DIR}/bench.js): node {}, typeorm {}, pg {}; `typeorm` = the seeds' \
             TenantRepository with AsyncLocalStorage as the plain role, `typeorm-rls` = the same \
             inside withTenantTransaction (`dataSource.transaction`, `set_config`) as the RLS \
             role; a pg pool of C connections, C async tasks on one JS thread. Not mirrored \
             exactly: {}",
            versions["node"].as_str().unwrap_or("?"),
            versions["typeorm"].as_str().unwrap_or("?"),
            versions["pg"].as_str().unwrap_or("?"),
            differences.join("; "),
        );
        Ok(Some(typeorm))
    }

    /// One request, on a blocking thread: the answer is a line read from a pipe.
    async fn call(&self, request: Value) -> Result<Value> {
        let node = Arc::clone(&self.node);
        tokio::task::spawn_blocking(move || {
            node.lock()
                .map_err(|_| "the node process's lock was poisoned")?
                .request(&request)
        })
        .await?
    }

    /// A block of `ops` through `imp`, each worker's keys in turn, all workers at once, as
    /// `Runner::block` runs the Rust implementations': each phase's wall time and latencies,
    /// measured by the node process. `measured` blocks also go into its own summary.
    pub(crate) async fn block(
        &self,
        imp: Imp,
        ops: &[Op],
        keys: &[Arc<Vec<Key>>],
        measured: bool,
    ) -> Result<Vec<Phase>> {
        let request = json!({
            "cmd": "block",
            "variant": variant(imp)?,
            "ops": ops.iter().map(|&op| op_name(op)).collect::<Vec<_>>(),
            "measured": measured,
            "keys": keys
                .iter()
                .map(|keys| keys.iter().map(key_json).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        });
        let answer = self.call(request).await?;
        let phases = answer["phases"]
            .as_array()
            .ok_or("`bench.js` answered a block without phases")?;
        if phases.len() != ops.len() {
            return Err(format!(
                "`bench.js` answered {} phases for {} operations",
                phases.len(),
                ops.len()
            )
            .into());
        }
        let expected: usize = keys.iter().map(|keys| keys.len()).sum();
        let mut out = Vec::with_capacity(ops.len());
        for (&op, phase) in ops.iter().zip(phases) {
            let latencies = phase["latencies_ns"]
                .as_array()
                .map(|list| list.iter().filter_map(Value::as_u64).collect::<Vec<_>>())
                .unwrap_or_default();
            let wall = phase["wall_ns"]
                .as_u64()
                .ok_or("`bench.js` answered a phase without its wall time")?;
            if phase["op"].as_str() != Some(op_name(op)) || latencies.len() != expected {
                return Err(format!(
                    "`bench.js` answered {} latencies of `{}` for {expected} operations of `{}`",
                    latencies.len(),
                    phase["op"],
                    op_name(op)
                )
                .into());
            }
            out.push((op, Duration::from_nanos(wall), latencies));
        }
        Ok(out)
    }

    /// One operation through `imp`, checked by the node process (`--statements`).
    pub(crate) async fn run(&self, imp: Imp, op: Op, key: &Key) -> Result<()> {
        self.block(imp, &[op], &[Arc::new(vec![key.clone()])], false)
            .await
            .map(drop)
    }

    /// The node process's own summary of its measured blocks (per variant and operation:
    /// count, ops/s, p50 and p99 in µs), then quits it.
    pub(crate) async fn finish(&self) -> Result<Value> {
        let summary = self.call(json!({ "cmd": "summary" })).await?;
        self.close().await?;
        Ok(summary["summary"].clone())
    }

    /// Closes the node process's pools and waits for it to exit.
    pub(crate) async fn close(&self) -> Result<()> {
        let node = Arc::clone(&self.node);
        tokio::task::spawn_blocking(move || {
            node.lock()
                .map_err(|_| "the node process's lock was poisoned")?
                .quit()
        })
        .await?
    }
}
