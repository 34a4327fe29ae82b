//! Bulk operations by filter (retry, cancel, delete in bounded batches), list paging and time filters,
//! and batched pruning, against the real server.

mod common;

use common::{Async, connect};
use jobq_core::prelude::*;
use jobq_core::{BulkOutcome, Query};
use std::time::Duration;

/// Runs `sql` on the observer's connection (test setup: putting jobs into a status).
async fn exec(client: &tokio_postgres::Client, sql: &str) {
    client.batch_execute(sql).await.unwrap();
}

/// The ids, statuses and attempts of every job, by id.
async fn jobs(client: &tokio_postgres::Client) -> Vec<(i64, String, String, i32)> {
    client
        .query(
            "SELECT id, task, status, attempts FROM jobq.jobs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn defer_n(client: &tokio_postgres::Client, task: &str, n: usize) -> Vec<JobId> {
    Jobq::default()
        .defer_batch((0..n).map(|i| NewJob::new(task, serde_json::json!({ "i": i }))))
        .run(Async(client))
        .await
        .unwrap()
}

fn by_task_and_status(task: &str, status: Status) -> JobFilter {
    JobFilter {
        task: Some(task.into()),
        status: Some(status),
        ..JobFilter::default()
    }
}

/// Runs batches of `op` until the outcome says no more match; returns every batch's outcome.
async fn all_batches(
    client: &tokio_postgres::Client,
    mut filter: JobFilter,
    op: impl Fn(&JobFilter) -> Query<BulkOutcome>,
) -> Vec<BulkOutcome> {
    let mut batches = Vec::new();
    loop {
        let batch = op(&filter).run(Async(client)).await.unwrap();
        batches.push(batch);
        match batch.next {
            Some(next) => filter.after_id = Some(next),
            None => return batches,
        }
    }
}

#[tokio::test]
async fn bulk_retry_puts_back_the_failed_jobs_of_one_task_and_keeps_their_attempts() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    defer_n(&client, "send_email", 3).await;
    defer_n(&client, "other", 2).await;
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'failed', attempts = 20, finished_at = now();
         UPDATE jobq.jobs SET status = 'succeeded', attempts = 1
         WHERE id = (SELECT max(id) FROM jobq.jobs WHERE task = 'send_email')",
    )
    .await;
    let filter = by_task_and_status("send_email", Status::Failed);
    assert_eq!(
        jobq.retry_matching(&filter)
            .count()
            .run(Async(&client))
            .await
            .unwrap(),
        2
    );
    let outcome = jobq
        .retry_matching(&filter)
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.examined,
            outcome.changed,
            outcome.conflicts,
            outcome.attempts_reset,
            outcome.next
        ),
        (2, 2, 0, false, None)
    );
    let after = jobs(&client).await;
    let states: Vec<(&str, &str, i32)> = after
        .iter()
        .map(|(_, t, s, a)| (t.as_str(), s.as_str(), *a))
        .collect();
    assert_eq!(
        states,
        [
            ("send_email", "todo", 20),
            ("send_email", "todo", 20),
            ("send_email", "succeeded", 1),
            ("other", "failed", 20),
            ("other", "failed", 20),
        ],
        "only the failed jobs of the task are retried, attempts kept by default"
    );
    // Running the batch again changes nothing: waiting jobs are never retried.
    let again = jobq
        .retry_matching(&filter)
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!((again.examined, again.changed), (0, 0));
}

#[tokio::test]
async fn bulk_retry_resets_attempts_when_asked_and_says_so() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    defer_n(&client, "t", 2).await;
    // One job with a queueing lock, which goes through retry_job and a second statement.
    jobq.defer_job(NewJob::new("t", serde_json::json!(null)))
        .queueing_lock("only-one")
        .run(Async(&client))
        .await
        .unwrap();
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'aborted', attempts = 7, finished_at = now()",
    )
    .await;
    let outcome = jobq
        .retry_matching(&JobFilter::default())
        .reset_attempts()
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!((outcome.changed, outcome.attempts_reset), (3, true));
    for (id, _, status, attempts) in jobs(&client).await {
        assert_eq!((status.as_str(), attempts), ("todo", 0), "job {id}");
    }
}

#[tokio::test]
async fn bulk_retry_leaves_a_job_whose_queueing_lock_is_taken_and_the_transaction_usable() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    for lock in ["taken", "free"] {
        jobq.defer_job(NewJob::new("t", serde_json::json!(null)))
            .queueing_lock(lock)
            .run(Async(&client))
            .await
            .unwrap();
    }
    defer_n(&client, "t", 1).await;
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'failed', finished_at = now()",
    )
    .await;
    let holder = jobq
        .defer_job(NewJob::new("t", serde_json::json!(null)))
        .queueing_lock("taken")
        .run(Async(&client))
        .await
        .unwrap();
    let taken = JobId(holder.0 - 3);
    exec(&client, "BEGIN").await;
    let filter = by_task_and_status("t", Status::Failed);
    let outcome = jobq
        .retry_matching(&filter)
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(
        (outcome.examined, outcome.changed, outcome.conflicts),
        (3, 2, 1)
    );
    // As the single-job retry reports it; and the transaction still works.
    assert!(matches!(
        jobq.retry(taken).run(Async(&client)).await,
        Err(Error::AlreadyEnqueued { queueing_lock }) if queueing_lock == "taken"
    ));
    assert_eq!(
        jobq.status(taken).run(Async(&client)).await.unwrap(),
        Status::Failed
    );
    exec(&client, "COMMIT").await;
    let statuses: Vec<String> = jobs(&client).await.into_iter().map(|j| j.2).collect();
    assert_eq!(statuses, ["failed", "todo", "todo", "todo"]);
}

