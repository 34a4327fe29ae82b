//! A separate connection that watches what the adapter under test did, independent of any adapter.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// A plain tokio-postgres connection of the suite's own, outside the transaction under test.
#[derive(Debug)]
pub struct Observer {
    /// The client.
    pub client: Client,
}

impl Observer {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Self {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("observer connects");
        tokio::spawn(connection);
        Self { client }
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn text(&self, sql: &str) -> Option<String> {
        self.client
            .query_opt(sql, &[])
            .await
            .expect(sql)
            .and_then(|row| row.get(0))
    }

    /// `count(*)` of `sql`'s rows.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client
            .query_one(&format!("SELECT count(*) FROM ({sql}) s"), &[])
            .await
            .expect(sql)
            .get(0)
    }

    /// Runs statements.
    pub async fn execute(&self, sql: &str) {
        self.client.batch_execute(sql).await.expect(sql);
    }
}

/// A connection LISTENing on one channel, with the payloads it receives in order.
#[derive(Debug)]
pub struct Listener {
    client: Client,
    channel: String,
    payloads: mpsc::UnboundedReceiver<String>,
}

impl Listener {
    /// Connects to `url` and LISTENs on `channel`.
    pub async fn start(url: &str, channel: &str) -> Self {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("listener connects");
        let (tx, payloads) = mpsc::unbounded_channel();
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .expect("LISTEN");
        Self {
            client,
            channel: channel.to_owned(),
            payloads,
        }
    }

    /// Sends a sentinel notification from this connection and returns every payload received before it.
    /// Notifications are delivered in commit order, so this tells exactly what had been committed before now.
    pub async fn received_before_now(&mut self) -> Vec<String> {
        let sentinel = "jobq-testkit-sentinel";
        self.client
            .execute("SELECT pg_notify($1, $2)", &[&self.channel, &sentinel])
            .await
            .expect("sentinel NOTIFY");
        let mut before = Vec::new();
        loop {
            let payload =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.payloads.recv())
                    .await
                    .expect("the sentinel notification arrives")
                    .expect("listener is open");
            if payload == sentinel {
                return before;
            }
            before.push(payload);
        }
    }
}
