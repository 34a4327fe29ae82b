//! What a worker needs from an adapter: an owned executor for its pool, and optionally LISTEN.

use crate::{AsyncExecutor, BlockingExecutor, ConnectorError, ErrorKind};
use std::future::Future;
use tokio::sync::mpsc;

/// A notification received on a LISTENing connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The channel.
    pub channel: String,
    /// The payload.
    pub payload: String,
}

/// The database side of a worker: statements on a pool, and notifications.
///
/// Implemented for: each adapter's pool type; [`SpawnBlocking`] for any cloneable blocking pool (polling
/// only, no LISTEN).
pub trait Backend: Clone + Send + Sync + 'static {
    /// An executor that takes a connection from the pool for each statement.
    type Executor: AsyncExecutor + 'static;

    /// A fresh executor.
    fn executor(&self) -> Self::Executor;

    /// Opens a dedicated connection that LISTENs on `channels` and forwards what it receives. The receiver
    /// ends when the connection is lost; the worker then polls and calls this again. The default says
    /// LISTEN is not supported, and the worker polls.
    fn listen(
        &self,
        channels: Vec<String>,
    ) -> impl Future<Output = Result<mpsc::UnboundedReceiver<Notification>, ConnectorError>> + Send
    {
        let _ = channels;
        async {
            Err(ConnectorError::new(
                "jobq-core",
                ErrorKind::Unsupported,
                "this backend cannot LISTEN",
            ))
        }
    }
}

/// Runs a cloneable blocking executor (a sync pool) on tokio's blocking threads, so the async worker can
/// use the sync adapters.
#[derive(Debug, Clone)]
pub struct SpawnBlocking<E>(pub E);

impl<E: BlockingExecutor + Clone + Send + 'static> AsyncExecutor for SpawnBlocking<E> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let mut executor = self.0.clone();
        let (sql, arg) = (sql.to_owned(), arg.map(str::to_owned));
        tokio::task::spawn_blocking(move || executor.query(&sql, arg.as_deref()))
            .await
            .map_err(|e| {
                ConnectorError::new(
                    "jobq-core",
                    ErrorKind::Other,
                    format!("blocking query task: {e}"),
                )
            })?
    }
}

impl<E: BlockingExecutor + Clone + Send + Sync + 'static> Backend for SpawnBlocking<E> {
    type Executor = Self;
    fn executor(&self) -> Self {
        self.clone()
    }
}
