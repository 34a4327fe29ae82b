//! Fault injection between a worker and a real server: answers lost on a network that pauses and then
//! cuts every connection, a server that crashes (`pg_ctl stop -m immediate`) and stays down for longer
//! than a completion's retries used to last, and connections that go silent for good. Each ends with the
//! same check: every acknowledged job ran its handler at least once and ended `succeeded`, none ended
//! `failed`, none is left `doing`; double runs are counted and printed.
//!
//! `JOBQ_CHAOS_ROUNDS` sets how many fault rounds the lost-answer test runs (6 by default; `just chaos`
//! runs more).

use jobq_core::worker::WorkerBuilder;
use jobq_core::{Jobq, NewJob, Operation};
use jobq_tests::proxy::FaultProxy;
use jobq_tests::{RUNS_TABLE, Running, Slow, connect, count, defer_one_by_one, wait_until};
use jobq_tokio_postgres::PoolExecutor;
use std::time::{Duration, Instant};

fn rounds() -> usize {
    std::env::var("JOBQ_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn slow(ms: u64, lock: Option<String>) -> NewJob {
    let mut job = NewJob::from_task(&Slow {
        ms,
        fail_first: false,
    })
    .unwrap();
    job.options.lock = lock;
    job
}

/// A fresh database with the runs table, a fault proxy in front of it, and an observer connected directly.
struct Rig {
    db: jobq_tempdb::TestDatabase,
    observer: tokio_postgres::Client,
    proxy: FaultProxy,
}

impl Rig {
    async fn new() -> Self {
        let db = jobq_tempdb::database();
        let observer = connect(db.url()).await;
        observer.batch_execute(RUNS_TABLE).await.unwrap();
        let proxy = FaultProxy::for_url(db.url()).await.unwrap();
        Self {
            db,
            observer,
            proxy,
        }
    }

    /// A worker whose connections go through the proxy, while its handlers record their runs directly.
    fn worker(&self, concurrency: usize) -> WorkerBuilder<PoolExecutor> {
        jobq_tests::worker_builder(&self.proxy.url(self.db.url()), self.db.url(), concurrency)
            .unwrap()
    }
}

/// The end check of every fault test, over the jobs `ids` whose deferral was acknowledged.
async fn every_acknowledged_job_ran_and_succeeded(
    observer: &tokio_postgres::Client,
    ids: &[i64],
    what: &str,
) {
    let list = format!(
        "'{{{}}}'::bigint[]",
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    let succeeded = count(
        observer,
        &format!("SELECT 1 FROM jobq.jobs WHERE status = 'succeeded' AND id = ANY({list})"),
    )
    .await;
    let ran = count(
        observer,
        &format!("SELECT DISTINCT job_id FROM runs WHERE job_id = ANY({list})"),
    )
    .await;
    let failed = count(observer, "SELECT 1 FROM jobq.jobs WHERE status = 'failed'").await;
    let doing = count(observer, "SELECT 1 FROM jobq.jobs WHERE status = 'doing'").await;
    let twice = count(
        observer,
        "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > 1",
    )
    .await;
    eprintln!(
        "{what}: {} acknowledged, {succeeded} succeeded, {ran} ran, {failed} failed, {doing} doing, \
         {twice} ran more than once",
        ids.len()
    );
    assert_eq!(
        succeeded,
        ids.len() as i64,
        "every acknowledged job succeeded"
    );
    assert_eq!(
        ran,
        ids.len() as i64,
        "every acknowledged job's handler ran"
    );
    assert_eq!(failed, 0, "no job failed");
    assert_eq!(doing, 0, "no job is left doing");
}

/// The proxy drops the server's answers (or every byte) for 1.5 s, then closes every connection, round
/// after round, while a worker runs short jobs, some under locks. Fetches and completions whose answers were lost had committed on
/// the server: the worker's heartbeat puts back the jobs it never received (uncharged), and its ends are
/// reported again until they are taken. Before, such jobs stayed `doing` for good, blocking their locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_on_a_failing_network_strand_no_job() {
    let rig = Rig::new().await;
    let (observer, proxy) = (&rig.observer, &rig.proxy);
    let jobq = Jobq::default();
    let jobs = 200 * rounds();
    let batch = (0..jobs).map(|n| slow(300, (n % 5 == 0).then(|| format!("tenant-{}", n % 7))));
    let ids: Vec<i64> = jobq
        .defer_batch(batch)
        .run(observer)
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.0)
        .collect();
    let running = Running::start(rig.worker(16).build());
    for round in 0..rounds() {
        // Long enough for the new connections to have jobq's statements prepared again, as a long-lived
        // worker's connections have: then a fetch or completion is one exchange, which runs on the server
        // whether or not its answer comes back.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Every other round, requests still reach the server and only the answers are lost: each fetch
        // and completion then commits unbeknown to the worker. Otherwise both ways are dropped.
        if round % 2 == 0 {
            proxy.lose_answers();
        } else {
            proxy.pause();
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.cut();
        proxy.resume();
    }
    wait_until(
        observer,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE status IN ('todo', 'doing')",
        Duration::from_secs(180),
    )
    .await;
    running.stop().await;
    every_acknowledged_job_ran_and_succeeded(observer, &ids, "lost answers").await;
}

/// The finding itself, made certain: an idle worker polls while the proxy drops every answer, so its fetch
/// reaches the server, takes the jobs deferred meanwhile and commits, and the worker never hears of them.
/// Then every connection is cut. Before, those jobs stayed `doing` under the live worker for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_taken_by_a_fetch_whose_answer_was_lost_run() {
    let rig = Rig::new().await;
    let (observer, proxy) = (&rig.observer, &rig.proxy);
    // Unnamed statements, each one exchange: the fetch runs on the server whatever happens to its answer
    // (a statement still to be prepared would wait for the prepare's answer, which is lost too).
    let backend = PoolExecutor::connect(&proxy.url(rig.db.url()), 4)
        .unwrap()
        .transaction_pooling();
    let worker = jobq_tests::worker_on(backend, rig.db.url(), 16).unwrap();
    let running = Running::start(worker.build());
    wait_until(
        observer,
        "SELECT count(*) = 1 FROM jobq.workers",
        Duration::from_secs(30),
    )
    .await;
    proxy.lose_answers();
    let jobq = Jobq::default();
    let ids: Vec<i64> = jobq
        .defer_batch((0..20).map(|_| slow(10, None)))
        .run(observer)
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.0)
        .collect();
    wait_until(
        observer,
        "SELECT count(*) > 0 FROM jobq.jobs WHERE status = 'doing'",
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    proxy.resume();
    wait_until(
        observer,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE status IN ('todo', 'doing')",
        Duration::from_secs(60),
    )
    .await;
    running.stop().await;
    every_acknowledged_job_ran_and_succeeded(observer, &ids, "a lost fetch").await;
    assert_eq!(
        count(observer, "SELECT 1 FROM jobq.jobs WHERE attempts <> 1").await,
        0,
        "the lost fetch charged no attempt"
    );
}

