//! The cases of the conformance suite. Each runs against a fresh database; [`conformance_tests!`] turns
//! every one into a test of the adapter that invokes it.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use crate::observer::{Listener, Observer};
use crate::{CallerConnection, Harness, PooledConnection};
use chrono::{DateTime, TimeZone, Utc};
use jobq_core::prelude::*;
use jobq_core::{CancelOutcome, Defer, ErrorKind, RetryOutcome, limits};
use jobq_tempdb::TestDatabase;
use serde_json::json;
use std::time::Duration;

/// Everything a case starts with: its database, the caller's connection, an observer and jobq.
struct Setup<C> {
    db: TestDatabase,
    conn: C,
    observer: Observer,
    jobq: Jobq,
}

async fn setup<H: Harness>() -> Setup<H::Conn> {
    let db = jobq_tempdb::database();
    let observer = Observer::connect(db.url()).await;
    observer
        .execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
        .await;
    let conn = H::connect(db.url()).await;
    Setup {
        db,
        conn,
        observer,
        jobq: Jobq::default(),
    }
}

fn job(task: &str, args: serde_json::Value) -> NewJob {
    NewJob::new(task, args)
}

fn with_queueing_lock(mut job: NewJob, lock: &str) -> NewJob {
    job.options.queueing_lock = Some(lock.to_owned());
    job
}

/// Exactly `bytes` bytes of varied characters (ASCII, Latin, CJK; one, two and three bytes each) drawn from
/// `seed`. PostgreSQL compresses a repeated character to almost nothing, which hides what a long name
/// costs an index entry; these it cannot compress.
fn varied(bytes: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = String::with_capacity(bytes);
    loop {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pick = u32::try_from((state >> 8) % 0x5000).expect("small");
        let c = match state % 3 {
            0 => char::from_u32(0x21 + pick % 94),
            1 => char::from_u32(0xC0 + pick % 0x140),
            _ => char::from_u32(0x4E00 + pick),
        }
        .expect("a character");
        if text.len() + c.len_utf8() > bytes {
            break;
        }
        text.push(c);
    }
    while text.len() < bytes {
        text.push('.');
    }
    text
}

/// `depth` arrays around `inner`: `[[…[inner]…]]`.
fn nested(depth: usize, inner: serde_json::Value) -> serde_json::Value {
    (0..depth).fold(inner, |inner, _| json!([inner]))
}

fn year(year: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .expect("a time")
}

async fn jobs(observer: &Observer) -> i64 {
    observer.count("SELECT * FROM jobq.jobs").await
}

async fn status_seen_by_others(observer: &Observer, id: JobId) -> String {
    observer
        .text(&format!("SELECT status FROM jobq.jobs WHERE id = {id}"))
        .await
        .expect("job exists")
}

/// Defer inside the caller's transaction: invisible and unannounced until commit, then both.
pub async fn defer_is_visible_and_notified_only_at_commit<H: Harness>() {
    let Setup {
        db,
        mut conn,
        observer,
        jobq,
    } = setup::<H>().await;
    let mut listener = Listener::start(db.url(), jobq.channel()).await;
    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1, 'book')")
        .await
        .unwrap();
    let id = conn
        .run(
            jobq.defer_job(job("process_order", json!({"order_id": 1})))
                .queue("orders")
                .into_query(),
        )
        .await
        .unwrap();
    assert_eq!(
        jobs(&observer).await,
        0,
        "an uncommitted job is invisible to others"
    );
    assert!(
        listener.received_before_now().await.is_empty(),
        "no NOTIFY before commit"
    );
    conn.commit().await;
    assert_eq!(
        listener.received_before_now().await,
        vec!["orders".to_owned()],
        "one NOTIFY at commit"
    );
    assert_eq!(status_seen_by_others(&observer, id).await, "todo");
    assert_eq!(observer.count("SELECT * FROM orders").await, 1);
}

/// Defer, then roll back: neither the job nor the caller's row exists, and nobody was notified.
pub async fn rollback_leaves_no_job_and_no_notification<H: Harness>() {
    let Setup {
        db,
        mut conn,
        observer,
        jobq,
    } = setup::<H>().await;
    let mut listener = Listener::start(db.url(), jobq.channel()).await;
    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1, 'book')")
        .await
        .unwrap();
    conn.run(
        jobq.defer_job(job("process_order", json!({"order_id": 1})))
            .into_query(),
    )
    .await
    .unwrap();
    conn.rollback().await;
    assert!(listener.received_before_now().await.is_empty());
    assert_eq!(jobs(&observer).await, 0);
    assert_eq!(observer.count("SELECT * FROM orders").await, 0);
}

