//! Throwaway `PostgreSQL` for integration tests and benches.
//!
//! Included as a plain module (`#[path = "../support/postgres.rs"] mod pg;`), so it
//! may only use what the including crate already has: std, `sea-orm` and `tokio`.
//!
//! * With `DATABASE_URL` set (superuser URL of an existing server) nothing is started.
//! * Otherwise one cluster per test process is created with `initdb`/`pg_ctl` in a
//!   temporary directory and torn down by a watchdog once the process is gone.
//!
//! Every test gets its own database from [`fresh_database`], plus a URL for the
//! unprivileged `tenant_app` role, which neither owns the tables nor bypasses RLS, so
//! row-level security is actually enforced on its connections.

// Each test binary uses a different subset of this module, and `pub` is the interface
// the including crate sees even though the module itself is private.
// Administration of the throwaway cluster is raw SQL by nature.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::ffi::OsStr;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// Login role the code under test connects as: no superuser, no `BYPASSRLS`.
const APP_ROLE: &str = "tenant_app";
/// Password of [`APP_ROLE`] (ignored by our own `trust` cluster, needed for external servers).
const APP_PASSWORD: &str = "tenant_app";
/// Superuser created by `initdb -U` in a cluster we start ourselves.
const SUPERUSER: &str = "postgres";
/// How to make tests runnable; repeated in every failure message.
const FIX: &str = "install the PostgreSQL server (apt-get install -y postgresql) or set \
                   DATABASE_URL to the superuser URL of an existing server";

/// A `PostgreSQL` server shared by every test in the process; obtain it with [`cluster`].
#[derive(Debug)]
pub struct Cluster {
    /// Superuser URL with the database part left empty, split for substitution.
    admin: UrlParts,
    /// Database to connect to for `CREATE`/`DROP DATABASE`.
    maintenance_db: String,
    /// Name of the unprivileged login role (`tenant_app`).
    app_role: String,
    /// Directory holding the data dir, socket and log when we started the server.
    tmp_dir: Option<PathBuf>,
}

/// Returns the process-wide server, starting it on first use.
///
/// Panics with the failing command, its output, the server log and the fix when no
/// server can be had: a missing database must fail tests loudly, never skip them.
pub fn cluster() -> &'static Cluster {
    // The error is cached too, so ~100 tests report one failure instead of each
    // retrying initdb.
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(Cluster::init) {
        Ok(cluster) => cluster,
        Err(message) => panic!("\n\n{message}\n\n"),
    }
}

impl Cluster {
    /// Superuser URL for database `db`.
    pub fn admin_url(&self, db: &str) -> String {
        self.admin.with(None, db)
    }

    /// URL for database `db` logging in as the unprivileged `tenant_app` role.
    pub fn app_url(&self, db: &str) -> String {
        self.admin
            .with(Some(&format!("{}:{APP_PASSWORD}", self.app_role)), db)
    }

    /// Name of the unprivileged role `app_url` logs in as.
    pub fn app_role(&self) -> &str {
        &self.app_role
    }

    /// Temporary directory of the server we started (`None` with `DATABASE_URL`).
    pub fn tmp_dir(&self) -> Option<&Path> {
        self.tmp_dir.as_deref()
    }