#[tokio::test]
async fn bulk_cancel_cancels_waiting_jobs_and_leaves_running_ones_unless_abort() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    defer_n(&client, "t", 4).await;
    defer_n(&client, "keep", 1).await;
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'doing', worker_id = 1, started_at = now(), attempts = 1
         WHERE id IN (SELECT id FROM jobq.jobs WHERE task = 't' ORDER BY id LIMIT 1)",
    )
    .await;
    let filter = JobFilter {
        task: Some("t".into()),
        ..JobFilter::default()
    };
    let outcome = jobq
        .cancel_matching(&filter)
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(
        (outcome.examined, outcome.changed, outcome.abort_requested),
        (3, 3, 0)
    );
    let statuses: Vec<String> = jobs(&client).await.into_iter().map(|j| j.2).collect();
    assert_eq!(
        statuses,
        ["doing", "cancelled", "cancelled", "cancelled", "todo"]
    );

    let outcome = jobq
        .cancel_matching(&filter)
        .abort()
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!((outcome.changed, outcome.abort_requested), (0, 1));
    let asked: bool = client
        .query_one(
            "SELECT abort_requested FROM jobq.jobs ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(asked, "the running job was asked to stop");
    // Asked once: a second run finds nothing more to do.
    let again = jobq
        .cancel_matching(&filter)
        .abort()
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(again.examined, 0);
}

#[tokio::test]
async fn bulk_delete_deletes_matching_jobs_but_not_running_ones() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    defer_n(&client, "t", 3).await;
    defer_n(&client, "keep", 2).await;
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'succeeded', finished_at = now() WHERE id % 2 = 0;
         UPDATE jobq.jobs SET status = 'doing', worker_id = 1 WHERE id = 1",
    )
    .await;
    let filter = JobFilter {
        task: Some("t".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        jobq.delete_matching(&filter)
            .count()
            .run(Async(&client))
            .await
            .unwrap(),
        2
    );
    let outcome = jobq
        .delete_matching(&filter)
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!((outcome.changed, outcome.next), (2, None));
    let left: Vec<(i64, String)> = jobs(&client)
        .await
        .into_iter()
        .map(|j| (j.0, j.1))
        .collect();
    assert_eq!(
        left,
        [(1, "t".into()), (4, "keep".into()), (5, "keep".into())]
    );
    assert!(JobFilter::default().is_empty() && !filter.is_empty());
}

#[tokio::test]
async fn batches_change_at_most_one_batch_each_and_together_all_jobs() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    defer_n(&client, "t", 25).await;
    let filter = JobFilter {
        task: Some("t".into()),
        limit: Some(10),
        ..JobFilter::default()
    };
    let batches = all_batches(&client, filter.clone(), |f| {
        jobq.cancel_matching(f).into_query()
    })
    .await;
    let changed: Vec<u64> = batches.iter().map(|b| b.changed).collect();
    assert_eq!(changed, [10, 10, 5]);
    assert_eq!(batches[0].next, Some(JobId(10)));
    let statuses: Vec<String> = jobs(&client).await.into_iter().map(|j| j.2).collect();
    assert!(statuses.iter().all(|s| s == "cancelled"), "{statuses:?}");

    let batches = all_batches(&client, filter.clone(), |f| {
        jobq.retry_matching(f).into_query()
    })
    .await;
    let changed: Vec<u64> = batches.iter().map(|b| b.changed).collect();
    assert_eq!(changed, [10, 10, 5]);

    // A batch size that divides the set ends with an empty batch.
    let filter = JobFilter {
        limit: Some(5),
        ..filter
    };
    let batches = all_batches(&client, filter, |f| jobq.delete_matching(f).into_query()).await;
    let changed: Vec<u64> = batches.iter().map(|b| b.changed).collect();
    assert_eq!(changed, [5, 5, 5, 5, 5, 0]);
    assert!(jobs(&client).await.is_empty());
}

