//! The deferral loops on diesel: a `PgConnection` inside `conn.transaction(..)`, and the adapter's r2d2 pool.
//! The hand-written rows use diesel's query builder, whose statements diesel prepares once and caches.

use super::{Driver, POOL, job, threads};
use crate::BoxError;
use diesel::prelude::*;
use jobq_diesel::prelude::*;
use serde_json::Value;
use std::time::Duration;

diesel::table! {
    orders (id) {
        id -> Int8,
        item -> Text,
    }
}

diesel::table! {
    raw_jobs (id) {
        id -> Int8,
        queue -> Text,
        task -> Text,
        args -> Jsonb,
    }
}

/// diesel, with the hand-written rows through its query builder.
pub(crate) struct Diesel {
    conn: PgConnection,
    pool: jobq_diesel::PgPool,
}

impl Diesel {
    /// One connection for the transaction loops, and the adapter's pool of [`POOL`] connections.
    pub(crate) fn connect(url: &str) -> Result<Self, BoxError> {
        Ok(Self {
            conn: PgConnection::establish(url)?,
            pool: jobq_diesel::pool(url, POOL)?,
        })
    }
}

impl Driver for Diesel {
    fn name(&self) -> &'static str {
        "diesel"
    }

    fn jobq_in_tx(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError> {
        self.conn.transaction::<_, BoxError, _>(|conn| {
            diesel::insert_into(orders::table)
                .values(orders::item.eq("book"))
                .execute(conn)?;
            jobq.defer_job(job).run_blocking(conn)?;
            Ok(())
        })
    }

    fn raw_in_tx(&mut self, args: &Value) -> Result<(), BoxError> {
        self.conn.transaction::<_, BoxError, _>(|conn| {
            diesel::insert_into(orders::table)
                .values(orders::item.eq("book"))
                .execute(conn)?;
            diesel::insert_into(raw_jobs::table)
                .values((
                    raw_jobs::queue.eq("default"),
                    raw_jobs::task.eq("process_order"),
                    raw_jobs::args.eq(args),
                ))
                .execute(conn)?;
            Ok(())
        })
    }

    fn defer_pooled(
        &mut self,
        jobq: &Jobq,
        callers: usize,
        n: usize,
    ) -> Result<Duration, BoxError> {
        let pool = &self.pool;
        threads(callers, n, |i| {
            jobq.defer_job(job(i)).run_blocking(pool)?;
            Ok(())
        })
    }

    fn defer_batch(&mut self, jobq: &Jobq, jobs: Vec<NewJob>) -> Result<(), BoxError> {
        jobq.defer_batch(jobs).run_blocking(&self.pool)?;
        Ok(())
    }
}
