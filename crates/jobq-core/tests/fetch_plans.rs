//! The fetch walks its indexes in order whatever the planner's estimates say (migration 8).
//!
//! Under steady churn an ANALYZE can leave statistics that make a sort of the candidates look cheap; the
//! cached plan then read every waiting job and sorted them (0.3 ms → 146 ms a fetch, seen by
//! `jobq-bench --only sustained`); statistics of a table still small made a Seq Scan look cheap for taking
//! the fetched rows by id (100–125 ms a fetch). Such statistics come and go with autovacuum's timing, so
//! this test makes the same choices look cheap on purpose, with cost settings in the session:
//! `cpu_index_tuple_cost = 10`, under which schema 7's fetch planned a Bitmap Heap Scan and a Sort of all
//! 20,000 waiting jobs (all in one queue, as in the benchmark: `queue <> ALL (paused)` then looks as if it
//! kept none), and `random_page_cost = 1000` with a tiny `effective_cache_size`, under which it took its
//! rows by a Seq Scan. The plans are
//! read from `auto_explain`, sent to the client as notices.

use std::sync::{Arc, Mutex};

/// auto_explain's plan of every statement, nested ones too, sent to the client as a notice.
const EXPLAIN_EVERY_STATEMENT: &str = "SET auto_explain.log_min_duration = 0;
     SET auto_explain.log_nested_statements = on;
     SET auto_explain.log_level = notice;
     SET client_min_messages = notice;";

/// Runs one fetch with auto_explain on and returns the plans of the statements inside it.
fn plans_of_fetch(
    client: &mut postgres::Client,
    notices: &Mutex<Vec<String>>,
    p: &str,
) -> Vec<String> {
    notices.lock().unwrap().clear();
    let taken: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq.fetch_jobs($1::text::jsonb)",
            &[&p],
        )
        .unwrap()
        .get(0);
    assert_eq!(taken, 10, "{p}");
    notices.lock().unwrap().clone()
}

/// A session whose notices (auto_explain's plans) land in `notices`.
fn session(url: &str, notices: &Arc<Mutex<Vec<String>>>) -> postgres::Client {
    let seen = notices.clone();
    url.parse::<postgres::Config>()
        .unwrap()
        .notice_callback(move |n| seen.lock().unwrap().push(n.message().to_owned()))
        .connect(postgres::NoTls)
        .unwrap()
}

#[test]
fn the_fetch_walks_its_indexes_in_order_when_a_sort_looks_cheaper() {
    let db = jobq_tempdb::database();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let mut setup = session(db.url(), &notices);
    setup
        .batch_execute(
            "ALTER TABLE jobq.jobs SET (autovacuum_enabled = false);
             INSERT INTO jobq.jobs (task, queue, priority)
                 SELECT 't', 'a', (g * 7919) % 1000
                 FROM generate_series(1, 20000) g;
             ANALYZE jobq.jobs;",
        )
        .unwrap();
    let worker: i64 = setup
        .query_one(
            "INSERT INTO jobq.workers (name, queues) VALUES ('w', ARRAY['a', 'b']) RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let few: String = (0..20).map(|i| format!(r#","q{i}""#)).collect();
    for misleading in [
        "SET cpu_index_tuple_cost = 10",
        "SET random_page_cost = 1000; SET effective_cache_size = '8kB'",
    ] {
        // A session caches the fetch's plans on its first fetch, made under its own settings.
        let mut client = session(db.url(), &notices);
        client
            .batch_execute(&format!(
                "LOAD 'auto_explain'; {EXPLAIN_EVERY_STATEMENT} {misleading};"
            ))
            .unwrap();
        for queues in [
            "null".to_owned(),
            r#"["a", "b", "default"]"#.to_owned(),
            format!(r#"["a", "b"{few}]"#),
            r#""registered""#.to_owned(),
        ] {
            let p = format!(
                r#"{{"worker_id": {worker}, "queues": {queues}, "tasks": ["t"], "limit": 10}}"#
            );
            let plans = plans_of_fetch(&mut client, &notices, &p);
            let candidates: Vec<&String> = plans
                .iter()
                .filter(|p| p.contains("ids := ARRAY"))
                .collect();
            assert_eq!(
                candidates.len(),
                1,
                "one candidate statement for {queues}: {plans:#?}"
            );
            let plan = candidates[0];
            assert!(
                !plan.contains("Sort Key: j.priority DESC, j.id"),
                "{misleading}, queues {queues}: no sort of the waiting jobs:\n{plan}"
            );
            assert!(
                plan.contains("Index Scan using jobs_fetch"),
                "{misleading}, queues {queues}:\n{plan}"
            );
            for plan in &plans {
                assert!(
                    !plan.contains("Bitmap Heap Scan on jobs")
                        && !plan.contains("Seq Scan on jobs"),
                    "{misleading}, queues {queues}: jobs are read through an index walk, not a scan:\n{plan}"
                );
            }
        }
    }
}
