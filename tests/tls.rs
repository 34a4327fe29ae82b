//! TLS everywhere (#14): against a throwaway server that takes TCP connections only over TLS
//! (`jobq_tempdb::tls_server()`: `ssl=on`, a CA made at start, `hostssl` lines only), every adapter's pool
//! defers and reads a job and a worker on its pool runs jobs, every one of their connections encrypted (a
//! LISTEN connection among them where the adapter LISTENs); `sslmode` and `sslrootcert` are honoured as libpq
//! does, and a wrong CA or `sslmode=disable` fails with a message that names the cause.

use jobq_core::prelude::*;
use jobq_core::worker::{Backend, JobContext, Worker};
use jobq_tempdb::{TlsServer, tls_server};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl Task for Ping {
    const NAME: &'static str = "ping";
}

fn server() -> &'static TlsServer {
    tls_server().unwrap_or_else(|e| panic!("jobq-tempdb: {e}"))
}

/// A fresh migrated database on the TLS-only server, and its `verify-full` URL (TCP, `localhost`).
fn database() -> (jobq_tempdb::TestDatabase, String) {
    let db = server()
        .database()
        .expect("a database on the TLS-only server");
    let url = server().verify_full_url(db.name());
    (db, url)
}

/// What each adapter's test does through that adapter's own pool API.
trait Adapter {
    type Backend: Backend;
    /// The pool as a worker backend.
    fn backend(&self) -> Self::Backend;
    /// Defers `Ping { n }` through the pool.
    async fn defer(&self, n: u32) -> JobId;
    /// Reads the job's status through the pool.
    async fn status(&self, id: JobId) -> Status;
}

