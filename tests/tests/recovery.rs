//! Positions and recovery: `?positions=1` frames, `subscribe` with `since`, and the seam between replayed and
//! live notifications (DESIGN.md §2, §5).

use std::sync::Arc;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_proto::partition;
use crier_store::log::{MemoryLog, PartitionedLog};
use crier_tests::tungstenite::Message as WsMessage;
use crier_tests::{PublishClient, RedisServer, Servers, ServersConfig, stream_entry, within};
use serde_json::{Value, json};

/// With `?positions=1`, each notification arrives wrapped with its conversation and the position the broker
/// returned, the payload untouched inside `data`.
#[tokio::test]
async fn positions_opt_in_wraps_payload_with_its_position() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("c1").await?;
    let payload = json!({"type": "research-progress", "progress": 10});
    let position = servers.publish_client().await?.publish("c1", &payload).await?;
    let frame = ws.expect_type("notification").await?;
    let want = json!({"type": "notification", "conversationId": "c1", "position": position, "data": payload});
    ensure!(frame == want, "got {frame}, want {want}");
    servers.shutdown().await
}

/// Reconnecting with `since` replays exactly the notifications missed, in order, then continues live.
#[tokio::test]
async fn since_replays_what_was_missed_then_continues_live() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 1_000).await?, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("c1").await?;
    for seq in 0..3 {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut last = String::new();
    for seq in 0..3 {
        let (got, position) = ws.expect_seq_notification("c1").await?;
        ensure!(got == seq);
        last = position;
    }
    ws.close().await?;
    for seq in 3..6 {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    let subscribed = ws.subscribe_since("c1", &last).await?;
    ensure!(subscribed["recovered"] == true, "{subscribed}");
    for seq in 3..6 {
        ensure!(ws.expect_seq_notification("c1").await?.0 == seq);
    }
    publisher.publish_seq("c1", 6).await?;
    ensure!(ws.expect_seq_notification("c1").await?.0 == 6);
    servers.shutdown().await
}

/// While notifications keep flowing, a client that drops and resubscribes with `since` sees every one exactly
/// once: nothing lost or repeated where the replay hands over to live delivery.
async fn seam_has_no_gap_or_duplicate(log: Arc<dyn PartitionedLog>) -> Result<()> {
    const TOTAL: i64 = 400;
    let servers = Servers::start(log, 1).await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("seam").await?;
    let mut publisher = servers.publish_client().await?;
    let publishing = tokio::spawn(async move {
        for seq in 0..TOTAL {
            publisher.publish_seq("seam", seq).await?;
        }
        anyhow::Ok(())
    });
    let mut seen = Vec::new();
    let mut last = String::new();
    while seen.len() < 50 {
        let (seq, position) = ws.expect_seq_notification("seam").await?;
        seen.push(seq);
        last = position;
    }
    // Drop without a goodbye: frames in flight are lost with the connection.
    drop(ws);
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("seam", &last).await?["recovered"] == true);
    while seen.last() != Some(&(TOTAL - 1)) {
        seen.push(ws.expect_seq_notification("seam").await?.0);
    }
    within("the publisher", publishing).await???;
    let want: Vec<i64> = (0..TOTAL).collect();
    ensure!(seen == want, "gap or duplicate: got {} notifications: {seen:?}", seen.len());
    servers.shutdown().await
}

/// The seam on the in-memory log.
#[tokio::test]
async fn seam_has_no_gap_or_duplicate_on_memory() -> Result<()> {
    seam_has_no_gap_or_duplicate(Arc::new(MemoryLog::new(64, 10_000))).await
}

/// The seam through Redis.
#[tokio::test]
async fn seam_has_no_gap_or_duplicate_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    seam_has_no_gap_or_duplicate(redis.redis_log(64, 10_000).await?).await
}

