//! The deferral loops on tokio-postgres: a `Client` and its `Transaction`, and the adapter's deadpool pool.

use super::{Driver, ORDER, POOL, RAW_JOB, job, runtime, tasks};
use crate::BoxError;
use jobq_tokio_postgres::prelude::*;
use serde_json::Value;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls, Statement, types::Type};

/// tokio-postgres, with the raw statements prepared once, as a careful user would, and jobq's kept in a
/// [`StatementCache`].
pub(crate) struct TokioPostgres {
    rt: Runtime,
    client: Client,
    order: Statement,
    raw: Statement,
    statements: StatementCache,
    pool: PoolExecutor,
}

impl TokioPostgres {
    /// One connection for the transaction loops, and the adapter's pool of [`POOL`] connections.
    pub(crate) fn connect(url: &str) -> Result<Self, BoxError> {
        let rt = runtime()?;
        let (client, order, raw, pool) = rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(connection);
            let order = client.prepare_typed(ORDER, &[Type::TEXT]).await?;
            let raw = client
                .prepare_typed(RAW_JOB, &[Type::TEXT, Type::TEXT])
                .await?;
            let pool = PoolExecutor::connect(url, POOL)?;
            Ok::<_, BoxError>((client, order, raw, pool))
        })?;
        Ok(Self {
            rt,
            client,
            order,
            raw,
            statements: StatementCache::new(),
            pool,
        })
    }
}

impl Driver for TokioPostgres {
    fn name(&self) -> &'static str {
        "tokio_postgres"
    }

    fn jobq_in_tx(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError> {
        let Self {
            rt,
            client,
            order,
            statements,
            ..
        } = self;
        rt.block_on(async {
            let tx = client.transaction().await?;
            tx.execute(&*order, &[&"book"]).await?;
            jobq.defer_job(job).run(statements.on(&tx)).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn raw_in_tx(&mut self, args: &Value) -> Result<(), BoxError> {
        let Self {
            rt,
            client,
            order,
            raw,
            ..
        } = self;
        rt.block_on(async {
            let tx = client.transaction().await?;
            tx.execute(&*order, &[&"book"]).await?;
            tx.execute(&*raw, &[&"process_order", &args.to_string()])
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
