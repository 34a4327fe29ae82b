//! jobq's web dashboard: an [axum](https://docs.rs/axum) router an application mounts in its own, or
//! that `jobq dashboard` serves on its own.
//!
//! Server-rendered pages (no JavaScript but a 20-line vendored script that refreshes the queues' live counts):
//!
//! | path | what |
//! | --- | --- |
//! | `/` | queues: jobs by status, due, scheduled, oldest due age, paused state, throughput; pause / resume |
//! | `/jobs` | jobs filtered by queue, task, status and created / finished time, keyset paging; bulk actions on every job matching |
//! | `/jobs/{id}` | one job: arguments, every attempt's error, timings, lock, queueing lock; retry, cancel, abort, delete |
//! | `/workers` | workers: name, queues, heartbeat age, running jobs |
//! | `/metrics` | Prometheus text: the `jobq_queue_*` gauges (live jobs only, from `Jobq::queue_lag`), then the application's own ([`Dashboard::metrics_text`]) |
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobq_core::Jobq;
//! use jobq_tokio_postgres::PoolExecutor;
//!
//! let backend = PoolExecutor::connect("postgres://app@localhost/app", 4)?;
//! let dashboard = jobq_web::Dashboard::new(backend, Jobq::default())
//!     .token(std::env::var("JOBQ_DASHBOARD_TOKEN")?)
//!     .router();
//! let app = axum::Router::new().nest("/jobq", dashboard);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! - **Reading** needs nothing: put the dashboard behind your application's own authentication, or on
//!   loopback, if job arguments are confidential.
//! - **Actions** (pause, resume, retry, cancel, abort, delete) need the access token
//!   ([`Dashboard::token`]): a login form sets an `HttpOnly`, `SameSite=Strict` cookie signed with a key
//!   drawn when the router is built (so a restart logs everyone out), or a script sends
//!   `Authorization: Bearer <token>`. The token is compared in constant time (HMAC-SHA-256 of both sides).
//!   Without a token, actions are refused unless [`Dashboard::allow_actions_without_token`] says otherwise.
//! - [`Dashboard::read_only`] renders no action and answers every action route with 403.
//! - **CSRF:** state changes are POST only; each form carries a token derived from a per-browser cookie
//!   and checked on the server, and a request whose `Sec-Fetch-Site` is not `same-origin`, or whose
//!   `Origin` is not the `Host` it was sent to, is refused.
//! - Every string from the database (task names, arguments, errors) is escaped by maud, and each page is
//!   sent with a `Content-Security-Policy` that allows only the dashboard's own script and stylesheet.
//! - Bad input (a filter value, an id, a time) gets a 400 page saying what was wrong, checked with
//!   [`jobq_core::limits`] before any SQL is sent.

#![forbid(unsafe_code)]

mod error;
mod filter;
mod handlers;
mod prometheus;
mod security;
mod views;

use jobq_core::Jobq;
use jobq_core::worker::Backend;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use prometheus::render_queue_gauges;

/// The guide, docs/dashboard.md: included only for rustdoc's tests, so its example is compiled (the
/// published crate does not carry docs/).
#[cfg(doctest)]
#[doc = include_str!("../../../docs/dashboard.md")]
struct DashboardGuide;

/// The application's own Prometheus text, appended to `GET /metrics`.
type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// The dashboard: a backend to read and steer the queue through, and its options. Build the router with
/// [`router`](Self::router).
///
/// `B` is any [`Backend`]: each adapter's `PoolExecutor` (`jobq_tokio_postgres::PoolExecutor`,
/// `jobq_sqlx::PoolExecutor`, …); every request runs its statements on a fresh
/// [`Backend::executor`].
#[derive(Clone)]
pub struct Dashboard<B> {
    backend: B,
    jobq: Jobq,
    read_only: bool,
    token: Option<String>,
    allow_actions_without_token: bool,
    metrics_text: Option<MetricsText>,
    page_size: u32,
    query_timeout: Duration,
}

impl<B: fmt::Debug> fmt::Debug for Dashboard<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("backend", &self.backend)
            .field("jobq", &self.jobq)
            .field("read_only", &self.read_only)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "allow_actions_without_token",
                &self.allow_actions_without_token,
            )
            .field("metrics_text", &self.metrics_text.is_some())
            .field("page_size", &self.page_size)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// How long one statement of a request may take by default before the page answers 503 (see
