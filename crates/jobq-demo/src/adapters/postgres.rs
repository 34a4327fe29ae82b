//! The story through the sync `postgres` crate: `client.transaction()`, and `run_blocking(&mut tx)`. Plain
//! blocking code; the demo runs it on a blocking thread.

use super::{ProcessOrder, Story, order_id, tallies};
use jobq_core::Error;
use jobq_postgres::prelude::*;

const NAME: &str = "postgres";

pub(crate) fn story(
    url: &str,
    jobq: &Jobq,
    index: i64,
    bulk: usize,
) -> Result<Story, Box<dyn std::error::Error + Send + Sync>> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let mut story = Story::default();
    let insert = "INSERT INTO jobq_demo.orders (id, adapter, item) VALUES ($1, $2, $3)";
    let order = |n| ProcessOrder {
        adapter: NAME.into(),
        order_id: order_id(index, n),
    };

    let mut tx = client.transaction()?;
    let mut ids = Vec::new();
    for n in 1..=3 {
        tx.execute(insert, &[&order_id(index, n), &NAME, &"book"])?;
        ids.push(jobq.defer(&order(n)).run_blocking(&mut tx)?);
    }
    tx.commit()?;
    story.say(format!("committed orders 1-3 with their jobs {ids:?}"));

    let mut tx = client.transaction()?;
    tx.execute(insert, &[&order_id(index, 4), &NAME, &"pen"])?;
    jobq.defer(&order(4)).run_blocking(&mut tx)?;
    tx.rollback()?;
    story.say("rolled back order 4: its job never existed");

    let mut tx = client.transaction()?;
    match jobq.defer(&order(1)).run_blocking(&mut tx) {
        Err(Error::AlreadyEnqueued { queueing_lock }) => {
            story.say(format!(
                "queueing lock {queueing_lock:?} taken: refused, transaction still usable"
            ));
        }
        other => return Err(format!("expected a queueing-lock conflict, got {other:?}").into()),
    }
    tx.execute(insert, &[&order_id(index, 5), &NAME, &"lamp"])?;
    jobq.defer(&order(5)).run_blocking(&mut tx)?;
    tx.commit()?;
    story.say("committed order 5 in the same transaction");

    let mut tx = client.transaction()?;
    jobq.cancel(ids[2]).run_blocking(&mut tx)?;
    tx.execute(
        "DELETE FROM jobq_demo.orders WHERE id = $1",
        &[&order_id(index, 3)],
    )?;
    tx.commit()?;
    story.say(format!(
        "cancelled job {} together with deleting order 3",
        ids[2]
    ));

    let mut tx = client.transaction()?;
    jobq.defer_batch(tallies(NAME, bulk))
        .run_blocking(&mut tx)?;
    tx.commit()?;
    story.say(format!("batch-deferred {bulk} tally jobs"));
    Ok(story)
}