/// A batch with one taken queueing lock inserts nothing, names the lock, and keeps the transaction usable.
pub async fn batch_defer_is_atomic_and_names_the_conflict<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    conn.run(jobq.defer_batch([with_queueing_lock(job("t", json!({})), "taken")]))
        .await
        .unwrap();
    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1, 'book')")
        .await
        .unwrap();
    let batch = [
        with_queueing_lock(job("t", json!({"n": 1})), "free"),
        with_queueing_lock(job("t", json!({"n": 2})), "taken"),
        job("t", json!({"n": 3})),
    ];
    match conn.run(jobq.defer_batch(batch)).await {
        Err(Error::AlreadyEnqueued { queueing_lock }) => assert_eq!(queueing_lock, "taken"),
        other => panic!("expected AlreadyEnqueued, got {other:?}"),
    }
    let ids = conn
        .run(jobq.defer_batch([job("t", json!({"n": 4})), job("t", json!({"n": 5}))]))
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1], "ids come back in input order");
    conn.commit().await;
    assert_eq!(
        observer.count("SELECT * FROM orders").await,
        1,
        "the caller's own row committed"
    );
    assert_eq!(
        jobs(&observer).await,
        3,
        "the first job and the second batch, nothing of the failed batch"
    );
    assert_eq!(
        observer
            .count("SELECT * FROM jobq.jobs WHERE queueing_lock = 'free'")
            .await,
        0
    );
}

/// Two jobs of one batch sharing a queueing lock conflict with each other.
pub async fn batch_with_a_repeated_queueing_lock_is_refused<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let batch = [
        with_queueing_lock(job("t", json!({})), "same"),
        with_queueing_lock(job("t", json!({})), "same"),
    ];
    match conn.run(jobq.defer_batch(batch)).await {
        Err(Error::AlreadyEnqueued { queueing_lock }) => assert_eq!(queueing_lock, "same"),
        other => panic!("expected AlreadyEnqueued, got {other:?}"),
    }
    assert_eq!(jobs(&observer).await, 0);
}

/// A single deferral's queueing-lock conflict leaves the transaction usable: its commit keeps its rows.
pub async fn queueing_lock_conflict_keeps_the_transaction_usable<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1, 'book')")
        .await
        .unwrap();
    conn.run(
        jobq.defer_job(job("t", json!({})))
            .queueing_lock("order-1")
            .into_query(),
    )
    .await
    .unwrap();
    let second = conn
        .run(
            jobq.defer_job(job("t", json!({})))
                .queueing_lock("order-1")
                .into_query(),
        )
        .await;
    assert!(
        matches!(&second, Err(Error::AlreadyEnqueued { queueing_lock }) if queueing_lock == "order-1"),
        "{second:?}"
    );
    conn.sql("INSERT INTO orders VALUES (2, 'pen')")
        .await
        .expect("the next statement succeeds");
    conn.commit().await;
    assert_eq!(observer.count("SELECT * FROM orders").await, 2);
    assert_eq!(jobs(&observer).await, 1);
}

/// The isolation levels a caller's transaction can run at, as `SET TRANSACTION` names them.
const ISOLATION_LEVELS: [&str; 3] = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"];

fn expect_already_enqueued<T: std::fmt::Debug>(what: &str, outcome: Result<T, Error>, lock: &str) {
    match outcome {
        Err(Error::AlreadyEnqueued { queueing_lock }) => {
            assert_eq!(queueing_lock, lock, "{what}");
        }
        other => panic!("{what}: expected AlreadyEnqueued({lock:?}), got {other:?}"),
    }
}

/// At every isolation level, a queueing-lock conflict with a job committed after the caller's snapshot
/// was taken (which the snapshot cannot see), or with a job another transaction commits while the
/// deferral waits for it, comes back as `AlreadyEnqueued` and leaves the caller's transaction usable: a
/// single deferral, a batch (inserting nothing) and a retry of a failed job alike; the caller's next
/// statement, next deferral and commit succeed, its rows kept.
pub async fn queueing_lock_conflicts_keep_the_transaction_usable_at_every_isolation_level<
    H: Harness,
