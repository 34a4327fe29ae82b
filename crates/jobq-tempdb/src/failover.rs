//! A replicated pair of throwaway servers under pg_auto_failover, for tests that fail the primary over.
//!
//! [`FailoverCluster::start`] runs Debian's `pg_autoctl` (package `postgresql-15-auto-failover`; as the
//! `postgres` user when the process runs as root): a monitor and two data nodes with synchronous
//! replication, each on a free port of 127.0.0.1, trusting loopback connections, without TLS, every file
//! (and pg_autoctl's own configuration, state and pid files, through `XDG_CONFIG_HOME`, `XDG_DATA_HOME`
//! and `XDG_RUNTIME_DIR`) in one
//! temporary directory. It creates database `jobq` through the primary and applies jobq's schema there.
//!
//! The monitor is set to notice a lost primary within about a second (see [`MONITOR_SETTINGS`]) rather
//! than pg_auto_failover's production defaults (20 s before a node counts as unhealthy, 30 s before a
//! primary that does not answer is taken as demoted), so a hard failover takes seconds.
//!
//! Dropping the cluster stops every node (`pg_autoctl stop --immediate`) and deletes the directory; a
//! watchdog process does the same when the process ends any other way.

use crate::{Error, as_postgres, find_bindir, find_program, run, watchdog};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The database the nodes are created with (and jobq's schema applied to).
pub const DATABASE: &str = "jobq";

/// The monitor's settings (`ALTER SYSTEM` on the monitor), in milliseconds where they are times: check
/// each node every 500 ms with a 500 ms timeout and one retry 200 ms later, count a node unhealthy after
/// 1 s, wait at most 3 s for a primary that does not answer to demote itself, and give a node 1 s after
/// the monitor starts. pg_auto_failover's defaults are 5 s, 5 s, 2 retries 2 s apart, 20 s, 30 s and 10 s.
pub const MONITOR_SETTINGS: [(&str, &str); 6] = [
    ("pgautofailover.health_check_period", "500"),
    ("pgautofailover.health_check_timeout", "500"),
    ("pgautofailover.health_check_max_retries", "1"),
    ("pgautofailover.health_check_retry_delay", "200"),
    ("pgautofailover.node_considered_unhealthy_timeout", "1000"),
    ("pgautofailover.primary_demote_timeout", "3000"),
];

/// How long a start, a failover or a settling may take before it is reported as failed.
const LIMIT: Duration = Duration::from_secs(90);

/// A node's state as the monitor records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// The node's name (`node1`, `node2`).
    pub name: String,
    /// Its PostgreSQL port on 127.0.0.1.
    pub port: u16,
    /// The state its keeper last reported (`primary`, `secondary`, `catchingup`, …).
    pub reported: String,
    /// The state the monitor assigned it.
    pub assigned: String,
}

/// A running monitor and two data nodes (see the module documentation).
pub struct FailoverCluster {
    dir: PathBuf,
    as_root: bool,
    autoctl: PathBuf,
    monitor_port: u16,
    ports: [u16; 2],
    /// The `pg_autoctl run` processes by node name, each the leader of its own process group.
    children: Mutex<Vec<(String, Child)>>,
    _watchdog: Mutex<ChildStdin>,
}

impl std::fmt::Debug for FailoverCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverCluster")
            .field("dir", &self.dir)
            .field("monitor_port", &self.monitor_port)
            .field("ports", &self.ports)
            .finish()
    }
}

/// The `pg_autoctl` binary: on `PATH`, in `/usr/bin` (Debian), or beside the server binaries.
pub fn find_pg_autoctl() -> Option<PathBuf> {
    let dirs = ["/usr/bin", "/usr/local/bin"].map(PathBuf::from);
    find_program("pg_autoctl", dirs.into_iter().chain(find_bindir()))
}

/// Free ports on 127.0.0.1, distinct (each listener is held until all are chosen).
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

impl FailoverCluster {
    /// Starts a monitor and two nodes, waits until one is `primary` and the other `secondary`, and applies
    /// jobq's schema to [`DATABASE`] through the primary. Fails with [`Error::NoPgAutoctl`] when
    /// `pg_autoctl` is not installed.
    pub fn start() -> Result<FailoverCluster, Error> {
        crate::off_runtime(Self::start_blocking)
    }

