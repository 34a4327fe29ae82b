//! The story through `tokio-postgres`: `client.transaction()`, and `run(&tx)`.

use super::{ProcessOrder, Story, order_id, tallies};
use jobq_core::Error;
use jobq_tokio_postgres::prelude::*;

const NAME: &str = "tokio-postgres";

pub(crate) async fn story(
    url: &str,
    jobq: &Jobq,
    index: i64,
    bulk: usize,
) -> Result<Story, Box<dyn std::error::Error + Send + Sync>> {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut story = Story::default();
    let insert = "INSERT INTO jobq_demo.orders (id, adapter, item) VALUES ($1, $2, $3)";
    let order = |n| ProcessOrder {
        adapter: NAME.into(),
        order_id: order_id(index, n),
    };

    let tx = client.transaction().await?;
    let mut ids = Vec::new();
    for n in 1..=3 {
        tx.execute(insert, &[&order_id(index, n), &NAME, &"book"])
            .await?;
        ids.push(jobq.defer(&order(n)).run(&tx).await?);
    }
    tx.commit().await?;
    story.say(format!("committed orders 1-3 with their jobs {ids:?}"));

    let tx = client.transaction().await?;
    tx.execute(insert, &[&order_id(index, 4), &NAME, &"pen"])
        .await?;
    jobq.defer(&order(4)).run(&tx).await?;
    tx.rollback().await?;
    story.say("rolled back order 4: its job never existed");

    let tx = client.transaction().await?;
    match jobq.defer(&order(1)).run(&tx).await {
        Err(Error::AlreadyEnqueued { queueing_lock }) => {
            story.say(format!(
                "queueing lock {queueing_lock:?} taken: refused, transaction still usable"
            ));
        }
        other => return Err(format!("expected a queueing-lock conflict, got {other:?}").into()),
    }
    tx.execute(insert, &[&order_id(index, 5), &NAME, &"lamp"])
        .await?;
    jobq.defer(&order(5)).run(&tx).await?;
    tx.commit().await?;
    story.say("committed order 5 in the same transaction");

    let tx = client.transaction().await?;
    jobq.cancel(ids[2]).run(&tx).await?;
    tx.execute(
        "DELETE FROM jobq_demo.orders WHERE id = $1",
        &[&order_id(index, 3)],
    )
    .await?;
    tx.commit().await?;
    story.say(format!(
        "cancelled job {} together with deleting order 3",
        ids[2]
    ));

    let tx = client.transaction().await?;
    jobq.defer_batch(tallies(NAME, bulk)).run(&tx).await?;
    tx.commit().await?;
    story.say(format!("batch-deferred {bulk} tally jobs"));
    Ok(story)
}