/// A position whose successors were trimmed by retention is answered `recovered:false`, never with a silent
/// gap; live delivery works all the same.
async fn trimmed_position_is_not_recovered(log: Arc<dyn PartitionedLog>, appends: i64) -> Result<()> {
    let servers = Servers::start(log, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let first = publisher.publish_seq("c1", 0).await?;
    for seq in 1..appends {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("c1", &first).await?["recovered"] == false);
    publisher.publish_seq("c1", appends).await?;
    ensure!(ws.expect_seq_notification("c1").await?.0 == appends, "live delivery after recovered:false");
    servers.shutdown().await
}

/// Trimmed positions on the in-memory log (exact trimming).
#[tokio::test]
async fn trimmed_position_is_not_recovered_on_memory() -> Result<()> {
    trimmed_position_is_not_recovered(Arc::new(MemoryLog::new(64, 5)), 20).await
}

/// Trimmed positions through Redis, whose `MAXLEN ~` trims whole 100-entry nodes and does not report what it
/// trimmed in `max-deleted-entry-id`.
#[tokio::test]
async fn trimmed_position_is_not_recovered_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    trimmed_position_is_not_recovered(redis.redis_log(64, 10).await?, 400).await
}

/// Positions that are garbage, of another partition, or of another epoch are not recoverable.
#[tokio::test]
async fn foreign_or_garbage_positions_are_not_recovered() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut publisher = servers.publish_client().await?;
    let position = publisher.publish_seq("c1", 0).await?;
    let parts: Vec<&str> = position.split(':').collect();
    let other_epoch = format!("{}:{}:{}", parts[0], "1234abcd", parts[2]);
    let other_partition = format!("{}:{}:{}", (parts[0].parse::<u32>()? + 1) % 64, parts[1], parts[2]);
    let mut ws = servers.positions_client(0, "u1").await?;
    for (i, since) in ["garbage", "1:2:3", other_epoch.as_str(), other_partition.as_str()].iter().enumerate()
    {
        let conversation = format!("c{}", i + 10);
        let subscribed = ws.subscribe_since(&conversation, since).await?;
        ensure!(subscribed["recovered"] == false, "{since}: {subscribed}");
    }
    let mut ws = servers.positions_client(0, "u2").await?;
    let subscribed: Value = ws.subscribe_since("c1", &position).await?;
    ensure!(subscribed["recovered"] == true, "the genuine position recovers: {subscribed}");
    servers.shutdown().await
}

/// Bytes of padding that make a notification ~4 KB.
const PAD: usize = 4_000;

/// An edge (dev auth) on `log` whose sessions' queues hold 256 KiB, with `tune` applied to its config.
async fn small_queue_servers(
    log: Arc<dyn PartitionedLog>,
    tune: impl FnOnce(&mut EdgeConfig),
) -> Result<Servers> {
    let mut config = ServersConfig::dev(log.partitions(), 1);
    config.edge.max_queue_bytes = 256 * 1024;
    tune(&mut config.edge);
    Servers::start_with(log, config).await
}

/// Publishes `{"type":"job-status","seq":seq,"pad":"xx…"}` of ~4 KB about `conversation`.
async fn publish_padded(publisher: &mut PublishClient, conversation: &str, seq: i64) -> Result<String> {
    let payload = json!({"type": "job-status", "seq": seq, "pad": "x".repeat(PAD)});
    publisher.publish(conversation, &payload).await
}