>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let mut expected_jobs = 0;
    for (n, level) in (1_i64..).zip(ISOLATION_LEVELS) {
        let committed = format!("committed-after-snapshot {level}");
        let in_flight = format!("committed-while-waiting {level}");
        let free = format!("free {level}");
        let retried = format!("retried {level}");
        let failed: i64 = observer
            .text(&format!(
                "INSERT INTO jobq.jobs (task, status, queueing_lock) VALUES ('t', 'failed', '{retried}') \
                 RETURNING id::text"
            ))
            .await
            .expect("an id")
            .parse()
            .unwrap();
        expected_jobs += 1;
        conn.begin().await;
        conn.sql(&format!("SET TRANSACTION ISOLATION LEVEL {level}"))
            .await
            .unwrap();
        // The first statement takes the snapshot (at REPEATABLE READ and SERIALIZABLE, for the whole
        // transaction).
        conn.sql(&format!("INSERT INTO orders VALUES ({n}, 'book')"))
            .await
            .unwrap();
        assert_eq!(
            conn.sql("SELECT current_setting('transaction_isolation')")
                .await
                .unwrap()
                .map(|l| l.to_uppercase())
                .as_deref(),
            Some(level)
        );
        observer
            .execute(&format!(
                "SELECT jobq.defer_job('{{\"task\": \"t\", \"queueing_lock\": \"{committed}\"}}')"
            ))
            .await;
        expected_jobs += 1;
        let single = conn
            .run(
                jobq.defer_job(job("t", json!({})))
                    .queueing_lock(&committed)
                    .into_query(),
            )
            .await;
        expect_already_enqueued(&format!("{level}: a single deferral"), single, &committed);
        let batch = conn
            .run(jobq.defer_batch([
                with_queueing_lock(job("t", json!({})), &free),
                with_queueing_lock(job("t", json!({})), &committed),
                job("t", json!({})),
            ]))
            .await;
        expect_already_enqueued(&format!("{level}: a batch"), batch, &committed);
        // Retrying the failed job, whose queueing lock a job committed after the snapshot now holds.
        observer
            .execute(&format!(
                "SELECT jobq.defer_job('{{\"task\": \"t\", \"queueing_lock\": \"{retried}\"}}')"
            ))
            .await;
        expected_jobs += 1;
        let retry = conn.run(jobq.retry(JobId(failed))).await;
        expect_already_enqueued(&format!("{level}: a retry"), retry, &retried);

        // Another transaction holds the lock, uncommitted; the deferral waits for it, which commits.
        observer.execute("BEGIN").await;
        observer
            .execute(&format!(
                "SELECT jobq.defer_job('{{\"task\": \"t\", \"queueing_lock\": \"{in_flight}\"}}')"
            ))
            .await;
        expected_jobs += 1;
        let (waited, ()) = tokio::join!(
            conn.run(
                jobq.defer_job(job("t", json!({})))
                    .queueing_lock(&in_flight)
                    .into_query()
            ),
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                observer.execute("COMMIT").await;
            }
        );
        expect_already_enqueued(
            &format!("{level}: a deferral that waited for the other transaction"),
            waited,
            &in_flight,
        );
        let batch = conn
            .run(jobq.defer_batch([
                with_queueing_lock(job("t", json!({})), &free),
                with_queueing_lock(job("t", json!({})), &in_flight),
            ]))
            .await;
        expect_already_enqueued(&format!("{level}: a batch after it"), batch, &in_flight);

        conn.sql(&format!("INSERT INTO orders VALUES ({}, 'pen')", n + 100))
            .await
            .unwrap_or_else(|e| panic!("{level}: the next statement fails: {e}"));
        conn.run(
            jobq.defer_job(job("t", json!({"after": level})))
                .into_query(),
        )
        .await
        .unwrap_or_else(|e| panic!("{level}: the next deferral fails: {e}"));
        expected_jobs += 1;
        conn.commit().await;
        assert_eq!(
            observer.count("SELECT * FROM orders").await,
            2 * n,
            "{level}: the caller's rows committed"
        );
        assert_eq!(jobs(&observer).await, expected_jobs, "{level}");
        assert_eq!(
            observer
                .count(&format!(
                    "SELECT * FROM jobq.jobs WHERE queueing_lock = '{free}'"
                ))
                .await,
            0,
            "{level}: nothing of a refused batch"
        );
    }
}

/// Two batches deferred at the same time with the same two queueing locks in opposite order, each on an
/// autocommit connection of its own, 300 pairs of them: one of each pair wins and the other gets
/// `AlreadyEnqueued`, never a deadlock (a batch takes its queueing locks in one order, whatever the input
/// order), and the winner's ids come back in input order.
pub async fn opposite_order_batches_do_not_deadlock<H: Harness>() {
    let Setup {
        db, observer, jobq, ..
    } = setup::<H>().await;
    const PAIRS: usize = 300;
    const LANES: usize = 4;
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let (mut a, mut b) = (H::connect(db.url()).await, H::connect(db.url()).await);
        let jobq = jobq.clone();
        lanes.push(async move {
            let mut outcomes = Vec::new();
            for pair in (lane..PAIRS).step_by(LANES) {
                let (first, second) = (format!("pair {pair} a"), format!("pair {pair} b"));
                let batch = |locks: [&str; 2]| {
                    jobq.defer_batch(locks.map(|lock| {
                        with_queueing_lock(job("t", json!({ "first": locks[0] })), lock)
                    }))
                };
                let (x, y) = tokio::join!(
                    a.run(batch([&first, &second])),
                    b.run(batch([&second, &first]))
                );
                outcomes.push((pair, x, y));
            }
            outcomes
        });
    }
    let mut deadlocks = 0;
    for (pair, x, y) in futures_util::future::join_all(lanes)
        .await
        .into_iter()
        .flatten()
    {
        // diesel reports no SQLSTATE, only the server's message.
        let is_deadlock = |r: &Result<Vec<JobId>, Error>| match r {
            Err(Error::Connector(e)) => {
                e.sqlstate.as_deref() == Some("40P01") || e.message.contains("deadlock detected")
            }
            _ => false,
        };
        if is_deadlock(&x) || is_deadlock(&y) {
            deadlocks += 1;
            continue;
        }
        let (won, lost) = match (x, y) {
            (Ok(ids), lost) | (lost, Ok(ids)) => (ids, lost),
            (x, y) => panic!("pair {pair}: neither batch won: {x:?}, {y:?}"),
        };
        assert_eq!(won.len(), 2, "pair {pair}");
        assert!(won[0] < won[1], "pair {pair}: ids in input order: {won:?}");
        match lost {
            Err(Error::AlreadyEnqueued { queueing_lock }) => assert!(
                queueing_lock.starts_with(&format!("pair {pair} ")),
                "pair {pair}: {queueing_lock}"
            ),
            other => panic!("pair {pair}: expected AlreadyEnqueued, got {other:?}"),
        }
    }
    assert_eq!(deadlocks, 0, "pairs that deadlocked, of {PAIRS}");
    assert_eq!(
        jobs(&observer).await,
        i64::try_from(2 * PAIRS).expect("small")
    );
    // Each winner's jobs are stored as its input gave them: the job deferred first has the lower id.
    assert_eq!(
        observer
            .count(
                "SELECT * FROM jobq.jobs j WHERE j.queueing_lock <> j.args->>'first' \
                 AND j.id < (SELECT min(id) FROM jobq.jobs f WHERE f.queueing_lock = j.args->>'first')"
            )
            .await,
        0
    );
}