    fn init() -> Result<Self, String> {
        let (admin, maintenance_db, tmp_dir) = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let (parts, db) = UrlParts::parse(url.trim())?;
                let db = if db.is_empty() {
                    SUPERUSER.to_owned()
                } else {
                    db
                };
                (parts, db, None)
            }
            _ => {
                let (port, dir) = start_server()?;
                let parts = UrlParts {
                    scheme: "postgres".into(),
                    userinfo: Some(SUPERUSER.into()),
                    host: format!("127.0.0.1:{port}"),
                    query: String::new(),
                };
                (parts, SUPERUSER.to_owned(), Some(dir))
            }
        };
        let cluster = Cluster {
            admin,
            maintenance_db,
            app_role: APP_ROLE.to_owned(),
            tmp_dir,
        };
        cluster.create_app_role()?;
        Ok(cluster)
    }

    /// Creates (or re-asserts the attributes of) the app role.
    ///
    /// `cluster()` is sync and usually called from inside a tokio runtime, where
    /// `block_on` would panic, so the async work runs on its own thread and runtime.
    fn create_app_role(&self) -> Result<(), String> {
        let url = self.admin_url(&self.maintenance_db);
        let role = self.app_role.clone();
        // The EXCEPTION arm tolerates another test process creating it concurrently
        // against the same DATABASE_URL server. ALTER afterwards so that a pre-existing
        // role cannot silently weaken the tests (e.g. BYPASSRLS would hide RLS bugs).
        let sql = format!(
            "DO $$ BEGIN \
                 CREATE ROLE {role} LOGIN PASSWORD '{APP_PASSWORD}'; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
             END $$; \
             ALTER ROLE {role} LOGIN PASSWORD '{APP_PASSWORD}' \
                 NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;"
        );
        run_on_own_runtime(async move {
            let db = admin_connect(&url).await?;
            let res = db.execute_unprepared(&sql).await.map(drop);
            let _ = db.close().await;
            res.map_err(|e| format!("creating role {role} via {url} failed: {e}\nfix: {FIX}"))
        })
    }
}

/// A database created for one test; dropped again when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Database name, `_tenant_test_<pid>_<n>`.
    pub name: String,
    /// Superuser URL of the database, for DDL and policy setup.
    pub admin_url: String,
    /// URL of the database as the unprivileged `tenant_app` role, for the code under test.
    pub app_url: String,
}

/// Creates an empty database owned by the superuser, usable (DML only) by `tenant_app`.
///
/// Panics if the server cannot be reached or the database cannot be created.
pub async fn fresh_database() -> TestDb {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let cluster = cluster();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("_tenant_test_{}_{n}", std::process::id());
    let role = cluster.app_role();

    let maintenance = cluster.admin_url(&cluster.maintenance_db);
    let db = admin_connect(&maintenance)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let created = db
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await;
    let _ = db.close().await;
    if let Err(e) = created {
        panic!("CREATE DATABASE {name} via {maintenance} failed: {e}");
    }
    // From here on Drop cleans up, even if the grants below panic.
    let test_db = TestDb {
        admin_url: cluster.admin_url(&name),
        app_url: cluster.app_url(&name),
        name,
    };

    // Grants live in the new database. Default privileges cover the tables (and the
    // sequences behind `serial` columns) the superuser creates later, so the app role
    // can use them without owning them: ownership would exempt it from RLS.
    let db = admin_connect(&test_db.admin_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let granted = db
        .execute_unprepared(&format!(
            "GRANT USAGE ON SCHEMA public TO {role}; \
             ALTER DEFAULT PRIVILEGES IN SCHEMA public \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}; \
             ALTER DEFAULT PRIVILEGES IN SCHEMA public \
                 GRANT USAGE, SELECT ON SEQUENCES TO {role};"
        ))
        .await;
    let _ = db.close().await;
    if let Err(e) = granted {
        panic!("granting {role} access to {} failed: {e}", test_db.name);
    }
    test_db
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the evidence of a failed test.
            eprintln!(
                "test failed: keeping database {} for inspection: {}",
                self.name, self.admin_url
            );
            if cluster().tmp_dir.is_some() {
                // Our own server dies with the process; say how to get one that stays.
                eprintln!(
                    "  (the temporary server goes away when the test process exits; \
                     run against DATABASE_URL to keep it)"
                );
            }
            return;
        }
        let cluster = cluster();
        let url = cluster.admin_url(&cluster.maintenance_db);
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop cannot be async and may run inside a runtime: use a thread of our own.
        let res = run_on_own_runtime(async move {
            let db = admin_connect(&url).await?;
            let res = db.execute_unprepared(&sql).await.map(drop);
            let _ = db.close().await;
            res.map_err(|e| format!("{sql}: {e}"))
        });
        // Panicking in Drop could abort the process; a leftover database is harmless
        // (it goes with the temporary cluster anyway).
        if let Err(e) = res {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// Opens a small admin pool: the server is shared by ~100 tests on few cores.
async fn admin_connect(url: &str) -> Result<DatabaseConnection, String> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(2)
        .min_connections(0)
        .sqlx_logging(false);
    Database::connect(opts)
        .await
        .map_err(|e| format!("connecting to {url} failed: {e}\nfix: {FIX}"))
}

/// Runs `fut` to completion on a fresh thread with a current-thread runtime.
fn run_on_own_runtime<F>(fut: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build tokio runtime: {e}"))?
            .block_on(fut)
    })
    .join()
    .unwrap_or_else(|_| Err("admin thread panicked".to_owned()))
}

