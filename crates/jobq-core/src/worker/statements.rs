//! The worker's statements, one method each on [`Jobq`], with typed arguments and results: the worker's
//! loops never assemble SQL arguments themselves.

use super::complete::Completion;
use crate::limits::read_json;
use crate::{Error, Job, JobId, Jobq, NewJob, Query};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// A row of a fetch: a job, or one the worker cannot read (already `doing` on this worker, so it must be
/// ended, not forgotten).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // nearly every row is a job, moved on at once
pub(super) enum Fetched {
    Job(Job),
    Unreadable {
        id: JobId,
        attempt: i32,
        reason: String,
    },
}

/// Above this many queues a fetch names them by "registered" instead of listing them (the SQL function
/// `fetch_jobs`, migration 7, walks them differently above the same count).
const MANY_QUEUES: usize = 16;

/// What a heartbeat learned.
#[derive(Debug, Deserialize)]
pub(super) struct Heartbeat {
    /// Running jobs of this worker whose abort was requested.
    pub(super) aborts: Vec<JobId>,
    /// Jobs the server had `doing` for this worker that it did not hold, now put back.
    pub(super) released: i64,
}

impl Jobq {
    /// Registers a worker; returns its id.
    pub(super) fn register_worker(&self, name: &str, queues: Option<&[String]>) -> Query<i64> {
        let arg = json!({ "name": name, "queues": queues });
        self.json_query(&self.statements().worker_register, arg, |rows: Vec<i64>| {
            rows.first()
                .copied()
                .ok_or_else(|| Error::InvalidInput("the server returned no worker id".into()))
        })
    }

    /// Removes a worker that stops.
    pub(super) fn unregister_worker(&self, worker: i64) -> Query<()> {
        let arg = json!({ "worker_id": worker });
        self.json_query(
            &self.statements().worker_unregister,
            arg,
            |_: Vec<serde_json::Value>| Ok(()),
        )
    }

    /// Takes up to `limit` runnable jobs of `queues` (all when `None`) and `tasks` (any when `None`) for
    /// `worker`, marking them `doing`. `queues` must be the list `worker` registered with: more than
    /// [`MANY_QUEUES`] are not sent again, the server reads them from the worker's row.
    pub(super) fn fetch(
        &self,
        worker: i64,
        queues: Option<&[String]>,
        tasks: Option<&[String]>,
        limit: usize,
    ) -> Query<Vec<Fetched>> {
        let queues = match queues {
            Some(many) if many.len() > MANY_QUEUES => json!("registered"),
            listed => json!(listed),
        };
        let arg = json!({ "worker_id": worker, "queues": queues, "tasks": tasks, "limit": limit });
        self.query(&self.statements().fetch, Some(arg.to_string()), |rows| {
            Ok(rows.iter().filter_map(|row| fetched(row)).collect())
        })
    }

    /// Ends jobs running on `worker`; returns those it could not end yet (someone else's lock was in the
    /// way), which the worker reports again later.
    pub(super) fn complete(&self, worker: i64, ends: &[Completion]) -> Query<Vec<JobId>> {
        #[derive(Deserialize)]
        struct Ended {
            busy: Vec<JobId>,
        }
        let arg = json!({ "worker_id": worker, "jobs": ends });
        self.json_query(&self.statements().complete, arg, |rows: Vec<Ended>| {
            Ok(rows.into_iter().next().map(|r| r.busy).unwrap_or_default())
        })
    }

    /// Records that `worker` is alive and holds `held`; the server puts back any other job it has `doing`
    /// for the worker. `None` when the worker was declared dead and removed.
    pub(super) fn heartbeat(&self, worker: i64, held: &[JobId]) -> Query<Option<Heartbeat>> {
        let arg = json!({ "worker_id": worker, "held": held });
        self.json_query(
            &self.statements().worker_heartbeat,
            arg,
            |rows: Vec<Option<Heartbeat>>| Ok(rows.into_iter().next().flatten()),
        )
    }

    /// Removes workers silent for longer than `stalled_after` and hands their running jobs (and running
    /// jobs of no worker) to `worker`, which ends each per its task's strategy.
    pub(super) fn recover_stalled(&self, worker: i64, stalled_after: Duration) -> Query<Vec<Job>> {
        let arg = json!({
            "worker_id": worker,
            "stalled_after_seconds": stalled_after.as_secs_f64(),
        });
        self.json_query(&self.statements().recover_stalled, arg, Ok)
    }

    /// Defers the job of one cron tick unless some worker already did.
    pub(super) fn defer_tick(&self, key: &str, tick: DateTime<Utc>, job: &NewJob) -> Query<()> {
        let mut job = job.clone();
        job.options.scheduled_at = Some(tick);
        let arg = json!({ "task": key, "tick": tick, "job": job });
        self.json_query(
            &self.statements().defer_periodic,
            arg,
            |_: Vec<serde_json::Value>| Ok(()),
        )
    }

    /// Sends `token` on the jobs channel, so a worker can check that its LISTEN connection hears.
    pub(super) fn notify_probe(&self, token: &str) -> Query<()> {
        self.query(
            &self.statements().notify_probe,
            Some(token.to_owned()),
            |_| Ok(()),
        )
    }
}

/// A fetched row as a job, or what little of it can be read.
fn fetched(row: &str) -> Option<Fetched> {
    let error = match read_json::<Job>(row) {
        Ok(job) => return Some(Fetched::Job(job)),
        Err(e) => e,
    };
    match read_json::<Head>(row) {
        Ok(Head { id, attempts }) => Some(Fetched::Unreadable {
            id,
            attempt: attempts,
            reason: format!("the worker could not read the stored job: {error}"),
        }),
        Err(_) => {
            tracing::error!(%error, "a fetched row could not be read at all");
            None
        }
    }
}

/// The id and attempt of a fetched row (an array in the order of `Job`'s fields, `fetch.sql`), read when
/// the rest of it cannot be.
struct Head {
    id: JobId,
    attempts: i32,
}

/// Where `attempts` is in a fetched row.
const ATTEMPTS_AT: usize = 9;

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> serde::de::Visitor<'de> for Row {
            type Value = Head;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a fetched job's columns")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut row: A) -> Result<Head, A::Error> {
                use serde::de::{Error, IgnoredAny};
                let short = || A::Error::custom("a fetched row without its id and attempt");
                let id = row.next_element::<JobId>()?.ok_or_else(short)?;
                for _ in 1..ATTEMPTS_AT {
                    row.next_element::<IgnoredAny>()?.ok_or_else(short)?;
                }
                let attempts = row.next_element::<i32>()?.ok_or_else(short)?;
                while row.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Head { id, attempts })
            }
        }
        d.deserialize_seq(Row)
    }
}