/// Cancel inside a transaction: others see it only after commit; a rollback leaves the job waiting.
pub async fn cancel_takes_effect_at_commit_only<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let a = conn
        .run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
        .unwrap();
    let b = conn
        .run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
        .unwrap();
    conn.begin().await;
    assert_eq!(
        conn.run(jobq.cancel(a).into_query()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(status_seen_by_others(&observer, a).await, "todo");
    conn.commit().await;
    assert_eq!(status_seen_by_others(&observer, a).await, "cancelled");

    conn.begin().await;
    assert_eq!(
        conn.run(jobq.cancel(b).into_query()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    conn.rollback().await;
    assert_eq!(status_seen_by_others(&observer, b).await, "todo");
}

/// Cancel with abort on a running job sets the abort request, seen and announced only after commit.
pub async fn abort_request_is_seen_after_commit<H: Harness>() {
    let Setup {
        db,
        mut conn,
        observer,
        jobq,
    } = setup::<H>().await;
    let id = conn
        .run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
        .unwrap();
    observer
        .execute(&format!(
            "UPDATE jobq.jobs SET status = 'doing' WHERE id = {id}"
        ))
        .await;
    let mut listener = Listener::start(db.url(), &jobq.abort_channel()).await;
    conn.begin().await;
    assert_eq!(
        conn.run(jobq.cancel(id).into_query()).await.unwrap(),
        CancelOutcome::Unchanged
    );
    assert_eq!(
        conn.run(jobq.cancel(id).abort().into_query())
            .await
            .unwrap(),
        CancelOutcome::AbortRequested
    );
    let requested = format!("SELECT abort_requested::text FROM jobq.jobs WHERE id = {id}");
    assert_eq!(observer.text(&requested).await.as_deref(), Some("false"));
    assert!(listener.received_before_now().await.is_empty());
    conn.commit().await;
    assert_eq!(observer.text(&requested).await.as_deref(), Some("true"));
    assert_eq!(listener.received_before_now().await, vec![id.to_string()]);
    assert_eq!(
        status_seen_by_others(&observer, id).await,
        "doing",
        "the worker ends it, not the cancel"
    );
}

/// Cancel with delete removes a waiting job; an unknown id is reported as such.
pub async fn cancel_delete_and_unknown_ids<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let id = conn
        .run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
        .unwrap();
    assert_eq!(
        conn.run(jobq.cancel(id).delete().into_query())
            .await
            .unwrap(),
        CancelOutcome::Deleted
    );
    assert_eq!(jobs(&observer).await, 0);
    let missing = JobId(999_999);
    assert!(
        matches!(conn.run(jobq.cancel(missing).into_query()).await, Err(Error::JobNotFound(i)) if i == missing)
    );
    assert!(matches!(
        conn.run(jobq.status(missing)).await,
        Err(Error::JobNotFound(_))
    ));
    assert!(matches!(
        conn.run(jobq.retry(missing)).await,
        Err(Error::JobNotFound(_))
    ));
}

/// Status, job and list on the caller's connection see the transaction's own uncommitted jobs.
pub async fn reads_see_the_transactions_own_jobs<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    conn.begin().await;
    let id = conn
        .run(
            jobq.defer_job(job("t", json!({"k": "v"})))
                .queue("mine")
                .priority(7)
                .lock("L")
                .into_query(),
        )
        .await
        .unwrap();
    assert_eq!(conn.run(jobq.status(id)).await.unwrap(), Status::Todo);
    let stored = conn.run(jobq.job(id)).await.unwrap();
    assert_eq!(
        (
            stored.queue.as_str(),
            stored.priority,
            stored.lock.as_deref()
        ),
        ("mine", 7, Some("L"))
    );
    assert_eq!(stored.args, json!({"k": "v"}));
    let filter = JobFilter {
        queue: Some("mine".into()),
        status: Some(Status::Todo),
        ..JobFilter::default()
    };
    let listed = conn.run(jobq.list(&filter)).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    let other = JobFilter {
        queue: Some("other".into()),
        ..JobFilter::default()
    };
    assert!(conn.run(jobq.list(&other)).await.unwrap().is_empty());
    conn.rollback().await;
    assert_eq!(jobs(&observer).await, 0);
}

/// Retry puts a failed job back to `todo`, unless another waiting job holds its queueing lock.
pub async fn retry_requeues_failed_jobs<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let id = conn
        .run(
            jobq.defer_job(job("t", json!({})))
                .queueing_lock("q")
                .into_query(),
        )
        .await
        .unwrap();
    assert_eq!(
        conn.run(jobq.retry(id)).await.unwrap(),
        RetryOutcome::Unchanged,
        "a waiting job stays"
    );
    observer
        .execute(&format!(
            "UPDATE jobq.jobs SET status = 'failed', last_error = 'boom' WHERE id = {id}"
        ))
        .await;
    let blocker = conn
        .run(
            jobq.defer_job(job("t", json!({})))
                .queueing_lock("q")
                .into_query(),
        )
        .await
        .unwrap();
    assert!(
        matches!(conn.run(jobq.retry(id)).await, Err(Error::AlreadyEnqueued { queueing_lock }) if queueing_lock == "q")
    );
    conn.run(jobq.cancel(blocker).delete().into_query())
        .await
        .unwrap();
    assert_eq!(
        conn.run(jobq.retry(id)).await.unwrap(),
        RetryOutcome::Retried
    );
    assert_eq!(status_seen_by_others(&observer, id).await, "todo");
}

