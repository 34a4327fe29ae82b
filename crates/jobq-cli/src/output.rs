//! Tables for people, JSON for scripts.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use jobq_core::{Job, JobId, QueueCount, WorkerInfo};
use serde::Serialize;
use serde_json::json;

/// Where results go: stdout, as tables or JSON.
pub(crate) struct Output {
    pub(crate) json: bool,
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

impl Output {
    fn print_json(&self, value: &impl Serialize) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializable")
        );
    }

    pub(crate) fn message(&self, text: &str) {
        if self.json {
            self.print_json(&json!({ "message": text }));
        } else {
            println!("{text}");
        }
    }

    pub(crate) fn deferred(&self, id: JobId) {
        if self.json {
            self.print_json(&json!({ "id": id }))
        } else {
            println!("{id}")
        }
    }

    pub(crate) fn count(&self, what: &str, n: u64) {
        if self.json {
            self.print_json(&json!({ what: n }))
        } else {
            println!("{what} {n}")
        }
    }

    pub(crate) fn outcome(&self, id: i64, text: &str, outcome: &impl Serialize) {
        if self.json {
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
        if self.json {
            self.print_json(&json!({ "schema": schema, "applied": applied, "required": required, "state": state }));
        } else {
            let applied = applied.map_or("none".to_owned(), |v| v.to_string());
            println!("schema {schema}: applied {applied}, required {required} ({state})");
        }
    }

    pub(crate) fn jobs(&self, jobs: &[Job]) {
        if self.json {
            return self.print_json(&jobs);
        }
        let mut t = table(&[
            "id",
            "queue",
            "task",
            "status",
            "priority",
            "attempts",
            "lock",
            "scheduled",
            "last error",
        ]);
        for j in jobs {
            t.add_row(vec![
                j.id.to_string(),
                j.queue.clone(),
                j.task.clone(),
                j.status.to_string(),
                j.priority.to_string(),
                j.attempts.to_string(),
                j.lock.clone().unwrap_or_default(),
                time(Some(j.scheduled_at)),
                j.last_error.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
    }

    pub(crate) fn job(&self, j: &Job) {
        if self.json {
            return self.print_json(j);
        }
        let mut t = table(&["field", "value"]);
        let rows: [(&str, String); 16] = [
            ("id", j.id.to_string()),
            ("queue", j.queue.clone()),
            ("task", j.task.clone()),
            ("args", j.args.to_string()),
            ("status", j.status.to_string()),
            ("priority", j.priority.to_string()),
            ("lock", j.lock.clone().unwrap_or_default()),
            ("queueing lock", j.queueing_lock.clone().unwrap_or_default()),
            ("scheduled at", time(Some(j.scheduled_at))),
            ("attempts", j.attempts.to_string()),
            ("abort requested", j.abort_requested.to_string()),
            (
                "worker",
                j.worker_id.map(|w| w.to_string()).unwrap_or_default(),
            ),
            ("created at", time(Some(j.created_at))),
            ("started at", time(j.started_at)),
            ("finished at", time(j.finished_at)),
            ("last error", j.last_error.clone().unwrap_or_default()),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_owned(), v]);
        }
        for e in &j.errors {
            t.add_row(vec![
                format!("error, attempt {}", e.attempt),
                format!("{} {}", time(Some(e.at)), e.error),
            ]);
        }
        println!("{t}");
    }

    pub(crate) fn queues(&self, counts: &[QueueCount]) {
        if self.json {
            return self.print_json(&counts);
        }
        let mut t = table(&["queue", "status", "jobs"]);
        for c in counts {
            t.add_row(vec![
                c.queue.clone(),
                c.status.to_string(),
                c.count.to_string(),
            ]);
        }
        println!("{t}");
    }

    pub(crate) fn workers(&self, workers: &[WorkerInfo]) {
        if self.json {
            return self.print_json(&workers);
        }
        let mut t = table(&[
            "id",
            "name",
            "queues",
            "running",
            "started",
            "last heartbeat",
        ]);
        for w in workers {
            let queues = w.queues.as_ref().map_or("all".to_owned(), |q| q.join(","));
            t.add_row(vec![
                w.id.to_string(),
                w.name.clone(),
                queues,
                w.running.to_string(),
                time(Some(w.started_at)),
                time(Some(w.heartbeat_at)),
            ]);
        }
        println!("{t}");
    }
}
