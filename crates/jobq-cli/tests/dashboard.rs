//! `jobq dashboard` as a process against the throwaway server: it serves `/` and `/metrics` over HTTP on
//! the port it was given, stops cleanly (exit 0) on SIGTERM, and refuses a non-loopback `--listen`
//! without a token before connecting.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `jobq` binary with none of the harness's jobq variables.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobq"));
    for name in [
        "JOBQ_DATABASE_URL",
        "DATABASE_URL",
        "JOBQ_SCHEMA",
        "JOBQ_TIMEOUT",
        "JOBQ_DASHBOARD_TOKEN",
    ] {
        command.env_remove(name);
    }
    command
}

/// Kills the dashboard if a test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET with `Connection: close`: the status code and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn serves_pages_and_metrics_then_stops_on_sigterm() {
    let db = jobq_tempdb::database();
    let deferred = binary()
        .args([
            "--database-url",
            db.url(),
            "defer",
            "send_email",
            "{}",
            "--queue",
            "emails",
        ])
        .output()
        .unwrap();
    assert!(deferred.status.success(), "{deferred:?}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = binary()
        .args(["--database-url", db.url(), "dashboard", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("JOBQ_DASHBOARD_TOKEN", "cli-test-token")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);

    let mut page = None;
    for _ in 0..300 {
        if let Ok(answer) = get(port, "/") {
            page = Some(answer);
            break;
        }
        if let Some(status) = running.0.try_wait().unwrap() {
            panic!("jobq dashboard exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = page.expect("jobq dashboard answered within 30 s");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("data-queue=\"emails\""), "{body}");
    assert!(body.contains("href=\"login\""), "a token was given: {body}");

    let (status, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l == "jobq_queue_jobs{queue=\"emails\",status=\"todo\"} 1"),
        "{metrics}"
    );

    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = running.0.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = exited.expect("jobq dashboard stopped within 30 s of SIGTERM");
    let mut stderr = String::new();
    if let Some(mut pipe) = running.0.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/")),
        "{stderr}"
    );
}

#[test]
fn a_non_loopback_listen_needs_a_token() {
    let out = binary()
        .args([
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
            "dashboard",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--token"), "{stderr}");
}
