//! A throwaway `PgBouncer` in transaction pooling mode in front of the test server.
//!
//! Included as a plain module (`#[path = "../support/pgbouncer.rs"] mod pgbouncer;`) by a
//! crate that also includes `tests/support/postgres.rs` as `crate::pg`; it uses only std,
//! `sea-orm` and `tokio`.
//!
//! One `pgbouncer` per test process, started on first use of [`bouncer`] beside the server of
//! [`crate::pg::cluster`] (our throwaway cluster, or the server of `DATABASE_URL`), on
//! 127.0.0.1 and a free port, with `pool_mode = transaction`. A detached watchdog stops it and
//! removes its temporary directory once the test process is gone. When it cannot be started
//! the tests fail loudly, with the command, its status, the log tail and the fix; they never
//! skip.

// Each test binary uses a different subset of this module; `pub` is the interface the
// including crate sees even though the module itself is private. The start-up probe is raw SQL.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectOptions, ConnectionTrait, Database};

// The process helpers the cluster harness already has; this module sits beside it in the same binary.
use crate::pg::{describe, free_port, is_root, log_tail, sh_quote, user_exists};

/// How to make the `PgBouncer` tests runnable; repeated in every failure message.
const FIX: &str = "apt-get install -y pgbouncer";
/// OS user to run `pgbouncer` as when we are root (it refuses to run as root).
const OS_USER: &str = "postgres";
/// The first release that keeps prepared statements working in transaction mode
/// (`max_prepared_statements`).
const PREPARED_STATEMENTS_SINCE: (u32, u32) = (1, 21);
/// How long `pgbouncer` gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The process-wide `PgBouncer`; obtain it with [`bouncer`].
#[derive(Debug)]
pub struct PgBouncer {
    /// Port on 127.0.0.1 that clients connect to.
    pub port: u16,
    /// `major.minor.patch` of the running `pgbouncer`.
    pub version: (u32, u32, u32),
    /// Temporary directory with the configuration, the auth file and the log.
    pub dir: PathBuf,
    /// Whether `max_prepared_statements` is set, i.e. named prepared statements survive
    /// transaction pooling (`PgBouncer` 1.21 and later).
    pub prepared_statements: bool,
    /// The `pgbouncer` process (or `runuser` in front of it); never waited for.
    child: Child,
}

/// Returns the process-wide `PgBouncer`, starting it (and the test server) on first use.
///
/// Panics with the failing command, its status, the `pgbouncer` log tail and the fix when it
/// cannot be started.
pub fn bouncer() -> &'static PgBouncer {
    // The error is cached too, so every test reports the same failure instead of retrying.
    static BOUNCER: OnceLock<Result<PgBouncer, String>> = OnceLock::new();
    match BOUNCER.get_or_init(PgBouncer::start) {
        Ok(bouncer) => bouncer,
        Err(message) => panic!("\n\n{message}\n\n"),
    }
}

impl PgBouncer {
    /// `url` (a URL of the test server) rewritten to go through this `PgBouncer`: same
    /// credentials, database and query, host `127.0.0.1:<port>`.
    pub fn url(&self, url: &str) -> String {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{e}"));
        let at = url
            .userinfo
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!(
            "{}://{at}127.0.0.1:{}/{}{}",
            url.scheme, self.port, url.db, url.query
        )
    }

    /// Connect options for `url` (a URL of the test server) through this `PgBouncer`.
    ///
    /// sqlx runs every statement as a named prepared statement (`sqlx_s_<n>`, counted per
    /// client connection) and, by default, caches it per client connection. In transaction
    /// pooling mode a client connection gets whichever server connection is free at each
    /// transaction, so before `PgBouncer` 1.21 a cached statement is missing on the next server
    /// connection (`prepared statement "sqlx_s_1" does not exist`). With an older
    /// `PgBouncer` the cache is therefore turned off here. That does not make sqlx use the
    /// unnamed statement: it still parses `sqlx_s_<n>` and then binds it in a second round trip,
    /// only never reuses nor closes it. That holds inside a transaction (the server connection is
    /// pinned), which is where every RLS-mode statement runs; outside one, the bind may reach
    /// another server connection. Use the simple protocol there (`sqlx::raw_sql`).
    pub fn connect_options(&self, url: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new(self.url(url));
        options.sqlx_logging(false);
        if !self.prepared_statements {
            options.map_sqlx_postgres_opts(|o| o.statement_cache_capacity(0));
        }
        options
    }

