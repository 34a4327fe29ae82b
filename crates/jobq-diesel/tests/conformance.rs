//! The conformance suite through diesel: the caller's `PgConnection` with transactions opened by diesel's
//! own transaction manager (as `conn.transaction(..)` does), and an r2d2 pool. diesel is blocking, so every
//! call runs on tokio's blocking threads. Plain blocking use through `conn.transaction(|conn| …)` itself is
//! in `smoke.rs`.

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use jobq_core::{Error, Query};
use jobq_diesel::prelude::*;
use std::sync::{Arc, Mutex};

struct DieselHarness;

struct Conn(Arc<Mutex<PgConnection>>);

struct DieselPool(jobq_diesel::PgPool);

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    value: Option<String>,
}

impl Conn {
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut PgConnection) -> T + Send + 'static,
    ) -> T {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap()))
            .await
            .unwrap()
    }
}

impl jobq_testkit::Harness for DieselHarness {
    const CONNECTOR: &'static str = "jobq-diesel";
    type Conn = Conn;
    type Pool = DieselPool;
    async fn connect(url: &str) -> Conn {
        let url = url.to_owned();
        let conn = tokio::task::spawn_blocking(move || PgConnection::establish(&url).unwrap())
            .await
            .unwrap();
        Conn(Arc::new(Mutex::new(conn)))
    }
    async fn pool(url: &str) -> DieselPool {
        DieselPool(jobq_diesel::pool(url, 4).unwrap())
    }
}

impl jobq_testkit::CallerConnection for Conn {
    async fn begin(&mut self) {
        self.with(|c| AnsiTransactionManager::begin_transaction(c).unwrap())
            .await;
    }
    async fn commit(&mut self) {
        self.with(|c| AnsiTransactionManager::commit_transaction(c).unwrap())
            .await;
    }
    async fn rollback(&mut self) {
        self.with(|c| AnsiTransactionManager::rollback_transaction(c).unwrap())
            .await;
    }
    async fn sql(&mut self, sql: &str) -> Result<Option<String>, String> {
        let sql = sql.to_owned();
        self.with(move |c| {
            if sql.trim_start().to_uppercase().starts_with("SELECT") {
                // diesel reads columns by name: take the first column of the first row as text.
                let wrapped = format!(
                    "SELECT (SELECT value FROM json_each_text(row_to_json(x)) LIMIT 1) AS value FROM ({sql}) x LIMIT 1"
                );
                let rows: Vec<Value> = diesel::sql_query(wrapped).load(c).map_err(|e| e.to_string())?;
                Ok(rows.into_iter().next().and_then(|r| r.value))
            } else {
                diesel::sql_query(sql).execute(c).map(|_| None).map_err(|e| e.to_string())
            }
        })
        .await
    }
    async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
        self.with(move |c| query.run_blocking(c)).await
    }
}

impl jobq_testkit::PooledConnection for DieselPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let pool = self.0.clone();
        tokio::task::spawn_blocking(move || query.run_blocking(&pool))
            .await
            .unwrap()
    }
}

impl jobq_testkit::WorkerHarness for DieselHarness {
    type Backend = PoolExecutor;
    const LISTENS: bool = false;
    async fn backend(url: &str) -> Self::Backend {
        PoolExecutor::connect(url, 4).unwrap()
    }
}

jobq_testkit::conformance_tests!(DieselHarness);
jobq_testkit::worker_tests!(DieselHarness);
