//! The same story told through each driver: what differs is only how each one holds a transaction.

pub(crate) mod diesel;
pub(crate) mod postgres;
pub(crate) mod sqlx;
pub(crate) mod tokio_postgres;

use jobq_core::{JobOptions, NewJob, Task};
use serde::{Deserialize, Serialize};

/// Processes one order: the demo's main task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProcessOrder {
    pub(crate) adapter: String,
    pub(crate) order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
    fn options(&self) -> JobOptions {
        JobOptions {
            queue: Some("orders".into()),
            queueing_lock: Some(format!("order-{}", self.order_id)),
            ..JobOptions::default()
        }
    }
}

/// A no-op job, deferred in bulk to show throughput.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Tally {
    pub(crate) adapter: String,
}

impl Task for Tally {
    const NAME: &'static str = "tally";
}

/// The order ids one adapter uses: its own block of a hundred.
pub(crate) fn order_id(adapter_index: i64, n: i64) -> i64 {
    adapter_index * 100 + n
}

/// `count` bulk jobs for `adapter`.
pub(crate) fn tallies(adapter: &str, count: usize) -> Vec<NewJob> {
    let job = NewJob::from_task(&Tally {
        adapter: adapter.to_owned(),
    })
    .expect("serializable");
    vec![job; count]
}

/// What one adapter's story did, for the log.
#[derive(Debug, Default)]
pub(crate) struct Story {
    pub(crate) lines: Vec<String>,
}

impl Story {
    pub(crate) fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }
}