/// 200 × 4 KB missed with a 256 KiB queue bound: `subscribed` with `recovered:true`, then all 200 in order
/// as the socket drains, then the ones published during the recovery and after it, each exactly once (the
/// old edge collected the whole backlog, found it did not fit the queue and closed 4008, again on every
/// reconnect).
async fn recovery_larger_than_the_queue_arrives_in_pages(log: Arc<dyn PartitionedLog>) -> Result<()> {
    let servers = small_queue_servers(log, |_| {}).await?;
    let mut publisher = servers.publish_client().await?;
    let since = publisher.publish_seq("c1", 0).await?;
    for seq in 1..=200 {
        publish_padded(&mut publisher, "c1", seq).await?;
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    let subscribed = ws.subscribe_since("c1", &since).await?;
    ensure!(subscribed["recovered"] == true, "{subscribed}");
    let live = tokio::spawn(async move {
        for seq in 201..=260 {
            publish_padded(&mut publisher, "c1", seq).await?;
        }
        anyhow::Ok(publisher)
    });
    let mut seen = Vec::new();
    while seen.len() < 260 {
        seen.push(ws.expect_seq_notification("c1").await?.0);
    }
    ensure!(seen == (1..=260).collect::<Vec<_>>(), "gap, duplicate or reorder: {seen:?}");
    let mut publisher = within("the live publisher", live).await???;
    publisher.publish_seq("c1", 261).await?;
    ensure!(ws.expect_seq_notification("c1").await?.0 == 261, "live delivery after the recovery");
    servers.shutdown().await
}

/// Paged recovery on the in-memory log.
#[tokio::test]
async fn recovery_larger_than_the_queue_arrives_in_pages_on_memory() -> Result<()> {
    recovery_larger_than_the_queue_arrives_in_pages(Arc::new(MemoryLog::new(64, 10_000))).await
}

/// Paged recovery through Redis.
#[tokio::test]
async fn recovery_larger_than_the_queue_arrives_in_pages_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    recovery_larger_than_the_queue_arrives_in_pages(redis.redis_log(64, 10_000).await?).await
}

