//! Property: whatever the interleaving of publishes, subscribes, dropped connections and reconnects with
//! `since`, every subscriber sees every notification published after it first subscribed exactly once and
//! in order, while retention holds them (DESIGN.md §5).

use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use crier_proto::Position;
use crier_store::log::{MemoryLog, PartitionedLog};
use crier_tests::{PublishClient, RedisServer, Servers, WsClient};
use proptest::prelude::*;
use serde_json::json;

const CLIENTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Publish,
    /// Reads what has been published so far, then keeps the connection.
    Sync(usize),
    /// Drops the connection, losing whatever was in flight.
    Drop(usize),
    /// Connects (again): with `since` if the client ever received something, else a plain subscribe.
    Connect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Publish),
        1 => (0..CLIENTS).prop_map(Op::Sync),
        1 => (0..CLIENTS).prop_map(Op::Drop),
        2 => (0..CLIENTS).prop_map(Op::Connect),
    ]
}

#[derive(Default)]
struct Client {
    ws: Option<WsClient>,
    /// Seq of the first notification it must see: the first one after the position its first `subscribed`
    /// named. That is at most the count published before it subscribed; entries still on their way to the
    /// edge then may come after `subscribed`, and the position says so.
    joined_at: Option<i64>,
    received: Vec<i64>,
    last_position: Option<String>,
}

struct World {
    servers: Servers,
    publisher: PublishClient,
    conversation: String,
    published: i64,
    /// Where each notification was appended, by seq.
    positions: Vec<Position>,
    clients: Vec<Client>,
}

impl World {
    async fn apply(&mut self, op: &Op) -> Result<()> {
        match *op {
            Op::Publish => {
                let payload = json!({"type": "job-status", "seq": self.published});
                let position = self.publisher.publish(&self.conversation, &payload).await?;
                self.positions.push(position.parse()?);
                self.published += 1;
            }
            Op::Sync(c) => self.sync(c).await?,
            Op::Drop(c) => drop(self.clients[c].ws.take()),
            Op::Connect(c) if self.clients[c].ws.is_none() => self.connect(c).await?,
            Op::Connect(_) => {}
        }
        Ok(())
    }

    async fn connect(&mut self, c: usize) -> Result<()> {
        let mut ws = WsClient::connect(&format!("{}?positions=1", self.servers.edge_ws_url(0))).await?;
        ws.auth_dev(&format!("user-{c}")).await?;
        let client = &mut self.clients[c];
        match &client.last_position {
            Some(since) => {
                let subscribed = ws.subscribe_since(&self.conversation, since).await?;
                ensure!(subscribed["recovered"] == true, "retention holds everything: {subscribed}");
            }
            None => {
                let subscribed = ws.subscribe(&self.conversation).await?;
                let Some(position) = subscribed["position"].as_str() else {
                    bail!("subscribed without a position: {subscribed}");
                };
                let at: Position = position.parse()?;
                let first_after = self.positions.iter().position(|p| p.id > at.id).map(|seq| seq as i64);
                let joined = first_after.unwrap_or(self.published);
                client.last_position = Some(position.to_owned());
                client.joined_at.get_or_insert(joined);
            }
        }
        client.ws = Some(ws);
        Ok(())
    }

    /// Reads until the client has seen the last published notification.
    async fn sync(&mut self, c: usize) -> Result<()> {
        let client = &mut self.clients[c];
        let (Some(ws), Some(joined)) = (client.ws.as_mut(), client.joined_at) else { return Ok(()) };
        while client.received.last().map_or(joined, |last| last + 1) < self.published {
            let frame = ws.expect_type("notification").await?;
            let (Some(seq), Some(position)) = (frame["data"]["seq"].as_i64(), frame["position"].as_str())
            else {
                bail!("malformed notification {frame}");
            };
            client.received.push(seq);
            client.last_position = Some(position.to_owned());
        }
        Ok(())
    }

    /// Reconnects every client that ever joined, reads everything, and checks exactly-once delivery.
    async fn check(mut self) -> Result<()> {
        for c in 0..CLIENTS {
            if self.clients[c].joined_at.is_some() && self.clients[c].ws.is_none() {
                self.connect(c).await?;
            }
            self.sync(c).await?;
            let client = &self.clients[c];
            if let Some(joined) = client.joined_at {
                let want: Vec<i64> = (joined..self.published).collect();
                ensure!(client.received == want, "client {c}: got {:?}, want {want:?}", client.received);
            }
        }
        self.servers.shutdown().await
    }
}

async fn run(log: Arc<dyn PartitionedLog>, conversation: String, ops: Vec<Op>) -> Result<()> {
    let servers = Servers::start(log, 1).await?;
    let publisher = servers.publish_client().await?;
    let clients = (0..CLIENTS).map(|_| Client::default()).collect();
    let positions = Vec::new();
    let mut world = World { servers, publisher, conversation, published: 0, positions, clients };
    for op in &ops {
        world.apply(op).await?;
    }
    world.check().await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Exactly-once, in-order delivery per subscriber across drops and `since` reconnects (memory log).
    #[test]
    fn every_subscriber_sees_everything_exactly_once_on_memory(ops in prop::collection::vec(op(), 1..40)) {
        let result = runtime().block_on(run(Arc::new(MemoryLog::new(64, 10_000)), "prop".into(), ops));
        prop_assert!(result.is_ok(), "{:?}", result);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The same property through Redis (one server for all cases, a conversation per case).
    #[test]
    fn every_subscriber_sees_everything_exactly_once_on_redis(ops in prop::collection::vec(op(), 1..40)) {
        let rt = runtime();
        let result = rt.block_on(async {
            let redis = RedisServer::start().await?;
            let log = redis.redis_log(64, 10_000).await?;
            run(log, "prop-redis".into(), ops).await
        });
        prop_assert!(result.is_ok(), "{:?}", result);
    }
}