/// The server crashes (`pg_ctl stop -m immediate`) under a worker and a deferring client, and stays down
/// for 9 s, longer than the completer's retries used to last; then it starts again. Only deferrals whose
/// COMMIT was acknowledged, with `synchronous_commit = on`, count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_for_nine_seconds_loses_and_strands_nothing() {
    let server = jobq_tempdb::Server::start_private().unwrap();
    let db = server.database(true).unwrap();
    let url = db.url().to_owned();
    let durable = format!("{url}?options=-c%20synchronous_commit%3Don");
    connect(&url).await.batch_execute(RUNS_TABLE).await.unwrap();
    let running = Running::start(jobq_tests::worker(&url, 16).unwrap());
    let deferring = tokio::spawn(defer_one_by_one(durable.clone(), 400, slow(5, None)));
    wait_until(
        &connect(&url).await,
        "SELECT count(*) >= 150 FROM jobq.jobs",
        Duration::from_secs(60),
    )
    .await;
    server.crash().unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    server.start_again().unwrap();
    let (ids, failures) = deferring.await.unwrap();
    let ids: Vec<i64> = ids.into_iter().map(|id| id.0).collect();
    let observer = &connect(&url).await;
    wait_until(
        observer,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE status IN ('todo', 'doing')",
        Duration::from_secs(120),
    )
    .await;
    running.stop().await;
    eprintln!("crash: {failures} deferrals failed while the server was down");
    every_acknowledged_job_ran_and_succeeded(observer, &ids, "crash").await;
}

/// Every connection of a running worker goes silent for good (no FIN, no RST: a lost host, or a failover
/// to a new server at the same address), while new connections work. A job deferred afterwards runs, the
/// heartbeat stays fresh, and a shutdown returns on time. Before, the worker waited on its silent
/// connections forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_hold_nothing_up() {
    let rig = Rig::new().await;
    let (observer, proxy) = (&rig.observer, &rig.proxy);
    let jobq = Jobq::default();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            jobq.defer_job(slow(10, None))
                .run(observer)
                .await
                .unwrap()
                .0,
        );
    }
    let running = Running::start(rig.worker(4).build());
    wait_until(
        observer,
        "SELECT count(*) = 20 FROM jobq.jobs WHERE status = 'succeeded'",
        Duration::from_secs(60),
    )
    .await;
    proxy.blackhole();
    let late = jobq
        .defer_job(slow(10, None))
        .run(observer)
        .await
        .unwrap()
        .0;
    ids.push(late);
    wait_until(
        observer,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {late}"),
        Duration::from_secs(30),
    )
    .await;
    // Longer than the 2 s after which another worker would declare this one dead.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let age: f64 = observer
        .query_one(
            "SELECT extract(epoch FROM now() - max(heartbeat_at))::float8 FROM jobq.workers",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(age < 2.0, "the heartbeat is {age} s old");
    proxy.blackhole();
    let asked = Instant::now();
    running.stop().await;
    let took = asked.elapsed();
    eprintln!("silent connections: shutdown took {took:?} with every connection silent");
    // shutdown_timeout (5 s) + 1 s + statement_timeout (2 s) is the bound; this is a loose check of it.
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
    every_acknowledged_job_ran_and_succeeded(observer, &ids, "silent connections").await;
}

/// The LISTEN connection goes silent (its socket stays open, nothing comes through) under a worker that
/// polls only once a minute: its heartbeat's probe NOTIFY goes unheard, the worker opens a new LISTEN
/// connection, and a job deferred afterwards wakes it at once. Before, it waited for the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_listen_connection_is_replaced() {
    let rig = Rig::new().await;
    let (observer, proxy) = (&rig.observer, &rig.proxy);
    let worker = rig
        .worker(4)
        .poll_interval(Duration::from_secs(60))
        .statement_timeout(Duration::from_secs(1))
        .build();
    let running = Running::start(worker);
    wait_until(
        observer,
        "SELECT count(*) = 1 FROM jobq.workers",
        Duration::from_secs(30),
    )
    .await;
    proxy.blackhole();
    // Long enough for a probe to go unheard (a heartbeat and a statement timeout) and a new LISTEN.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let jobq = Jobq::default();
    let id = jobq
        .defer_job(slow(10, None))
        .run(observer)
        .await
        .unwrap()
        .0;
    wait_until(
        observer,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(30),
    )
    .await;
    running.stop().await;
    every_acknowledged_job_ran_and_succeeded(observer, &[id], "a silent LISTEN").await;
}