/// Four resubscribes sent together, 40 × 4 KB missed each (640 KB together, with a 256 KiB queue bound):
/// each gets `subscribed` and its backlog in order, the recoveries take turns (none finishes before every
/// other has started), and each goes on live.
#[tokio::test]
async fn several_recoveries_of_one_connection_all_complete() -> Result<()> {
    const CONVERSATIONS: [&str; 4] = ["r0", "r1", "r2", "r3"];
    let servers = small_queue_servers(Arc::new(MemoryLog::new(64, 10_000)), |_| {}).await?;
    let mut publisher = servers.publish_client().await?;
    let mut positions = Vec::new();
    for conversation in CONVERSATIONS {
        positions.push(publisher.publish_seq(conversation, 0).await?);
        for seq in 1..=40 {
            publish_padded(&mut publisher, conversation, seq).await?;
        }
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    let subscribes: Vec<Value> = CONVERSATIONS
        .iter()
        .zip(&positions)
        .map(|(conversation, since)| json!({"action": "subscribe", "conversationId": conversation, "since": since}))
        .collect();
    ws.send_all_json(&subscribes).await?;
    let mut arrivals: Vec<(String, i64)> = Vec::new();
    let mut subscribed = 0;
    while arrivals.len() < 4 * 40 {
        let frame = ws.recv_json().await?;
        match frame["type"].as_str() {
            Some("subscribed") if frame["recovered"] == true => subscribed += 1,
            Some("notification") => {
                let conversation = frame["conversationId"].as_str().unwrap_or_default().to_owned();
                arrivals.push((conversation, frame["data"]["seq"].as_i64().unwrap_or(-1)));
            }
            _ => anyhow::bail!("unexpected frame {frame}"),
        }
    }
    ensure!(subscribed == 4, "{subscribed} recovered subscriptions");
    for conversation in CONVERSATIONS {
        let seqs: Vec<i64> = arrivals.iter().filter(|(c, _)| c == conversation).map(|(_, s)| *s).collect();
        ensure!(seqs == (1..=40).collect::<Vec<_>>(), "{conversation}: {seqs:?}");
    }
    let first = |c: &str| arrivals.iter().position(|(a, _)| a == c);
    let last = |c: &str| arrivals.iter().rposition(|(a, _)| a == c);
    for (a, b) in CONVERSATIONS.iter().flat_map(|a| CONVERSATIONS.iter().map(move |b| (a, b))) {
        ensure!(last(a) > first(b), "{a} finished before {b} started: they did not take turns");
    }
    for (seq, conversation) in (41..).zip(CONVERSATIONS) {
        publisher.publish_seq(conversation, seq).await?;
        ensure!(ws.expect_seq_notification(conversation).await?.0 == seq, "{conversation} live");
    }
    servers.shutdown().await
}

/// A conversation other than `conversation` in the same partition of a `partitions`-partition log.
fn neighbour(conversation: &str, partitions: u32) -> String {
    let home = partition(conversation, partitions);
    (0..).map(|i| format!("n{i}")).find(|c| partition(c, partitions) == home).unwrap_or_default()
}

/// With `--max-recovery-scan 100`, a position more than 100 partition entries (of any conversation) behind
/// is answered `recovered:false` (counted as `beyond_scan_bound`) without the edge reading on; one within
/// the bound is recovered; live delivery works either way.
#[tokio::test]
async fn since_beyond_the_scan_bound_is_not_recovered() -> Result<()> {
    let servers = Servers::start_with(Arc::new(MemoryLog::new(64, 10_000)), {
        let mut config = ServersConfig::dev(64, 1);
        config.edge.max_recovery_scan = 100;
        config
    })
    .await?;
    let admin = servers.admin().await?;
    let mut publisher = servers.publish_client().await?;
    let other = neighbour("c1", 64);
    let far = publisher.publish_seq("c1", 0).await?;
    for seq in 0..150 {
        publisher.publish_seq(&other, seq).await?;
    }
    let near = publisher.publish_seq("c1", 1).await?;
    for seq in 150..200 {
        publisher.publish_seq(&other, seq).await?;
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("c1", &far).await?["recovered"] == false, "201 entries behind, bound 100");
    publisher.publish_seq("c1", 2).await?;
    ensure!(ws.expect_seq_notification("c1").await?.0 == 2, "live after recovered:false");
    let mut ws = servers.positions_client(0, "u2").await?;
    ensure!(ws.subscribe_since("c1", &near).await?["recovered"] == true, "51 entries behind, bound 100");
    ensure!(ws.expect_seq_notification("c1").await?.0 == 2, "the one missed");
    let scrape = admin.scrape().await?;
    ensure!(scrape.value(r#"crier_edge_recoveries_total{outcome="beyond_scan_bound"}"#)? == 1.0);
    ensure!(scrape.value(r#"crier_edge_recoveries_total{outcome="recovered"}"#)? == 1.0);
    servers.shutdown().await
}

/// Appends `payloads` about `conversation` straight to the log, in order (faster than publishing).
async fn append_direct(
    log: &dyn PartitionedLog,
    conversation: &str,
    payloads: impl IntoIterator<Item = Value>,
) -> Result<()> {
    let partition = partition(conversation, log.partitions());
    for payload in payloads {
        let entry = stream_entry(conversation, payload.to_string().into_bytes());
        log.append(partition, entry.into(), None).await?;
    }
    Ok(())
}

/// A ~4 KB notification numbered `seq`.
fn padded(seq: i64) -> Value {
    json!({"type": "job-status", "seq": seq, "pad": "x".repeat(PAD)})
}

/// Recovery reads cost the connection's rate limit (one message per 512 partition entries read): with a
/// burst of 10, a `since` 5,000 entries behind (~10 messages' worth) exceeds it, `Rate limit exceeded` and
/// 4029, while one a few entries behind is served on a fresh connection.
#[tokio::test]
async fn recovery_reads_are_charged_to_the_rate_limit() -> Result<()> {
    let servers = Servers::start_with(Arc::new(MemoryLog::new(64, 10_000)), {
        let mut config = ServersConfig::dev(64, 1);
        (config.edge.limits.messages_per_second, config.edge.limits.message_burst) = (1, 10);
        config
    })
    .await?;
    let mut publisher = servers.publish_client().await?;
    let far = publisher.publish_seq("c1", 0).await?;
    let seqs = (0..5_000).map(|seq| json!({"type": "job-status", "seq": seq}));
    append_direct(servers.log().as_ref(), &neighbour("c1", 64), seqs).await?;
    let near = publisher.publish_seq("c1", 1).await?;
    publisher.publish_seq("c1", 2).await?;

    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("c1", &near).await?["recovered"] == true);
    ensure!(ws.expect_seq_notification("c1").await?.0 == 2);

    let mut ws = servers.positions_client(0, "u2").await?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "c1", "since": far})).await?;
    let refused = ws.expect_type("error").await?;
    ensure!(refused["message"] == "Rate limit exceeded", "{refused}");
    ensure!(ws.expect_close().await? == Some(4029));
    servers.shutdown().await
}

/// A client that stops reading in the middle of a 16 MB recovery while retention trims what it has not
/// received yet gets a contiguous prefix and then 4008 (`recovery interrupted`), never a silent gap: it was
/// told `recovered:true`, so the edge must not skip on.
#[tokio::test]
async fn recovery_that_loses_its_place_closes_4008_without_a_gap() -> Result<()> {
    const BACKLOG: i64 = 4_000;
    let log: Arc<dyn PartitionedLog> = Arc::new(MemoryLog::new(64, BACKLOG as usize));
    let servers = small_queue_servers(Arc::clone(&log), |_| {}).await?;
    let since = servers.publish_client().await?.publish_seq("c1", 0).await?;
    append_direct(log.as_ref(), "c1", (1..=BACKLOG).map(padded)).await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("c1", &since).await?["recovered"] == true);
    // Far more than the socket buffers hold is still unsent: this trims all of it.
    append_direct(log.as_ref(), &neighbour("c1", 64), (0..BACKLOG).map(padded)).await?;
    let mut seen = Vec::new();
    let code = loop {
        match within("the recovery's frames", ws.next_message()).await?? {
            Some(WsMessage::Text(text)) => {
                let frame: Value = serde_json::from_str(text.as_str())?;
                seen.push(frame["data"]["seq"].as_i64().unwrap_or(-1));
            }
            Some(WsMessage::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            other => anyhow::bail!("unexpected {other:?} after {} notifications", seen.len()),
        }
    };
    ensure!(code == Some(4008), "closed with {code:?} after {} notifications", seen.len());
    ensure!(seen.len() < BACKLOG as usize, "the whole backlog fit the socket buffers: no test");
    ensure!(seen == (1..=seen.len() as i64).collect::<Vec<_>>(), "not a contiguous prefix: {seen:?}");
    servers.shutdown().await
}

/// A page is bounded by what its frames take in the queue, not by their payloads alone: 5,000 missed
/// notifications of ~10 bytes each, sent with positions (~100 bytes of envelope per frame), arrive in order
/// through a 256 KiB queue bound. Counting payloads only, the first page held 64 KiB of payloads, some
/// 700 KB of frames, and the session closed with 4008 on every reconnect.
#[tokio::test]
async fn a_page_of_small_notifications_with_positions_fits_the_queue() -> Result<()> {
    const BACKLOG: i64 = 5_000;
    let log: Arc<dyn PartitionedLog> = Arc::new(MemoryLog::new(64, 10_000));
    let servers = small_queue_servers(Arc::clone(&log), |_| {}).await?;
    let since = servers.publish_client().await?.publish_seq("c1", 0).await?;
    append_direct(log.as_ref(), "c1", (1..=BACKLOG).map(|seq| json!({ "seq": seq }))).await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("c1", &since).await?["recovered"] == true);
    let mut seen = Vec::new();
    while seen.len() < BACKLOG as usize {
        seen.push(ws.expect_seq_notification("c1").await?.0);
    }
    ensure!(seen == (1..=BACKLOG).collect::<Vec<_>>(), "gap, duplicate or reorder");
    servers.shutdown().await
}
