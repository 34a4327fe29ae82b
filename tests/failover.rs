//! A primary failover under load, on a real pg_auto_failover cluster (a monitor and two synchronously
//! replicated nodes, [`jobq_tempdb::FailoverCluster`]): a planned one (`pg_autoctl perform failover`) and a
//! hard one (SIGKILL of the primary's postmaster and its keeper; the keeper is started again once the
//! standby is promoted, and the old primary rejoins as the standby).
//!
//! Every connection, the client's, the workers' pools and LISTEN connections and the handlers' bookkeeping,
//! goes to the multi-host URL `…@127.0.0.1:P1,127.0.0.1:P2/jobq?target_session_attrs=read-write`, so each
//! finds the primary by itself. A client defers jobs one per transaction (`synchronous_commit = on`) and
//! counts the acknowledged ones; each defer that fails must fail with an error of kind `Connection`; the
//! `postgres` and diesel adapters' pools, made before the failover, defer a job on each side of it. Two
//! workers run them throughout. When the run settles, on the new primary: every acknowledged job exists
//! and ended `succeeded` and its handler ran, no job `failed`, none is left `doing`; both workers (the same
//! `Worker`s, never restarted) ran jobs on the new primary. Double runs, failed defers and the time from the
//! primary's loss to the first job run on the new primary are printed.
//!
//! `JOBQ_FAILOVER_JOBS` sets how many jobs the client defers (300 by default) and `JOBQ_FAILOVER_ROUNDS`
//! how many failovers each test makes (1 by default; `just failover` runs more). Where `pg_autoctl` is not
//! installed the tests report as ignored with the reason (cfg `pg_autoctl` from `build.rs`); under `CI=true`
//! they run and fail without it.

use jobq_core::{ErrorKind, Jobq, NewJob, Operation};
use jobq_tempdb::FailoverCluster;
use jobq_tests::{RUNS_TABLE, Running, Slow, count};
use jobq_tokio_postgres::PoolExecutor;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One cluster at a time: two on this 2-core machine would slow each other's failovers.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How the primary is lost.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `pg_autoctl perform failover`.
    Planned,
    /// SIGKILL of the primary's postmaster and keeper, the keeper started again after the promotion.
    Kill,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pg_autoctl),
    ignore = "pg_autoctl is not installed (apt-get install postgresql-15-auto-failover; .ci/run does)"
)]
async fn a_planned_failover_loses_no_acknowledged_job() {
    survive(Fault::Planned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pg_autoctl),
    ignore = "pg_autoctl is not installed (apt-get install postgresql-15-auto-failover; .ci/run does)"
)]
async fn a_killed_primary_loses_no_acknowledged_job() {
    survive(Fault::Kill).await;
}

