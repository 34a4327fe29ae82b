//! The throwaway server starts, hands out separate databases, and they carry the jobq schema; a private
//! one can crash and start again.

#[test]
fn databases_are_fresh_and_migrated() {
    let a = jobq_tempdb::database();
    let b = jobq_tempdb::database();
    assert_ne!(a.name(), b.name());
    let mut client = postgres::Client::connect(a.url(), postgres::NoTls).unwrap();
    let version: i32 = client
        .query_one("SELECT max(version) FROM jobq.migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, jobq_core::SCHEMA_VERSION);
    client
        .batch_execute("CREATE TABLE only_in_a (x int)")
        .unwrap();
    let mut other = postgres::Client::connect(b.url(), postgres::NoTls).unwrap();
    let found: Option<String> = other
        .query_one("SELECT to_regclass('only_in_a')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(found, None);
}

#[test]
fn empty_databases_have_no_schema() {
    let db = jobq_tempdb::empty_database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let found: Option<String> = client
        .query_one("SELECT to_regclass('jobq.jobs')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(found, None);
}

#[test]
fn a_crashed_server_starts_again_with_its_committed_data() {
    let server = jobq_tempdb::Server::start_private().unwrap();
    let db = server.database(false).unwrap();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    client
        .batch_execute(
            "SET synchronous_commit = on;
             CREATE TABLE kept (x int);
             INSERT INTO kept VALUES (1), (2), (3);",
        )
        .unwrap();

    server.crash().unwrap();
    assert!(
        client.simple_query("SELECT 1").is_err(),
        "an open connection is cut by the crash"
    );
    assert!(
        postgres::Client::connect(db.url(), postgres::NoTls).is_err(),
        "nothing accepts connections after the crash"
    );
    assert!(
        server.database(false).is_err(),
        "no admin connection either"
    );

    server.start_again().unwrap();
    let log = std::fs::read_to_string(server.dir.as_ref().unwrap().join("server.log")).unwrap();
    assert!(
        log.contains("automatic recovery in progress"),
        "a real crash: the server recovers from the WAL when it starts again\n{log}"
    );
    assert!(
        server.base_url().starts_with("postgres://") && db.url().starts_with(server.base_url()),
        "the same port as before"
    );
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let kept: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        kept, 3,
        "what was committed with synchronous_commit = on survives"
    );
    server.database(true).unwrap();
}
