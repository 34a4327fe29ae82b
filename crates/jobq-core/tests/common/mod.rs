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
