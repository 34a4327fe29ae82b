//! Results on stdout: box tables on a terminal, tab-separated plain text through a pipe or into a file,
//! JSON with `--json`. Times say their zone in every form: `2026-12-02 01:05:00.000 UTC` in tables,
//! RFC 3339 with `Z` in plain text and JSON.

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use jobq_core::{Job, JobId, QueueCount, QueueLag, Status, WorkerInfo};
use serde::Serialize;
use serde_json::json;
use std::io::IsTerminal;
use std::time::Duration;

/// How lists are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Box-drawing tables, for a person at a terminal.
    Table,
    /// A header line and one line per row, fields separated by tabs (tabs, line breaks and backslashes
    /// in a value written `\t`, `\n`, `\\`): for `grep`, `cut` and `awk`.
    Plain,
    /// Pretty-printed JSON.
    Json,
}

/// Where results go: stdout, in one [`Mode`].
pub(crate) struct Output {
    mode: Mode,
}

impl Output {
    /// JSON when `json`, else tables when stdout is a terminal and plain text when it is not.
    pub(crate) fn new(json: bool) -> Self {
        let mode = if json {
            Mode::Json
        } else if std::io::stdout().is_terminal() {
            Mode::Table
        } else {
            Mode::Plain
        };
        Self { mode }
    }

    /// `t` as this mode writes times: with its zone, empty when there is none.
    fn time(&self, t: Option<DateTime<Utc>>) -> String {
        let Some(t) = t else {
            return String::new();
        };
        match self.mode {
            Mode::Table => t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
            Mode::Plain | Mode::Json => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// `rows` under `header`, as a table or as plain text.
    fn render(&self, header: &[&str], rows: Vec<Vec<String>>) -> String {
        if self.mode == Mode::Table {
            let mut t = Table::new();
            t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
            for row in rows {
                t.add_row(row);
            }
            return t.to_string();
        }
        let mut text = header.join("\t");
        for row in rows {
            text.push('\n');
            let fields: Vec<String> = row.iter().map(|f| plain_field(f)).collect();
            text.push_str(&fields.join("\t"));
        }
        text
    }

    fn print(&self, header: &[&str], rows: Vec<Vec<String>>) {
        println!("{}", self.render(header, rows));
    }
    fn print_json(&self, value: &impl Serialize) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializable")
        );
    }

    pub(crate) fn message(&self, text: &str) {
        if self.mode == Mode::Json {
            self.print_json(&json!({ "message": text }));
        } else {
            println!("{text}");
        }
    }

    pub(crate) fn deferred(&self, id: JobId) {
        if self.mode == Mode::Json {
            self.print_json(&json!({ "id": id }))
        } else {
            println!("{id}")
        }
    }

    pub(crate) fn count(&self, what: &str, n: u64) {
        if self.mode == Mode::Json {
            self.print_json(&json!({ what: n }))
        } else {
            println!("{what} {n}")
        }
    }

    pub(crate) fn outcome(&self, id: i64, text: &str, outcome: &impl Serialize) {
        if self.mode == Mode::Json {
            self.print_json(&json!({ "id": id, "outcome": outcome }));
        } else {
            println!("job {id}: {text}");
        }
    }

    pub(crate) fn schema_status(&self, schema: &str, applied: Option<i32>, required: i32) {
        let state = match applied {
            None => "missing: run `jobq schema apply`",
            Some(v) if v < required => "outdated: run `jobq schema apply`",
            Some(v) if v > required => "newer than this jobq: upgrade jobq",
            Some(_) => "up to date",
        };
        if self.mode == Mode::Json {
            self.print_json(&json!({ "schema": schema, "applied": applied, "required": required, "state": state }));
        } else {
            let applied = applied.map_or("none".to_owned(), |v| v.to_string());
            println!("schema {schema}: applied {applied}, required {required} ({state})");
        }
    }

    pub(crate) fn jobs(&self, jobs: &[Job]) {
        if self.mode == Mode::Json {
            return self.print_json(&jobs);
        }
        self.print(&JOB_COLUMNS, jobs.iter().map(|j| self.job_row(j)).collect());
    }

    fn job_row(&self, j: &Job) -> Vec<String> {
        vec![
            j.id.to_string(),
            j.queue.clone(),
            j.task.clone(),
            j.status.to_string(),
            j.priority.to_string(),
            j.attempts.to_string(),
            j.lock.clone().unwrap_or_default(),
            self.time(Some(j.scheduled_at)),
            j.last_error.clone().unwrap_or_default(),
        ]
    }

    pub(crate) fn job(&self, j: &Job) {
        if self.mode == Mode::Json {
            return self.print_json(j);
        }
        println!("{}", self.render_job(j));
    }

