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

#[test]
fn pgbouncer_fronts_a_test_database() {
    let db = jobq_tempdb::database();
    let Some(url) = jobq_tempdb::pgbouncer_or_skip(&db, "pgbouncer_fronts_a_test_database") else {
        return;
    };
    assert_ne!(url, db.url());
    let mut direct = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    direct.batch_execute("CREATE TABLE seen (x int)").unwrap();
    // The simple query protocol: no prepared statement is involved.
    let mut bounced = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    bounced
        .batch_execute("INSERT INTO seen VALUES (1), (2)")
        .unwrap();
    let rows = bounced
        .simple_query("SELECT current_database(), count(*) FROM seen")
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (row.get(0), row.get(1)),
        (Some(db.name()), Some("2")),
        "through PgBouncer, the same database"
    );
}