    /// `pgbouncer` version as text.
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    fn start() -> Result<Self, String> {
        let cluster = crate::pg::cluster();
        let admin = Url::parse(&cluster.admin_url(""))?;
        let app = Url::parse(&cluster.app_url(""))?;
        let (host, upstream_port) = admin.host_and_port()?;

        let bin = find_bin()?;
        let version = version_of(&bin)?;
        let prepared_statements = (version.0, version.1) >= PREPARED_STATEMENTS_SINCE;

        let dir = make_tmp_dir()?;
        let log = dir.join("pgbouncer.log");
        let pidfile = dir.join("pgbouncer.pid");
        let os_user = is_root().then(|| {
            if user_exists(OS_USER) {
                OS_USER
            } else {
                "nobody"
            }
        });
        // Before anything can fail past this point, so the directory goes away even when we
        // panic half-way through.
        spawn_watchdog(&pidfile, &dir)?;

        // `trust`: clients are not asked for a password, but pgbouncer still needs every user
        // in the auth file, and logs in to the server with the password listed there.
        let mut users = String::new();
        for url in [&app, &admin] {
            let (user, password) = url.user_and_password();
            let user = user.unwrap_or_else(|| OS_USER.to_owned());
            let _ = writeln!(
                users,
                "\"{}\" \"{}\"",
                user.replace('"', "\"\""),
                password.unwrap_or_default().replace('"', "\"\"")
            );
        }
        let auth_file = dir.join("userlist.txt");
        write(&auth_file, &users)?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let ini = dir.join("pgbouncer.ini");
            write(
                &ini,
                &config(
                    &host,
                    upstream_port,
                    port,
                    &auth_file,
                    &log,
                    &pidfile,
                    prepared_statements,
                ),
            )?;
            if let Some(user) = os_user {
                chown(user, &dir)?;
            }
            let stderr_path = dir.join(format!("stderr-{attempt}.log"));
            let mut cmd = match os_user {
                Some(user) => {
                    let mut cmd = Command::new("runuser");
                    cmd.args(["-u", user, "--"]).arg(&bin);
                    cmd
                }
                None => Command::new(&bin),
            };
            cmd.arg(&ini)
                .current_dir(&dir)
                // Inherited pipes would keep `cargo test` waiting for EOF until it ends.
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    fs::File::create(&stderr_path)
                        .map(Stdio::from)
                        .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?,
                );
            // Own process group: a terminal Ctrl-C must not kill it before the watchdog does.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let line = describe(&cmd);
            let mut child = cmd
                .spawn()
                .map_err(|e| failure(&format!("cannot run `{line}`: {e}"), &log, None))?;
            match wait_until_listening(&mut child, port, &log) {
                Ok(()) => {
                    let bouncer = PgBouncer {
                        port,
                        version,
                        dir,
                        prepared_statements,
                        child,
                    };
                    bouncer.probe(&admin)?;
                    return Ok(bouncer);
                }
                Err(e) if attempt < 3 && log_tail(&log).contains(&format!(":{port}: bind()")) => {
                    eprintln!("pgbouncer could not bind port {port}, retrying: {e}");
                }
                Err(e) => {
                    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
                    return Err(failure(
                        &format!("command: {line}\n  {e}"),
                        &log,
                        Some(&stderr),
                    ));
                }
            }
        }
    }

    /// Runs `SELECT 1` through the bouncer as the admin, so that a wrong upstream address or
    /// password fails here, with the log, rather than as a puzzling test failure.
    fn probe(&self, admin: &Url) -> Result<(), String> {
        let db = if admin.db.is_empty() {
            "postgres".to_owned()
        } else {
            admin.db.clone()
        };
        let url = self.url(&admin.with_db(&db));
        let mut options = self.connect_options(&url);
        options.max_connections(1).min_connections(0);
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build tokio runtime: {e}"))?
                .block_on(async move {
                    let db = Database::connect(options)
                        .await
                        .map_err(|e| format!("connecting to {url} failed: {e}"))?;
                    let res = db.execute_unprepared("SELECT 1").await;
                    let _ = db.close().await;
                    res.map(drop)
                        .map_err(|e| format!("SELECT 1 through {url} failed: {e}"))
                })
        })
        .join()
        .unwrap_or_else(|_| Err("probe thread panicked".to_owned()));
        outcome.map_err(|e| failure(&e, &self.dir.join("pgbouncer.log"), None))
    }
}

