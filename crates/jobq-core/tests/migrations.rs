//! Migrations against a real server: apply, re-apply, concurrent migrators, outdated and newer schemas.

mod common;

use common::{Async, Blocking, connect};
use jobq_core::{Error, Jobq, SCHEMA_VERSION};

#[tokio::test]
async fn migrations_apply_and_reapplying_is_a_no_op() {
    let db = jobq_tempdb::empty_database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    assert_eq!(
        jobq.schema_version().run(Async(&client)).await.unwrap(),
        None
    );
    assert!(matches!(
        jobq.check_schema().run(Async(&client)).await,
        Err(Error::SchemaMissing { .. })
    ));
    jobq.migrate().run(Async(&client)).await.unwrap();
    assert_eq!(
        jobq.check_schema().run(Async(&client)).await.unwrap(),
        SCHEMA_VERSION
    );
    jobq.migrate().run(Async(&client)).await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM jobq.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows,
        i64::from(SCHEMA_VERSION),
        "one row per migration, none twice"
    );
}

#[test]
fn migrations_apply_through_a_blocking_executor_in_another_schema() {
    let db = jobq_tempdb::empty_database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let jobq = Jobq::with_schema("app_jobs").unwrap();
    jobq.migrate().run_blocking(Blocking(&mut client)).unwrap();
    assert_eq!(
        jobq.check_schema()
            .run_blocking(Blocking(&mut client))
            .unwrap(),
        SCHEMA_VERSION
    );
    let found: Option<String> = client
        .query_one("SELECT to_regclass('app_jobs.jobs')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(found.as_deref(), Some("app_jobs.jobs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrators_do_not_collide() {
    let db = jobq_tempdb::empty_database();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = db.url().to_owned();
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            Jobq::default().migrate().run(Async(&client)).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("every migrator succeeds");
    }
    let client = connect(db.url()).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM jobq.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn outdated_and_newer_schemas_are_reported_with_what_to_do() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    client.batch_execute("DELETE FROM jobq.migrations WHERE version = (SELECT max(version) FROM jobq.migrations)").await.unwrap();
    let err = jobq.check_schema().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaOutdated {
                expected: SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("jobq schema apply"), "{err}");

    client
        .batch_execute("INSERT INTO jobq.migrations (version, name) VALUES (9999, 'future')")
        .await
        .unwrap();
    let err = jobq.check_schema().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaNewer { found: 9999, .. }),
        "{err:?}"
    );
    let err = jobq.migrate().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaNewer { found: 9999, .. }),
        "migrate refuses too: {err:?}"
    );
    assert!(err.to_string().contains("upgrade jobq"), "{err}");
}