    fn render_job(&self, j: &Job) -> String {
        let fields: [(&str, String); 16] = [
            ("id", j.id.to_string()),
            ("queue", j.queue.clone()),
            ("task", j.task.clone()),
            ("args", j.args.to_string()),
            ("status", j.status.to_string()),
            ("priority", j.priority.to_string()),
            ("lock", j.lock.clone().unwrap_or_default()),
            ("queueing lock", j.queueing_lock.clone().unwrap_or_default()),
            ("scheduled at", self.time(Some(j.scheduled_at))),
            ("attempts", j.attempts.to_string()),
            ("abort requested", j.abort_requested.to_string()),
            (
                "worker",
                j.worker_id.map(|w| w.to_string()).unwrap_or_default(),
            ),
            ("created at", self.time(Some(j.created_at))),
            ("started at", self.time(j.started_at)),
            ("finished at", self.time(j.finished_at)),
            ("last error", j.last_error.clone().unwrap_or_default()),
        ];
        let mut rows: Vec<Vec<String>> = fields
            .into_iter()
            .map(|(k, v)| vec![k.to_owned(), v])
            .collect();
        for e in &j.errors {
            rows.push(vec![
                format!("error, attempt {}", e.attempt),
                format!("{} {}", self.time(Some(e.at)), e.error),
            ]);
        }
        self.render(&["field", "value"], rows)
    }

    /// `jobq queues`: one row per queue, its jobs by status, its lag and whether it is paused.
    pub(crate) fn queues(&self, counts: &[QueueCount], lag: &[QueueLag]) {
        let queues = queue_rows(counts, lag);
        if self.mode == Mode::Json {
            return self.print_json(&queues);
        }
        println!("{}", self.render_queues(&queues));
    }

    fn render_queues(&self, queues: &[QueueRow<'_>]) -> String {
        let mut header = vec!["queue"];
        header.extend(Status::ALL.map(Status::as_str));
        header.extend(["due", "scheduled", "oldest due", "state"]);
        let rows = queues
            .iter()
            .map(|q| {
                let mut row = vec![q.queue.to_owned()];
                row.extend(Status::ALL.map(|s| q.counts.get(s.as_str()).unwrap_or(&0).to_string()));
                row.push(q.due.to_string());
                row.push(q.scheduled.to_string());
                row.push(q.oldest_due_age_seconds.map_or(String::new(), age));
                row.push(if q.paused { "paused" } else { "running" }.to_owned());
                row
            })
            .collect();
        self.render(&header, rows)
    }

    /// What a pause or resume did.
    pub(crate) fn steered(&self, queue: &str, pause: bool, changed: bool) {
        let text = match (pause, changed) {
            (true, true) => "paused",
            (true, false) => "unchanged (paused already)",
            (false, true) => "resumed",
            (false, false) => "unchanged (not paused)",
        };
        if self.mode == Mode::Json {
            self.print_json(&json!({ "queue": queue, "paused": pause, "changed": changed }));
        } else {
            println!("queue {queue}: {text}");
        }
    }

    pub(crate) fn workers(&self, workers: &[WorkerInfo]) {
        if self.mode == Mode::Json {
            return self.print_json(&workers);
        }
        let rows = workers
            .iter()
            .map(|w| {
                vec![
                    w.id.to_string(),
                    w.name.clone(),
                    w.queues.as_ref().map_or("all".to_owned(), |q| q.join(",")),
                    w.running.to_string(),
                    self.time(Some(w.started_at)),
                    self.time(Some(w.heartbeat_at)),
                ]
            })
            .collect();
        self.print(
            &[
                "id",
                "name",
                "queues",
                "running",
                "started",
                "last heartbeat",
            ],
            rows,
        );
    }
}

/// One queue as `jobq queues` shows it (and writes it with `--json`).
#[derive(Debug, Serialize)]
struct QueueRow<'a> {
    queue: &'a str,
    /// Jobs by status; a status without jobs is left out.
    counts: std::collections::BTreeMap<&'static str, i64>,
    due: i64,
    scheduled: i64,
    oldest_due_at: Option<DateTime<Utc>>,
    oldest_due_age_seconds: Option<f64>,
    paused: bool,
    paused_at: Option<DateTime<Utc>>,
}

/// Every queue that has jobs or is paused, by name: its counts by status with its lag beside them.
fn queue_rows<'a>(counts: &'a [QueueCount], lag: &'a [QueueLag]) -> Vec<QueueRow<'a>> {
    let mut rows: std::collections::BTreeMap<&str, QueueRow<'a>> = Default::default();
    for c in counts {
        let r = rows
            .entry(&c.queue)
            .or_insert_with(|| QueueRow::new(&c.queue));
        r.counts.insert(c.status.as_str(), c.count);
    }
    for l in lag {
        let r = rows
            .entry(&l.queue)
            .or_insert_with(|| QueueRow::new(&l.queue));
        r.due = l.due;
        r.scheduled = l.scheduled;
        r.oldest_due_at = l.oldest_due_at;
        r.oldest_due_age_seconds = l.oldest_due_age.map(|d| d.as_secs_f64());
        r.paused = l.paused();
        r.paused_at = l.paused_at;
    }
    rows.into_values().collect()
}

