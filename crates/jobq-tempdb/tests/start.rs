//! The throwaway server starts, hands out separate databases, and they carry the jobq schema.

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
