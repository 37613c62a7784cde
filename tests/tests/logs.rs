//! Production logs: one JSON object per line, the replaced system's event names, and never a token.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crier_broker::publisher::Item;
use crier_broker::{BrokerConfig, Publisher};
use crier_tests::{AdminClient, CrierProcess, RedisServer, WsClient, free_port, mint_token, within};
use serde_json::{Value, json};

const SECRET: &str = "logs-test-secret-0123456789";

/// A session's life in `--log-format json` shows every event name of the replaced system with its fields,
/// and the token it authenticated with appears nowhere.
#[tokio::test]
async fn json_logs_carry_event_names_and_never_the_token() -> Result<()> {
    let redis = RedisServer::start().await?;
    let (edge, ws_port) = spawn_edge(&redis).await?;
    let url = format!("ws://127.0.0.1:{ws_port}/api/ws");
    let token = mint_token(SECRET, "u-logs", Duration::from_secs(60))?;
    let mut ws = WsClient::connect(&url).await?;
    ws.auth_token(&token, "u-logs").await?;
    ws.subscribe("logged").await?;
    let publisher = Publisher::new(redis.redis_log(64, 100).await?, &BrokerConfig::default());
    let payload = json!({"type": "job-status"}).to_string().into();
    publisher
        .publish(&Item { conversation_id: "logged".into(), payload, idempotency_key: String::new() })
        .await?;
    ws.recv_json().await?;
    ws.send_text("{not json").await?;
    ws.expect_type("error").await?;
    ws.unsubscribe("logged").await?;
    let mut silent = WsClient::connect(&url).await?;
    ensure!(silent.expect_close().await? == Some(4001));
    edge.sigterm().await?;
    let (status, logs) = edge.wait(Duration::from_secs(5)).await?;
    ensure!(status.success(), "edge exited with {status}; log:\n{logs}");

    ensure!(!logs.contains(&token), "the token leaked into the logs:\n{logs}");
    let events: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}")))
        .collect::<Result<_>>()?;
    let names: BTreeSet<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    for name in [
        "ws_client_connected_awaiting_auth",
        "ws_client_authenticated",
        "ws_client_subscribed",
        "ws_broadcast_completed",
        "ws_invalid_message",
        "ws_client_unsubscribed",
        "ws_auth_timeout",
    ] {
        ensure!(names.contains(name), "no {name} in {names:?}");
    }
    let find = |name: &str| events.iter().find(|e| e["message"] == name).cloned().unwrap_or_default();
    ensure!(find("ws_client_authenticated")["user_id"] == "u-logs");
    ensure!(find("ws_client_subscribed")["conversation_id"] == "logged");
    ensure!(find("ws_broadcast_completed")["recipients"] == 1);
    Ok(())
}

/// A `crier edge` on `redis` logging JSON at debug, with open access and a 300 ms auth timeout, once ready;
/// and its WebSocket port.
async fn spawn_edge(redis: &RedisServer) -> Result<(CrierProcess, u16)> {
    let (ws_port, admin_port) = (free_port()?, free_port()?);
    let edge = CrierProcess::spawn(
        &[
            "--log-format",
            "json",
            "edge",
            "--listen",
            &format!("127.0.0.1:{ws_port}"),
            "--auth-timeout",
            "300ms",
            // Open access: these tests are about logs; production's checked access would refuse subscribes.
            "--acl",
            "open",
        ],
        &[
            ("CRIER_REDIS_URL", &redis.url()),
            ("CRIER_JWT_SECRET", SECRET),
            ("CRIER_ADMIN_LISTEN", &format!("127.0.0.1:{admin_port}")),
            ("CRIER_DRAIN_WINDOW", "0s"),
            ("RUST_LOG", "info,crier_edge=debug"),
        ],
    )?;
    let admin = AdminClient::new(format!("127.0.0.1:{admin_port}").parse()?);
    within("the edge to become ready", async {
        while admin.get("/readyz").await.map(|r| r.status).unwrap_or(0) != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    Ok((edge, ws_port))
}

/// When Redis fails during a `since` recovery, the client hears `recovered:false` and the operator a
/// warning naming the conversation and the cause.
#[tokio::test]
async fn a_failed_recovery_read_is_logged_with_its_cause() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let (edge, ws_port) = spawn_edge(&redis).await?;
    let url = format!("ws://127.0.0.1:{ws_port}/api/ws");
    // A live subscriber keeps the partition's reader, so the next subscribe needs Redis only to recover.
    let mut live = WsClient::connect(&url).await?;
    live.auth_token(&mint_token(SECRET, "u-live", Duration::from_secs(60))?, "u-live").await?;
    live.subscribe("recovering").await?;
    let publisher = Publisher::new(redis.redis_log(64, 100).await?, &BrokerConfig::default());
    let payload = json!({"type": "job-status"}).to_string().into();
    let item = Item { conversation_id: "recovering".into(), payload, idempotency_key: String::new() };
    // Recovery after the first of two entries has the second to read from Redis.
    let position = publisher.publish(&item).await?.position.to_string();
    publisher.publish(&item).await?;
    live.recv_json().await?;
    live.recv_json().await?;
    let mut late = WsClient::connect(&url).await?;
    late.auth_token(&mint_token(SECRET, "u-late", Duration::from_secs(60))?, "u-late").await?;
    redis.stop();
    let subscribed = late.subscribe_since("recovering", &position).await?;
    ensure!(subscribed["recovered"] == false, "{subscribed}");
    redis.restart().await?;
    edge.sigterm().await?;
    let (status, logs) = edge.wait(Duration::from_secs(10)).await?;
    ensure!(status.success(), "edge exited with {status}; log:\n{logs}");
    let failed = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == "replay read failed")
        .with_context(|| format!("no `replay read failed` in the log:\n{logs}"))?;
    ensure!(failed["level"] == "WARN" && failed["conversation_id"] == "recovering", "{failed}");
    let cause = failed["error"].as_str().unwrap_or_default();
    ensure!(!cause.is_empty(), "no cause in {failed}");
    Ok(())
}
