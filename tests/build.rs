//! Whether the PgBouncer tests (`pgbouncer.rs`) and the failover tests (`failover.rs`, cfg `pg_autoctl`)
//! can run here. For PgBouncer: emits `cfg(pgbouncer)` when a `pgbouncer`
//! binary is where `jobq-tempdb` looks for one, and also under `CI` (set and not `false`/`0`), where a
//! missing PgBouncer must fail those tests loudly rather than leave them ignored. Without the cfg, the
//! tests report as ignored with the reason (`cargo test` prints `ignored, pgbouncer is not installed ...`).

use std::path::PathBuf;

/// Where `jobq_tempdb`'s `find_pgbouncer` (crates/jobq-tempdb/src/pgbouncer.rs) looks: twin, change both.
const DIRS: [&str; 4] = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pgbouncer)");
    println!("cargo::rustc-check-cfg=cfg(pg_autoctl)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let dirs: Vec<PathBuf> = path
        .into_iter()
        .chain(DIRS.map(PathBuf::from))
        .filter(|d| d.is_dir())
        .collect();
    // A directory's mtime changes when a binary is installed into it (a path that does not exist would make
    // cargo run this script, and rebuild the tests, on every build).
    for dir in &dirs {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let installed = dirs.iter().any(|d| d.join("pgbouncer").is_file());
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if installed || ci {
        println!("cargo::rustc-cfg=pgbouncer");
    }
    // The failover tests (`failover.rs`) need pg_auto_failover's `pg_autoctl` (where `jobq_tempdb`'s
    // `find_pg_autoctl` looks, but beside the server binaries: Debian installs it in /usr/bin).
    if ci || dirs.iter().any(|d| d.join("pg_autoctl").is_file()) {
        println!("cargo::rustc-cfg=pg_autoctl");
    }
}
