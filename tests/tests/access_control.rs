//! Access control end to end (DESIGN.md §3): claims, subscription tokens, grants managed over gRPC, and
//! revocations that kick live subscriptions on every edge through Redis.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_store::access::RedisAccessStore;
use crier_store::log::{MemoryLog, RedisTopology};
use crier_tests::{Bystander, RedisServer, Servers, ServersConfig, mint_claims, unix_now, within_for};
use serde_json::json;

const SECRET: &str = "access-secret-0123456789";

fn token(user: &str, conversations: &[&str]) -> Result<String> {
    mint_claims(SECRET, &json!({"sub": user, "exp": unix_now() + 300, "conversations": conversations}))
}

fn checked(partitions: u32, edges: usize) -> ServersConfig {
    ServersConfig {
        edge: EdgeConfig { partitions, ..EdgeConfig::with_jwt_secret(SECRET) },
        ..ServersConfig::dev(partitions, edges)
    }
}

/// A conversation the user has no grant, claim or token for is refused with the exact error frame; the
/// connection stays open and a bystander keeps receiving.
#[tokio::test]
async fn foreign_conversation_is_denied_and_connection_stays_open() -> Result<()> {
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), checked(8, 1)).await?;
    let mut calm = servers.ws_client(0).await?;
    calm.auth_token(&token("calm", &["bystander"])?, "calm").await?;
    let mut bystander = Bystander::subscribe(calm, servers.publish_client().await?, "bystander").await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&token("u1", &["mine"])?, "u1").await?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "theirs"})).await?;
    ensure!(
        ws.recv_text().await?
            == r#"{"type":"error","message":"Access denied to conversation","conversationId":"theirs"}"#
    );
    ws.subscribe("mine").await?;
    bystander.check().await?;
    servers.shutdown().await
}

/// A grant made over gRPC and a subscription token each open a conversation the claim does not list.
#[tokio::test]
async fn grants_and_subscription_tokens_allow() -> Result<()> {
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), checked(8, 1)).await?;
    let mut access = servers.access_client().await?;
    access.grant("granted", "u1").await?;
    ensure!(access.check("granted", "u1").await? && !access.check("granted", "u2").await?);
    ensure!(access.list_grants("granted").await?? == ["u1"]);
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&token("u1", &[])?, "u1").await?;
    ws.subscribe("granted").await?;
    let sub = mint_claims(SECRET, &json!({"sub": "u1", "conversation": "by-token", "exp": unix_now() + 60}))?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "by-token", "token": sub})).await?;
    ensure!(ws.expect_type("subscribed").await?["conversationId"] == "by-token");
    let other =
        mint_claims(SECRET, &json!({"sub": "u2", "conversation": "by-token-2", "exp": unix_now() + 60}))?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "by-token-2", "token": other})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Access denied to conversation");
    servers.shutdown().await
}

/// `Revoke` on the broker kicks a live subscriber on another edge within one second (through the Redis
/// control stream), the kicked client gets nothing more of it, and a bystander on that edge is untouched.
#[tokio::test]
async fn revoked_user_is_kicked_from_live_subscription_on_another_edge() -> Result<()> {
    let redis = RedisServer::start().await?;
    let store = Arc::new(
        RedisAccessStore::connect(&RedisTopology::Nodes(vec![redis.url()]), Duration::from_secs(2)).await?,
    );
    let servers = Servers::start_with_access(redis.redis_log(8, 1_000).await?, store, checked(8, 2)).await?;
    let mut access = servers.access_client().await?;
    access.grant("project", "u1").await?;
    let mut calm = servers.ws_client(1).await?;
    calm.auth_token(&token("calm", &["bystander"])?, "calm").await?;
    let mut bystander = Bystander::subscribe(calm, servers.publish_client().await?, "bystander").await?;
    let mut ws = servers.ws_client(1).await?;
    ws.auth_token(&token("u1", &[])?, "u1").await?;
    ws.subscribe("project").await?;
    access.revoke("project", "u1").await?;
    let kicked =
        within_for(Duration::from_secs(1), "the revocation to reach edge 1", ws.recv_text()).await??;
    ensure!(
        kicked == r#"{"type":"unsubscribed","conversationId":"project","reason":"access revoked"}"#,
        "{kicked}"
    );
    servers.publish_client().await?.publish("project", &json!({"type": "secret"})).await?;
    bystander.check().await?;
    ws.send_json(&json!({"action": "ping"})).await?;
    ensure!(ws.expect_type("pong").await? == json!({"type": "pong"}), "kicked client still received");
    ws.send_json(&json!({"action": "subscribe", "conversationId": "project"})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Access denied to conversation");
    servers.shutdown().await
}

/// With an API token configured, publishers without it are refused; the harness' clients present it.
#[tokio::test]
async fn publishers_must_present_the_api_token() -> Result<()> {
    let mut config = ServersConfig::dev(8, 1);
    config.broker.api_token = Some("publisher-token-0123456789".into());
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), config).await?;
    let mut anonymous = crier_tests::PublishClient::connect(&servers.broker_url()).await?;
    let refused = anonymous.try_publish("c1", b"{}".to_vec(), "").await?;
    ensure!(refused.map_err(|s| s.code()) == Err(tonic::Code::Unauthenticated));
    servers.publish_client().await?.publish("c1", &json!({"type": "ok"})).await?;
    servers.access_client().await?.grant("c1", "u1").await?;
    servers.shutdown().await
}
