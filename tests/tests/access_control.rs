//! Access control end to end (DESIGN.md §3): claims, subscription tokens, grants managed over gRPC, and
//! revocations that kick live subscriptions on every edge through Redis.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_proto::v1::StatsRequest;
use crier_proto::v1::admin_service_client::AdminServiceClient;
use crier_store::access::RedisAccessStore;
use crier_store::log::{MemoryLog, RedisTopology};
use crier_tests::{
    Bystander, CONNECTION_TYP, RedisServer, Servers, ServersConfig, WsClient, mint_claims,
    mint_subscription_token, unix_now, within, within_for,
};
use serde_json::json;

const SECRET: &str = "access-secret-0123456789";

fn token(user: &str, conversations: &[&str]) -> Result<String> {
    let claims =
        json!({"typ": CONNECTION_TYP, "sub": user, "exp": unix_now() + 300, "conversations": conversations});
    mint_claims(SECRET, &claims)
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
    let sub = mint_subscription_token(SECRET, "u1", "by-token", Duration::from_secs(60))?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "by-token", "token": sub})).await?;
    ensure!(ws.expect_type("subscribed").await?["conversationId"] == "by-token");
    let other = mint_subscription_token(SECRET, "u2", "by-token-2", Duration::from_secs(60))?;
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

/// A subscription token cannot open a connection (nor refresh one), and a connection token is no
/// subscription token, even for a conversation its claim lists (issue 17, item 5).
#[tokio::test]
async fn connection_and_subscription_tokens_are_not_interchangeable() -> Result<()> {
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), checked(8, 1)).await?;
    let subscription = mint_subscription_token(SECRET, "u1", "c1", Duration::from_secs(60))?;
    let mut ws = servers.ws_client(0).await?;
    ws.expect_type("ready").await?;
    ws.send_json(&json!({"action": "auth", "token": subscription})).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"error","message":"Authentication failed"}"#);
    ensure!(ws.expect_close().await? == Some(4001));
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&token("u1", &[])?, "u1").await?;
    ws.send_json(&json!({"action": "refresh", "token": subscription})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Invalid refresh token");
    let connection = token("u1", &["c2"])?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "c3", "token": connection})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Access denied to conversation");
    servers.shutdown().await
}

/// After `Revoke`, neither the still-valid conversations claim nor a subscription token lets the user back
/// in, on the edge that kicked them or on another one; a later `Grant` does (issue 17, item 6).
#[tokio::test]
async fn revocation_outlives_claims_and_subscription_tokens_until_a_grant() -> Result<()> {
    let redis = RedisServer::start().await?;
    let store = Arc::new(
        RedisAccessStore::connect(&RedisTopology::Nodes(vec![redis.url()]), Duration::from_secs(2)).await?,
    );
    let servers = Servers::start_with_access(redis.redis_log(8, 1_000).await?, store, checked(8, 2)).await?;
    let mut ws = servers.ws_client(1).await?;
    ws.auth_token(&token("u1", &["project"])?, "u1").await?;
    ws.subscribe("project").await?;
    let mut access = servers.access_client().await?;
    access.revoke("project", "u1").await?;
    ensure!(within("the kick", ws.expect_type("unsubscribed")).await??["reason"] == "access revoked");
    ws.send_json(&json!({"action": "subscribe", "conversationId": "project"})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Access denied to conversation");
    let subscription = mint_subscription_token(SECRET, "u1", "project", Duration::from_secs(60))?;
    let mut other = servers.ws_client(0).await?;
    other.auth_token(&token("u1", &["project"])?, "u1").await?;
    let by_token = json!({"action": "subscribe", "conversationId": "project", "token": subscription});
    other.send_json(&by_token).await?;
    ensure!(other.expect_type("error").await?["message"] == "Access denied to conversation");
    other.send_json(&json!({"action": "subscribe", "conversationId": "project"})).await?;
    ensure!(other.expect_type("error").await?["message"] == "Access denied to conversation");
    access.grant("project", "u1").await?;
    within("the grant to reach edge 1", subscribed_eventually(&mut ws, "project")).await??;
    servers.shutdown().await
}

/// Subscribes to `conversation` until it is allowed (each refusal answered before the next try).
async fn subscribed_eventually(ws: &mut WsClient, conversation: &str) -> Result<()> {
    loop {
        ws.send_json(&json!({"action": "subscribe", "conversationId": conversation})).await?;
        let frame = ws.recv_json().await?;
        if frame["type"] == "subscribed" {
            return Ok(());
        }
        ensure!(frame["message"] == "Access denied to conversation", "{frame}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With an admin token, `AdminService` takes it and refuses the publishers' API token, which still opens
/// `PublishService`; without one, the API token opens `AdminService` as before.
#[tokio::test]
async fn admin_service_takes_the_admin_token_not_the_api_token() -> Result<()> {
    const API: &str = "publisher-token-0123456789";
    const ADMIN: &str = "operator-token-0123456789";
    for (admin_token, allowed, refused) in [(Some(ADMIN), ADMIN, API), (None, API, "wrong-token-0123456789")]
    {
        let mut config = ServersConfig::dev(8, 1);
        config.broker.api_token = Some(API.into());
        config.broker.admin_token = admin_token.map(str::to_owned);
        let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), config).await?;
        ensure!(stats(&servers, allowed).await? == tonic::Code::Ok);
        ensure!(stats(&servers, refused).await? == tonic::Code::Unauthenticated);
        servers.publish_client().await?.publish("c1", &json!({"type": "ok"})).await?;
        servers.shutdown().await?;
    }
    Ok(())
}

/// The code of an `AdminService.Stats` call presenting `token`.
async fn stats(servers: &Servers, token: &str) -> Result<tonic::Code> {
    let endpoint = tonic::transport::Endpoint::from_shared(servers.broker_url())?;
    let mut admin = AdminServiceClient::new(within("gRPC connect", endpoint.connect()).await??);
    let mut request = tonic::Request::new(StatsRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let reply = within("Stats", admin.stats(request)).await?;
    Ok(reply.map_or_else(|status| status.code(), |_| tonic::Code::Ok))
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
