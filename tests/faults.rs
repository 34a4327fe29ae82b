//! Faults with real processes and a real server: a worker killed with SIGKILL, PostgreSQL restarted under
//! load, a soak of mixed jobs over several worker processes, an exhausted pool and a slow database.

use jobq_core::{Error, ErrorKind, Jobq, NewJob, Operation, Status};
use jobq_tests::{RUNS_TABLE, Slow, connect, count, defer_one_by_one, wait_until};
use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

fn spawn_worker(url: &str, concurrency: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fault-worker"))
        .arg(url)
        .arg(concurrency.to_string())
        .spawn()
        .unwrap()
}

/// Stops a worker process gracefully (SIGTERM) and waits for it.
fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "worker exited with {status}");
}

fn slow(ms: u64) -> NewJob {
    NewJob::from_task(&Slow {
        ms,
        fail_first: false,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_run_again_and_none_is_lost() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    client.batch_execute(RUNS_TABLE).await.unwrap();
    let jobq = Jobq::default();
    let ids = jobq
        .defer_batch((0..8).map(|_| slow(3_000)))
        .run(&client)
        .await
        .unwrap();
    let mut doomed = spawn_worker(db.url(), 4);
    wait_until(
        &client,
        "SELECT count(*) = 4 FROM jobq.jobs WHERE status = 'doing'",
        Duration::from_secs(60),
    )
    .await;
    doomed.kill().unwrap(); // SIGKILL: no shutdown, no completion
    doomed.wait().unwrap();
    let survivor = spawn_worker(db.url(), 8);
    wait_until(
        &client,
        "SELECT count(*) = 8 FROM jobq.jobs WHERE status = 'succeeded'",
        Duration::from_secs(120),
    )
    .await;
    stop(survivor);
    assert_eq!(
        count(&client, "SELECT 1 FROM jobq.jobs WHERE status = 'doing'").await,
        0
    );
    let rerun = count(
        &client,
        "SELECT 1 FROM jobq.jobs WHERE attempts = 2 AND errors::text LIKE '%stalled%'",
    )
    .await;
    assert_eq!(rerun, 4, "the four jobs the killed worker held ran again");
    assert_eq!(
        count(
            &client,
            "SELECT DISTINCT job_id FROM runs WHERE finished_at IS NOT NULL"
        )
        .await,
        ids.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_loses_no_acknowledged_job() {
    let server = jobq_tempdb::Server::start_private().unwrap();
    let db = server.database(true).unwrap();
    let url = db.url().to_owned();
    let setup = connect(&url).await;
    setup.batch_execute(RUNS_TABLE).await.unwrap();
    drop(setup);
    let worker = jobq_tests::worker(&url, 16).unwrap();
    let stop_worker = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop_worker.clone().cancelled_owned()));

    // A client defers jobs one per transaction; an error (the restart) is retried, and only jobs whose
    // COMMIT was acknowledged count as deferred.
    let deferring = tokio::spawn(defer_one_by_one(url.clone(), 300, slow(5)));
    let observer = connect(&url).await;
    wait_until(
        &observer,
        "SELECT count(*) >= 50 FROM jobq.jobs",
        Duration::from_secs(60),
    )
    .await;
    drop(observer);
    server.restart().unwrap();
    let (acknowledged, failures) = deferring.await.unwrap();
    let observer = connect(&url).await;
    wait_until(
        &observer,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE status IN ('todo', 'doing')",
        Duration::from_secs(120),
    )
    .await;
    stop_worker.cancel();
    running.await.unwrap().unwrap();
    let ids: Vec<i64> = acknowledged.iter().map(|id| id.0).collect();
    let succeeded = count(
        &observer,
        &format!(
            "SELECT 1 FROM jobq.jobs WHERE status = 'succeeded' AND id = ANY('{{{}}}'::bigint[])",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ),
    )
    .await;
    assert_eq!(
        succeeded,
        ids.len() as i64,
        "every acknowledged job succeeded"
    );
    let twice = count(
        &observer,
        "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > 1",
    )
    .await;
    eprintln!(
        "restart: {} jobs acknowledged, {failures} deferrals failed during the restart, {twice} jobs started twice",
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_jobs_over_several_workers() {
    let jobs: usize = std::env::var("JOBQ_SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    client.batch_execute(RUNS_TABLE).await.unwrap();
    let jobq = Jobq::default();
    let mut conflicts = 0;
    let mut deferred = Vec::new();
    for chunk in 0..jobs / 1_000 {
        let batch: Vec<NewJob> = (0..1_000)
            .map(|i| {
                let n = chunk * 1_000 + i;
                let mut job = NewJob::from_task(&Slow {
                    ms: (n % 3) as u64,
                    fail_first: n % 10 == 0,
                })
                .unwrap();
                if n % 4 == 0 {
                    job.options.lock = Some(format!("lock-{}", n % 25));
                }
                job
            })
            .collect();
        deferred.extend(jobq.defer_batch(batch).run(&client).await.unwrap());
        // A queueing lock that is taken again and again: only the first of each pair is accepted.
        for _ in 0..2 {
            let queued = jobq
                .defer_job(slow(0))
                .queueing_lock(format!("ql-{chunk}"))
                .run(&client)
                .await;
            match queued {
                Ok(id) => deferred.push(id),
                Err(Error::AlreadyEnqueued { .. }) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let mut cancelled = 0;
    for id in deferred.iter().step_by(50) {
        if jobq.cancel(*id).run(&client).await.unwrap() == jobq_core::CancelOutcome::Cancelled {
            cancelled += 1;
        }
    }
    let workers: Vec<Child> = (0..3).map(|_| spawn_worker(db.url(), 20)).collect();
    wait_until(
        &client,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE status IN ('todo', 'doing')",
        Duration::from_secs(600),
    )
    .await;
    workers.into_iter().for_each(stop);

    let by_status: HashMap<String, i64> = client
        .query(
            "SELECT status, count(*) FROM jobq.jobs GROUP BY status",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        conflicts,
        jobs / 1_000,
        "one conflict per taken queueing lock"
    );
    assert_eq!(by_status.get("cancelled").copied().unwrap_or(0), cancelled);
    assert_eq!(
        by_status.get("succeeded").copied().unwrap_or(0),
        deferred.len() as i64 - cancelled,
        "{by_status:?}"
    );
    assert_eq!(
        by_status.values().sum::<i64>(),
        deferred.len() as i64,
        "every job in a final state: {by_status:?}"
    );
    let retried = count(&client, "SELECT 1 FROM jobq.jobs WHERE attempts = 2").await;
    assert!(retried > 0, "the failing first attempts were retried");
    let overlaps = count(
        &client,
        "SELECT 1 FROM runs a JOIN runs b ON a.lock = b.lock AND (a.job_id, a.attempt) < (b.job_id, b.attempt)
         WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at",
    )
    .await;
    assert_eq!(overlaps, 0, "no lock ever ran two jobs at once");
    eprintln!(
        "soak: {} jobs, {cancelled} cancelled, {conflicts} queueing-lock conflicts, {retried} retried",
        deferred.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_and_a_slow_database_time_out_instead_of_hanging() {
    let db = jobq_tempdb::database();
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        db.url().parse::<tokio_postgres::Config>().unwrap(),
        tokio_postgres::NoTls,
    ))
    .max_size(1)
    .runtime(deadpool_postgres::Runtime::Tokio1)
    .wait_timeout(Some(Duration::from_millis(300)))
    .build()
    .unwrap();
    let held = pool.get().await.unwrap();
    let jobq = Jobq::default();
    let err = jobq.defer_job(slow(0)).run(&pool).await.unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::PoolTimeout), "{err}");
    drop(held);
    jobq.defer_job(slow(0))
        .run(&pool)
        .await
        .expect("works again once a connection is free");

    // A job row locked by another transaction and a statement_timeout on the caller's connection.
    let blocker = connect(db.url()).await;
    let id = jobq.defer_job(slow(0)).run(&blocker).await.unwrap();
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM jobq.jobs WHERE id = {id} FOR UPDATE"
        ))
        .await
        .unwrap();
    let caller = connect(&format!(
        "{}?options=-c%20statement_timeout%3D300",
        db.url()
    ))
    .await;
    let err = jobq.cancel(id).run(&caller).await.unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::Timeout), "{err}");
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        jobq.status(id).run(&caller).await.unwrap(),
        Status::Todo,
        "nothing changed"
    );
}
