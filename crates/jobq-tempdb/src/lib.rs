//! A throwaway PostgreSQL server, started on demand, for jobq's tests, examples, demo and benchmarks.
//!
//! [`database`] gives each caller a fresh database with the jobq schema applied, cloned from a migrated
//! template so it is fast. The server is started once per process from the machine's PostgreSQL binaries
//! (as the `postgres` user when the process runs as root), listens on 127.0.0.1 on a free port, and is
//! stopped and deleted when the process ends, however it ends: a watchdog process holds a pipe from this
//! one and stops the server when the pipe closes. Servers left by a process that died before its watchdog
//! could act are cleaned up by the next start.
//!
//! [`pgbouncer_url`] puts a PgBouncer in transaction pooling mode in front of a test database (see
//! [`pgbouncer()`]).
//!
//! [`FailoverCluster`] starts a pg_auto_failover monitor and two replicated nodes, for failover tests.
//!
//! With `JOBQ_DATABASE_URL` (or `DATABASE_URL`) set, databases are created on that server instead, and
//! dropped again when the [`TestDatabase`] is dropped.
//!
//! ```no_run
//! let db = jobq_tempdb::database();
//! let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
//! client.batch_execute("SELECT 1").unwrap();
//! ```

mod failover;
mod pgbouncer;
mod tls;

