//! The SQL text, from the crate's `sql/` folder, rendered for one schema.
//!
//! `{schema}` in the files becomes the quoted schema name and `{channel}` the NOTIFY channel. The schema name
//! is checked to be a plain identifier first; no other value is ever put into SQL text.

use crate::Error;
use std::sync::Arc;

/// The numbered migrations, oldest first: (version, name, SQL).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_initial",
        include_str!("../sql/migrations/0001_initial.sql"),
    ),
    (
        2,
        "0002_reliable_worker",
        include_str!("../sql/migrations/0002_reliable_worker.sql"),
    ),
    (
        3,
        "0003_caller_safety",
        include_str!("../sql/migrations/0003_caller_safety.sql"),
    ),
    (
        4,
        "0004_known_tasks",
        include_str!("../sql/migrations/0004_known_tasks.sql"),
    ),
    (
        5,
        "0005_queue_pause",
        include_str!("../sql/migrations/0005_queue_pause.sql"),
    ),
    (
        6,
        "0006_trace_context",
        include_str!("../sql/migrations/0006_trace_context.sql"),
    ),
    (
        7,
        "0007_fetch_at_scale",
        include_str!("../sql/migrations/0007_fetch_at_scale.sql"),
    ),
    (
        8,
        "0008_ordered_walks",
        include_str!("../sql/migrations/0008_ordered_walks.sql"),
    ),
    (
        9,
        "0009_column_batches",
        include_str!("../sql/migrations/0009_column_batches.sql"),
    ),
    (
        10,
        "0010_ends_by_row_address",
        include_str!("../sql/migrations/0010_ends_by_row_address.sql"),
    ),
    (
        11,
        "0011_unsorted_column_batches",
        include_str!("../sql/migrations/0011_unsorted_column_batches.sql"),
    ),
];

/// The schema version this library needs.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const MIGRATE: &str = include_str!("../sql/migrate.sql");
const GRANTS: &str = include_str!("../sql/grants.sql");

/// Every statement jobq runs, rendered for one schema.
#[derive(Debug)]
#[cfg_attr(not(feature = "worker"), allow(dead_code))] // the worker's statements
pub(crate) struct Statements {
    pub(crate) schema: Arc<str>,
    pub(crate) channel: String,
    pub(crate) migrate: Arc<str>,
    pub(crate) schema_exists: Arc<str>,
    pub(crate) schema_version: Arc<str>,
    pub(crate) defer: Arc<str>,
    pub(crate) defer_columns: Arc<str>,
    pub(crate) defer_one: Arc<str>,
    pub(crate) get_job: Arc<str>,
    pub(crate) list_jobs: Arc<str>,
    pub(crate) count_matching: Arc<str>,
    pub(crate) retry_matching: Arc<str>,
    pub(crate) reset_attempts: Arc<str>,
    pub(crate) cancel_matching: Arc<str>,
    pub(crate) delete_matching: Arc<str>,
    pub(crate) cancel: Arc<str>,
    pub(crate) retry: Arc<str>,
    pub(crate) fetch: Arc<str>,
    pub(crate) complete: Arc<str>,
    pub(crate) worker_register: Arc<str>,
    pub(crate) worker_heartbeat: Arc<str>,
    pub(crate) worker_unregister: Arc<str>,
    pub(crate) notify_probe: Arc<str>,
    pub(crate) recover_stalled: Arc<str>,
    pub(crate) defer_periodic: Arc<str>,
    pub(crate) prune: Arc<str>,
    pub(crate) queue_counts: Arc<str>,
    pub(crate) list_workers: Arc<str>,
    pub(crate) pause_queue: Arc<str>,
    pub(crate) resume_queue: Arc<str>,
    pub(crate) paused_queues: Arc<str>,
    pub(crate) queue_lag: Arc<str>,
}

