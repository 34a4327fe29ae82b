//! The built `jobq` binary against the throwaway server: every subcommand and every bad input.

use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The environment variables jobq reads; every test sets the ones it means, so the harness's own
/// (`JOBQ_DATABASE_URL` in CI) never leak in.
const JOBQ_VARIABLES: [&str; 4] = [
    "JOBQ_DATABASE_URL",
    "DATABASE_URL",
    "JOBQ_SCHEMA",
    "JOBQ_TIMEOUT",
];

/// The `jobq` binary with a clean environment.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobq"));
    for name in JOBQ_VARIABLES {
        command.env_remove(name);
    }
    command
}

fn finished(out: Output) -> Run {
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "no panic: {}", run.stderr);
    run
}

fn jobq(url: &str, args: &[&str]) -> Run {
    finished(
        binary()
            .arg("--database-url")
            .arg(url)
            .args(args)
            .output()
            .expect("the binary runs"),
    )
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
    let six_kb = "n".repeat(6 * 1024);
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
        (&["defer", &six_kb, "{}"], 2, "task is 6144 bytes long"),
        (
            &["defer", "t", "{}", "--queue", &six_kb],
            2,
            "queue is 6144 bytes",
        ),
        (
            &["defer", "t", "{}", "--lock", &six_kb],
            2,
            "lock is 6144 bytes",
        ),
        (
            &["defer", "t", "{}", "--queueing-lock", &six_kb],
            2,
            "queueing_lock is 6144 bytes",
        ),
        (&["defer", "", "{}"], 2, "task is empty"),
        (
            &["defer", "t", "{}", "--priority", "2147483648"],
            2,
            "priority",
        ),
        (&["--timeout", "0s", "queues"], 2, "timeout"),
        (&["--timeout", "30days", "queues"], 2, "timeout"),
        (&["--timeout", "soon", "queues"], 2, "timeout"),
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
    let none = binary().arg("queues").output().unwrap();
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
        let out = binary().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

/// A loopback server that accepts TCP connections and never answers; it counts the connections made.
struct SilentServer {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            // Held open, never read or written, until the test process ends.
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        SilentServer { port, accepted }
    }

    fn url(&self) -> String {
        format!("postgres://nobody@127.0.0.1:{}/none", self.port)
    }

    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Runs `command` to its end, or kills it after a minute and fails: the bound is the test's own
/// patience, not a timing the test asserts.
fn run_bounded(mut command: Command, what: &str) -> Run {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child
        .try_wait()
        .expect("the child can be waited on")
        .is_none()
    {
        if std::time::Instant::now() > patience {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: jobq still waited after 60 s and was killed; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    finished(child.wait_with_output().unwrap())
}

#[test]
fn a_server_that_accepts_and_never_answers_times_out() {
    let server = SilentServer::start();
    let mut flag = binary();
    flag.args([
        "--database-url",
        &server.url(),
        "healthcheck",
        "--timeout",
        "1s",
    ]);
    let mut env = binary();
    env.env("JOBQ_TIMEOUT", "1s")
        .env("JOBQ_DATABASE_URL", server.url())
        .arg("healthcheck");
    for (what, command) in [("--timeout 1s", flag), ("JOBQ_TIMEOUT=1s", env)] {
        let run = run_bounded(command, what);
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains("timed out") && run.stderr.contains("1s"),
            "{what}: says it timed out, and after how long: {}",
            run.stderr
        );
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
    assert_eq!(server.connections(), 2, "each run reached the server");
}

#[test]
fn a_statement_the_server_holds_stops_at_the_timeout() {
    let db = jobq_tempdb::database();
    let mut holder = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE jobq.jobs IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut command = binary();
    command.args(["--database-url", db.url(), "--timeout", "1s", "queues"]);
    let run = run_bounded(command, "queues behind a table lock");
    lock.rollback().unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("statement timeout") && run.stderr.contains("57014"),
        "the server's own timeout message: {}",
        run.stderr
    );
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    ok(db.url(), &["queues"]);
}

#[test]
fn bad_values_are_refused_before_anything_is_sent() {
    let server = SilentServer::start();
    let url = server.url();
    let long = "x".repeat(6 * 1024);
    let cases: &[&[&str]] = &[
        &["defer", "t", r#"{"a": "x\u0000y"}"#],
        &["defer", "t", r#"[{"k\u0000": 1}]"#],
        &["defer", "t", "{}", "--at", "0000-01-01T00:00:00Z"],
        &["defer", "t", "{}", "--at", "+10000-01-01T00:00:00Z"],
        &["defer", "t", "{}", "--lock", &long],
        &["defer", "t", "{}", "--queueing-lock", &long],
        &["defer", "t", "{}", "--queue", &long],
        &["defer", &long, "{}"],
        &["defer", "t", "{}", "--priority", "-2147483649"],
    ];
    for args in cases {
        let run = jobq(&url, args);
        assert_eq!(run.code, 2, "jobq {:.80?}: {}", args, run.stderr);
        assert!(!run.stderr.contains("timed out"), "{}", run.stderr);
    }
    let tls_settings = [
        ("sslmode=bogus", "sslmode=bogus"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/jobq-ca.pem",
            "/nonexistent/jobq-ca.pem",
        ),
        ("sslmode=require&sslrootcert=system", "sslrootcert=system"),
    ];
    for (query, says) in tls_settings {
        let run = jobq(&format!("{url}?{query}"), &["healthcheck"]);
        assert_eq!(run.code, 2, "{query}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{query}: {}", run.stderr);
    }
    assert_eq!(server.connections(), 0, "no connection was even opened");
}

#[test]
fn connection_errors_carry_the_servers_message() {
    let server = jobq_tempdb::server().expect("the throwaway PostgreSQL server starts");
    let missing = jobq(&server.url("jobq_no_such_database"), &["queues"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains(r#"database "jobq_no_such_database" does not exist"#),
        "the server's message: {}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("cannot connect"),
        "{}",
        missing.stderr
    );
    // The user part of postgres://user[:password]@host:port, replaced.
    let base = server.base_url();
    let (scheme, rest) = base.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let role = format!("{scheme}://jobq_no_such_role@{host}/postgres");
    let unknown = jobq(&role, &["healthcheck"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("FATAL") && unknown.stderr.contains("\"jobq_no_such_role\""),
        "the server's message, naming the role: {}",
        unknown.stderr
    );
    for run in [&missing, &unknown] {
        assert!(!run.stderr.trim().ends_with("db error"), "{}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
}

#[test]
fn the_database_url_and_schema_come_from_the_environment() {
    let db = jobq_tempdb::empty_database();
    let url = db.url();
    let nowhere = "postgres://nobody@127.0.0.1:1/none";
    let with_env = |vars: &[(&str, &str)], args: &[&str]| {
        let mut command = binary();
        command.envs(vars.iter().copied()).args(args);
        finished(command.output().unwrap())
    };
    let applied = with_env(
        &[("JOBQ_DATABASE_URL", url), ("JOBQ_SCHEMA", "jobq_env")],
        &["schema", "apply"],
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(applied.stdout.contains("jobq_env"), "{}", applied.stdout);
    let id = with_env(
        &[("JOBQ_DATABASE_URL", url), ("JOBQ_SCHEMA", "jobq_env")],
        &["defer", "t", "{}"],
    );
    assert_eq!(id.code, 0, "{}", id.stderr);
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let in_env_schema: i64 = client
        .query_one("SELECT count(*) FROM jobq_env.jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_env_schema, 1, "JOBQ_SCHEMA chose the schema");
    // JOBQ_DATABASE_URL comes before DATABASE_URL, which is the fallback; --database-url before both.
    type Variables<'a> = &'a [(&'a str, &'a str)];
    let orders: [(Variables, &[&str]); 3] = [
        (
            &[("JOBQ_DATABASE_URL", url), ("DATABASE_URL", nowhere)],
            &[],
        ),
        (&[("DATABASE_URL", url)], &[]),
        (
            &[("JOBQ_DATABASE_URL", nowhere), ("DATABASE_URL", nowhere)],
            &["--database-url", url],
        ),
    ];
    for (vars, flags) in orders {
        let mut vars = vars.to_vec();
        vars.push(("JOBQ_SCHEMA", "jobq_env"));
        let args: Vec<&str> = flags.iter().copied().chain(["schema", "status"]).collect();
        let run = with_env(&vars, &args);
        assert_eq!(run.code, 0, "{vars:?} {flags:?}: {}", run.stderr);
        assert!(run.stdout.contains("up to date"), "{}", run.stdout);
    }
    let flag_first = with_env(
        &[("JOBQ_DATABASE_URL", url), ("JOBQ_SCHEMA", "jobq_env")],
        &["--schema", "jobq", "schema", "status"],
    );
    assert!(
        flag_first.stdout.contains("schema jobq: applied none"),
        "--schema comes before JOBQ_SCHEMA: {}",
        flag_first.stdout
    );
    let bad = with_env(
        &[("JOBQ_DATABASE_URL", url), ("JOBQ_SCHEMA", "Bad-Name")],
        &["queues"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = with_env(
        &[("JOBQ_DATABASE_URL", url), ("JOBQ_TIMEOUT", "never")],
        &["queues"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// The box-drawing characters (U+2500 to U+257F) comfy-table draws with.
fn has_box_characters(text: &str) -> bool {
    text.chars().any(|c| ('\u{2500}'..='\u{257F}').contains(&c))
}

#[test]
fn output_through_a_pipe_is_plain_text_with_zoned_times() {
    let db = jobq_tempdb::database();
    let url = db.url();
    let id = ok(url, &["defer", "t", r#"{"a": 1}"#, "--lock", "l"]);
    let id = id.trim();
    let listed = ok(url, &["jobs", "list"]);
    let shown = ok(url, &["jobs", "show", id]);
    for (what, text) in [
        ("jobs list", &listed),
        ("jobs show", &shown),
        ("queues", &ok(url, &["queues"])),
        ("workers", &ok(url, &["workers"])),
    ] {
        assert!(!has_box_characters(text), "{what} through a pipe: {text}");
        assert!(text.lines().next().is_some(), "{what} has a header");
    }
    let mut lines = listed.lines().map(|l| l.split('\t').collect::<Vec<_>>());
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();
    assert_eq!(header.len(), row.len(), "{listed}");
    let scheduled = header.iter().position(|h| *h == "scheduled").unwrap();
    assert!(
        row[scheduled].ends_with('Z')
            && chrono::DateTime::parse_from_rfc3339(row[scheduled]).is_ok(),
        "a time with its zone: {listed}"
    );
    let created = shown
        .lines()
        .find_map(|l| l.strip_prefix("created at\t"))
        .unwrap_or_else(|| panic!("a created-at field: {shown}"));
    assert!(
        created.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{shown}"
    );
}

#[test]
fn help_names_only_commands_that_exist() {
    let help = finished(binary().arg("--help").output().unwrap());
    assert_eq!(help.code, 0);
    let commands: Vec<&str> = help
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let expected = [
        "schema",
        "defer",
        "jobs",
        "queues",
        "workers",
        "prune",
        "healthcheck",
        "dashboard",
        "help",
    ];
    assert_eq!(commands, expected, "{}", help.stdout);
    assert!(!help.stdout.contains("demo"), "{}", help.stdout);
    for command in &expected[..expected.len() - 1] {
        let run = finished(binary().args([*command, "--help"]).output().unwrap());
        assert_eq!(run.code, 0, "jobq {command} --help: {}", run.stderr);
        assert!(!run.stdout.contains("demo"), "{}", run.stdout);
    }
    for needle in [
        "JOBQ_DATABASE_URL",
        "JOBQ_SCHEMA",
        "JOBQ_TIMEOUT",
        "--timeout",
    ] {
        assert!(
            help.stdout.contains(needle),
            "--help names {needle}: {}",
            help.stdout
        );
    }
}

/// On a terminal, tables have box borders and their times say `UTC`. The terminal is a pseudo-terminal
/// from util-linux's `script`; without it the test says so, and fails under `CI=true`.
#[test]
fn a_terminal_gets_box_tables_with_zoned_times() {
    let available = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!(
            "a_terminal_gets_box_tables_with_zoned_times: NOT RUN: util-linux `script` (which gives the \
             binary a terminal) is not installed"
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`script` is needed under CI"
        );
        return;
    }
    let db = jobq_tempdb::database();
    ok(db.url(), &["defer", "t", "{}"]);
    let inner = format!(
        "{} --database-url '{}' jobs list",
        env!("CARGO_BIN_EXE_jobq"),
        db.url()
    );
    let mut command = Command::new("script");
    for name in JOBQ_VARIABLES {
        command.env_remove(name);
    }
    let run = finished(
        command
            .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    assert!(has_box_characters(&run.stdout), "{}", run.stdout);
    assert!(run.stdout.contains(" UTC"), "{}", run.stdout);
}

/// Runs `sql` on the database (test setup: putting jobs into a status).
fn exec(url: &str, sql: &str) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.batch_execute(sql).unwrap();
}

/// Each job's task, status and attempts, by id.
fn job_states(url: &str) -> Vec<(String, String, i32)> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query(
            "SELECT task, status, attempts FROM jobq.jobs ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn bulk_retry_by_filter_counts_dry_runs_and_says_what_it_did_to_attempts() {
    let db = jobq_tempdb::database();
    let url = db.url();
    for task in ["send_email", "send_email", "send_email", "other"] {
        ok(url, &["defer", task, "{}"]);
    }
    exec(
        url,
        "UPDATE jobq.jobs SET status = 'failed', attempts = 20, finished_at = now() - interval '10 minutes'",
    );
    let filter = [
        "--status",
        "failed",
        "--task",
        "send_email",
        "--since",
        "1h",
    ];
    let dry = ok(
        url,
        &[&["jobs", "retry", "--dry-run"][..], &filter].concat(),
    );
    assert!(dry.contains("would retry 3 matching jobs"), "{dry}");
    assert!(
        job_states(url).iter().all(|j| j.1 == "failed"),
        "a dry run changes nothing"
    );

    // Batches of 2 through a pipe: one plain progress line per batch on stderr, the summary on stdout.
    let run = jobq(
        url,
        &[&["jobs", "retry", "--batch-size", "2"][..], &filter].concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("retried 3 of 3 matching jobs") && run.stdout.contains("attempts kept"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stderr.contains("retried 2 of 3"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no bar through a pipe: {}",
        run.stderr
    );
    let states = job_states(url);
    assert_eq!(
        states
            .iter()
            .map(|j| (j.1.as_str(), j.2))
            .collect::<Vec<_>>(),
        [("todo", 20), ("todo", 20), ("todo", 20), ("failed", 20)]
    );

    // --reset-attempts, in JSON: every retried job starts from 0 again.
    exec(
        url,
        "UPDATE jobq.jobs SET status = 'failed', finished_at = now()",
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        url,
        &[
            "--json",
            "jobs",
            "retry",
            "--task",
            "other",
            "--reset-attempts",
        ],
    ))
    .unwrap();
    assert_eq!(
        (
            &json["retried"],
            &json["attempts_reset"],
            &json["conflicts"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(true),
            &serde_json::json!(0)
        )
    );
    assert_eq!(job_states(url)[3], ("other".into(), "todo".into(), 0));
    // The single-job retry still works, and an id goes with no filter.
    exec(
        url,
        "UPDATE jobq.jobs SET status = 'failed', finished_at = now() WHERE id = 1",
    );
    assert!(ok(url, &["jobs", "retry", "1"]).contains("retried"));
    let both = jobq(url, &["jobs", "retry", "1", "--task", "other"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn bulk_cancel_and_delete_refuse_an_empty_filter_without_all() {
    let db = jobq_tempdb::database();
    let url = db.url();
    for task in ["a", "a", "b"] {
        ok(url, &["defer", task, "{}"]);
    }
    exec(
        url,
        "UPDATE jobq.jobs SET status = 'doing', worker_id = 1 WHERE id = 1",
    );
    for command in [["jobs", "delete"], ["jobs", "cancel"], ["jobs", "retry"]] {
        let refused = jobq(url, &command);
        assert_eq!(refused.code, 2, "{command:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("--all"), "{}", refused.stderr);
    }
    assert_eq!(count_jobs(url), 3);
    let cancelled = ok(url, &["jobs", "cancel", "--task", "a"]);
    assert!(cancelled.contains("cancelled 1 of 1"), "{cancelled}");
    assert_eq!(
        job_states(url)[0].1,
        "doing",
        "the running job is untouched"
    );
    let cancelled = ok(url, &["jobs", "cancel", "--task", "b"]);
    assert!(cancelled.contains("cancelled 1 of 1"), "{cancelled}");
    let aborted = ok(url, &["jobs", "cancel", "--task", "a", "--abort"]);
    assert!(aborted.contains("1 running asked to abort"), "{aborted}");
    let dry = ok(url, &["jobs", "delete", "--all", "--dry-run"]);
    assert!(dry.contains("would delete 2 matching jobs"), "{dry}");
    assert_eq!(count_jobs(url), 3);
    let deleted = ok(url, &["jobs", "delete", "--all"]);
    assert!(deleted.contains("deleted 2 of 2"), "{deleted}");
    assert_eq!(job_states(url), [("a".into(), "doing".into(), 0)]);
    let bad = jobq(url, &["jobs", "delete", "--task", "a", "--batch-size", "0"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = jobq(url, &["jobs", "delete", "--since", "yesterday-ish"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn jobs_list_pages_by_id_and_filters_by_time() {
    let db = jobq_tempdb::database();
    let url = db.url();
    for _ in 0..5 {
        ok(url, &["defer", "t", "{}"]);
    }
    exec(
        url,
        "UPDATE jobq.jobs SET created_at = now() - interval '2 hours' WHERE id <= 2",
    );
    let first = jobq(url, &["jobs", "list", "--limit", "3"]);
    assert_eq!(first.code, 0);
    assert!(
        first.stderr.contains("next page: --after 3"),
        "{}",
        first.stderr
    );
    let ids = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first.stdout), ["1", "2", "3"]);
    let second = jobq(url, &["jobs", "list", "--limit", "3", "--after", "3"]);
    assert_eq!(ids(&second.stdout), ["4", "5"]);
    assert!(
        !second.stderr.contains("next page"),
        "the last page: {}",
        second.stderr
    );
    assert_eq!(
        ids(&ok(url, &["jobs", "list", "--since", "1h"])),
        ["3", "4", "5"]
    );
    assert_eq!(
        ids(&ok(url, &["jobs", "list", "--until", "1h"])),
        ["1", "2"]
    );
    assert!(ids(&ok(url, &["jobs", "list", "--finished-since", "1h"])).is_empty());
}

#[test]
fn prune_deletes_in_batches() {
    let db = jobq_tempdb::database();
    let url = db.url();
    exec(
        url,
        "INSERT INTO jobq.jobs (task, status, finished_at)
         SELECT 't', 'succeeded', now() - interval '2 days' FROM generate_series(1, 2500)",
    );
    let run = jobq(url, &["prune", "--older-than", "1d"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "pruned 2500");
    assert!(run.stderr.contains("pruned 1000 so far"), "{}", run.stderr);
    assert_eq!(count_jobs(url), 0);
}

/// The header and the row of `queue` in `jobq queues`' plain text, as fields by column name.
fn queue_row(listed: &str, queue: &str) -> Option<std::collections::HashMap<String, String>> {
    let mut lines = listed.lines();
    let header: Vec<&str> = lines.next()?.split('\t').collect();
    lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|fields| fields[0] == queue)
        .map(|fields| {
            assert_eq!(fields.len(), header.len(), "{listed}");
            header
                .iter()
                .zip(fields)
                .map(|(h, f)| ((*h).to_owned(), f.to_owned()))
                .collect()
        })
}

/// `jobq queues pause|resume NAME` say what changed and exit 0; `jobq queues` lists each queue once with
/// its counts by status, due and scheduled jobs, the oldest due job's age and its state (a paused queue
/// without jobs too), in plain text and in JSON.
#[test]
fn queues_are_paused_resumed_and_listed_with_their_lag() {
    let db = jobq_tempdb::database();
    let url = db.url();
    let paused = ok(url, &["queues", "pause", "emails"]);
    assert_eq!(paused.trim(), "queue emails: paused");
    let again = ok(url, &["queues", "pause", "emails"]);
    assert_eq!(again.trim(), "queue emails: unchanged (paused already)");
    ok(url, &["queues", "pause", "empty"]);
    ok(url, &["defer", "send", "{}", "--queue", "emails"]);
    ok(
        url,
        &["defer", "send", "{}", "--queue", "emails", "--in", "1h"],
    );
    ok(url, &["defer", "other", "{}"]);

    let listed = ok(url, &["queues"]);
    let emails = queue_row(&listed, "emails").unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (
            &emails["todo"][..],
            &emails["doing"][..],
            &emails["due"][..]
        ),
        ("2", "0", "1"),
        "{listed}"
    );
    assert_eq!(&emails["scheduled"], "1", "{listed}");
    assert!(!emails["oldest due"].is_empty(), "{listed}");
    assert_eq!(&emails["state"], "paused", "{listed}");
    let default = queue_row(&listed, "default").unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (&default["todo"][..], &default["state"][..]),
        ("1", "running")
    );
    let empty = queue_row(&listed, "empty").unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (&empty["todo"][..], &empty["due"][..], &empty["state"][..]),
        ("0", "0", "paused"),
        "a paused queue without jobs is listed: {listed}"
    );

    let json: serde_json::Value = serde_json::from_str(&ok(url, &["--json", "queues"])).unwrap();
    let emails = json
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["queue"] == "emails"))
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(emails["counts"]["todo"], 2, "{json}");
    assert_eq!(
        (&emails["due"], &emails["scheduled"]),
        (&1.into(), &1.into())
    );
    assert!(
        emails["oldest_due_age_seconds"].as_f64().unwrap() >= 0.0,
        "{json}"
    );
    assert_eq!(emails["paused"], true, "{json}");
    assert!(emails["paused_at"].is_string(), "{json}");

    let resumed = ok(url, &["queues", "resume", "emails"]);
    assert_eq!(resumed.trim(), "queue emails: resumed");
    let json: serde_json::Value =
        serde_json::from_str(&ok(url, &["--json", "queues", "resume", "emails"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"queue": "emails", "paused": false, "changed": false})
    );
    ok(url, &["queues", "resume", "empty"]);
    let listed = ok(url, &["queues"]);
    assert_eq!(
        queue_row(&listed, "emails")
            .map(|r| r["state"].clone())
            .as_deref(),
        Some("running"),
        "{listed}"
    );
    assert!(
        queue_row(&listed, "empty").is_none(),
        "a resumed queue without jobs is gone: {listed}"
    );
}

/// A queue name outside the limits exits 2 before connecting (the URL points nowhere), and a missing
/// name is a usage error.
#[test]
fn bad_queue_names_to_pause_exit_2_before_connecting() {
    let nowhere = "postgres://nobody@127.0.0.1:1/none";
    let long = "q".repeat(1_001);
    for command in ["pause", "resume"] {
        let run = jobq(nowhere, &["queues", command, &long]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("MAX_NAME_BYTES"), "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        let run = jobq(nowhere, &["queues", command]);
        assert_eq!(run.code, 2, "{}", run.stderr);
    }
}

/// On a terminal a bulk run draws a bar (cleared at the end) instead of a line per batch, and prints its
/// summary. Needs util-linux `script`, as the test above.
#[test]
fn a_terminal_gets_a_progress_bar_for_bulk_runs() {
    let available = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!(
            "a_terminal_gets_a_progress_bar_for_bulk_runs: NOT RUN: util-linux `script` is missing"
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`script` is needed under CI"
        );
        return;
    }
    let db = jobq_tempdb::database();
    for _ in 0..3 {
        ok(db.url(), &["defer", "t", "{}"]);
    }
    let inner = format!(
        "{} --database-url '{}' jobs cancel --task t --batch-size 2",
        env!("CARGO_BIN_EXE_jobq"),
        db.url()
    );
    let mut command = Command::new("script");
    for name in JOBQ_VARIABLES {
        command.env_remove(name);
    }
    let run = finished(
        command
            .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("cancelled 3 of 3 matching jobs"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("cancelled 2 of 3\r\n"),
        "no plain batch lines: {}",
        run.stdout
    );
    assert_eq!(count_jobs(db.url()), 3);
}
