//! A PgBouncer in transaction pooling mode in front of the test server, for tests that check jobq
//! through a connection pooler.
//!
//! One PgBouncer per process, started on first use from the machine's `pgbouncer` binary (Debian's
//! package; as the `postgres` user when the process runs as root), listening on 127.0.0.1 on a free port,
//! with every database of the server behind it. Like the server, it is stopped and its files deleted when
//! the process ends, however it ends: a watchdog process holds a pipe from this one.

use crate::{Error, TestDatabase, off_runtime, run, server, watchdog};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The server connections PgBouncer keeps per database: few, so that the statements of many client
/// connections share them, as in production.
pub const POOL_SIZE: u32 = 3;

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    host: String,
    port: u16,
    user: String,
    /// Where its files are (its log is `pgbouncer.log` there).
    pub dir: PathBuf,
    _watchdog: Mutex<std::process::ChildStdin>,
}

impl PgBouncer {
    /// The URL of database `db` through this PgBouncer.
    pub fn url(&self, db: &TestDatabase) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user,
            self.host,
            self.port,
            db.name()
        )
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The PgBouncer of this process, started on first use, in front of the server of [`server`].
///
/// Fails with [`Error::NoPgBouncer`] when the `pgbouncer` binary is not installed.
pub fn pgbouncer() -> Result<&'static PgBouncer, Error> {
    static BOUNCER: OnceLock<Result<PgBouncer, String>> = OnceLock::new();
    if find_pgbouncer().is_none() {
        return Err(Error::NoPgBouncer);
    }
    BOUNCER
        .get_or_init(|| off_runtime(|| start().map_err(|e| e.to_string())))
        .as_ref()
        .map_err(|e| Error::Schema(e.clone()))
}

/// The URL of `db` through the process's PgBouncer (transaction pooling), or why there is none.
pub fn pgbouncer_url(db: &TestDatabase) -> Result<String, Error> {
    Ok(pgbouncer()?.url(db))
}

/// For tests: the URL of `db` through the process's PgBouncer. Panics with a clear message when there is
/// none (the `pgbouncer` binary is not installed, or it would not start).
///
/// A test that needs PgBouncer should not pass quietly where it cannot run: jobq's own PgBouncer tests are
/// marked `#[cfg_attr(not(pgbouncer), ignore = "...")]`, with the `pgbouncer` cfg set by their build script
/// when the binary is installed or `CI` is set, so they report as ignored with the reason outside CI and
/// fail here under CI.
pub fn pgbouncer_for_test(db: &TestDatabase) -> String {
    pgbouncer_url(db).unwrap_or_else(|e| panic!("jobq-tempdb: {e}"))
}

/// The `pgbouncer` binary: on `PATH`, or where Debian puts it (`/usr/sbin`, not on a user's `PATH`). Twin
/// of the search in `tests/build.rs` (change both).
fn find_pgbouncer() -> Option<PathBuf> {
    crate::find_program(
        "pgbouncer",
        ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from),
    )
}

/// Quotes a value for PgBouncer's connection strings.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn start() -> Result<PgBouncer, Error> {
    let binary = find_pgbouncer().ok_or(Error::NoPgBouncer)?;
    let server = server()?;
    let config: postgres::Config = server
        .url("postgres")
        .parse()
        .map_err(|e: postgres::Error| Error::Schema(format!("the server's URL: {e}")))?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "127.0.0.1".to_owned(),
    };
    let server_port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let mut target = format!(
        "host={} port={server_port} user={}",
        quote(&host),
        quote(&user)
    );
    if let Some(password) = config.get_password() {
        target.push_str(&format!(
            " password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }

    let root = std::env::temp_dir().join("jobq-tempdb");
    std::fs::create_dir_all(&root)?;
    let dir = root.join(format!("{}-pgbouncer", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
    // Clients authenticate by trust on loopback; the user must still be listed.
    std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n"))?;
    let mut last = None;
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = {target}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {dir}/userlist.txt\n\
                 pool_mode = transaction\n\
                 default_pool_size = {POOL_SIZE}\n\
                 max_client_conn = 1000\n\
                 ; sqlx sends extra_float_digits at startup; PgBouncer refuses parameters it does not know.\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {dir}/pgbouncer.log\n\
                 pidfile = {dir}/pgbouncer.pid\n",
                dir = dir.display()
            ),
        )?;
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        match launch(&binary, as_root, &ini, &dir, port) {
            Ok(watchdog) => {
                return Ok(PgBouncer {
                    host: "127.0.0.1".to_owned(),
                    port,
                    user,
                    dir,
                    _watchdog: Mutex::new(watchdog),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Starts PgBouncer with `ini` and waits until it accepts connections on `port`. A watchdog (in a process
/// group of its own, so a signal to the tests does not reach it first) stops it and deletes `dir` when this
/// process ends.
fn launch(
    binary: &Path,
    as_root: bool,
    ini: &Path,
    dir: &Path,
    port: u16,
) -> Result<std::process::ChildStdin, Error> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(binary);
    command.arg("-q");
    if as_root {
        // PgBouncer refuses to run as root; `-u` makes it drop to that user itself.
        command.args(["-u", "postgres"]);
    }
    let mut child = command
        .arg(ini)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    let stdin = watchdog(&format!(
        "kill -INT {pid} 2>/dev/null; sleep 1; kill -KILL {pid} 2>/dev/null; rm -rf '{}'",
        dir.display()
    ))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            drop(stdin);
            let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
            return Err(Error::Command {
                command: format!("{command:?}"),
                output: format!("exited with {status}: {log}"),
            });
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(stdin);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Command {
                command: format!("{command:?}"),
                output: format!("not listening on port {port} after 30 s"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the PgBouncer left in `dir` by a process that no longer exists (its watchdog was killed too),
/// from its pid file, when that pid is still a PgBouncer started with this directory's configuration.
pub(crate) fn stop_stale(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join("pgbouncer.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ini = dir.join("pgbouncer.ini");
    if String::from_utf8_lossy(&cmdline).contains(&*ini.to_string_lossy()) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}
