//! The deferral loops on the sync postgres crate: a `Client` and its `Transaction`, and the adapter's r2d2
//! pool.

use super::{Driver, ORDER, POOL, RAW_JOB, job, threads};
use crate::BoxError;
use jobq_postgres::prelude::*;
use postgres::{Client, NoTls, Statement, types::Type};
use serde_json::Value;
use std::time::Duration;

/// postgres, with the raw statements prepared once, as a careful user would, and jobq's kept in a
/// [`StatementCache`].
pub(crate) struct SyncPostgres {
    client: Client,
    order: Statement,
    raw: Statement,
    statements: StatementCache,
    pool: PoolExecutor,
}

impl SyncPostgres {
    /// One connection for the transaction loops, and the adapter's pool of [`POOL`] connections.
    pub(crate) fn connect(url: &str) -> Result<Self, BoxError> {
        let mut client = Client::connect(url, NoTls)?;
        let order = client.prepare_typed(ORDER, &[Type::TEXT])?;
        let raw = client.prepare_typed(RAW_JOB, &[Type::TEXT, Type::TEXT])?;
        Ok(Self {
            client,
            order,
            raw,
            statements: StatementCache::new(),
            pool: PoolExecutor::connect(url, POOL)?,
        })
    }
}

impl Driver for SyncPostgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn jobq_in_tx(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError> {
        let mut tx = self.client.transaction()?;
        tx.execute(&self.order, &[&"book"])?;
        jobq.defer_job(job)
            .run_blocking(self.statements.on(&mut tx))?;
        tx.commit()?;
        Ok(())
    }

    fn raw_in_tx(&mut self, args: &Value) -> Result<(), BoxError> {
        let mut tx = self.client.transaction()?;
        tx.execute(&self.order, &[&"book"])?;
        tx.execute(&self.raw, &[&"process_order", &args.to_string()])?;
        tx.commit()?;
        Ok(())
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
