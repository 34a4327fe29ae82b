//! [`Query`]: one jobq operation as data, run by any executor, async or blocking.

use crate::executor::{AsyncExecutor, BlockingExecutor, IntoAsyncExecutor, IntoBlockingExecutor};
use crate::{ConnectorError, Error, ErrorKind};
use std::future::Future;
use std::sync::Arc;

type Decode<T> = Box<dyn FnOnce(Vec<String>) -> Result<Step<T>, Error> + Send>;

/// What a statement's rows lead to: the result, or one more statement.
pub(crate) enum Step<T> {
    Done(T),
    Then(Query<T>),
}

struct Statement<T> {
    schema: Arc<str>,
    sql: Arc<str>,
    arg: Option<String>,
    decode: Decode<T>,
}

/// One jobq operation, ready to run on a connection: a statement, its JSON argument and how to read its rows.
///
/// Build one with the methods of [`Jobq`](crate::Jobq), then run it with [`Operation::run`] on an async
/// connection or [`Operation::run_blocking`] on a blocking one. Input that jobq refuses is reported when the
/// query runs, before any SQL is sent.
#[must_use = "a query does nothing until it is run on a connection"]
pub struct Query<T> {
    statement: Result<Statement<T>, Error>,
}

impl<T> std::fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.statement {
            Ok(s) => f
                .debug_struct("Query")
                .field("sql", &s.sql)
                .field("arg", &s.arg)
                .finish(),
            Err(e) => f.debug_struct("Query").field("error", e).finish(),
        }
    }
}

impl<T> Query<T> {
    pub(crate) fn new(
        schema: &Arc<str>,
        sql: &Arc<str>,
        arg: Option<String>,
        decode: impl FnOnce(Vec<String>) -> Result<Step<T>, Error> + Send + 'static,
    ) -> Self {
        Self {
            statement: Ok(Statement {
                schema: schema.clone(),
                sql: sql.clone(),
                arg,
                decode: Box::new(decode),
            }),
        }
    }

    /// A query that runs `self`, then continues with what `next` makes of its result.
    pub(crate) fn and_then<U>(
        self,
        next: impl FnOnce(T) -> Result<Step<U>, Error> + Send + 'static,
    ) -> Query<U>
    where
        T: Send + 'static,
        U: 'static,
    {
        match self.statement {
            Err(e) => Query::refused(e),
            Ok(s) => Query {
                statement: Ok(Statement {
                    schema: s.schema,
                    sql: s.sql,
                    arg: s.arg,
                    decode: Box::new(move |rows| match (s.decode)(rows)? {
                        Step::Done(value) => next(value),
                        Step::Then(query) => Ok(Step::Then(query.and_then(next))),
                    }),
                }),
            },
        }
    }

    /// A query that fails with `error` without sending anything.
    pub(crate) fn refused(error: Error) -> Self {
        Self {
            statement: Err(error),
        }
    }

    /// Runs the query on an async connection, transaction or pool.
    pub async fn run<Via, C>(self, conn: C) -> Result<T, Error>
    where
        C: IntoAsyncExecutor<Via>,
    {
        let mut query = self;
        let mut executor = conn.into_executor()?;
        loop {
            let statement = query.statement?;
            let rows = executor
                .query(&statement.sql, statement.arg.as_deref())
                .await;
            match statement.finish(rows)? {
                Step::Done(value) => return Ok(value),
                Step::Then(next) => query = next,
            }
        }
    }

    /// Runs the query on a blocking connection, transaction or pool.
    pub fn run_blocking<Via, C>(self, conn: C) -> Result<T, Error>
    where
        C: IntoBlockingExecutor<Via>,
    {
        let mut query = self;
        let mut executor = conn.into_executor()?;
        loop {
            let statement = query.statement?;
            let rows = executor.query(&statement.sql, statement.arg.as_deref());
            match statement.finish(rows)? {
                Step::Done(value) => return Ok(value),
                Step::Then(next) => query = next,
            }
        }
    }
}

impl<T> Statement<T> {
    fn finish(self, rows: Result<Vec<String>, ConnectorError>) -> Result<Step<T>, Error> {
        match rows {
            Ok(rows) => (self.decode)(rows),
            // Every jobq statement names only jobq's own tables and functions.
            Err(e) if e.kind == ErrorKind::UndefinedObject => Err(Error::SchemaMissing {
                schema: self.schema.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Anything that turns into a [`Query`]: the builders of [`Jobq`](crate::Jobq) and `Query` itself.
pub trait Operation: Sized {
    /// What the operation returns.
    type Output: Send;

    /// The query this operation runs.
    fn into_query(self) -> Query<Self::Output>;

    /// Runs the operation on an async connection, transaction or pool.
    fn run<Via, C>(self, conn: C) -> impl Future<Output = Result<Self::Output, Error>> + Send
    where
        C: IntoAsyncExecutor<Via> + Send,
    {
        self.into_query().run(conn)
    }

    /// Runs the operation on a blocking connection, transaction or pool.
    fn run_blocking<Via, C>(self, conn: C) -> Result<Self::Output, Error>
    where
        C: IntoBlockingExecutor<Via>,
    {
        self.into_query().run_blocking(conn)
    }
}

impl<T: Send> Operation for Query<T> {
    type Output = T;
    fn into_query(self) -> Query<T> {
        self
    }
}
