//! jobq-test's helpers through diesel: the blocking assertions take `conn` inside
//! `conn.transaction(|conn| ..)`, and `blocking::drain` runs on diesel's `PoolExecutor` (polling).

use diesel::Connection;
use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, JobError, Worker};
use jobq_test::Expect;
use jobq_test::blocking::{assert_deferred, drain, refute_deferred};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    month: u32,
}
impl Task for Report {
    const NAME: &'static str = "report";
}

#[test]
fn diesel_transactions_and_drain() {
    let db = jobq_test::database();
    let mut conn = diesel::PgConnection::establish(db.url()).unwrap();
    let jobq = Jobq::default();

    conn.transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
        jobq.defer(&Report { month: 11 })
            .priority(3)
            .run_blocking(&mut *conn)?;
        let job = assert_deferred(
            &jobq,
            &mut *conn,
            Expect::of(&Report { month: 11 }).priority(3),
        );
        assert_eq!(job.priority, 3);
        refute_deferred(&jobq, &mut *conn, Expect::task("report").priority(0));
        Ok(())
    })
    .unwrap();

    let backend = jobq_diesel::PoolExecutor::connect(db.url(), 2).unwrap();
    let summary = drain(Worker::builder(jobq.clone(), backend).blocking_task(
        |report: Report, _: JobContext| {
            if report.month > 12 {
                return Err(JobError::permanent("no such month"));
            }
            Ok(())
        },
    ))
    .unwrap();
    assert_eq!((summary.succeeded, summary.total()), (1, 1), "{summary:?}");
    assert_deferred(
        &jobq,
        &mut conn,
        Expect::task("report").status(Status::Succeeded),
    );
}
