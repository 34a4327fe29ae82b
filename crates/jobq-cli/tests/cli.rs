//! The built `jobq` binary against the throwaway server: every subcommand and every bad input.

use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn jobq(url: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .env_remove("DATABASE_URL")
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .expect("the binary runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "no panic: {}", run.stderr);
    run
}

fn ok(url: &str, args: &[&str]) -> String {
    let run = jobq(url, args);
    assert_eq!(run.code, 0, "jobq {args:?}: {}", run.stderr);
    run.stdout
}

fn count_jobs(url: &str) -> i64 {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query_one("SELECT count(*) FROM jobq.jobs", &[])
        .unwrap()
        .get(0)
}

#[test]
fn schema_commands_apply_report_and_print() {
    let db = jobq_tempdb::empty_database();
    let url = db.url();
    let missing = jobq(url, &["healthcheck"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("jobq schema apply"),
        "{}",
        missing.stderr
    );
    assert_eq!(
        missing.stderr.trim().lines().count(),
        1,
        "one line: {}",
        missing.stderr
    );
    assert!(ok(url, &["schema", "status"]).contains("missing"));
    ok(url, &["schema", "apply"]);
    ok(url, &["schema", "apply"]);
    assert!(ok(url, &["schema", "status"]).contains("up to date"));
    assert!(ok(url, &["healthcheck"]).contains("healthy"));
    let status: serde_json::Value =
        serde_json::from_str(&ok(url, &["--json", "schema", "status"])).unwrap();
    assert_eq!(status["applied"], status["required"]);
    assert!(
        ok("unused", &["schema", "sql"]).contains("pg_advisory_xact_lock"),
        "no connection needed"
    );
    assert!(ok("unused", &["schema", "sql", "--grant", "app"]).contains("GRANT USAGE ON SCHEMA"));
    assert_eq!(
        jobq("unused", &["schema", "sql", "--grant", "app; DROP"]).code,
        2
    );
}

#[test]
fn jobs_are_deferred_listed_shown_cancelled_and_retried() {
    let db = jobq_tempdb::database();
    let url = db.url();
    let id = ok(
        url,
        &[
            "defer",
            "send_email",
            r#"{"to":"a@example.com"}"#,
            "--queue",
            "emails",
            "--priority",
            "-3",
        ],
    );
    let id = id.trim().to_owned();
    assert!(id.parse::<i64>().is_ok(), "prints the id: {id}");
    let shown = ok(url, &["jobs", "show", &id]);
    assert!(
        shown.contains("send_email") && shown.contains("a@example.com") && shown.contains("-3"),
        "{shown}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(url, &["--json", "jobs", "list", "--queue", "emails"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(ok(url, &["jobs", "list", "--status", "todo"]).contains("send_email"));
    assert!(ok(url, &["queues"]).contains("emails"));
    ok(url, &["workers"]);
    assert!(ok(url, &["jobs", "cancel", &id]).contains("cancelled"));
    assert!(ok(url, &["jobs", "retry", &id]).contains("retried"));
    assert!(ok(url, &["jobs", "cancel", &id, "--delete"]).contains("deleted"));
    let in_future = ok(url, &["defer", "later", "{}", "--in", "10m"]);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(url, &["--json", "jobs", "show", in_future.trim()])).unwrap();
    assert_eq!(shown["status"], "todo");
    assert!(ok(url, &["prune", "--older-than", "1d"]).contains("pruned 0"));
}

#[test]
fn queueing_lock_conflicts_exit_3_unless_ignored() {
    let db = jobq_tempdb::database();
    let url = db.url();
    ok(url, &["defer", "t", "{}", "--queueing-lock", "nightly"]);
    let conflict = jobq(url, &["defer", "t", "{}", "--queueing-lock", "nightly"]);
    assert_eq!(conflict.code, 3);
    assert!(conflict.stderr.contains("nightly"), "{}", conflict.stderr);
    ok(
        url,
        &[
            "defer",
            "t",
            "{}",
            "--queueing-lock",
            "nightly",
            "--ignore-already-enqueued",
        ],
    );
    assert_eq!(count_jobs(url), 1);
}

#[test]
fn bad_input_gets_one_line_a_non_zero_exit_and_writes_nothing() {
    let db = jobq_tempdb::database();
    let url = db.url();
    let long_queue = "q".repeat(jobq_core::limits::MAX_NAME_BYTES + 1);
    let too_deep = format!(
        "{}1{}",
        "[".repeat(jobq_core::limits::MAX_ARGS_DEPTH + 1),
        "]".repeat(jobq_core::limits::MAX_ARGS_DEPTH + 1)
    );
    let cases: &[(&[&str], i32, &str)] = &[
        (&["defer", "t", r#"{"a": "x\u0000y"}"#], 2, "NUL"),
        (&["defer", "t", r#"{"x\u0000y": 1}"#], 2, "NUL"),
        (&["defer", "t", &too_deep], 2, "MAX_ARGS_DEPTH"),
        (
            &["defer", "t", "{}", "--at", "0000-01-01T00:00:00Z"],
            2,
            "EARLIEST..=LATEST",
        ),
        (&["defer", "t", "{}", "--in", "10000years"], 2, "LATEST"),
        (
            &["defer", "t", "{}", "--queue", &long_queue],
            2,
            "MAX_NAME_BYTES",
        ),
        (
            &["defer", "t", "{}", "--lock", &long_queue],
            2,
            "MAX_NAME_BYTES",
        ),
        (&["defer", "t", "{not json"], 2, "not valid JSON"),
        (&["defer", "t", "{}", "--at", "yesterday"], 2, "RFC 3339"),
        (
            &["defer", "t", "{}", "--priority", "99999999999"],
            2,
            "priority",
        ),
        (&["jobs", "list", "--limit", "-5"], 2, "limit"),
        (
            &["jobs", "list", "--status", "sleeping"],
            2,
            "unknown status",
        ),
        (&["jobs", "show", "424242"], 4, "does not exist"),
        (&["jobs", "cancel", "424242"], 4, "does not exist"),
        (&["jobs", "retry", "424242"], 4, "does not exist"),
        (&["prune", "--older-than", "soon"], 2, "older-than"),
        (
            &["--schema", "Bad-Name", "queues"],
            2,
            "must be 1 to 40 characters",
        ),
    ];
    for (args, code, says) in cases {
        let run = jobq(url, args);
        assert_eq!(run.code, *code, "jobq {args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "jobq {args:?} should say {says:?}: {}",
            run.stderr
        );
    }
    assert_eq!(count_jobs(url), 0, "nothing was written");
    let past = ok(url, &["defer", "t", "{}", "--at", "2001-01-01T00:00:00Z"]);
    assert!(
        past.trim().parse::<i64>().is_ok(),
        "a past time is accepted and runs now"
    );
}

/// A job whose arguments nest 200 deep, stored by another writer, is listed and shown like any other.
#[test]
fn deeply_nested_stored_arguments_are_listed_and_shown() {
    let db = jobq_tempdb::database();
    let url = db.url();
    ok(url, &["defer", "t", "{}"]);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO jobq.jobs (task, args) VALUES ('deep', $1::text::jsonb) RETURNING id",
            &[&deep],
        )
        .unwrap()
        .get(0);
    // Printed whole, deeper than serde_json reads by default: the text is checked instead.
    let listed = ok(url, &["--json", "jobs", "list"]);
    assert_eq!(listed.matches("\"task\":").count(), 2, "{listed}");
    assert!(listed.contains("\"deep\""), "{listed}");
    assert!(ok(url, &["jobs", "list"]).contains("deep"));
    let shown = ok(url, &["--json", "jobs", "show", &id.to_string()]);
    assert!(shown.contains("\"deep\""), "{shown}");
    assert!(ok(url, &["jobs", "show", &id.to_string()]).contains("[[[["));
}

#[test]
fn unreachable_and_malformed_urls_are_one_line_errors() {
    let unreachable = jobq("postgres://nobody@127.0.0.1:1/none", &["queues"]);
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable.stderr.contains("cannot connect"),
        "{}",
        unreachable.stderr
    );
    assert_eq!(unreachable.stderr.trim().lines().count(), 1);
    let malformed = jobq("postgres://a:b@c:notaport/x", &["queues"]);
    assert_eq!(malformed.code, 2);
    assert!(
        malformed.stderr.contains("invalid database URL"),
        "{}",
        malformed.stderr
    );
    let none = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .env_remove("DATABASE_URL")
        .arg("queues")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("DATABASE_URL"));
}

#[test]
fn an_outdated_schema_says_which_command_fixes_it() {
    let db = jobq_tempdb::database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    client.batch_execute("DELETE FROM jobq.migrations").unwrap();
    let run = jobq(db.url(), &["healthcheck"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("jobq schema apply"), "{}", run.stderr);
}

#[test]
fn help_is_everywhere() {
    for args in [
        &["--help"][..],
        &["jobs", "--help"],
        &["defer", "--help"],
        &["schema", "apply", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_jobq"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}