/// jobq never commits, rolls back or changes settings: same transaction, same settings, and a rollback
/// afterwards undoes everything jobq did.
pub async fn the_callers_connection_is_left_as_found<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let probe = "SELECT txid_current()::text || ' ' || current_setting('search_path') || ' ' || \
                 current_setting('statement_timeout') || ' ' || current_setting('TimeZone')";
    conn.begin().await;
    conn.sql("SET LOCAL statement_timeout = '54321ms'")
        .await
        .unwrap();
    let before = conn.sql(probe).await.unwrap();
    let id = conn
        .run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
        .unwrap();
    conn.run(jobq.defer_batch([job("t", json!({})), job("t", json!({}))]))
        .await
        .unwrap();
    conn.run(jobq.status(id)).await.unwrap();
    conn.run(jobq.list(&JobFilter::default())).await.unwrap();
    conn.run(jobq.cancel(id).into_query()).await.unwrap();
    conn.run(jobq.retry(id)).await.unwrap();
    conn.run(jobq.check_schema()).await.unwrap();
    assert_eq!(
        conn.sql(probe).await.unwrap(),
        before,
        "same transaction, same settings"
    );
    conn.rollback().await;
    assert_eq!(
        jobs(&observer).await,
        0,
        "nothing was committed behind the caller's back"
    );
    assert_eq!(
        conn.sql("SELECT 1::text").await.unwrap().as_deref(),
        Some("1"),
        "the connection is open"
    );
}

/// A connection inside a failed transaction gets a clear connector error, and stays usable after rollback.
pub async fn failed_transaction_gets_a_clear_error<H: Harness>() {
    let Setup { mut conn, jobq, .. } = setup::<H>().await;
    conn.begin().await;
    assert!(conn.sql("SELECT 1 / 0").await.is_err());
    match conn
        .run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
    {
        Err(Error::Connector(e)) => {
            assert_eq!(e.kind, ErrorKind::InFailedTransaction, "{e}");
            assert_eq!(e.connector, H::CONNECTOR);
            assert!(
                std::error::Error::source(&e).is_some(),
                "the driver error is the source"
            );
            assert!(e.to_string().contains("roll it back"), "{e}");
        }
        other => panic!("expected a connector error, got {other:?}"),
    }
    conn.rollback().await;
    conn.run(jobq.defer_job(job("t", json!({}))).into_query())
        .await
        .expect("usable after rollback");
}

