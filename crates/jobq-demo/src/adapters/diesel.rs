//! The story through `diesel`: `conn.transaction(|conn| …)`, and `run_blocking(conn)`. Plain blocking code;
//! the demo runs it on a blocking thread.

use super::{ProcessOrder, Story, order_id, tallies};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use jobq_core::Error;
use jobq_diesel::prelude::*;

const NAME: &str = "diesel";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn insert(conn: &mut PgConnection, id: i64, item: &str) -> QueryResult<usize> {
    diesel::sql_query("INSERT INTO jobq_demo.orders (id, adapter, item) VALUES ($1, $2, $3)")
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(NAME)
        .bind::<Text, _>(item)
        .execute(conn)
}

pub(crate) fn story(url: &str, jobq: &Jobq, index: i64, bulk: usize) -> Result<Story, BoxError> {
    let mut conn = PgConnection::establish(url)?;
    let mut story = Story::default();
    let order = |n| ProcessOrder {
        adapter: NAME.into(),
        order_id: order_id(index, n),
    };

    let ids = conn.transaction::<_, BoxError, _>(|conn| {
        let mut ids = Vec::new();
        for n in 1..=3 {
            insert(conn, order_id(index, n), "book")?;
            ids.push(jobq.defer(&order(n)).run_blocking(&mut *conn)?);
        }
        Ok(ids)
    })?;
    story.say(format!("committed orders 1-3 with their jobs {ids:?}"));

    let rolled_back = conn.transaction::<(), BoxError, _>(|conn| {
        insert(conn, order_id(index, 4), "pen")?;
        jobq.defer(&order(4)).run_blocking(&mut *conn)?;
        Err("rolled back on purpose".into())
    });
    assert!(rolled_back.is_err());
    story.say("rolled back order 4: its job never existed");

    conn.transaction::<_, BoxError, _>(|conn| {
        match jobq.defer(&order(1)).run_blocking(&mut *conn) {
            Err(Error::AlreadyEnqueued { queueing_lock }) => {
                story.say(format!(
                    "queueing lock {queueing_lock:?} taken: refused, transaction still usable"
                ));
            }
            other => return Err(format!("expected a queueing-lock conflict, got {other:?}").into()),
        }
        insert(conn, order_id(index, 5), "lamp")?;
        jobq.defer(&order(5)).run_blocking(&mut *conn)?;
        Ok(())
    })?;
    story.say("committed order 5 in the same transaction");

    conn.transaction::<_, BoxError, _>(|conn| {
        jobq.cancel(ids[2]).run_blocking(&mut *conn)?;
        diesel::sql_query("DELETE FROM jobq_demo.orders WHERE id = $1")
            .bind::<BigInt, _>(order_id(index, 3))
            .execute(conn)?;
        Ok(())
    })?;
    story.say(format!(
        "cancelled job {} together with deleting order 3",
        ids[2]
    ));

    conn.transaction::<_, BoxError, _>(|conn| {
        Ok(jobq
            .defer_batch(tallies(NAME, bulk))
            .run_blocking(&mut *conn)?)
    })?;
    story.say(format!("batch-deferred {bulk} tally jobs"));
    Ok(story)
}