/// [`Dashboard::query_timeout`]).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most jobs one page of `/jobs` lists (`?limit=`).
pub const MAX_PAGE_SIZE: u32 = 500;

impl<B: Backend> Dashboard<B> {
    /// A dashboard over `backend` for jobq in `jobq`'s schema: reading allowed, actions refused until a
    /// [`token`](Self::token) is set.
    pub fn new(backend: B, jobq: Jobq) -> Self {
        Self {
            backend,
            jobq,
            read_only: false,
            token: None,
            allow_actions_without_token: false,
            metrics_text: None,
            page_size: 50,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        }
    }

    /// Renders no action form and refuses every action route with 403 (the default is `false`).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The access token that actions need: typed into the login form, or sent as
    /// `Authorization: Bearer <token>`. An empty token is no token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Allows actions when no [`token`](Self::token) is set (CSRF checks still apply): for an
    /// application that mounts the dashboard behind its own authentication. Off by default, so that a
    /// dashboard without a token can only be read.
    pub fn allow_actions_without_token(mut self, allow: bool) -> Self {
        self.allow_actions_without_token = allow;
        self
    }

    /// Appends the application's own Prometheus text to `GET /metrics`, e.g.
    /// `move || handle.render()` with `metrics_exporter_prometheus::PrometheusHandle`, so one endpoint
    /// serves the worker's metrics and the queue gauges.
    pub fn metrics_text(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics_text = Some(Arc::new(render));
        self
    }

    /// How many jobs a page of `/jobs` lists when the request does not say (`?limit=`, at most
    /// [`MAX_PAGE_SIZE`]); 50 by default. Clamped to `1..=MAX_PAGE_SIZE`.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// How long the dashboard waits for one statement ([`DEFAULT_QUERY_TIMEOUT`] unless set): past it the
    /// page answers 503 saying it timed out, so no request waits on the database without a bound. The
    /// connections' own bounds (keepalives, TCP user timeout) still apply underneath.
    pub fn query_timeout(mut self, limit: Duration) -> Self {
        self.query_timeout = limit;
        self
    }

    /// The router: mount it at the root or under a prefix (`Router::nest("/jobq", …)`); every link is
    /// relative to where it is mounted.
    ///
    /// # Panics
    ///
    /// When the operating system has no random source for the cookie key (`getrandom` fails).
    pub fn router(self) -> axum::Router {
        let keys = security::Keys::new(self.token.as_deref());
        let state = Arc::new(State {
            backend: self.backend,
            jobq: self.jobq,
            read_only: self.read_only,
            allow_actions_without_token: self.allow_actions_without_token,
            metrics_text: self.metrics_text,
            page_size: self.page_size,
            query_timeout: self.query_timeout,
            keys,
            previous_counts: Mutex::new(None),
            page_rows: Mutex::new(None),
        });
        handlers::router(state)
    }
}

/// What every request shares.
pub(crate) struct State<B> {
    pub(crate) backend: B,
    pub(crate) jobq: Jobq,
    pub(crate) read_only: bool,
    pub(crate) allow_actions_without_token: bool,
    pub(crate) metrics_text: Option<MetricsText>,
    pub(crate) page_size: u32,
    pub(crate) query_timeout: Duration,
    pub(crate) keys: security::Keys,
    /// The finished jobs per queue at the previous queues page, for throughput without another statement.
    pub(crate) previous_counts: Mutex<Option<(Instant, HashMap<String, i64>)>>,
    /// The queue rows of the latest full queues page: the live refresh keeps their finished counts and
    /// throughput, and reads only `queue_lag` for the rest.
    pub(crate) page_rows: Mutex<Option<Vec<views::QueueRow>>>,
}

impl<B: Backend> State<B> {
    /// Runs one operation on a fresh executor, bounded by the query timeout.
    pub(crate) async fn run<O: jobq_core::Operation>(
        &self,
        op: O,
    ) -> Result<O::Output, jobq_core::Error> {
        match tokio::time::timeout(self.query_timeout, op.run(self.backend.executor())).await {
            Ok(result) => result,
            Err(_) => Err(jobq_core::ConnectorError::new(
                "jobq-web",
                jobq_core::ErrorKind::Timeout,
                format!("no answer within {:?}", self.query_timeout),
            )
            .into()),
        }
    }
}