#[tokio::test]
async fn bad_bulk_input_is_refused_before_any_sql() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    exec(&client, "BEGIN").await;
    for filter in [
        JobFilter {
            limit: Some(0),
            ..JobFilter::default()
        },
        JobFilter {
            limit: Some(jobq_core::limits::MAX_BULK_BATCH + 1),
            ..JobFilter::default()
        },
        JobFilter {
            task: Some("a\0b".into()),
            ..JobFilter::default()
        },
    ] {
        let refused = jobq.delete_matching(&filter).run(Async(&client)).await;
        assert!(
            matches!(refused, Err(Error::InvalidInput(_))),
            "{refused:?}"
        );
    }
    // Nothing reached the server: the transaction is still usable.
    client.query_one("SELECT 1", &[]).await.unwrap();
    exec(&client, "ROLLBACK").await;
}

#[tokio::test]
async fn two_pages_cover_the_set_with_no_overlap_and_time_filters_narrow_it() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let ids = defer_n(&client, "t", 8).await;
    let page = |after: Option<JobId>| JobFilter {
        after_id: after,
        limit: Some(4),
        ..JobFilter::default()
    };
    let first = jobq.list(&page(None)).run(Async(&client)).await.unwrap();
    let second = jobq
        .list(&page(first.last().map(|j| j.id)))
        .run(Async(&client))
        .await
        .unwrap();
    let listed: Vec<JobId> = first.iter().chain(&second).map(|j| j.id).collect();
    assert_eq!(listed, ids);

    exec(
        &client,
        "UPDATE jobq.jobs SET created_at = now() - interval '2 hours' WHERE id <= 3;
         UPDATE jobq.jobs SET status = 'failed', finished_at = now() - interval '30 minutes' WHERE id = 8",
    )
    .await;
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let recent = JobFilter {
        created_since: Some(hour_ago),
        ..JobFilter::default()
    };
    assert_eq!(
        jobq.list(&recent).run(Async(&client)).await.unwrap().len(),
        5
    );
    let old = JobFilter {
        created_until: Some(hour_ago),
        ..JobFilter::default()
    };
    assert_eq!(jobq.list(&old).run(Async(&client)).await.unwrap().len(), 3);
    let finished = JobFilter {
        finished_since: Some(hour_ago),
        ..JobFilter::default()
    };
    let listed = jobq.list(&finished).run(Async(&client)).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[7]]);
    // The bulk operations read the same filter.
    assert_eq!(
        jobq.retry_matching(&finished)
            .run(Async(&client))
            .await
            .unwrap()
            .changed,
        1
    );
    let far = JobFilter {
        created_since: Some(jobq_core::limits::LATEST + chrono::Duration::days(1)),
        ..JobFilter::default()
    };
    assert!(matches!(
        jobq.list(&far).run(Async(&client)).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn prune_deletes_in_batches() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    defer_n(&client, "t", 2_500).await;
    defer_n(&client, "recent", 3).await;
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'succeeded', finished_at = now() - interval '2 days';
         UPDATE jobq.jobs SET finished_at = now() WHERE task = 'recent'",
    )
    .await;
    let day = Duration::from_secs(86_400);
    let first = jobq
        .prune_batch(day, None)
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!((first.deleted, first.more), (1_000, true));
    assert_eq!(jobq.prune(day).run(Async(&client)).await.unwrap(), 1_500);
    let left: Vec<String> = jobs(&client).await.into_iter().map(|j| j.1).collect();
    assert_eq!(left, ["recent", "recent", "recent"]);
    let last = jobq
        .prune_batch(day, Some(&first))
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(
        (last.deleted, last.more, last.cutoff),
        (0, false, first.cutoff)
    );
}

/// A deferral holding the queueing lock, not yet committed when the bulk retry reaches the job: the retry
/// waits for it (as the single-job retry does), then reports the conflict instead of failing its statement.
#[tokio::test]
async fn bulk_retry_reports_a_queueing_lock_taken_by_a_transaction_still_open() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let other = connect(db.url()).await;
    let jobq = Jobq::default();
    jobq.defer_job(NewJob::new("t", serde_json::json!(null)))
        .queueing_lock("nightly")
        .run(Async(&client))
        .await
        .unwrap();
    exec(
        &client,
        "UPDATE jobq.jobs SET status = 'failed', finished_at = now()",
    )
    .await;
    exec(&other, "BEGIN").await;
    jobq.defer_job(NewJob::new("t", serde_json::json!(null)))
        .queueing_lock("nightly")
        .run(Async(&other))
        .await
        .unwrap();
    let url = db.url().to_owned();
    let retry = tokio::spawn(async move {
        let client = connect(&url).await;
        Jobq::default()
            .retry_matching(&JobFilter::default())
            .run(Async(&client))
            .await
    });
    // Wait until the retry waits for the open deferral (a lock wait on the server), then commit it.
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%retry_job%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 || retry.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    exec(&other, "COMMIT").await;
    let outcome = retry.await.unwrap().unwrap();
    assert_eq!((outcome.changed, outcome.conflicts), (0, 1));
    let statuses: Vec<String> = jobs(&client).await.into_iter().map(|j| j.2).collect();
    assert_eq!(statuses, ["failed", "todo"]);
}