/// Seconds since the epoch, as the server's `extract(epoch FROM …)` reads them.
fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A connection to `url`, retried for up to a minute (the primary may be changing).
async fn connect(url: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match jobq_tokio_postgres::connect(url).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    // Its end (the server gone) shows up as an error on the client.
                    let _ = connection.await;
                });
                return client;
            }
            Err(e) if Instant::now() > deadline => panic!("no connection to {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What the deferring client saw: the acknowledged ids and each failed defer's kind and message.
#[derive(Debug, Default)]
struct Deferred {
    acknowledged: Vec<i64>,
    failed: Vec<(ErrorKind, String)>,
}

/// The kind of a failed COMMIT, as jobq's adapters classify a driver error: a lost connection or a
/// server's SQLSTATE of the connection classes.
fn commit_kind(e: &tokio_postgres::Error) -> ErrorKind {
    match e.code() {
        Some(code) => ErrorKind::from_sqlstate(code.code()),
        None if e.is_closed() || std::error::Error::source(e).is_some() => ErrorKind::Connection,
        None => ErrorKind::Other,
    }
}

/// Defers `n` jobs one per transaction on `url` with `synchronous_commit = on`, reconnecting after each
/// failure; `count` follows the acknowledged ones.
async fn defer_through(url: String, n: usize, count: Arc<AtomicUsize>) -> Deferred {
    let jobq = Jobq::default();
    let job = NewJob::from_task(&Slow {
        ms: 20,
        fail_first: false,
    })
    .unwrap();
    let mut out = Deferred::default();
    let mut client: Option<tokio_postgres::Client> = None;
    while out.acknowledged.len() < n {
        let c = match client.as_mut() {
            Some(c) => c,
            None => client.insert(connect(&url).await),
        };
        let attempt = async {
            let tx = c
                .transaction()
                .await
                .map_err(|e| (commit_kind(&e), e.to_string()))?;
            tx.batch_execute("SET LOCAL synchronous_commit = on")
                .await
                .map_err(|e| (commit_kind(&e), e.to_string()))?;
            let id = jobq.defer_job(job.clone()).run(&tx).await.map_err(|e| {
                let kind = match &e {
                    jobq_core::Error::Connector(c) => c.kind,
                    _ => ErrorKind::Other,
                };
                (kind, e.to_string())
            })?;
            tx.commit()
                .await
                .map_err(|e| (commit_kind(&e), e.to_string()))?;
            Ok::<_, (ErrorKind, String)>(id)
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(Ok(id)) => {
                out.acknowledged.push(id.0);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(failure)) => {
                out.failed.push(failure);
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                out.failed
                    .push((ErrorKind::Timeout, "no answer in 20 s".into()));
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// Defers one job through a sync adapter's pool (`postgres` or diesel, both on the multi-host URL),
/// retrying for up to a minute; each failure must be of kind `Connection`. Returns the job's id.
async fn defer_blocking<F>(defer: F, what: &'static str) -> i64
where
    F: Fn(NewJob) -> Result<jobq_core::JobId, jobq_core::Error> + Clone + Send + 'static,
{
    let job = NewJob::from_task(&Slow {
        ms: 1,
        fail_first: false,
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (defer, job) = (defer.clone(), job.clone());
        let result = tokio::task::spawn_blocking(move || defer(job))
            .await
            .unwrap();
        match result {
            Ok(id) => return id.0,
            Err(jobq_core::Error::Connector(e)) if e.kind == ErrorKind::Connection => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: no defer within 60 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: a failed defer is a connection error: {e}"),
        }
    }
}

async fn survive(fault: Fault) {
    let _one = ONE_CLUSTER.lock().await;
    let jobs = env("JOBQ_FAILOVER_JOBS", 300);
    let rounds = env("JOBQ_FAILOVER_ROUNDS", 1).max(1);
    let cluster = Arc::new(
        tokio::task::spawn_blocking(FailoverCluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("pg_auto_failover cluster: {e}")),
    );
    let url = cluster.url();
    standby_refusal_is_a_connection_error(&cluster).await;
    let setup = connect(&url).await;
    setup.batch_execute(RUNS_TABLE).await.unwrap();
    // Which node (by port) and which worker (by application name) ran each attempt.
    setup
        .batch_execute(
            "ALTER TABLE runs ADD COLUMN port int DEFAULT inet_server_port(), \
             ADD COLUMN worker text DEFAULT current_setting('application_name')",
        )
        .await
        .unwrap();
    drop(setup);

    let workers: Vec<Running> = (1..=2)
        .map(|n| {
            let runs_url = format!("{url}&application_name=worker{n}");
            Running::start(jobq_tests::worker_via(&url, &runs_url, 4).unwrap())
        })
        .collect();

    // The sync adapters' pools, made before the failover and used on both sides of it.
    let (sync_pool, diesel_pool) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            (
                jobq_postgres::PoolExecutor::new(jobq_postgres::pool(&url, 2).unwrap()),
                jobq_diesel::PoolExecutor::new(jobq_diesel::pool(&url, 2).unwrap()),
            )
        })
        .await
        .unwrap()
    };
    let on_sync = {
        let pool = sync_pool.clone();
        move |job| Jobq::default().defer_job(job).run_blocking(&pool)
    };
    let on_diesel = {
        let pool = diesel_pool.clone();
        move |job| Jobq::default().defer_job(job).run_blocking(&pool)
    };
    let mut sync_ids = vec![
        defer_blocking(on_sync.clone(), "postgres").await,
        defer_blocking(on_diesel.clone(), "diesel").await,
    ];

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let deferring = tokio::spawn(defer_through(url.clone(), jobs, acknowledged.clone()));

    let mut losses = Vec::new();
    for round in 0..rounds {
        // The fault strikes with part of the jobs deferred, the client still deferring.
        let due = jobs * (round + 1) / (rounds + 2);
        let deadline = Instant::now() + Duration::from_secs(120);
        while acknowledged.load(Ordering::Relaxed) < due.max(1) {
            assert!(
                Instant::now() < deadline,
                "the client acknowledged too few defers"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let old = settled_primary(&cluster).await;
        let lost_at = epoch_now();
        let started = Instant::now();
        let new = {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || match fault {
                Fault::Planned => cluster.perform_failover(),
                Fault::Kill => {
                    let old = cluster.kill_primary()?;
                    let new = cluster.wait_for_new_primary(old)?;
                    cluster.restart_node(old)?;
                    Ok(new)
                }
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{fault:?} failover: {e}"))
        };
        assert_ne!(old, new, "the primary changed");
        eprintln!(
            "{fault:?} round {}: primary {old} -> {new}, the monitor saw the new primary after {:.2} s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
        losses.push((lost_at, new));
        // Wait for both nodes before the next round (the old primary rejoins as the standby).
        settled_primary(&cluster).await;
    }

    sync_ids.push(defer_blocking(on_sync.clone(), "postgres").await);
    sync_ids.push(defer_blocking(on_diesel.clone(), "diesel").await);
    drop((on_sync, on_diesel));
    let mut deferred = tokio::time::timeout(Duration::from_secs(300), deferring)
        .await
        .expect("the client deferred every job within 5 minutes")
        .unwrap();
    // The sync adapters' jobs are checked with the client's.
    deferred.acknowledged.extend(&sync_ids);
    tokio::task::spawn_blocking(move || drop((sync_pool, diesel_pool)))
        .await
        .unwrap();
    let observer = connect(&url).await;
    let list = format!(
        "'{{{}}}'::bigint[]",
        deferred
            .acknowledged
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let settled = format!(
        "SELECT count(*) = {} FROM jobq.jobs WHERE status = 'succeeded' AND id = ANY({list})",
        deferred.acknowledged.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !observer
        .query_one(&settled, &[])
        .await
        .is_ok_and(|r| r.get::<_, bool>(0))
    {
        if Instant::now() > deadline {
            let rows = observer
                .query(
                    "SELECT status::text || ' ' || coalesce(worker_id::text, '-') || ' ' || count(*) \
                     FROM jobq.jobs GROUP BY status, worker_id \
                     UNION ALL SELECT 'worker ' || w::text FROM jobq.workers w",
                    &[],
                )
                .await
                .unwrap();
            let states: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            panic!("not every acknowledged job succeeded within 60 s: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The time from each loss to the first job started on the new primary.
    for (round, (lost_at, port)) in losses.iter().enumerate() {
        let first: Option<f64> = observer
            .query_one(
                "SELECT extract(epoch FROM min(started_at))::float8 FROM runs \
                 WHERE port = $1 AND started_at > to_timestamp($2)",
                &[&i32::from(*port), lost_at],
            )
            .await
            .unwrap()
            .get(0);
        match first {
            Some(first) => eprintln!(
                "{fault:?} round {}: primary lost -> first job run on the new primary: {:.2} s",
                round + 1,
                first - lost_at
            ),
            None => eprintln!(
                "{fault:?} round {}: no job ran on the new primary",
                round + 1
            ),
        }
    }

    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, _) in &deferred.failed {
        *kinds.entry(format!("{kind:?}")).or_default() += 1;
    }
    let twice = count(
        &observer,
        "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > 1",
    )
    .await;
    let ran = count(
        &observer,
        &format!("SELECT DISTINCT job_id FROM runs WHERE job_id = ANY({list})"),
    )
    .await;
    let failed = count(&observer, "SELECT 1 FROM jobq.jobs WHERE status = 'failed'").await;
    let doing = count(&observer, "SELECT 1 FROM jobq.jobs WHERE status = 'doing'").await;
    let (last_lost, new_port) = *losses.last().expect("a round");
    let mut after = Vec::new();
    for n in 1..=2 {
        after.push(
            count(
                &observer,
                &format!(
                    "SELECT 1 FROM runs WHERE worker = 'worker{n}' AND port = {new_port} \
                     AND started_at > to_timestamp({last_lost})"
                ),
            )
            .await,
        );
    }
    eprintln!(
        "{fault:?}: {} acknowledged, {ran} ran, {failed} failed, {doing} doing, {twice} ran more than \
         once; {} defers failed {kinds:?}; runs on the new primary after the last loss by worker: {after:?}",
        deferred.acknowledged.len(),
        deferred.failed.len()
    );
    for (kind, message) in &deferred.failed {
        assert_eq!(
            *kind,
            ErrorKind::Connection,
            "a failed defer is a connection error: {message}"
        );
    }
    assert_eq!(
        ran,
        deferred.acknowledged.len() as i64,
        "every acknowledged job ran"
    );
    assert_eq!(failed, 0, "no job failed");
    assert_eq!(doing, 0, "no job is left doing");
    for (n, runs) in after.iter().enumerate() {
        assert!(
            *runs > 0,
            "worker{} ran jobs on the new primary after the failover",
            n + 1
        );
    }
    for running in workers {
        assert!(
            !running.handle.is_finished(),
            "the worker kept running through the failover"
        );
        running.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), running.handle)
            .await
            .expect("the worker stopped within 30 s")
            .unwrap()
            .unwrap();
    }
    drop(observer);
    let cluster = Arc::into_inner(cluster).expect("the only owner of the cluster");
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// A defer sent to the standby alone (as a connection that landed there would) fails with SQLSTATE 25006,
/// `read_only_sql_transaction`, classified as a connection error: retry elsewhere, not a job's failure.
async fn standby_refusal_is_a_connection_error(cluster: &Arc<FailoverCluster>) {
    let primary = settled_primary(cluster).await;
    let standby = cluster
        .ports()
        .into_iter()
        .find(|p| *p != primary)
        .expect("a standby");
    let job = NewJob::from_task(&Slow {
        ms: 1,
        fail_first: false,
    })
    .unwrap();
    let mut client = connect(&cluster.node_url(standby)).await;
    // A standby that rejoined after the failover may not have replayed the schema yet; until it has, the
    // defer would be refused for the missing schema, not for the standby's read-only state.
    let mut replayed = false;
    for _ in 0..300 {
        let row = client
            .query_one("SELECT to_regclass('jobq.migrations') IS NOT NULL", &[])
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            replayed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(replayed, "the standby never replayed the schema (30 s)");
    let tx = client.transaction().await.unwrap();
    let refused = Jobq::default()
        .defer_job(job)
        .run(&tx)
        .await
        .expect_err("a standby refuses writes");
    let jobq_core::Error::Connector(e) = &refused else {
        panic!("a driver error: {refused}");
    };
    assert_eq!(e.sqlstate.as_deref(), Some("25006"), "{refused}");
    assert_eq!(e.kind, ErrorKind::Connection, "{refused}");

    // The connection the CLI opens (`jobq_tokio_postgres::connect`) on a URL naming the standby first
    // passes it by for the node that takes writes.
    let standby_first = format!(
        "postgres://postgres@127.0.0.1:{standby},127.0.0.1:{primary}/{}?target_session_attrs=read-write",
        jobq_tempdb::DATABASE
    );
    let row = connect(&standby_first)
        .await
        .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "connected to a standby");
    assert_eq!(row.get::<_, i32>(1), i32::from(primary));
}

/// A pooled connection whose statement failed with a connection-kind error is closed rather than reused:
/// after a failover the server behind it may be a standby now (25006), and the next connection the pool
/// opens goes through `target_session_attrs=read-write` to the primary. Checked on a database that is
/// read-only by default, through a pool of one connection: the backend's pid changes after the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_refused_as_read_only_is_replaced() {
    use jobq_core::AsyncExecutor;
    let db = jobq_tempdb::database();
    jobq_tests::connect(db.url())
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name()
        ))
        .await
        .unwrap();
    let mut pool = PoolExecutor::connect(db.url(), 1).unwrap();
    let pid = "SELECT pg_backend_pid()::text";
    let first = pool.query(pid, None).await.unwrap();
    assert_eq!(
        pool.query(pid, None).await.unwrap(),
        first,
        "a healthy connection is reused"
    );
    let job = NewJob::from_task(&Slow {
        ms: 1,
        fail_first: false,
    })
    .unwrap();
    let refused = Jobq::default().defer_job(job).run(&pool).await.unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    assert_ne!(
        pool.query(pid, None).await.unwrap(),
        first,
        "the refused connection was closed, not returned to the pool"
    );
}

/// sqlx's options take one host: a multi-host URL is refused when the pool is made (what
/// docs/operations.md tells a sqlx user to do instead), not taken as its first host.
#[tokio::test]
async fn a_sqlx_pool_refuses_a_multi_host_url() {
    let url = "postgres://app@127.0.0.1:5432,127.0.0.1:5433/app?target_session_attrs=read-write";
    let refused = jobq_sqlx::pool(url, 1).expect_err("sqlx takes one host");
    eprintln!("sqlx on a multi-host URL: {refused}");
}

/// [`FailoverCluster::wait_settled`] off the runtime: the primary's port.
async fn settled_primary(cluster: &Arc<FailoverCluster>) -> u16 {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.wait_settled())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the cluster did not settle: {e}"))
}
