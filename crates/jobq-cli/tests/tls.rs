//! The built `jobq` binary against a throwaway server that takes TCP connections only over TLS
//! (`jobq_tempdb::tls_server()`): `healthcheck` passes with `sslmode=verify-full` and the right CA, and fails
//! with a message naming the certificate problem with a wrong one, or the missing encryption with
//! `sslmode=disable`. The CLI connects through `jobq_tokio_postgres::connect`, which reads the URL's
//! `sslmode` and `sslrootcert`.

use std::process::Command;

/// `jobq --database-url URL healthcheck`, with none of jobq's environment variables: its exit code and
/// what it printed.
fn healthcheck(url: &str) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobq"));
    for name in [
        "JOBQ_DATABASE_URL",
        "DATABASE_URL",
        "JOBQ_SCHEMA",
        "JOBQ_TIMEOUT",
    ] {
        command.env_remove(name);
    }
    let out = command
        .args(["--database-url", url, "healthcheck"])
        .output()
        .expect("the binary runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("panicked"), "no panic: {printed}");
    (out.status.code().unwrap_or(-1), printed)
}

#[test]
fn healthcheck_over_tls() {
    let server = jobq_tempdb::tls_server().unwrap_or_else(|e| panic!("jobq-tempdb: {e}"));
    let db = server.database().unwrap();

    let (code, printed) = healthcheck(&server.verify_full_url(db.name()));
    assert_eq!(code, 0, "verify-full with the right CA: {printed}");

    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.url(db.name()),
        server.other_ca_path().display()
    );
    let (code, printed) = healthcheck(&wrong);
    assert_eq!(code, 1, "a wrong CA: {printed}");
    assert!(
        printed.contains("invalid peer certificate") && printed.contains("UnknownIssuer"),
        "a wrong CA: {printed}"
    );

    let (code, printed) = healthcheck(&format!("{}?sslmode=disable", server.url(db.name())));
    assert_eq!(code, 1, "sslmode=disable: {printed}");
    assert!(
        printed.contains("no encryption"),
        "sslmode=disable: {printed}"
    );
}
