//! jobq's conformance suite: the semantics every adapter must show, written once.
//!
//! An adapter's test file implements [`Harness`] for its driver and calls [`conformance_tests!`], which
//! expands to one `#[tokio::test]` per case of [`suite`]. Each case gets its own fresh database from
//! [`jobq_tempdb`] and observes the effects through a separate connection of its own, so what is checked
//! never depends on the adapter under test.
//!
//! ```ignore
//! struct Sqlx;
//! impl jobq_testkit::Harness for Sqlx { /* … */ }
//! jobq_testkit::conformance_tests!(Sqlx);
//! ```

use jobq_core::{Error, Query};
use std::future::Future;

mod observer;
pub mod suite;
pub mod worker;

pub use observer::{Listener, Observer};
pub use worker::WorkerHarness;

/// How the suite reaches one adapter: a caller-held connection and a pool, both used through the adapter's
/// public API.
pub trait Harness: Send + Sync + 'static {
    /// The adapter's connector name as it appears in [`jobq_core::ConnectorError::connector`].
    const CONNECTOR: &'static str;
    /// A connection the test holds, used through the adapter's caller-supplied path.
    type Conn: CallerConnection;
    /// A pool, used through the adapter's pooled path.
    type Pool: PooledConnection;
    /// Connects to `url`.
    fn connect(url: &str) -> impl Future<Output = Self::Conn> + Send;
    /// Builds a pool of a few connections to `url`.
    fn pool(url: &str) -> impl Future<Output = Self::Pool> + Send;
}

/// A connection the test holds, driven the way an application drives its driver.
pub trait CallerConnection: Send + 'static {
    /// Begins a transaction with the driver's own API (sqlx `begin`, diesel's transaction manager, …).
    fn begin(&mut self) -> impl Future<Output = ()> + Send;
    /// Commits the open transaction with the driver's own API.
    fn commit(&mut self) -> impl Future<Output = ()> + Send;
    /// Rolls back the open transaction with the driver's own API.
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;
    /// Runs SQL of the test's own (inside the open transaction, if any) and returns the first column of the
    /// first row as text, if there is one; a failure's message on error.
    fn sql(&mut self, sql: &str) -> impl Future<Output = Result<Option<String>, String>> + Send;
    /// Runs a jobq query through the adapter's caller-supplied path, inside the open transaction if any.
    fn run<T: Send + 'static>(
        &mut self,
        query: Query<T>,
    ) -> impl Future<Output = Result<T, Error>> + Send;
}

/// A pool, driven through the adapter's pooled path.
pub trait PooledConnection: Send + Sync + 'static {
    /// Runs a jobq query through the adapter's pooled path.
    fn run<T: Send + 'static>(
        &self,
        query: Query<T>,
    ) -> impl Future<Output = Result<T, Error>> + Send;
}
