//! jobq's conformance suite through sqlx, three times over:
//!
//! - `deref`: on `&mut *tx` (a `Transaction<'static, Postgres>` from `pool.begin()`) and `&mut *conn` (a
//!   `PoolConnection<Postgres>`), the `&mut PgConnection` path users take; pooled cases on `&pool`.
//! - `handles`: on `&mut tx` and `&mut conn` directly; pooled cases and the worker on a [`PoolExecutor`].
//! - `any`: the same through sqlx's `Any` driver connected to PostgreSQL (`&mut *tx` of a
//!   `Transaction<Any>`, which is `&mut AnyConnection`), with the crate's `any` feature
//!   (`cargo test --all-features`).
//!
//! Each caller connection is a pool of exactly one connection, so the transaction from `pool.begin()` and
//! the statements outside it run on the same server connection, as they would on one held connection.

use jobq_core::{Error, Query};
use jobq_sqlx::PoolExecutor;
use jobq_testkit::worker::WorkerHarness;
use jobq_testkit::{CallerConnection, Harness, PooledConnection};
#[cfg(feature = "any")]
use sqlx::Any;
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{Pool, Postgres, Row, Transaction};

/// A connection of the test's own, used the way an application uses sqlx: `pool.begin()`, `tx.commit()`.
struct Conn<DB: sqlx::Database> {
    pool: Pool<DB>,
    /// The connection, while no transaction is open.
    idle: Option<PoolConnection<DB>>,
    /// The open transaction, which holds the same connection.
    tx: Option<Transaction<'static, DB>>,
    /// Pass `&mut tx` / `&mut conn` rather than `&mut *tx` / `&mut *conn`.
    handles: bool,
}

impl<DB: sqlx::Database> Conn<DB> {
    async fn open(url: &str, handles: bool) -> Self {
        let pool = PoolOptions::<DB>::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap();
        let idle = Some(pool.acquire().await.unwrap());
        Self {
            pool,
            idle,
            tx: None,
            handles,
        }
    }
}

/// Implements [`CallerConnection`] for `Conn<$db>`; a macro because the statements need the concrete
/// driver types, whose executor bounds are unwieldy to spell generically.
macro_rules! caller_connection {
    ($db:ty) => {
        impl CallerConnection for Conn<$db> {
            async fn begin(&mut self) {
                assert!(self.tx.is_none(), "a transaction is already open");
                drop(self.idle.take());
                self.tx = Some(self.pool.begin().await.unwrap());
            }
            async fn commit(&mut self) {
                self.tx
                    .take()
                    .expect("open transaction")
                    .commit()
                    .await
                    .unwrap();
                self.idle = Some(self.pool.acquire().await.unwrap());
            }
            async fn rollback(&mut self) {
                let tx = self.tx.take().expect("open transaction");
                tx.rollback().await.unwrap();
                self.idle = Some(self.pool.acquire().await.unwrap());
            }
            async fn sql(&mut self, sql: &str) -> Result<Option<String>, String> {
                let query = sqlx::query::<$db>(sql);
                let row = match (&mut self.tx, &mut self.idle) {
                    (Some(tx), _) => query.fetch_optional(&mut **tx).await,
                    (None, Some(conn)) => query.fetch_optional(&mut **conn).await,
                    (None, None) => unreachable!(),
                }
                .map_err(|e| e.to_string())?;
                Ok(row.and_then(|row| row.try_get::<Option<String>, _>(0).unwrap()))
            }
            async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
                match (&mut self.tx, &mut self.idle, self.handles) {
                    (Some(tx), _, false) => query.run(&mut **tx).await,
                    (Some(tx), _, true) => query.run(tx).await,
                    (None, Some(conn), false) => query.run(&mut **conn).await,
                    (None, Some(conn), true) => query.run(conn).await,
                    (None, None, _) => unreachable!(),
                }
            }
        }
    };
}

caller_connection!(Postgres);
#[cfg(feature = "any")]
caller_connection!(Any);

/// A `PgPool`, used as users do: `run(&pool)`.
struct PgPool(sqlx::PgPool);

impl PooledConnection for PgPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(&self.0).await
    }
}

async fn pg_pool(url: &str) -> sqlx::PgPool {
    PoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap()
}

/// The worker's executor, used as `run(&executor)`.
struct Executor(PoolExecutor);

impl PooledConnection for Executor {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(&self.0).await
    }
}

struct Deref;

impl Harness for Deref {
    const CONNECTOR: &'static str = jobq_sqlx::CONNECTOR;
    type Conn = Conn<Postgres>;
    type Pool = PgPool;
    async fn connect(url: &str) -> Conn<Postgres> {
        Conn::open(url, false).await
    }
    async fn pool(url: &str) -> PgPool {
        PgPool(pg_pool(url).await)
    }
}

impl WorkerHarness for Deref {
    type Backend = PoolExecutor;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> PoolExecutor {
        PoolExecutor::new(pg_pool(url).await)
    }
}

struct Handles;

impl Harness for Handles {
    const CONNECTOR: &'static str = jobq_sqlx::CONNECTOR;
    type Conn = Conn<Postgres>;
    type Pool = Executor;
    async fn connect(url: &str) -> Conn<Postgres> {
        Conn::open(url, true).await
    }
    async fn pool(url: &str) -> Executor {
        Executor(PoolExecutor::connect(url, 4).unwrap())
    }
}

impl WorkerHarness for Handles {
    type Backend = PoolExecutor;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> PoolExecutor {
        PoolExecutor::connect(url, 4).unwrap()
    }
}

#[cfg(feature = "any")]
struct ViaAny;

#[cfg(feature = "any")]
impl Harness for ViaAny {
    const CONNECTOR: &'static str = jobq_sqlx::CONNECTOR;
    type Conn = Conn<Any>;
    type Pool = PgPool;
    async fn connect(url: &str) -> Conn<Any> {
        sqlx::any::install_default_drivers();
        Conn::open(url, false).await
    }
    async fn pool(url: &str) -> PgPool {
        PgPool(pg_pool(url).await)
    }
}

mod deref {
    jobq_testkit::conformance_tests!(super::Deref);
    jobq_testkit::worker_tests!(super::Deref);
}

mod handles {
    jobq_testkit::conformance_tests!(super::Handles);
    jobq_testkit::worker_tests!(super::Handles);
}

#[cfg(feature = "any")]
mod any {
    jobq_testkit::conformance_tests!(super::ViaAny);
}
