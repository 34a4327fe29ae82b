//! The narrow traits a driver implements, and the conversions that let users pass their own connections.
//!
//! A driver adapter writes one method: run a statement with at most one text parameter and return the first
//! column of every row as text. jobq's statements take their input as one JSON document and return JSON, so
//! no driver ever maps more than text. Everything else is written once in this crate.

use crate::ConnectorError;
use std::future::Future;

/// An async connection (or pool) that runs jobq's statements.
///
/// `sql` takes `$1` as text when `arg` is `Some`, and no parameter when it is `None`; every row it returns
/// has one non-null text column, named `jobq`. An implementation must not begin, commit or roll back transactions, nor
/// change session settings.
///
/// Implemented for: `&mut E` where `E: AsyncExecutor`; each adapter's pool and connection wrappers.
pub trait AsyncExecutor: Send {
    /// Runs `sql` and returns the first column of each row.
    fn query(
        &mut self,
        sql: &str,
        arg: Option<&str>,
    ) -> impl Future<Output = Result<Vec<String>, ConnectorError>> + Send;
}

/// A blocking connection (or pool) that runs jobq's statements; see [`AsyncExecutor`] for the contract.
///
/// Implemented for: `&mut E` where `E: BlockingExecutor`; the sync adapters' pool and connection wrappers.
pub trait BlockingExecutor {
    /// Runs `sql` and returns the first column of each row.
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError>;
}

impl<E: AsyncExecutor + ?Sized> AsyncExecutor for &mut E {
    fn query(
        &mut self,
        sql: &str,
        arg: Option<&str>,
    ) -> impl Future<Output = Result<Vec<String>, ConnectorError>> + Send {
        (**self).query(sql, arg)
    }
}

impl<E: BlockingExecutor + ?Sized> BlockingExecutor for &mut E {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        (**self).query(sql, arg)
    }
}

/// Marks the identity conversion: an [`AsyncExecutor`] or [`BlockingExecutor`] is its own executor.
#[derive(Debug)]
pub enum Direct {}

/// Something a user passes to [`Operation::run`](crate::Operation::run): a driver's connection, transaction
/// or pool.
///
/// `Via` is a marker type owned by the adapter crate, which is what lets an adapter implement this trait for
/// its driver's types despite the orphan rule. A conversion may refuse a connection it cannot use at run
/// time, with [`ConnectorError`] of kind [`Unsupported`](crate::ErrorKind::Unsupported), before any SQL is sent.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection, transaction or pool jobq can run on",
    note = "pass your driver's connection, transaction or pool, and import the adapter crate's prelude \
            (e.g. `use jobq_sqlx::prelude::*;`)"
)]
pub trait IntoAsyncExecutor<Via> {
    /// The executor this turns into.
    type Executor: AsyncExecutor;
    /// Turns the connection into an executor, or refuses it.
    fn into_executor(self) -> Result<Self::Executor, ConnectorError>;
}

/// The blocking twin of [`IntoAsyncExecutor`], for the sync drivers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection, transaction or pool jobq can run on",
    note = "pass your driver's connection, transaction or pool, and import the adapter crate's prelude \
            (e.g. `use jobq_sqlx::prelude::*;`)"
)]
pub trait IntoBlockingExecutor<Via> {
    /// The executor this turns into.
    type Executor: BlockingExecutor;
    /// Turns the connection into an executor, or refuses it.
    fn into_executor(self) -> Result<Self::Executor, ConnectorError>;
}

impl<E: AsyncExecutor> IntoAsyncExecutor<Direct> for E {
    type Executor = E;
    fn into_executor(self) -> Result<E, ConnectorError> {
        Ok(self)
    }
}

impl<E: BlockingExecutor> IntoBlockingExecutor<Direct> for E {
    type Executor = E;
    fn into_executor(self) -> Result<E, ConnectorError> {
        Ok(self)
    }
}