    fn start_blocking() -> Result<FailoverCluster, Error> {
        let autoctl = find_pg_autoctl().ok_or(Error::NoPgAutoctl)?;
        let bin = find_bindir().ok_or(Error::NoBinaries)?;
        let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
        let root = std::env::temp_dir().join("jobq-tempdb");
        std::fs::create_dir_all(&root)?;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The process id first, so the next start's clean-up of stale servers knows whose it is.
        let dir = root.join(format!("{}-failover-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run"))?;
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let [monitor_port, p1, p2] = free_ports::<3>()?;
        let cluster = FailoverCluster {
            _watchdog: Mutex::new(watchdog(&stop_all(as_root, &autoctl, &dir))?),
            dir,
            as_root,
            autoctl,
            monitor_port,
            ports: [p1, p2],
            children: Mutex::new(Vec::new()),
        };
        let pg_ctl = bin.join("pg_ctl");
        let pg_ctl = pg_ctl.to_str().unwrap_or("pg_ctl").to_owned();
        let monitor = cluster.pgdata("monitor");
        run(cluster
            .autoctl(&["create", "monitor", "--pgdata", &monitor])
            .args(["--pgport", &monitor_port.to_string()])
            .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"])
            .args(["--pgctl", &pg_ctl]))?;
        // The monitor listens on every address unless told otherwise.
        run(&mut cluster.autoctl(&[
            "config",
            "set",
            "--pgdata",
            &monitor,
            "postgresql.listen_addresses",
            "127.0.0.1",
        ]))?;
        cluster.spawn("monitor", cluster.autoctl(&["run", "--pgdata", &monitor]))?;
        cluster.set_monitor()?;
        let monitor_uri = format!(
            "postgres://autoctl_node@127.0.0.1:{monitor_port}/pg_auto_failover?sslmode=disable"
        );
        for (i, port) in [p1, p2].into_iter().enumerate() {
            let name = format!("node{}", i + 1);
            let pgdata = cluster.pgdata(&name);
            let mut create = cluster.autoctl(&[]);
            create
                .args(["create", "postgres", "--pgdata", &pgdata, "--run"])
                .args(["--pgport", &port.to_string(), "--name", &name])
                .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1"])
                .args(["--auth", "trust", "--no-ssl", "--pgctl", &pg_ctl])
                .args(["--monitor", &monitor_uri])
                .args(["--dbname", DATABASE, "--username", "postgres"]);
            cluster.spawn(&name, create)?;
            // The first node must be primary before the second joins as its standby.
            cluster.wait_for(&format!("{name} to join"), |nodes| {
                nodes.len() == i + 1 && settled(nodes)
            })?;
            if i == 0 {
                // pg_basebackup (the second node's first copy, and a rejoin that pg_rewind cannot do)
                // waits for a spread checkpoint, which on a fresh node can take minutes: take it at once.
                let mut first =
                    postgres::Client::connect(&cluster.node_url(port), postgres::NoTls)?;
                // One statement each: ALTER SYSTEM cannot run in a multi-statement batch's transaction.
                for sql in [
                    "ALTER SYSTEM SET checkpoint_completion_target = 0",
                    "SELECT pg_reload_conf()",
                    "CHECKPOINT",
                ] {
                    first.batch_execute(sql)?;
                }
            }
        }
        let mut client = postgres::Client::connect(&cluster.url(), postgres::NoTls)?;
        client.batch_execute(jobq_core::Jobq::default().migration_sql())?;
        Ok(cluster)
    }

    /// The data directory of node `name` (`monitor`, `node1`, `node2`).
    fn pgdata(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A `pg_autoctl` command with its configuration and state kept in the cluster's directory, run as
    /// `postgres` when this process is root.
    fn autoctl(&self, args: &[&str]) -> Command {
        let mut c = as_postgres(self.as_root, &self.autoctl);
        c.env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_DATA_HOME", self.dir.join("share"))
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .args(args);
        c
    }

    /// Starts a long-running `pg_autoctl` command, its output in `name.log`, in a process group of its own
    /// (so a signal to the tests does not reach it before the watchdog).
    fn spawn(&self, name: &str, mut command: Command) -> Result<(), Error> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        let node = name.trim_end_matches("-restarted").to_owned();
        self.children
            .lock()
            .expect("children lock")
            .push((node, child));
        Ok(())
    }