/// A `postgres://[userinfo@]host[/db][?query]` URL with the database cut out.
#[derive(Debug)]
struct UrlParts {
    scheme: String,
    userinfo: Option<String>,
    host: String,
    /// Including the leading `?`, or empty.
    query: String,
}

impl UrlParts {
    /// Splits `url` into its parts and the (possibly empty) database name.
    fn parse(url: &str) -> Result<(Self, String), String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("DATABASE_URL {url:?} is not a postgres:// URL"))?;
        // Last '@': an unencoded '@' or '/' in a password must not end the userinfo.
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(rest[..at].to_owned()), &rest[at + 1..]),
            None => (None, rest),
        };
        let (before_query, query) = match after.find('?') {
            Some(q) => (&after[..q], after[q..].to_owned()),
            None => (after, String::new()),
        };
        let (host, db) = before_query.split_once('/').unwrap_or((before_query, ""));
        let parts = UrlParts {
            scheme: scheme.to_owned(),
            userinfo,
            host: host.to_owned(),
            query,
        };
        Ok((parts, db.to_owned()))
    }

    /// Rebuilds the URL for `db`, optionally with different credentials.
    fn with(&self, userinfo: Option<&str>, db: &str) -> String {
        let userinfo = userinfo.or(self.userinfo.as_deref());
        let at = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        format!("{}://{at}{}/{db}{}", self.scheme, self.host, self.query)
    }
}

/// Creates and starts a cluster; returns its port and temporary directory.
fn start_server() -> Result<(u16, PathBuf), String> {
    let bin = find_pg_bin()?;
    let initdb = bin.join("initdb");
    let pg_ctl = bin.join("pg_ctl");

    let tmp = make_tmp_dir()?;
    let data = tmp.join("data");
    let log = tmp.join("server.log");

    // initdb refuses to run as root, so as root everything runs as an ordinary user.
    let os_user = if is_root() {
        let user = if user_exists(SUPERUSER) {
            SUPERUSER
        } else {
            "nobody"
        };
        run(Command::new("chown").arg("-R").arg(user).arg(&tmp), &log)?;
        Some(user)
    } else {
        None
    };

    // Before anything can fail past this point, so the directory goes away even when
    // we panic half-way through.
    spawn_watchdog(os_user, &pg_ctl, &data, &tmp)?;

    run(
        pg_command(os_user, &initdb, &tmp)
            .args([
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg("-D")
            .arg(&data),
        &log,
    )?;

    // The port is free when we look, but someone may grab it before the server binds:
    // retry a few times on a bind failure.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        // pg_ctl hands -o to a shell, hence the quoting of the socket directory.
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            sh_quote(&tmp)
        );
        let result = run(
            pg_command(os_user, &pg_ctl, &tmp)
                .arg("-w")
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(opts)
                .arg("start")
                .arg("-l")
                .arg(&log),
            &log,
        );
        match result {
            Ok(()) => return Ok((port, tmp)),
            Err(e) if attempt < 3 && log_tail(&log).contains("could not bind") => {
                eprintln!("postgres could not bind port {port}, retrying: {e}");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Directory with `initdb` and `pg_ctl`: from PATH, else the newest Debian install.
fn find_pg_bin() -> Result<PathBuf, String> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| has_both(d)) {
        return Ok(dir);
    }
    // /usr/lib/postgresql/<version>/bin; compare versions numerically (10 > 9.6).
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((key, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        format!(
            "PostgreSQL test server unavailable: initdb/pg_ctl found neither on PATH nor \
             under /usr/lib/postgresql/*/bin.\nfix: {FIX}"
        )
    })
}

/// Creates a fresh, uniquely named directory under the system temp dir.
fn make_tmp_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for i in 0..100 {
        let dir =
            std::env::temp_dir().join(format!("tenant-pg-{}-{nanos}-{i}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}\nfix: {FIX}", dir.display())),
        }
    }
    Err(format!(
        "cannot find a free temp dir name under {}",
        std::env::temp_dir().display()
    ))
}