/// A schema that was never applied is reported as missing, with the command that fixes it.
pub async fn missing_schema_is_reported<H: Harness>() {
    let Setup { mut conn, .. } = setup::<H>().await;
    let elsewhere = Jobq::with_schema("not_migrated").unwrap();
    let err = conn
        .run(elsewhere.defer_job(job("t", json!({}))).into_query())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::SchemaMissing { schema } if schema == "not_migrated"),
        "{err:?}"
    );
    assert!(err.to_string().contains("jobq schema apply"));
    assert!(matches!(
        conn.run(elsewhere.check_schema()).await,
        Err(Error::SchemaMissing { .. })
    ));
    assert_eq!(conn.run(elsewhere.schema_version()).await.unwrap(), None);
}

/// Migrating through the adapter creates a schema, and again is a no-op.
pub async fn migrate_through_the_adapter<H: Harness>() {
    let Setup {
        mut conn, observer, ..
    } = setup::<H>().await;
    let other = Jobq::with_schema("second").unwrap();
    conn.run(other.migrate()).await.unwrap();
    conn.run(other.migrate()).await.unwrap();
    assert_eq!(
        conn.run(other.check_schema()).await.unwrap(),
        jobq_core::SCHEMA_VERSION
    );
    assert_eq!(
        observer.count("SELECT * FROM second.migrations").await,
        i64::from(jobq_core::SCHEMA_VERSION)
    );
}

/// Input jobq refuses is refused before any SQL, and awkward but valid input is stored exactly.
pub async fn awkward_input_is_stored_or_refused_cleanly<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let awkward = "q'\";DROP TABLE orders;--ü✓";
    let name = format!(
        "{awkward}{}",
        "x".repeat(limits::MAX_NAME_BYTES - awkward.len())
    );
    let id = conn
        .run(
            jobq.defer_job(job(&name, json!({"s": "'\";"})))
                .queue(&name)
                .lock(&name)
                .priority(i32::MIN)
                .into_query(),
        )
        .await
        .unwrap();
    let stored = conn.run(jobq.job(id)).await.unwrap();
    assert_eq!(
        (stored.task.as_str(), stored.queue.as_str(), stored.priority),
        (name.as_str(), name.as_str(), i32::MIN)
    );
    assert_eq!(
        observer.count("SELECT * FROM orders").await,
        0,
        "the orders table is still there"
    );
    let refused = conn
        .run(jobq.defer_job(job("", json!({}))).into_query())
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "{refused:?}"
    );
    let refused = conn
        .run(jobq.defer_job(job("a\0b", json!({}))).into_query())
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "{refused:?}"
    );
    assert_eq!(jobs(&observer).await, 1);
}

/// Every value the server would refuse (aborting the caller's transaction) is refused by jobq first, with
/// `InvalidInput`: a NUL in the arguments of one job or of one job in a batch of 1,000, schedules the server
/// cannot read, names whose index entry would not fit, arguments nested too deep. The caller's next statement
/// and its commit succeed, its rows kept.
pub async fn input_the_server_would_refuse_is_refused_before_any_sql<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1, 'book')")
        .await
        .unwrap();
    let six_kb = varied(6_000, 1);
    let plain = || jobq.defer_job(job("t", json!({})));
    let refusals: Vec<(&str, Defer)> = vec![
        (
            "a NUL in an argument",
            jobq.defer_job(job("t", json!({"note": "nul \0 here"}))),
        ),
        (
            "a NUL in an argument's key",
            jobq.defer_job(job("t", json!({"items": [{"k\0": 1}]}))),
        ),
        (
            "arguments nested 200 deep",
            jobq.defer_job(job("t", nested(200, json!(1)))),
        ),
        ("the year 0", plain().at(year(0))),
        ("the year -100", plain().at(year(-100))),
        ("the year 10000", plain().at(year(10_000))),
        ("DateTime::MAX_UTC", plain().at(DateTime::<Utc>::MAX_UTC)),
        (
            "one second past LATEST",
            plain().at(limits::LATEST + chrono::Duration::seconds(1)),
        ),
        (
            "a delay past LATEST",
            plain().after(Duration::from_secs(10_000 * 366 * 86_400)),
        ),
        ("Duration::MAX", plain().after(Duration::MAX)),
        ("a 6 kB lock", plain().lock(&six_kb)),
        ("a 6 kB queue", plain().queue(&six_kb)),
        ("a 6 kB queueing lock", plain().queueing_lock(&six_kb)),
        ("a 6 kB task", jobq.defer_job(job(&six_kb, json!({})))),
        (
            "a lock one byte over the limit",
            plain().lock(varied(limits::MAX_NAME_BYTES + 1, 2)),
        ),
    ];
    for (what, deferral) in refusals {
        match conn.run(deferral.into_query()).await {
            Err(Error::InvalidInput(message)) => assert!(!message.is_empty(), "{what}"),
            other => panic!("{what}: expected InvalidInput, got {other:?}"),
        }
    }
    let with = |options: JobOptions| NewJob {
        options,
        ..job("t", json!({}))
    };
    let spoiled = [
        ("a NUL", job("t", json!({"n": "\0"}))),
        (
            "the year 10000",
            with(JobOptions {
                scheduled_at: Some(year(10_000)),
                ..JobOptions::default()
            }),
        ),
        (
            "a 6 kB queueing lock",
            with(JobOptions {
                queueing_lock: Some(six_kb.clone()),
                ..JobOptions::default()
            }),
        ),
        (
            "a 6 kB queue",
            with(JobOptions {
                queue: Some(six_kb.clone()),
                ..JobOptions::default()
            }),
        ),
    ];
    for (what, bad) in spoiled {
        let mut batch: Vec<NewJob> = (0..1_000).map(|n| job("t", json!({ "n": n }))).collect();
        batch[617] = bad;
        match conn.run(jobq.defer_batch(batch)).await {
            Err(Error::InvalidInput(message)) => {
                assert!(message.contains("job 617"), "{what}: {message}");
            }
            other => panic!("a batch with {what}: expected InvalidInput, got {other:?}"),
        }
    }
    let filter = JobFilter {
        queue: Some("a\0b".into()),
        ..JobFilter::default()
    };
    let listed = conn.run(jobq.list(&filter)).await;
    assert!(matches!(listed, Err(Error::InvalidInput(_))), "{listed:?}");

    conn.sql("INSERT INTO orders VALUES (2, 'pen')")
        .await
        .expect("the next statement succeeds");
    conn.run(plain().into_query())
        .await
        .expect("the next deferral succeeds");
    conn.commit().await;
    assert_eq!(
        observer.count("SELECT * FROM orders").await,
        2,
        "the caller's rows committed"
    );
    assert_eq!(jobs(&observer).await, 1, "only the good job");
}