    /// Applies [`MONITOR_SETTINGS`] once the monitor accepts connections.
    fn set_monitor(&self) -> Result<(), Error> {
        let deadline = Instant::now() + LIMIT;
        let mut client = loop {
            match postgres::Client::connect(&self.monitor_url(), postgres::NoTls) {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => return Err(self.failed("the monitor", e)),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        for (name, value) in MONITOR_SETTINGS {
            client.batch_execute(&format!("ALTER SYSTEM SET {name} = {value}"))?;
        }
        client.batch_execute("SELECT pg_reload_conf()")?;
        Ok(())
    }

    /// The monitor's database, as the `postgres` superuser.
    fn monitor_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/pg_auto_failover?connect_timeout=2",
            self.monitor_port
        )
    }

    /// The URL of [`DATABASE`] on both nodes, for a connection to whichever is the primary:
    /// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/jobq?target_session_attrs=read-write`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-write",
            self.ports[0], self.ports[1]
        )
    }

    /// The URL of [`DATABASE`] on the node at `port` alone.
    pub fn node_url(&self, port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{DATABASE}")
    }

    /// The data nodes' PostgreSQL ports.
    pub fn ports(&self) -> [u16; 2] {
        self.ports
    }

    /// Where the cluster keeps its files (each `pg_autoctl run`'s output is `<node>.log` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data nodes as the monitor records them.
    pub fn nodes(&self) -> Result<Vec<NodeState>, Error> {
        crate::off_runtime(|| {
            let mut client = postgres::Client::connect(&self.monitor_url(), postgres::NoTls)?;
            let rows = client.query(
                "SELECT nodename, nodeport, reportedstate::text, goalstate::text \
                 FROM pgautofailover.node ORDER BY nodeid",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| NodeState {
                    name: r.get(0),
                    port: u16::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                    reported: r.get(2),
                    assigned: r.get(3),
                })
                .collect())
        })
    }

    /// Polls the monitor until `done` holds for its nodes; fails naming `what` and the last states after
    /// a bound. A monitor that does not answer counts as not yet.
    fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[NodeState]) -> bool,
    ) -> Result<Vec<NodeState>, Error> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let last = match self.nodes() {
                Ok(nodes) if done(&nodes) => return Ok(nodes),
                Ok(nodes) => format!("{nodes:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(self.failed(what, last));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An error for `what` not happening in time, with the nodes' logs' last lines.
    fn failed(&self, what: &str, last: impl std::fmt::Display) -> Error {
        let mut output = format!("not within {} s: {last}", LIMIT.as_secs());
        for name in [
            "monitor",
            "node1",
            "node2",
            "node1-restarted",
            "node2-restarted",
        ] {
            let log =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            output.push_str(&format!("\n--- {name}.log (last lines)\n"));
            for line in tail.iter().rev() {
                output.push_str(line);
                output.push('\n');
            }
        }
        Error::Command {
            command: format!("waiting for {what}"),
            output,
        }
    }

    /// Waits until one node is `primary` and the other `secondary`, each in its assigned state; returns
    /// the primary's port.
    pub fn wait_settled(&self) -> Result<u16, Error> {
        let nodes = self.wait_for("a primary and a secondary", |nodes| {
            nodes.len() == 2 && settled(nodes)
        })?;
        primary(&nodes).ok_or_else(|| self.failed("a primary", format!("{nodes:?}")))
    }

    /// The port of the node the monitor records as primary (reported and assigned).
    pub fn primary_port(&self) -> Result<Option<u16>, Error> {
        Ok(primary(&self.nodes()?))
    }

    /// A planned failover (`pg_autoctl perform failover`, which waits until it is done); returns the new
    /// primary's port once the old one has rejoined as its secondary.
    pub fn perform_failover(&self) -> Result<u16, Error> {
        let monitor = self.pgdata("monitor");
        crate::off_runtime(|| {
            run(&mut self.autoctl(&["perform", "failover", "--pgdata", &monitor, "--wait", "60"]))
        })?;
        self.wait_settled()
    }

    /// Loses the primary node at once: SIGKILL to its keeper's process group (`pg_autoctl run` and the
    /// services it forks) and to its postmaster (the backends follow their postmaster). Returns the lost
    /// node's port; [`restart_node`](Self::restart_node) brings it back.
    ///
    /// Why the keeper too: SIGKILL of the postmaster alone is undone by the keeper, which restarts it
    /// within about a second, often before the monitor counts the node unhealthy, so the old primary
    /// stays primary and no failover happens (seen on this machine on one kill in two).
    pub fn kill_primary(&self) -> Result<u16, Error> {
        let port = self
            .primary_port()?
            .ok_or_else(|| self.failed("a primary to kill", "none"))?;
        let name = self.node_name(port);
        let pid_file = self.dir.join(name).join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)?
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .ok_or_else(|| self.failed("the primary's pid", pid_file.display()))?;
        let mut targets = vec![postmaster.to_string()];
        for (node, child) in self.children.lock().expect("children lock").iter_mut() {
            if node == name && matches!(child.try_wait(), Ok(None)) {
                targets.push(format!("-{}", child.id()));
            }
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .args(&targets)
            .stderr(Stdio::null())
            .status();
        Ok(port)
    }

    /// Starts the keeper of the node at `port` again (`pg_autoctl run`), after
    /// [`kill_primary`](Self::kill_primary): it rejoins as the standby of the new primary (pg_rewind).
    pub fn restart_node(&self, port: u16) -> Result<(), Error> {
        let name = self.node_name(port);
        let pgdata = self.pgdata(name);
        // A keeper killed with SIGKILL leaves its pid file; the new one checks that pid is gone.
        self.spawn(
            &format!("{name}-restarted"),
            self.autoctl(&["run", "--pgdata", &pgdata]),
        )
    }

    /// The name of the node at `port`.
    fn node_name(&self, port: u16) -> &'static str {
        if port == self.ports[0] {
            "node1"
        } else {
            "node2"
        }
    }

    /// Waits until a node other than the one at `old` is `primary` (reported and assigned); returns its
    /// port. The old node may still be on its way back as a standby.
    pub fn wait_for_new_primary(&self, old: u16) -> Result<u16, Error> {
        let nodes = self.wait_for("a new primary", |nodes| {
            primary(nodes).is_some_and(|p| p != old)
        })?;
        primary(&nodes).ok_or_else(|| self.failed("a new primary", format!("{nodes:?}")))
    }
}

