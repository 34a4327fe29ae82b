//! Minimal executors over the `tokio-postgres` and `postgres` clients, so jobq-core is tested against a real
//! server without depending on an adapter crate.

#![allow(dead_code, unreachable_pub)]

use jobq_core::{AsyncExecutor, BlockingExecutor, ConnectorError, ErrorKind};
use tokio_postgres::types::{ToSql, Type};

fn map(e: tokio_postgres::Error) -> ConnectorError {
    let server = e.as_db_error().map(|db| {
        (
            db.code().code().to_owned(),
            db.constraint().map(str::to_owned),
            db.message().to_owned(),
        )
    });
    match server {
        Some((code, constraint, message)) => {
            ConnectorError::from_server("test", &code, constraint.as_deref(), message, e)
        }
        None => ConnectorError::new("test", ErrorKind::Connection, e.to_string()).with_source(e),
    }
}

fn params<'a>(arg: &'a Option<&'a str>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    arg.as_ref()
        .map(|a| (a as &(dyn ToSql + Sync), Type::TEXT))
        .into_iter()
        .collect()
}

/// An async executor over a borrowed tokio-postgres client.
pub struct Async<'a>(pub &'a tokio_postgres::Client);

impl AsyncExecutor for Async<'_> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let rows = self.0.query_typed(sql, &params(&arg)).await.map_err(map)?;
        rows.iter().map(|r| r.try_get(0).map_err(map)).collect()
    }
}

/// A blocking executor over a borrowed postgres client.
pub struct Blocking<'a>(pub &'a mut postgres::Client);

impl BlockingExecutor for Blocking<'_> {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let rows = self.0.query_typed(sql, &params(&arg)).map_err(map)?;
        rows.iter().map(|r| r.try_get(0).map_err(map)).collect()
    }
}

/// Connects an async client to `url`.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A worker backend over one shared tokio-postgres client, with LISTEN on a connection of its own.
#[derive(Clone)]
pub struct Backend {
    url: String,
    client: std::sync::Arc<tokio_postgres::Client>,
}

impl Backend {
    pub async fn connect(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: std::sync::Arc::new(connect(url).await),
        }
    }
}

/// An owned executor over the backend's client.
pub struct Shared(std::sync::Arc<tokio_postgres::Client>);

impl AsyncExecutor for Shared {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        Async(&self.0).query(sql, arg).await
    }
}

impl jobq_core::worker::Backend for Backend {
    type Executor = Shared;

    fn executor(&self) -> Shared {
        Shared(self.client.clone())
    }

    async fn listen(
        &self,
        channels: Vec<String>,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<jobq_core::worker::Notification>, ConnectorError>
    {
        use futures_util::StreamExt;
        let (client, mut connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(map)?;
        let client = std::sync::Arc::new(client);
        let keep_open = client.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(async move {
            let _client = keep_open;
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let note = jobq_core::worker::Notification {
                        channel: n.channel().to_owned(),
                        payload: n.payload().to_owned(),
                    };
                    if tx.send(note).is_err() {
                        return;
                    }
                }
            }
        });
        let sql: String = channels
            .iter()
            .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
            .collect();
        client.batch_execute(&sql).await.map_err(map)?;
        Ok(rx)
    }
}