impl Statements {
    pub(crate) fn new(schema: &str) -> Result<Self, Error> {
        check_identifier(schema)?;
        let channel = format!("jobq_{schema}");
        let render = |text: &str| -> Arc<str> {
            text.replace("{schema}", &format!("\"{schema}\""))
                .replace("{channel}", &channel)
                .into()
        };
        let migrations: String = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                let tag = format!("$jobq_m{version}$");
                format!(
                    "    IF NOT EXISTS (SELECT 1 FROM {{schema}}.migrations WHERE version = {version}) THEN\n\
                     \x20       EXECUTE {tag}\n{sql}\n{tag};\n\
                     \x20       INSERT INTO {{schema}}.migrations (version, name) VALUES ({version}, '{name}');\n\
                     \x20   END IF;\n"
                )
            })
            .collect();
        let migrate = MIGRATE
            .replace("{migrations}", &migrations)
            .replace("{latest}", &SCHEMA_VERSION.to_string());
        Ok(Self {
            migrate: render(&migrate),
            schema_exists: render(include_str!("../sql/queries/schema_exists.sql")),
            schema_version: render(include_str!("../sql/queries/schema_version.sql")),
            defer: render(include_str!("../sql/queries/defer.sql")),
            defer_columns: render(include_str!("../sql/queries/defer_columns.sql")),
            defer_one: render(include_str!("../sql/queries/defer_one.sql")),
            get_job: render(include_str!("../sql/queries/get_job.sql")),
            list_jobs: render(include_str!("../sql/queries/list_jobs.sql")),
            count_matching: render(include_str!("../sql/queries/count_matching.sql")),
            retry_matching: render(include_str!("../sql/queries/retry_matching.sql")),
            reset_attempts: render(include_str!("../sql/queries/reset_attempts.sql")),
            cancel_matching: render(include_str!("../sql/queries/cancel_matching.sql")),
            delete_matching: render(include_str!("../sql/queries/delete_matching.sql")),
            cancel: render(include_str!("../sql/queries/cancel.sql")),
            retry: render(include_str!("../sql/queries/retry.sql")),
            fetch: render(include_str!("../sql/queries/fetch.sql")),
            complete: render(include_str!("../sql/queries/complete.sql")),
            worker_register: render(include_str!("../sql/queries/worker_register.sql")),
            worker_heartbeat: render(include_str!("../sql/queries/worker_heartbeat.sql")),
            worker_unregister: render(include_str!("../sql/queries/worker_unregister.sql")),
            notify_probe: render(include_str!("../sql/queries/notify_probe.sql")),
            recover_stalled: render(include_str!("../sql/queries/recover_stalled.sql")),
            defer_periodic: render(include_str!("../sql/queries/defer_periodic.sql")),
            prune: render(include_str!("../sql/queries/prune.sql")),
            queue_counts: render(include_str!("../sql/queries/queue_counts.sql")),
            list_workers: render(include_str!("../sql/queries/list_workers.sql")),
            pause_queue: render(include_str!("../sql/queries/pause_queue.sql")),
            resume_queue: render(include_str!("../sql/queries/resume_queue.sql")),
            paused_queues: render(include_str!("../sql/queries/paused_queues.sql")),
            queue_lag: render(include_str!("../sql/queries/queue_lag.sql")),

            schema: schema.into(),
            channel,
        })
    }
}

impl Statements {
    /// The GRANT statements that give `role` what jobq needs, and no more.
    pub(crate) fn grants(&self, role: &str) -> Result<String, Error> {
        check_identifier(role)?;
        Ok(GRANTS
            .replace("{schema}", &format!("\"{}\"", self.schema))
            .replace("{role}", &format!("\"{role}\"")))
    }
}

/// Schema and role names are lowercase identifiers of at most 40 characters, so they can be quoted safely and the
/// channel name derived from them stays within PostgreSQL's 63-byte limit.
fn check_identifier(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 40 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "name {name:?} must be 1 to 40 characters of a-z, 0-9 and _, not starting with a digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        assert!(Statements::new("jobq").is_ok());
        assert!(Statements::new("my_app_jobs2").is_ok());
        for bad in ["", "2x", "Jobq", "a;drop", "a\"b", "x y", &"a".repeat(41)] {
            assert!(
                matches!(Statements::new(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_placeholder_is_rendered() {
        let s = Statements::new("jobq").unwrap();
        for text in [
            &s.migrate,
            &s.defer,
            &s.defer_one,
            &s.cancel,
            &s.retry,
            &s.list_jobs,
            &s.get_job,
        ] {
            assert!(!text.contains('{') || !text.contains("{schema}"), "{text}");
            assert!(
                !text.contains("{channel}") && !text.contains("{latest}"),
                "{text}"
            );
        }
        assert!(s.migrate.contains("\"jobq\".jobs"));
    }
}