pub use failover::{DATABASE, FailoverCluster, MONITOR_SETTINGS, NodeState, find_pg_autoctl};
pub use pgbouncer::{POOL_SIZE, PgBouncer, pgbouncer, pgbouncer_for_test, pgbouncer_url};
pub use tls::{TlsServer, tls_server};

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Why the throwaway server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH, via pg_config --bindir or in \
         /usr/lib/postgresql/*/bin: install them (Debian: `apt-get install postgresql`) or set \
         JOBQ_DATABASE_URL to an existing server"
    )]
    NoBinaries,
    /// No `pgbouncer` binary was found.
    #[error(
        "no `pgbouncer` binary found on PATH or in /usr/sbin: install it (Debian: \
         `apt-get install pgbouncer`; `.ci/run` does)"
    )]
    NoPgBouncer,
    /// No `pg_autoctl` binary (pg_auto_failover) was found.
    #[error(
        "no `pg_autoctl` binary found on PATH, in /usr/bin or beside the PostgreSQL binaries: install \
         it (Debian: `apt-get install postgresql-15-auto-failover`; `.ci/run` does)"
    )]
    NoPgAutoctl,
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A file system operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server refused a statement.
    #[error("{}", .0.as_db_error().map_or_else(|| .0.to_string(), |e| e.to_string()))]
    Postgres(#[from] postgres::Error),
    /// The schema could not be applied.
    #[error("{0}")]
    Schema(String),
}

/// A PostgreSQL server: the throwaway one, or the one the environment names.
pub struct Server {
    base_url: String,
    admin: Mutex<Option<postgres::Client>>,
    throwaway: bool,
    _watchdog: Option<Mutex<ChildStdin>>,
    template: OnceLock<()>,
    bin: Option<PathBuf>,
    /// The `-o` options the throwaway server was started with: `pg_ctl start` does not remember them.
    options: Option<String>,
    /// Where the throwaway server keeps its files (its log is `server.log` there).
    pub dir: Option<PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("base_url", &self.base_url)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url)
    }

    /// The URL of the server without a database, `postgres://user@host:port`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// A database of its own for one test (or one demo run).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    drop_on_exit: bool,
}

impl TestDatabase {
    /// The connection URL, `postgres://user@host:port/name`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.drop_on_exit {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            off_runtime(|| {
                if let Ok(server) = server() {
                    let _ = server.with_admin(|c| Ok(c.batch_execute(&sql)?));
                }
            });
        }
    }
}

/// A fresh database with the jobq schema applied (in schema `jobq`). Panics with a clear message when no
/// server can be had: meant for tests.
pub fn database() -> TestDatabase {
    try_database(true).unwrap_or_else(|e| panic!("jobq-tempdb: {e}"))
}

/// A fresh, empty database: no jobq schema. Panics when no server can be had.
pub fn empty_database() -> TestDatabase {
    try_database(false).unwrap_or_else(|e| panic!("jobq-tempdb: {e}"))
}

/// A fresh database, migrated when `migrated` is true. Callable from sync and async code alike.
pub fn try_database(migrated: bool) -> Result<TestDatabase, Error> {
    off_runtime(|| create_database(migrated))
}

/// Runs `f` on a thread of its own: the sync `postgres` client this crate uses must not run on a thread
/// that drives an async runtime, and callers may be async tests.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn create_database(migrated: bool) -> Result<TestDatabase, Error> {
    server()?.create_database(migrated)
}

impl Drop for Server {
    /// Drops the sync admin client on a thread of its own, since closing it blocks and callers may be async.
    fn drop(&mut self) {
        let admin = self.admin.get_mut().map(Option::take).unwrap_or(None);
        off_runtime(move || drop(admin));
    }
}

impl Server {
    /// Starts a throwaway server of its own, apart from the shared one: for tests that restart or stop it.
    /// It is stopped and deleted when the process ends.
    pub fn start_private() -> Result<Server, Error> {
        static PRIVATE: AtomicU32 = AtomicU32::new(0);
        let n = PRIVATE.fetch_add(1, Ordering::Relaxed);
        off_runtime(|| start_throwaway(&format!("{}-{n}", std::process::id())))
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is cut, as in a real restart.
    pub fn restart(&self) -> Result<(), Error> {
        let (Some(dir), Some(bin)) = (&self.dir, &self.bin) else {
            return Err(Error::Schema(
                "only a throwaway server can be restarted".into(),
            ));
        };
        let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
        off_runtime(|| {
            // With a log file, so the restarted server does not hold this process's output pipe open.
            run(pg(as_root, bin, "pg_ctl")
                .args(["restart", "-m", "fast", "-w", "-t", "60", "-D"])
                .arg(dir.join("data"))
                .arg("-l")
                .arg(dir.join("server.log")))
        })?;
        self.reconnect_admin()
    }

    /// Crashes the server (`pg_ctl stop -m immediate`): every connection is cut at once and nothing is
    /// checkpointed, so the next start recovers from the WAL. What was committed with
    /// `synchronous_commit = on` survives (the OS keeps the files, even with `fsync = off`); the server's
    /// default, `synchronous_commit = off`, may lose the last commits. Until [`Server::start_again`], new
    /// connections fail and so do [`Server::database`] calls.
    pub fn crash(&self) -> Result<(), Error> {
        let (dir, bin, _) = self.throwaway_parts("crashed")?;
        let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
        off_runtime(|| {
            run(pg(as_root, bin, "pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-t", "60", "-D"])
                .arg(dir.join("data")))
        })?;
        // The admin connection died with the server; its client is dropped off the runtime.
        let admin = self.admin.lock().expect("admin connection lock").take();
        off_runtime(move || drop(admin));
        Ok(())
    }

    /// Starts the server again after [`Server::crash`], on the same port with the same options, waits
    /// until it accepts connections (after its crash recovery) and re-opens the admin connection.
    pub fn start_again(&self) -> Result<(), Error> {
        let (dir, bin, options) = self.throwaway_parts("started again")?;
        let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
        off_runtime(|| {
            // With a log file, so the server does not hold this process's output pipe open.
            run(pg(as_root, bin, "pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(dir.join("data"))
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-o", options]))
        })?;
        self.reconnect_admin()
    }

    /// The data directory's parent, the binaries and the start options of a throwaway server.
    fn throwaway_parts(&self, what: &str) -> Result<(&Path, &Path, &str), Error> {
        match (&self.dir, &self.bin, &self.options) {
            (Some(dir), Some(bin), Some(options)) => Ok((dir, bin, options)),
            _ => Err(Error::Schema(format!(
                "only a throwaway server can be {what}"
            ))),
        }
    }

    /// Opens a new admin connection in place of the old one.
    fn reconnect_admin(&self) -> Result<(), Error> {
        // The old client is dropped off the runtime too: closing a sync client blocks.
        off_runtime(|| -> Result<(), Error> {
            let admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)?;
            let old = self
                .admin
                .lock()
                .expect("admin connection lock")
                .replace(admin);
            drop(old);
            Ok(())
        })
    }

    /// Runs `f` on the admin connection.
    fn with_admin<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut admin = self.admin.lock().expect("admin connection lock");
        f(admin
            .as_mut()
            .ok_or_else(|| Error::Schema("the server is shut down".into()))?)
    }

    /// A fresh database on this server, migrated when `migrated` is true.
    pub fn database(&self, migrated: bool) -> Result<TestDatabase, Error> {
        off_runtime(|| self.create_database(migrated))
    }

    fn create_database(&self, migrated: bool) -> Result<TestDatabase, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = if self.throwaway {
            format!("jobq_test_{n}")
        } else {
            format!("jobq_test_{}_{n}", std::process::id())
        };
        let template = if migrated && self.throwaway {
            self.template()?
        } else {
            "template0"
        };
        let create = format!("CREATE DATABASE \"{name}\" TEMPLATE {template} STRATEGY FILE_COPY");
        self.with_admin(|admin| Ok(admin.batch_execute(&create)?))?;
        let db = TestDatabase {
            url: self.url(&name),
            name,
            drop_on_exit: !self.throwaway,
        };
        if migrated && !self.throwaway {
            migrate(db.url())?;
        }
        Ok(db)
    }

    fn template(&self) -> Result<&'static str, Error> {
        if self.template.get().is_none() {
            // Under the admin lock, so concurrent callers create the template once.
            self.with_admin(|admin| {
                if self.template.get().is_none() {
                    admin.batch_execute("CREATE DATABASE jobq_template")?;
                    migrate(&self.url("jobq_template"))?;
                    self.template.set(()).ok();
                }
                Ok(())
            })?;
        }
        Ok("jobq_template")
    }
}

fn migrate(url: &str) -> Result<(), Error> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    client.batch_execute(jobq_core::Jobq::default().migration_sql())?;
    Ok(())
}

/// The server for this process, started on first use.
pub fn server() -> Result<&'static Server, Error> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| off_runtime(|| start().map_err(|e| e.to_string())))
        .as_ref()
        .map_err(|e| Error::Schema(e.clone()))
}

fn start() -> Result<Server, Error> {
    let env_url = ["JOBQ_DATABASE_URL", "DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    if let Some(url) = env_url {
        let admin = postgres::Client::connect(&url, postgres::NoTls)?;
        let base_url = url
            .rsplit_once('/')
            .map_or(url.as_str(), |(base, _)| base)
            .to_owned();
        return Ok(Server {
            base_url,
            admin: Mutex::new(Some(admin)),
            throwaway: false,
            _watchdog: None,
            template: OnceLock::new(),
            bin: None,
            options: None,
            dir: None,
        });
    }
    start_throwaway(&std::process::id().to_string())
}

/// Starts a throwaway server in a directory named `name` (the process id first) under the temp dir.
fn start_throwaway(name: &str) -> Result<Server, Error> {
    start_throwaway_with(name, None)
}

/// What a throwaway server needs beyond the defaults (the TLS-only server's hook, see `tls.rs`).
pub(crate) struct Setup<'a> {
    /// Run after `initdb` with the server's directory (the data directory is `data` in it); returns more
    /// `-o` options for the server.
    prepare: &'a dyn Fn(&Path) -> Result<String, Error>,
}

/// [`start_throwaway`], set up by `setup`; with a setup, the server's URLs (and its admin connection) go
/// through its Unix socket rather than TCP.
fn start_throwaway_with(name: &str, setup: Option<Setup<'_>>) -> Result<Server, Error> {
    let bin = find_bindir().ok_or(Error::NoBinaries)?;
    let root = std::env::temp_dir().join("jobq-tempdb");
    std::fs::create_dir_all(&root)?;
    remove_stale(&root, &bin);
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
    if as_root {
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
    }
    let data = dir.join("data");
    run(pg(as_root, &bin, "initdb")
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(&data))?;
    let extra = match &setup {
        Some(setup) => (setup.prepare)(&dir)?,
        None => String::new(),
    };
    let watchdog = spawn_watchdog(as_root, &bin, &dir)?;
    let mut last = None;
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300{extra}",
            dir.display()
        );
        let started = run(pg(as_root, &bin, "pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options]));
        match started {
            Ok(()) => {
                let base_url = match setup {
                    Some(_) => format!("postgres://postgres@{}:{port}", tls::url_path(&dir)),
                    None => format!("postgres://postgres@127.0.0.1:{port}"),
                };
                let admin =
                    postgres::Client::connect(&format!("{base_url}/postgres"), postgres::NoTls)?;
                return Ok(Server {
                    base_url,
                    admin: Mutex::new(Some(admin)),
                    throwaway: true,
                    _watchdog: Some(Mutex::new(watchdog)),
                    template: OnceLock::new(),
                    bin: Some(bin),
                    options: Some(options),
                    dir: Some(dir),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// A command from the server binaries, run as `postgres` when this process is root (PostgreSQL refuses root).
fn pg(as_root: bool, bin: &Path, tool: &str) -> Command {
    as_postgres(as_root, &bin.join(tool))
}

/// `program` as a command, run as `postgres` (through `runuser`) when this process is root.
fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The first `name` that is a file in a directory on `PATH` or in `dirs`.
fn find_program(name: &str, dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(dirs)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(command: &mut Command) -> Result<(), Error> {
    let out = command.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("{command:?}"),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// A shell in its own process group that waits for this process's end (its stdin closes), then stops the
/// server and deletes its files.
fn spawn_watchdog(as_root: bool, bin: &Path, dir: &Path) -> Result<ChildStdin, Error> {
    let stop = stop_command(as_root, bin, &dir.join("data"));
    watchdog(&format!("{stop}; rm -rf '{}'", dir.display()))
}

/// A shell in its own process group (so a signal to the tests does not reach it first) that runs
/// `cleanup` once this process ends: the returned stdin closes then, even after SIGKILL.
pub(crate) fn watchdog(cleanup: &str) -> Result<ChildStdin, Error> {
    use std::os::unix::process::CommandExt;
    let script = format!("read _; {cleanup}");
    let mut child: Child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.flush()?;
    Ok(stdin)
}

fn stop_command(as_root: bool, bin: &Path, data: &Path) -> String {
    let pg_ctl = format!(
        "'{}' stop -m immediate -D '{}'",
        bin.join("pg_ctl").display(),
        data.display()
    );
    if as_root {
        format!("runuser -u postgres -- {pg_ctl} >/dev/null 2>&1")
    } else {
        format!("{pg_ctl} >/dev/null 2>&1")
    }
}

/// Stops and deletes the servers of processes that no longer exist.
fn remove_stale(root: &Path, bin: &Path) {
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        pgbouncer::stop_stale(&path);
        let _ = Command::new("sh")
            .args(["-c", &stop_command(as_root, bin, &path.join("data"))])
            .status();
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| has_tools(d))
        .map(|d| {
            std::fs::canonicalize(d.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(d)
        });
    let from_pg_config = || {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        has_tools(&dir).then_some(dir)
    };
    let from_debian = || {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, d)| has_tools(d))
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, d)| d)
    };
    on_path.or_else(from_pg_config).or_else(from_debian)
}
