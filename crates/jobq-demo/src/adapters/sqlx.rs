//! The story through `sqlx`: `pool.begin()`, and `run(&mut *tx)`.

use super::{ProcessOrder, Story, order_id, tallies};
use jobq_core::Error;
use jobq_sqlx::prelude::*;

const NAME: &str = "sqlx";

pub(crate) async fn story(
    url: &str,
    jobq: &Jobq,
    index: i64,
    bulk: usize,
) -> Result<Story, Box<dyn std::error::Error + Send + Sync>> {
    let pool = sqlx::PgPool::connect(url).await?;
    let mut story = Story::default();
    let insert = "INSERT INTO jobq_demo.orders (id, adapter, item) VALUES ($1, $2, $3)";
    let order = |n| ProcessOrder {
        adapter: NAME.into(),
        order_id: order_id(index, n),
    };

    let mut tx = pool.begin().await?;
    let mut ids = Vec::new();
    for n in 1..=3 {
        sqlx::query(insert)
            .bind(order_id(index, n))
            .bind(NAME)
            .bind("book")
            .execute(&mut *tx)
            .await?;
        ids.push(jobq.defer(&order(n)).run(&mut *tx).await?);
    }
    tx.commit().await?;
    story.say(format!("committed orders 1-3 with their jobs {ids:?}"));

    let mut tx = pool.begin().await?;
    sqlx::query(insert)
        .bind(order_id(index, 4))
        .bind(NAME)
        .bind("pen")
        .execute(&mut *tx)
        .await?;
    jobq.defer(&order(4)).run(&mut *tx).await?;
    tx.rollback().await?;
    story.say("rolled back order 4: its job never existed");

    let mut tx = pool.begin().await?;
    match jobq.defer(&order(1)).run(&mut *tx).await {
        Err(Error::AlreadyEnqueued { queueing_lock }) => {
            story.say(format!(
                "queueing lock {queueing_lock:?} taken: refused, transaction still usable"
            ));
        }
        other => return Err(format!("expected a queueing-lock conflict, got {other:?}").into()),
    }
    sqlx::query(insert)
        .bind(order_id(index, 5))
        .bind(NAME)
        .bind("lamp")
        .execute(&mut *tx)
        .await?;
    jobq.defer(&order(5)).run(&mut *tx).await?;
    tx.commit().await?;
    story.say("committed order 5 in the same transaction");

    let mut tx = pool.begin().await?;
    jobq.cancel(ids[2]).run(&mut *tx).await?;
    sqlx::query("DELETE FROM jobq_demo.orders WHERE id = $1")
        .bind(order_id(index, 3))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    story.say(format!(
        "cancelled job {} together with deleting order 3",
        ids[2]
    ));

    let mut tx = pool.begin().await?;
    jobq.defer_batch(tallies(NAME, bulk)).run(&mut *tx).await?;
    tx.commit().await?;
    story.say(format!("batch-deferred {bulk} tally jobs"));
    pool.close().await;
    Ok(story)
}