/// The `pgbouncer.ini` of our instance.
fn config(
    upstream_host: &str,
    upstream_port: u16,
    port: u16,
    auth_file: &Path,
    log: &Path,
    pidfile: &Path,
    prepared_statements: bool,
) -> String {
    let prepared = if prepared_statements {
        // Named prepared statements are tracked per client and re-prepared on whichever server
        // connection serves the transaction.
        "max_prepared_statements = 100\n"
    } else {
        // The README's recipe for older releases: sqlx names its statements `sqlx_s_<n>` counting
        // from 1 on every client connection, so a second client's `sqlx_s_1` would meet the
        // first's on a server connection. Discarding them after every transaction prevents that
        // (and any other session state).
        "server_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n"
    };
    format!(
        "[databases]\n\
         ; Any database name: each test has its own database.\n\
         * = host={upstream_host} port={upstream_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         ; No unix socket.\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {auth_file}\n\
         pool_mode = transaction\n\
         max_client_conn = 100\n\
         default_pool_size = 2\n\
         ; Keep both server connections of a pool open and hand them out in turn, so that state\n\
         ; left on one would show up on the next transaction of the same client.\n\
         min_pool_size = 2\n\
         server_round_robin = 1\n\
         ; sqlx sends these startup parameters; pgbouncer refuses unknown ones otherwise.\n\
         ignore_startup_parameters = extra_float_digits,options\n\
         {prepared}\
         logfile = {log}\n\
         pidfile = {pidfile}\n",
        auth_file = auth_file.display(),
        log = log.display(),
        pidfile = pidfile.display(),
    )
}

/// Waits until `child` logs that it listens on `port` and the port accepts connections.
fn wait_until_listening(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listening = format!("listening on 127.0.0.1:{port}");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "pgbouncer exited during start-up\n  status: {status}"
            ));
        }
        // The log line tells our pgbouncer apart from anyone else who grabbed the port.
        if fs::read_to_string(log).is_ok_and(|l| l.contains(&listening))
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pgbouncer did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}\n  \
                 status: still running"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A start-up failure: what failed, the log tail and the fix.
fn failure(what: &str, log: &Path, stderr: Option<&str>) -> String {
    let stderr = stderr
        .filter(|s| !s.trim().is_empty())
        .map(|s| format!("\n  stderr:\n{}", s.trim_end()))
        .unwrap_or_default();
    format!(
        "PgBouncer for the tests unavailable:\n  {what}{stderr}\n  log ({}) tail:\n{}\nfix: {FIX}",
        log.display(),
        log_tail(log)
    )
}

/// `pgbouncer` on PATH, else Debian's `/usr/sbin/pgbouncer`.
fn find_bin() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("pgbouncer"))
        .chain([PathBuf::from("/usr/sbin/pgbouncer")])
        .find(|bin| bin.is_file())
        .ok_or_else(|| {
            format!(
                "PgBouncer for the tests unavailable: `pgbouncer` found neither on PATH nor at \
                 /usr/sbin/pgbouncer\nfix: {FIX}"
            )
        })
}

