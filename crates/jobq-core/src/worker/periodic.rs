//! Periodic tasks: a cron schedule and the job to defer at each tick.

use crate::{Error, NewJob, Task};
use chrono::{DateTime, Utc};
use std::str::FromStr;

/// A job deferred at every tick of a cron schedule. Several workers may carry the same periodic task: a
/// claim row per tick in the database makes each tick defer one job.
#[derive(Debug, Clone)]
pub struct Periodic {
    pub(crate) key: String,
    schedule: cron::Schedule,
    pub(crate) job: NewJob,
}

impl Periodic {
    /// `job` at every tick of `cron`: five fields (`min hour day month weekday`), or six or seven with
    /// seconds first (and a year last).
    ///
    /// ```
    /// use jobq_core::{NewJob, worker::Periodic};
    /// let nightly = Periodic::new("30 2 * * *", NewJob::new("cleanup", serde_json::json!({}))).unwrap();
    /// assert!(Periodic::new("not a schedule", NewJob::new("x", serde_json::json!({}))).is_err());
    /// ```
    pub fn new(cron: &str, job: NewJob) -> Result<Self, Error> {
        let fields = cron.split_whitespace().count();
        let expression = if fields == 5 {
            format!("0 {cron}")
        } else {
            cron.to_owned()
        };
        let schedule = cron::Schedule::from_str(&expression)
            .map_err(|e| Error::InvalidInput(format!("cron schedule {cron:?}: {e}")))?;
        Ok(Self {
            key: job.task.clone(),
            schedule,
            job,
        })
    }

    /// A typed task at every tick of `cron`.
    pub fn task<T: Task>(cron: &str, task: &T) -> Result<Self, Error> {
        Self::new(cron, NewJob::from_task(task)?)
    }

    /// Names this periodic task, when one task is deferred on several schedules (the task name by default).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The ticks after `after`, up to and including `until`.
    pub(crate) fn ticks(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        self.schedule
            .after(&after)
            .take_while(|t| *t <= until)
            .take(100)
            .collect()
    }
}

/// Defers each periodic task's job once per tick, whichever worker gets there first.
pub(super) async fn defer_periodic<B: super::Backend>(
    shared: std::sync::Arc<super::shared::Shared<B>>,
    periodic: Vec<Periodic>,
) {
    let mut last = Utc::now();
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let now = Utc::now();
        for p in &periodic {
            for tick in p.ticks(last, now) {
                if let Err(e) = shared
                    .run(shared.jobq.defer_tick(&p.key, tick, &p.job))
                    .await
                {
                    tracing::warn!(error = %e, task = %p.key, %tick, "deferring a periodic job failed");
                }
            }
        }
        last = now;
    }
}