/// Whether we run with effective uid 0 (std only: no libc for `geteuid`).
pub(crate) fn is_root() -> bool {
    // Uid:\t<real>\t<effective>\t<saved>\t<fs>; initdb checks the effective one.
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
        && let Some(euid) = line.split_whitespace().nth(2)
    {
        return euid == "0";
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether OS user `name` exists.
pub(crate) fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Command running `program` as `os_user` (via `runuser`) or as ourselves.
fn pg_command(os_user: Option<&str>, program: &Path, cwd: &Path) -> Command {
    let mut cmd = match os_user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    // Our cwd (the workspace) may be unreadable to that user; initdb/pg_ctl complain.
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion; on failure describes it with output and server log tail.
fn run(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let line = describe(cmd);
    match cmd.output() {
        Ok(Output { status, .. }) if status.success() => Ok(()),
        Ok(Output {
            status,
            stdout,
            stderr,
        }) => Err(format!(
            "PostgreSQL test server unavailable: command failed\n  command: {line}\n  \
             status: {status}\n  stdout:\n{}\n  stderr:\n{}\n  server log ({}) tail:\n{}\n\
             fix: {FIX}",
            String::from_utf8_lossy(&stdout).trim_end(),
            String::from_utf8_lossy(&stderr).trim_end(),
            log.display(),
            log_tail(log),
        )),
        Err(e) => Err(format!(
            "PostgreSQL test server unavailable: cannot run `{line}`: {e}\nfix: {FIX}"
        )),
    }
}

/// `program arg...` of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Last 40 lines of the server log (or a note that there is none).
pub(crate) fn log_tail(log: &Path) -> String {
    match fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
        Err(e) => format!("(no log: {e})"),
    }
}

/// An unused TCP port on 127.0.0.1 (free when we looked).
pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot bind 127.0.0.1:0 to pick a port: {e}"))
}

/// Starts a detached `sh` that stops the server and deletes `tmp` once we are gone.
///
/// Nothing in a test process runs reliably at exit (statics are never dropped, tests
/// may abort), so the cleanup lives in a separate process polling our pid.
fn spawn_watchdog(
    os_user: Option<&str>,
    pg_ctl: &Path,
    data: &Path,
    tmp: &Path,
) -> Result<(), String> {
    let run_as = os_user
        .map(|u| format!("runuser -u {u} -- "))
        .unwrap_or_default();
    let script = format!(
        // Ctrl-C / hangup of the terminal must not kill the watchdog before it cleaned up.
        // A dead but unreaped (zombie, state Z) test process still passes `kill -0`.
        "trap '' INT HUP; \
         while kill -0 {pid} 2>/dev/null; do \
             case \"$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null)\" in Z*) break;; esac; \
             sleep 0.5; \
         done; \
         {run_as}{pg_ctl} -D {data} -m immediate stop; \
         rm -rf {tmp}",
        pid = std::process::id(),
        pg_ctl = sh_quote(pg_ctl),
        data = sh_quote(data),
        tmp = sh_quote(tmp),
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .current_dir("/")
        // Inherited pipes would keep `cargo test` waiting for EOF until the watchdog ends.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Own process group: a terminal Ctrl-C is delivered to the test's group, not here.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // The child is never waited for; it outlives us and is reaped by init.
    cmd.spawn()
        .map(drop)
        .map_err(|e| format!("cannot spawn the cleanup watchdog `sh -c {script}`: {e}"))
}

/// Single-quotes `path` for `sh`.
pub(crate) fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