/// Parses the first line of `pgbouncer --version`: `PgBouncer 1.18.0`.
fn version_of(bin: &Path) -> Result<(u32, u32, u32), String> {
    let output = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{} --version`: {e}\nfix: {FIX}", bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("PgBouncer "))
        .and_then(|v| {
            let mut parts = v.trim().split('.').map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<u32>()
                    .ok()
            });
            Some((
                parts.next()??,
                parts.next()??,
                parts.next().flatten().unwrap_or(0),
            ))
        });
    parsed.ok_or_else(|| {
        format!(
            "cannot read the version from `{} --version` (status {}): {text:?}\nfix: {FIX}",
            bin.display(),
            output.status
        )
    })
}

/// A `postgres://[userinfo@]host[:port][/db][?query]` URL, split.
#[derive(Debug)]
struct Url {
    scheme: String,
    userinfo: Option<String>,
    host: String,
    db: String,
    /// Including the leading `?`, or empty.
    query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a postgres:// URL"))?;
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
        Ok(Self {
            scheme: scheme.to_owned(),
            userinfo,
            host: host.to_owned(),
            db: db.to_owned(),
            query,
        })
    }

    fn with_db(&self, db: &str) -> String {
        let at = self
            .userinfo
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("{}://{at}{}/{db}{}", self.scheme, self.host, self.query)
    }

    /// The server's host (brackets of an IPv6 literal removed) and port (default 5432).
    fn host_and_port(&self) -> Result<(String, u16), String> {
        let (host, port) = match self.host.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse()
                    .map_err(|e| format!("bad port in {:?}: {e}", self.host))?,
            ),
            _ => (self.host.as_str(), 5432),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!(
                "the test server's URL has no host ({:?}); PgBouncer needs host and port",
                self.host
            ));
        }
        Ok((percent_decode(host), port))
    }

    /// User and password, percent-decoded.
    fn user_and_password(&self) -> (Option<String>, Option<String>) {
        match self.userinfo.as_deref() {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(info)), None),
            },
        }
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn chown(user: &str, dir: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(user)
        .arg(dir)
        .status()
        .map_err(|e| format!("cannot run chown: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "chown -R {user} {} failed: {status}\nfix: {FIX}",
            dir.display()
        ))
    }
}

/// Creates a fresh, uniquely named directory under the system temp dir.
fn make_tmp_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for i in 0..100 {
        let dir = std::env::temp_dir().join(format!(
            "tenant-pgbouncer-{}-{nanos}-{i}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot find a free temp dir name under {}",
        std::env::temp_dir().display()
    ))
}

/// Starts a detached `sh` that stops `pgbouncer` and deletes `dir` once we are gone.
///
/// Nothing in a test process runs reliably at exit (statics are never dropped, tests may
/// abort), so the cleanup lives in a separate process polling our pid. `pgbouncer` writes its
/// pid to `pidfile` at start-up and removes it on a clean exit; SIGTERM is its immediate
/// shutdown.
fn spawn_watchdog(pidfile: &Path, dir: &Path) -> Result<(), String> {
    let script = format!(
        // Ctrl-C / hangup of the terminal must not kill the watchdog before it cleaned up.
        // A dead but unreaped (zombie, state Z) test process still passes `kill -0`.
        "trap '' INT HUP; \
         while kill -0 {pid} 2>/dev/null; do \
             case \"$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null)\" in Z*) break;; esac; \
             sleep 0.5; \
         done; \
         p=$(cat {pidfile} 2>/dev/null); \
         if [ -n \"$p\" ]; then \
             kill -TERM \"$p\" 2>/dev/null; \
             i=0; \
             while kill -0 \"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
             kill -KILL \"$p\" 2>/dev/null; \
         fi; \
         rm -rf {dir}",
        pid = std::process::id(),
        pidfile = sh_quote(pidfile),
        dir = sh_quote(dir),
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Own process group: a terminal Ctrl-C is delivered to the test's group, not here.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // The child is never waited for; it outlives us and is reaped by init.
    cmd.spawn()
        .map(drop)
        .map_err(|e| format!("cannot spawn the pgbouncer watchdog `sh -c {script}`: {e}"))
}