impl<'a> QueueRow<'a> {
    fn new(queue: &'a str) -> Self {
        Self {
            queue,
            counts: Default::default(),
            due: 0,
            scheduled: 0,
            oldest_due_at: None,
            oldest_due_age_seconds: None,
            paused: false,
            paused_at: None,
        }
    }
}

/// An age in whole seconds as people read it: `0s`, `42s`, `1h 2m 5s`, `3days 4h`.
fn age(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds as u64)).to_string()
}

/// The results of `jobq jobs retry|cancel|delete` by filter.
impl Output {
    /// What `--dry-run` found.
    pub(crate) fn bulk_dry_run(&self, verb: &str, matched: u64) {
        if self.mode == Mode::Json {
            self.print_json(&json!({ "action": verb, "matched": matched, "dry_run": true }));
        } else {
            println!("would {verb} {matched} matching jobs (dry run: nothing changed)");
        }
    }

    /// What a bulk run did, in one line (or one JSON object).
    pub(crate) fn bulk_summary(
        &self,
        action: crate::bulk::Action,
        matched: u64,
        total: &crate::bulk::BulkTotal,
    ) {
        let (verb, done_verb) = action.verb();
        if self.mode == Mode::Json {
            let mut value = json!({
                "action": verb,
                "matched": matched,
                done_verb: total.changed,
            });
            match action {
                crate::bulk::Action::Retry { reset_attempts } => {
                    value["conflicts"] = json!(total.conflicts);
                    value["attempts_reset"] = json!(reset_attempts);
                }
                crate::bulk::Action::Cancel { abort: true } => {
                    value["abort_requested"] = json!(total.abort_requested)
                }
                _ => {}
            }
            return self.print_json(&value);
        }
        let mut line = format!("{done_verb} {} of {matched} matching jobs", total.changed);
        match action {
            crate::bulk::Action::Retry { reset_attempts } => {
                line.push_str(if reset_attempts {
                    "; attempts reset to 0"
                } else {
                    "; attempts kept (each runs once more; --reset-attempts resets them)"
                });
                if total.conflicts > 0 {
                    line.push_str(&format!(
                        "; {} left as they were: another waiting job holds their queueing lock",
                        total.conflicts
                    ));
                }
            }
            crate::bulk::Action::Cancel { abort: true } => line.push_str(&format!(
                "; {} running asked to abort",
                total.abort_requested
            )),
            _ => {}
        }
        println!("{line}");
    }
}

/// The columns of `jobq jobs list`.
const JOB_COLUMNS: [&str; 9] = [
    "id",
    "queue",
    "task",
    "status",
    "priority",
    "attempts",
    "lock",
    "scheduled",
    "last error",
];

/// One field of plain text: a tab, a line break or a backslash in it escaped, so each row stays one line
/// of tab-separated fields.
fn plain_field(value: &str) -> String {
    let mut field = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => field.push_str("\\\\"),
            '\t' => field.push_str("\\t"),
            '\n' => field.push_str("\\n"),
            '\r' => field.push_str("\\r"),
            c => field.push(c),
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use jobq_core::Status;

    fn job() -> Job {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 1, 5, 0).single().unwrap();
        serde_json::from_value(json!({
            "id": 7, "queue": "emails", "task": "send", "args": {"to": "a"}, "priority": 0,
            "lock": null, "queueing_lock": null, "status": Status::Failed, "scheduled_at": at,
            "attempts": 1, "abort_requested": false, "worker_id": null, "created_at": at,
            "started_at": at, "finished_at": null, "last_error": "line one\nline\ttwo",
            "errors": [{"attempt": 1, "at": at, "error": "boom"}]
        }))
        .expect("a job")
    }

    #[test]
    fn a_terminal_gets_box_tables_with_times_in_utc() {
        let out = Output { mode: Mode::Table };
        let table = out.render(&JOB_COLUMNS, vec![out.job_row(&job())]);
        assert!(table.contains('│') && table.contains('─'), "{table}");
        assert!(table.contains("2026-12-02 01:05:00.000 UTC"), "{table}");
        let shown = out.render_job(&job());
        assert!(
            shown.contains("2026-12-02 01:05:00.000 UTC boom"),
            "{shown}"
        );
    }

    #[test]
    fn plain_text_is_one_line_per_row_with_rfc3339_times() {
        let out = Output { mode: Mode::Plain };
        let text = out.render(&JOB_COLUMNS, vec![out.job_row(&job())]);
        assert_eq!(
            text,
            "id\tqueue\ttask\tstatus\tpriority\tattempts\tlock\tscheduled\tlast error\n\
             7\temails\tsend\tfailed\t0\t1\t\t2026-12-02T01:05:00.000Z\tline one\\nline\\ttwo"
        );
        assert!(
            out.render_job(&job())
                .contains("started at\t2026-12-02T01:05:00.000Z")
        );
    }
}