/// Values exactly at the limits are stored and read back as given: names of [`limits::MAX_NAME_BYTES`]
/// varied bytes in every field (so every index entry is as long as jobq allows), schedules at
/// [`limits::LATEST`] and [`limits::EARLIEST`], arguments [`limits::MAX_ARGS_DEPTH`] deep; singly and in a
/// batch, in the caller's transaction.
pub async fn values_at_the_limits_are_stored<H: Harness>() {
    let Setup {
        mut conn,
        observer,
        jobq,
        ..
    } = setup::<H>().await;
    let name = |seed| varied(limits::MAX_NAME_BYTES, seed);
    let deepest = nested(limits::MAX_ARGS_DEPTH, json!("deepest"));
    let (task, queue, lock, queueing_lock) = (name(3), name(4), name(5), name(6));
    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1, 'book')")
        .await
        .unwrap();
    let latest = conn
        .run(
            jobq.defer_job(job(&task, deepest.clone()))
                .queue(&queue)
                .lock(&lock)
                .queueing_lock(&queueing_lock)
                .at(limits::LATEST)
                .into_query(),
        )
        .await
        .unwrap();
    let earliest = conn
        .run(
            jobq.defer_job(job("t", json!({})))
                .lock(&lock)
                .at(limits::EARLIEST)
                .into_query(),
        )
        .await
        .unwrap();
    let mut in_batch = job(&name(7), deepest.clone());
    in_batch.options = JobOptions {
        queue: Some(name(8)),
        priority: Some(1),
        lock: Some(name(9)),
        queueing_lock: Some(name(10)),
        scheduled_at: Some(limits::LATEST),
        trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let batch = conn
        .run(jobq.defer_batch([in_batch.clone(), job("t", json!({}))]))
        .await
        .unwrap();
    conn.sql("INSERT INTO orders VALUES (2, 'pen')")
        .await
        .unwrap();
    conn.commit().await;
    assert_eq!(observer.count("SELECT * FROM orders").await, 2);
    assert_eq!(jobs(&observer).await, 4);

    let stored = conn.run(jobq.job(latest)).await.unwrap();
    assert_eq!(
        (
            &stored.task,
            &stored.queue,
            stored.lock.as_ref(),
            stored.queueing_lock.as_ref()
        ),
        (&task, &queue, Some(&lock), Some(&queueing_lock))
    );
    assert_eq!(stored.scheduled_at, limits::LATEST);
    assert_eq!(stored.args, deepest);
    assert_eq!(
        conn.run(jobq.job(earliest)).await.unwrap().scheduled_at,
        limits::EARLIEST
    );
    let stored = conn.run(jobq.job(batch[0])).await.unwrap();
    assert_eq!(
        (stored.task, stored.queue, stored.lock, stored.queueing_lock),
        (
            in_batch.task,
            in_batch.options.queue.unwrap(),
            in_batch.options.lock,
            in_batch.options.queueing_lock
        )
    );
    assert_eq!(stored.scheduled_at, limits::LATEST);
    assert_eq!(stored.trace_context, in_batch.options.trace_context);
    let listed = conn
        .run(jobq.list(&JobFilter {
            queue: Some(queue),
            ..JobFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [latest]);
}

/// A job whose arguments nest 200 deep (valid JSON that the server stores, written here by SQL as another
/// writer or an older jobq could) breaks no read: `list` still returns every job, `job` and `status` read
/// it, on the caller's connection and through the pool.
pub async fn deeply_nested_stored_arguments_are_read<H: Harness>() {
    let Setup {
        db,
        mut conn,
        observer,
        jobq,
    } = setup::<H>().await;
    let depth = 200;
    let deep_text = format!(
        r#"{}{{"deepest": true}}{}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let deep = nested(depth, json!({"deepest": true}));
    let before = conn
        .run(jobq.defer_job(job("t", json!({"n": 1}))).into_query())
        .await
        .unwrap();
    let id: i64 = observer
        .text(&format!(
            "INSERT INTO jobq.jobs (task, args) VALUES ('deep', '{deep_text}') RETURNING id::text"
        ))
        .await
        .expect("an id")
        .parse()
        .unwrap();
    let id = JobId(id);
    let after = conn
        .run(jobq.defer_job(job("t", json!({"n": 2}))).into_query())
        .await
        .unwrap();

    let listed = conn.run(jobq.list(&JobFilter::default())).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [before, id, after]
    );
    assert_eq!(listed[1].args, deep);
    assert_eq!(conn.run(jobq.job(id)).await.unwrap().args, deep);
    assert_eq!(conn.run(jobq.status(id)).await.unwrap(), Status::Todo);

    conn.begin().await;
    assert_eq!(
        conn.run(jobq.list(&JobFilter::default()))
            .await
            .unwrap()
            .len(),
        3,
        "inside a transaction too"
    );
    assert_eq!(conn.run(jobq.status(id)).await.unwrap(), Status::Todo);
    conn.commit().await;

    let pool = H::pool(db.url()).await;
    assert_eq!(
        pool.run(jobq.list(&JobFilter::default()))
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(pool.run(jobq.job(id)).await.unwrap().args, deep);
    assert_eq!(pool.run(jobq.status(id)).await.unwrap(), Status::Todo);
}

/// Every operation works through the adapter's pool too.
pub async fn pooled_path_runs_every_operation<H: Harness>() {
    let db = jobq_tempdb::database();
    let observer = Observer::connect(db.url()).await;
    let pool = H::pool(db.url()).await;
    let jobq = Jobq::default();
    pool.run(jobq.migrate()).await.unwrap();
    assert_eq!(
        pool.run(jobq.check_schema()).await.unwrap(),
        jobq_core::SCHEMA_VERSION
    );
    let id = pool
        .run(
            jobq.defer_job(job("t", json!({"n": 1})))
                .queueing_lock("p")
                .into_query(),
        )
        .await
        .unwrap();
    let again = pool
        .run(
            jobq.defer_job(job("t", json!({})))
                .queueing_lock("p")
                .into_query(),
        )
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyEnqueued { .. })),
        "{again:?}"
    );
    let ids = pool
        .run(jobq.defer_batch((0..100).map(|n| job("t", json!({ "n": n })))))
        .await
        .unwrap();
    assert_eq!(ids.len(), 100);
    assert_eq!(pool.run(jobq.status(id)).await.unwrap(), Status::Todo);
    assert_eq!(
        pool.run(jobq.list(&JobFilter {
            limit: Some(10),
            ..JobFilter::default()
        }))
        .await
        .unwrap()
        .len(),
        10
    );
    assert_eq!(
        pool.run(jobq.cancel(id).into_query()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        pool.run(jobq.retry(id)).await.unwrap(),
        RetryOutcome::Retried
    );
    assert_eq!(pool.run(jobq.job(id)).await.unwrap().status, Status::Todo);
    assert_eq!(jobs(&observer).await, 101);
}

/// Expands to one `#[tokio::test]` per conformance case, run against the given [`Harness`](crate::Harness).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:ty) => {
        $crate::conformance_tests!(@cases $harness;
            defer_is_visible_and_notified_only_at_commit,
            rollback_leaves_no_job_and_no_notification,
            batch_defer_is_atomic_and_names_the_conflict,
            batch_with_a_repeated_queueing_lock_is_refused,
            queueing_lock_conflict_keeps_the_transaction_usable,
            queueing_lock_conflicts_keep_the_transaction_usable_at_every_isolation_level,
            opposite_order_batches_do_not_deadlock,
            cancel_takes_effect_at_commit_only,
            abort_request_is_seen_after_commit,
            cancel_delete_and_unknown_ids,
            reads_see_the_transactions_own_jobs,
            retry_requeues_failed_jobs,
            the_callers_connection_is_left_as_found,
            failed_transaction_gets_a_clear_error,
            missing_schema_is_reported,
            migrate_through_the_adapter,
            awkward_input_is_stored_or_refused_cleanly,
            input_the_server_would_refuse_is_refused_before_any_sql,
            values_at_the_limits_are_stored,
            deeply_nested_stored_arguments_are_read,
            pooled_path_runs_every_operation,
        );
    };
    (@cases $harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::suite::$case::<$harness>().await;
            }
        )*
    };
}
