//! [`AccessClient`]: the backend's side of `crier.v1.AccessService`, through the generated tonic client.

use anyhow::Context;
use crier_proto::v1::access_service_client::AccessServiceClient;
use crier_proto::v1::{CheckRequest, GrantRequest, ListGrantsRequest, RevokeRequest};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::deadline::within;
use crate::publish_client::{Bearer, channel};

/// A gRPC `AccessService` client of one broker.
#[derive(Clone)]
pub struct AccessClient {
    inner: AccessServiceClient<InterceptedService<Channel, Bearer>>,
}

fn ids(conversation: &str, user: &str) -> (String, String) {
    (conversation.to_owned(), user.to_owned())
}

impl AccessClient {
    /// Connects to `url`, presenting `token` as the API token when given.
    pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let bearer = Bearer(token.map(str::to_owned));
        Ok(Self { inner: AccessServiceClient::with_interceptor(channel(url).await?, bearer) })
    }

    /// Grants `user` the `conversation`.
    pub async fn grant(&mut self, conversation: &str, user: &str) -> anyhow::Result<()> {
        let (conversation_id, user_id) = ids(conversation, user);
        within("Grant", self.inner.grant(GrantRequest { conversation_id, user_id }))
            .await?
            .context("Grant")?;
        Ok(())
    }

    /// Revokes the grant of `user` to `conversation`.
    pub async fn revoke(&mut self, conversation: &str, user: &str) -> anyhow::Result<()> {
        let (conversation_id, user_id) = ids(conversation, user);
        within("Revoke", self.inner.revoke(RevokeRequest { conversation_id, user_id }))
            .await?
            .context("Revoke")?;
        Ok(())
    }

    /// Whether the store grants `user` the `conversation`.
    pub async fn check(&mut self, conversation: &str, user: &str) -> anyhow::Result<bool> {
        let (conversation_id, user_id) = ids(conversation, user);
        let reply = within("Check", self.inner.check(CheckRequest { conversation_id, user_id })).await?;
        Ok(reply.context("Check")?.into_inner().allowed)
    }

    /// The users granted `conversation`; the outer error is the harness', the inner the broker's status.
    pub async fn list_grants(
        &mut self,
        conversation: &str,
    ) -> anyhow::Result<Result<Vec<String>, tonic::Status>> {
        let request = ListGrantsRequest { conversation_id: conversation.to_owned() };
        let reply = within("ListGrants", self.inner.list_grants(request)).await?;
        Ok(reply.map(|r| r.into_inner().user_ids))
    }
}
