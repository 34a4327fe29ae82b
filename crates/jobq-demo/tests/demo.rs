//! The README's "run it" command works as written: the demo runs to its summary on a throwaway server.

#[test]
fn the_demo_runs_every_adapters_story_and_drains_the_jobs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobq-demo"))
        .env_remove("DATABASE_URL")
        .env_remove("JOBQ_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for adapter in ["tokio-postgres:", "postgres:", "sqlx:", "diesel:"] {
        assert!(stdout.contains(adapter), "{stdout}");
    }
    assert_eq!(stdout.matches("transaction still usable").count(), 4);
    assert!(stdout.contains("12 of 12 orders processed"), "{stdout}");
    assert!(stdout.contains("Dropped the demo's schema"), "{stdout}");
}
