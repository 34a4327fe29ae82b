//! The partial unique indexes: one waiting job per queueing lock, one running job per lock.

mod common;

use common::connect;

async fn insert(client: &tokio_postgres::Client, sql: &str) -> Result<u64, String> {
    client.execute(sql, &[]).await.map_err(|e| {
        e.as_db_error()
            .map(|d| d.code().code().to_owned())
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn queueing_lock_is_unique_among_waiting_jobs_only() {
    let db = jobq_tempdb::database();
    let c = connect(db.url()).await;
    let todo = "INSERT INTO jobq.jobs (task, queueing_lock) VALUES ('t', 'q')";
    insert(&c, todo).await.unwrap();
    assert_eq!(insert(&c, todo).await.unwrap_err(), "23505");
    c.batch_execute("UPDATE jobq.jobs SET status = 'doing' WHERE queueing_lock = 'q'")
        .await
        .unwrap();
    insert(&c, todo)
        .await
        .expect("a running job does not hold the queueing lock");
    insert(
        &c,
        "INSERT INTO jobq.jobs (task, queueing_lock, status) VALUES ('t', 'q', 'succeeded')",
    )
    .await
    .expect("finished jobs do not hold it either");
}

#[tokio::test]
async fn lock_is_unique_among_running_jobs_only() {
    let db = jobq_tempdb::database();
    let c = connect(db.url()).await;
    for _ in 0..3 {
        insert(&c, "INSERT INTO jobq.jobs (task, lock) VALUES ('t', 'L')")
            .await
            .expect("many may wait");
    }
    let start_one = "UPDATE jobq.jobs SET status = 'doing' WHERE id = (SELECT min(id) FROM jobq.jobs WHERE status = 'todo')";
    insert(&c, start_one).await.unwrap();
    assert_eq!(
        insert(&c, start_one).await.unwrap_err(),
        "23505",
        "a second running job with lock L"
    );
    c.batch_execute("UPDATE jobq.jobs SET status = 'succeeded' WHERE status = 'doing'")
        .await
        .unwrap();
    insert(&c, start_one)
        .await
        .expect("after the first finished, the next may run");
}

#[tokio::test]
async fn fetch_index_covers_only_waiting_jobs_not_blocked_by_their_lock() {
    let db = jobq_tempdb::database();
    let c = connect(db.url()).await;
    let def: String = c
        .query_one(
            "SELECT pg_get_indexdef('jobq.jobs_fetch_idx'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        def.contains("WHERE ((status = 'todo'::text) AND (NOT blocked))"),
        "{def}"
    );
}

/// The fetch runs its generic plans without JIT: a generic plan's guessed cost can pass `jit_above_cost`,
/// and compiling on every call cost 20 ms of a 0.4 ms fetch (migration 7). Asserted on the function's own
/// settings, since timings are not asserted.
#[tokio::test]
async fn the_fetch_uses_generic_plans_without_jit() {
    let db = jobq_tempdb::database();
    let c = connect(db.url()).await;
    let settings: Vec<String> = c
        .query_one(
            "SELECT proconfig FROM pg_proc WHERE oid = 'jobq.fetch_jobs(jsonb)'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        settings,
        [
            "plan_cache_mode=force_generic_plan",
            "jit=off",
            "enable_sort=off",
            "enable_seqscan=off"
        ]
    );
}