/// Whether every node is in its assigned state: `single` when alone, else one `primary` and the others
/// `secondary`.
fn settled(nodes: &[NodeState]) -> bool {
    let stable = nodes.iter().all(|n| n.reported == n.assigned);
    let primaries = nodes.iter().filter(|n| n.reported == "primary").count();
    let secondaries = nodes.iter().filter(|n| n.reported == "secondary").count();
    stable
        && match nodes {
            [only] => only.reported == "single",
            _ => primaries == 1 && primaries + secondaries == nodes.len(),
        }
}

/// The port of the node that takes writes, by its reported and assigned state: `primary`, `single`
/// (alone), or `wait_primary` (promoted, or its standby lost: writes go on without synchronous
/// replication until a standby catches up).
fn primary(nodes: &[NodeState]) -> Option<u16> {
    nodes
        .iter()
        .find(|n| {
            n.reported == n.assigned
                && ["primary", "single", "wait_primary"].contains(&n.reported.as_str())
        })
        .map(|n| n.port)
}

/// The shell commands that stop every node of the cluster in `dir` and delete it.
fn stop_all(as_root: bool, autoctl: &Path, dir: &Path) -> String {
    let user = if as_root {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let mut script = String::new();
    for name in ["node1", "node2", "monitor"] {
        script.push_str(&format!(
            "XDG_CONFIG_HOME='{d}/config' XDG_DATA_HOME='{d}/share' XDG_RUNTIME_DIR='{d}/run' {user}'{a}' stop --immediate \
             --pgdata '{d}/{name}' >/dev/null 2>&1; ",
            d = dir.display(),
            a = autoctl.display(),
        ));
    }
    script.push_str(&format!("sleep 1; rm -rf '{}'", dir.display()));
    script
}

impl Drop for FailoverCluster {
    /// Stops every node, waits (bounded) for the `pg_autoctl` processes to end, killing any left, and
    /// deletes the directory.
    fn drop(&mut self) {
        let script = stop_all(self.as_root, &self.autoctl, &self.dir);
        let children = std::mem::take(self.children.get_mut().expect("children lock"));
        crate::off_runtime(move || {
            let _ = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            for (_, mut child) in children {
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Whatever is left in its process group (a service a killed keeper forked) goes too.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.wait();
            }
        });
    }
}