/// The adapter's pool defers a job and reads it back; a worker on that pool runs it, then runs a job
/// deferred while it waits (woken by LISTEN where `listens`); meanwhile every connection to the database is
/// encrypted, a LISTEN connection among them where `listens`.
async fn pool_and_worker<A: Adapter>(adapter: A, db: &str, listens: bool) {
    let first = adapter.defer(1).await;
    assert_eq!(adapter.status(first).await, Status::Todo);
    let (ran, mut runs) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::builder(Jobq::default(), adapter.backend())
        .listen(listens)
        // Where the worker LISTENs, only a notification wakes it in time for the second job.
        .poll_interval(if listens {
            Duration::from_secs(600)
        } else {
            Duration::from_millis(100)
        })
        .task(move |p: Ping, _: JobContext| {
            let ran = ran.clone();
            async move {
                let _ = ran.send(p.n);
                Ok(())
            }
        })
        .build();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let running = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    let next = async |runs: &mut tokio::sync::mpsc::UnboundedReceiver<u32>| {
        tokio::time::timeout(Duration::from_secs(120), runs.recv())
            .await
            .expect("the worker ran no job within 120 s")
            .expect("the worker stopped")
    };
    assert_eq!(next(&mut runs).await, 1);
    if listens {
        wait_for_listen(db).await;
    }
    let second = adapter.defer(2).await;
    assert_eq!(next(&mut runs).await, 2);
    for id in [first, second] {
        while adapter.status(id).await != Status::Succeeded {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    all_encrypted(db, listens).await;
    stop.cancel();
    running.await.unwrap().expect("the worker stops cleanly");
}

/// A plain connection to the server's `postgres` database through its Unix socket: it watches the test's
/// database from outside, so it is none of that database's connections.
async fn observer() -> tokio_postgres::Client {
    jobq_tests::connect(&server().server().url("postgres")).await
}

/// Waits until a connection to `db` has run LISTEN.
async fn wait_for_listen(db: &str) {
    let observer = observer().await;
    for _ in 0..2400 {
        let row = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                &[&db],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no connection to {db} ran LISTEN within 120 s");
}

/// Every connection to `db` is encrypted (pg_stat_ssl), and one of them has LISTENed when `listens`.
async fn all_encrypted(db: &str, listens: bool) {
    let row = observer()
        .await
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl), \
                    count(*) FILTER (WHERE s.ssl AND a.query LIKE 'LISTEN%'), \
                    string_agg(DISTINCT s.version, ', ') \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    let (all, encrypted, listening): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let versions: Option<String> = row.get(3);
    println!(
        "{db}: {encrypted} of {all} connections encrypted ({versions:?}), {listening} listening"
    );
    assert!(all > 0, "no connection to {db}");
    assert_eq!(encrypted, all, "a connection to {db} is not encrypted");
    if listens {
        assert!(listening > 0, "no encrypted LISTEN connection to {db}");
    }
}

struct TokioPostgres(jobq_tokio_postgres::PoolExecutor);

impl Adapter for TokioPostgres {
    type Backend = jobq_tokio_postgres::PoolExecutor;
    fn backend(&self) -> Self::Backend {
        self.0.clone()
    }
    async fn defer(&self, n: u32) -> JobId {
        Jobq::default()
            .defer(&Ping { n })
            .run(&self.0)
            .await
            .unwrap()
    }
    async fn status(&self, id: JobId) -> Status {
        Jobq::default().status(id).run(&self.0).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokio_postgres_pool_and_worker_over_tls() {
    let (db, url) = database();
    let executor = jobq_tokio_postgres::PoolExecutor::connect(&url, 4).unwrap();
    pool_and_worker(TokioPostgres(executor), db.name(), true).await;
}

struct SyncPostgres(jobq_postgres::PoolExecutor);

impl Adapter for SyncPostgres {
    type Backend = jobq_postgres::PoolExecutor;
    fn backend(&self) -> Self::Backend {
        self.0.clone()
    }
    async fn defer(&self, n: u32) -> JobId {
        let pool = self.0.clone();
        blocking(move || Jobq::default().defer(&Ping { n }).run_blocking(&pool)).await
    }
    async fn status(&self, id: JobId) -> Status {
        let pool = self.0.clone();
        blocking(move || Jobq::default().status(id).run_blocking(&pool)).await
    }
}

/// Runs a blocking jobq call off the runtime (the sync drivers must not run on its threads).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_pool_and_worker_over_tls() {
    let (db, url) = database();
    let executor = jobq_postgres::PoolExecutor::connect(&url, 4).unwrap();
    pool_and_worker(SyncPostgres(executor), db.name(), true).await;
}

struct Sqlx(jobq_sqlx::PoolExecutor);

impl Adapter for Sqlx {
    type Backend = jobq_sqlx::PoolExecutor;
    fn backend(&self) -> Self::Backend {
        self.0.clone()
    }
    async fn defer(&self, n: u32) -> JobId {
        Jobq::default()
            .defer(&Ping { n })
            .run(&self.0)
            .await
            .unwrap()
    }
    async fn status(&self, id: JobId) -> Status {
        Jobq::default().status(id).run(&self.0).await.unwrap()
    }
}

/// sqlx reads `sslmode` and `sslrootcert` itself, and LISTENs with the pool's options.
#[tokio::test(flavor = "multi_thread")]
async fn sqlx_pool_and_worker_over_tls() {
    let (db, url) = database();
    let executor = jobq_sqlx::PoolExecutor::connect(&url, 4).unwrap();
    pool_and_worker(Sqlx(executor), db.name(), true).await;
}

struct Diesel(jobq_diesel::PoolExecutor);

impl Adapter for Diesel {
    type Backend = jobq_diesel::PoolExecutor;
    fn backend(&self) -> Self::Backend {
        self.0.clone()
    }
    async fn defer(&self, n: u32) -> JobId {
        let pool = self.0.clone();
        blocking(move || Jobq::default().defer(&Ping { n }).run_blocking(&pool)).await
    }
    async fn status(&self, id: JobId) -> Status {
        let pool = self.0.clone();
        blocking(move || Jobq::default().status(id).run_blocking(&pool)).await
    }
}

/// libpq does TLS itself, from the same URL; diesel has no LISTEN, so the worker polls.
#[tokio::test(flavor = "multi_thread")]
async fn diesel_pool_and_worker_over_tls() {
    let (db, url) = database();
    let executor = jobq_diesel::PoolExecutor::connect(&url, 4).unwrap();
    pool_and_worker(Diesel(executor), db.name(), false).await;
}

/// Whether the connection `url` gives (through `jobq_tokio_postgres::connect`) is encrypted, or its error.
async fn encrypted(url: &str) -> Result<bool, jobq_core::ConnectorError> {
    let (client, connection) = jobq_tokio_postgres::connect(url).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

/// Each sslmode that can reach the TLS-only server does, encrypted: `prefer` and `require` without a root
/// certificate (unchecked, as libpq), `verify-ca` and `verify-full` with the right one, at `localhost` and
/// at `127.0.0.1` (the certificate names both).
#[tokio::test(flavor = "multi_thread")]
async fn sslmodes_that_reach_the_server_encrypt() {
    let server = server();
    let ca = server.ca_path().display().to_string();
    let url = server.url("postgres");
    let by_ip = url.replace("@localhost:", "@127.0.0.1:");
    for url in [
        format!("{url}?sslmode=prefer"),
        url.clone(),
        format!("{url}?sslmode=require"),
        format!("{url}?sslmode=verify-ca&sslrootcert={ca}"),
        format!("{url}?sslmode=verify-full&sslrootcert={ca}"),
        format!("{by_ip}?sslmode=verify-full&sslrootcert={ca}"),
    ] {
        assert!(encrypted(&url).await.unwrap(), "{url}: not encrypted");
    }
}

/// `verify-ca` checks the chain only, `verify-full` the host name too: reaching the server at 127.0.0.1
/// under a name its certificate does not carry (`hostaddr`), the first connects and the second fails,
/// naming the mismatch.
#[tokio::test(flavor = "multi_thread")]
async fn verify_ca_skips_the_host_name_and_verify_full_does_not() {
    let server = server();
    let ca = server.ca_path().display().to_string();
    let url = server
        .url("postgres")
        .replace("@localhost:", "@not-this-server.invalid:");
    let url = |mode: &str| format!("{url}?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}");
    assert!(encrypted(&url("verify-ca")).await.unwrap());
    let e = encrypted(&url("verify-full"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid peer certificate") && e.contains("not valid for name"),
        "{e}"
    );
}

/// `verify-full` and `verify-ca` with a CA that did not sign the server's certificate fail the handshake,
/// on a single connection, a pool's connection and a LISTEN connection alike, and the message says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_fails_with_a_message_naming_the_certificate_problem() {
    let server = server();
    let db = server.database().unwrap();
    let wrong = server.other_ca_path().display().to_string();
    let check = |what: &str, message: String| {
        assert!(
            message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
            "{what}: {message}"
        );
    };
    for mode in ["verify-full", "verify-ca"] {
        let url = format!(
            "{}?sslmode={mode}&sslrootcert={wrong}",
            server.url(db.name())
        );
        let e = encrypted(&url).await.unwrap_err();
        check("connect", e.to_string());

        let pool = jobq_tokio_postgres::PoolExecutor::connect(&url, 1).unwrap();
        let e = Jobq::default()
            .status(JobId(1))
            .run(&pool)
            .await
            .unwrap_err();
        check("tokio-postgres pool", e.to_string());
        let e = pool.listen(vec!["jobq".into()]).await.unwrap_err();
        check("tokio-postgres LISTEN", e.to_string());

        let sync = jobq_postgres::PoolExecutor::connect(&url, 1).unwrap();
        let e = sync.listen(vec!["jobq".into()]).await.unwrap_err();
        check("postgres LISTEN", e.to_string());
    }
}

/// A root certificate that cannot be read, or none for a verifying mode, is refused before anything is
/// sent, naming the file or the missing setting.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_root_certificate_is_refused_before_connecting() {
    let url = server().url("postgres");
    let e = encrypted(&format!(
        "{url}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
    ))
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot read root certificate file \"/nonexistent/ca.pem\""),
        "{e}"
    );
    if std::env::var_os("HOME").is_none_or(|h| {
        !std::path::Path::new(&h)
            .join(".postgresql/root.crt")
            .exists()
    }) {
        let e = jobq_postgres::pool(&format!("{url}?sslmode=verify-ca"), 1).unwrap_err();
        assert!(e.to_string().contains("needs a root certificate"), "{e}");
    }
}

/// `sslmode=disable` against the TLS-only server is refused by the server, and the message says the
/// connection had no encryption.
#[tokio::test(flavor = "multi_thread")]
async fn sslmode_disable_against_a_tls_only_server_fails_clearly() {
    let url = format!("{}?sslmode=disable", server().url("postgres"));
    let e = encrypted(&url).await.unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("no pg_hba.conf entry") && message.contains("no encryption"),
        "{message}"
    );
}
