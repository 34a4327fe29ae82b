//! The deferral loops on sqlx: a `PgConnection` and its `Transaction` (passed as `&mut *tx`), and the
//! adapter's `PgPool`.

use super::{Driver, ORDER, POOL, RAW_JOB, job, runtime, tasks};
use crate::BoxError;
use jobq_sqlx::prelude::*;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use tokio::runtime::Runtime;

/// sqlx, whose statement cache prepares the raw statements once.
pub(crate) struct Sqlx {
    rt: Runtime,
    conn: PgConnection,
    pool: PoolExecutor,
}

impl Sqlx {
    /// One connection for the transaction loops, and the adapter's pool of [`POOL`] connections.
    pub(crate) fn connect(url: &str) -> Result<Self, BoxError> {
        let rt = runtime()?;
        let (conn, pool) = rt.block_on(async {
            let conn = PgConnection::connect(url).await?;
            let pool = PoolExecutor::connect(url, POOL)?;
            Ok::<_, BoxError>((conn, pool))
        })?;
        Ok(Self { rt, conn, pool })
    }
}

impl Driver for Sqlx {
    fn name(&self) -> &'static str {
        "sqlx"
    }

    fn jobq_in_tx(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError> {
        self.rt.block_on(async {
            let mut tx = self.conn.begin().await?;
            sqlx::query(ORDER).bind("book").execute(&mut *tx).await?;
            jobq.defer_job(job).run(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn raw_in_tx(&mut self, args: &Value) -> Result<(), BoxError> {
        self.rt.block_on(async {
            let mut tx = self.conn.begin().await?;
            sqlx::query(ORDER).bind("book").execute(&mut *tx).await?;
            sqlx::query(RAW_JOB)
                .bind("process_order")
                .bind(args.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
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
        tasks(&self.rt, callers, n, |i| async move {
            jobq.defer_job(job(i)).run(pool).await?;
            Ok(())
        })
    }

    fn defer_batch(&mut self, jobq: &Jobq, jobs: Vec<NewJob>) -> Result<(), BoxError> {
        self.rt.block_on(jobq.defer_batch(jobs).run(&self.pool))?;
        Ok(())
    }
}
