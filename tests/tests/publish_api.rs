//! The gRPC publish surface: validation messages, `PublishBatch` and `Broadcast` (DESIGN.md §4).

use anyhow::{Result, ensure};
use crier_proto::v1::publish_result::Result as ItemResult;
use crier_proto::v1::{BroadcastRequest, PublishBatchRequest, PublishRequest};
use crier_tests::{Servers, within};
use serde_json::json;

fn request(conversation: &str, payload: &str) -> PublishRequest {
    PublishRequest {
        conversation_id: conversation.into(),
        payload: payload.as_bytes().to_vec().into(),
        idempotency_key: String::new(),
    }
}

/// Bad input is INVALID_ARGUMENT with a message naming the field and the reason.
#[tokio::test]
async fn invalid_publishes_say_what_is_wrong() -> Result<()> {
    let servers = Servers::dev(0).await?;
    let mut publisher = servers.publish_client().await?;
    let cases = [
        ("", "{}", "invalid conversation_id: must not be empty"),
        ("c1", "[1,2]", "invalid payload: must be a JSON object"),
        ("c1", "{\"a\":", "invalid payload: not valid JSON"),
        ("c\u{7}1", "{}", "invalid conversation_id: byte 1 is not printable ASCII"),
    ];
    for (conversation, payload, message) in cases {
        let status =
            within("publish", publisher.inner().publish(request(conversation, payload))).await?.unwrap_err();
        ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
        ensure!(
            status.message().starts_with(message),
            "{:?} does not start with {message:?}",
            status.message()
        );
    }
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(64 * 1024));
    let status = within("publish", publisher.inner().publish(request("c1", &big))).await?.unwrap_err();
    ensure!(status.message().contains("at most 65536"), "{status:?}");
    servers.shutdown().await
}

/// A batch answers item by item: bad items are rejected, good ones appended and delivered in order.
#[tokio::test]
async fn batch_answers_per_item_and_delivers_in_order() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("c1").await?;
    let items = vec![request("c1", r#"{"n":1}"#), request("c1", "nope"), request("c1", r#"{"n":2}"#)];
    let mut publisher = servers.publish_client().await?;
    let reply = within("batch", publisher.inner().publish_batch(PublishBatchRequest { items })).await??;
    let results: Vec<_> = reply.into_inner().results.into_iter().map(|r| r.result).collect();
    ensure!(matches!(results[0], Some(ItemResult::Published(_))), "{results:?}");
    ensure!(
        matches!(&results[1], Some(ItemResult::Error(e)) if e.code == tonic::Code::InvalidArgument as i32)
    );
    ensure!(matches!(results[2], Some(ItemResult::Published(_))), "{results:?}");
    ensure!(ws.recv_json().await? == json!({"n": 1}));
    ensure!(ws.recv_json().await? == json!({"n": 2}));
    let empty =
        within("batch", publisher.inner().publish_batch(PublishBatchRequest { items: vec![] })).await?;
    ensure!(empty.unwrap_err().code() == tonic::Code::InvalidArgument);
    servers.shutdown().await
}

/// A broadcast reaches the subscribers of every listed conversation, verbatim.
#[tokio::test]
async fn broadcast_reaches_every_conversation() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let conversations = ["a", "b", "c"];
    let mut clients = Vec::new();
    for conversation in conversations {
        let mut ws = servers.ws_client(0).await?;
        ws.auth_dev(conversation).await?;
        ws.subscribe(conversation).await?;
        clients.push(ws);
    }
    let payload = r#"{"type":"task-completed","all":true}"#;
    let broadcast = BroadcastRequest {
        conversation_ids: conversations.iter().map(|c| (*c).to_owned()).collect(),
        payload: payload.as_bytes().to_vec().into(),
        idempotency_key: "release-1".into(),
    };
    let mut publisher = servers.publish_client().await?;
    let reply = within("broadcast", publisher.inner().broadcast(broadcast.clone())).await??.into_inner();
    ensure!(reply.results.len() == 3);
    for ws in &mut clients {
        ensure!(ws.recv_text().await? == payload);
    }
    let again = within("broadcast", publisher.inner().broadcast(broadcast)).await??.into_inner();
    let duplicates = again
        .results
        .iter()
        .filter(|r| matches!(&r.result, Some(ItemResult::Published(p)) if p.duplicate))
        .count();
    ensure!(duplicates == 3, "a repeated broadcast with the same key appends nothing: {again:?}");
    servers.shutdown().await
}
