//! For the browser tests only (`tests/browser.rs`): emits `cfg(chromium)` when both `chromium` and
//! `chromedriver` are installed (Debian's `chromium` and `chromium-driver` packages), and also under `CI`
//! (set and not `false`/`0`), where missing browsers must fail those tests loudly rather than leave them
//! ignored. Without the cfg, the tests report as ignored with the reason. Nothing else in the crate reads
//! it: the library builds the same either way.

use std::path::PathBuf;

/// Where the tests look besides `PATH`: twin of `find` in tests/browser.rs, change both.
const DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(chromium)");
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
    // A directory's mtime changes when a binary is installed into it.
    for dir in &dirs {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let installed = |name: &str| dirs.iter().any(|d| d.join(name).is_file());
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if (installed("chromium") && installed("chromedriver")) || ci {
        println!("cargo::rustc-cfg=chromium");
    }
}
