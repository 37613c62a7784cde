//! [`PublishClient`]: the backend's side of `crier.v1.PublishService`, through the generated tonic client.

use anyhow::Context;
use crier_proto::v1::publish_service_client::PublishServiceClient;
use crier_proto::v1::{PublishRequest, STREAM_ENTRY_VERSION, StreamEntry};
use prost::Message as _;
use serde_json::Value;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::deadline::within;

/// Adds `authorization: Bearer <API token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct Bearer(pub Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value =
                format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("bad token"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// A channel to `url`, bounded by the harness' step timeout.
pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    let endpoint = Channel::from_shared(url.to_owned()).with_context(|| format!("bad URL {url}"))?;
    within(format!("gRPC connect to {url}"), endpoint.connect())
        .await?
        .with_context(|| format!("gRPC connect to {url}"))
}

/// A channel to `url` (`https://`) over TLS configured by `tls`.
pub async fn tls_channel(url: &str, tls: ClientTlsConfig) -> anyhow::Result<Channel> {
    let endpoint = Channel::from_shared(url.to_owned()).with_context(|| format!("bad URL {url}"))?;
    let endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    within(format!("gRPC connect to {url}"), endpoint.connect())
        .await?
        .with_context(|| format!("gRPC connect to {url}"))
}

/// A gRPC client of one broker.
#[derive(Clone)]
pub struct PublishClient {
    inner: PublishServiceClient<InterceptedService<Channel, Bearer>>,
}

impl PublishClient {
    /// Connects to `url` (`http://127.0.0.1:PORT`) without an API token.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with_token(url, None).await
    }

    /// Connects to `url` (`https://`) over TLS configured by `tls`, without an API token.
    pub async fn connect_tls(url: &str, tls: ClientTlsConfig) -> anyhow::Result<Self> {
        let channel = tls_channel(url, tls).await?;
        Ok(Self { inner: PublishServiceClient::with_interceptor(channel, Bearer(None)) })
    }

    /// Connects to `url`, presenting `token` as the API token when given.
    pub async fn connect_with_token(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let bearer = Bearer(token.map(str::to_owned));
        Ok(Self { inner: PublishServiceClient::with_interceptor(channel(url).await?, bearer) })
    }

    /// Publishes `payload` about `conversation`; returns the position. Any non-OK status is an error.
    pub async fn publish(&mut self, conversation: &str, payload: &Value) -> anyhow::Result<String> {
        let position = self
            .try_publish(conversation, payload.to_string().into_bytes(), "")
            .await?
            .with_context(|| format!("publishing to {conversation:?}"))?;
        Ok(position)
    }

    /// Publishes `{"type":"job-status","seq":seq}` about `conversation`; returns the position.
    pub async fn publish_seq(&mut self, conversation: &str, seq: i64) -> anyhow::Result<String> {
        self.publish(conversation, &serde_json::json!({"type": "job-status", "seq": seq})).await
    }

    /// Publishes `payload` exactly as given (for byte-for-byte delivery checks); returns the position.
    pub async fn publish_raw(&mut self, conversation: &str, payload: &str) -> anyhow::Result<String> {
        let position = self
            .try_publish(conversation, payload.as_bytes().to_vec(), "")
            .await?
            .with_context(|| format!("publishing to {conversation:?}"))?;
        Ok(position)
    }

    /// Publishes raw `payload` bytes with an optional idempotency key (`""` for none). The outer result is
    /// the harness's timeout; the inner one is the broker's answer, for tests of rejections.
    pub async fn try_publish(
        &mut self,
        conversation: &str,
        payload: Vec<u8>,
        idempotency_key: &str,
    ) -> anyhow::Result<Result<String, tonic::Status>> {
        let request = PublishRequest {
            conversation_id: conversation.to_owned(),
            payload: payload.into(),
            idempotency_key: idempotency_key.to_owned(),
        };
        let reply = within(format!("Publish to {conversation:?}"), self.inner.publish(request)).await?;
        Ok(reply.map(|response| response.into_inner().position))
    }

    /// The generated client, for RPCs this wrapper does not cover.
    pub fn inner(&mut self) -> &mut PublishServiceClient<InterceptedService<Channel, Bearer>> {
        &mut self.inner
    }
}

/// A stream entry about `conversation` as the broker writes it (without publish time or trace context),
/// encoded: for tests that append to the log behind the broker's back.
#[must_use]
pub fn stream_entry(conversation: &str, payload: impl Into<bytes::Bytes>) -> Vec<u8> {
    let entry = StreamEntry {
        version: STREAM_ENTRY_VERSION,
        conversation_id: conversation.into(),
        payload: payload.into(),
        ..StreamEntry::default()
    };
    entry.encode_to_vec()
}
