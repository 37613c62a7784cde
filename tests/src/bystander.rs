//! [`Bystander`]: a well-behaved client on the same edge as a misbehaving one. Rejection tests call
//! [`Bystander::check`] before and after the rejection: the edge's answer to one hostile connection must be
//! local to it, and the bystander keeps receiving notifications throughout.

use anyhow::ensure;
use serde_json::json;

use crate::publish_client::PublishClient;
use crate::ws_client::WsClient;

/// An authenticated, subscribed client and the publisher that feeds its conversation.
pub struct Bystander {
    ws: WsClient,
    publisher: PublishClient,
    conversation: String,
    seq: u64,
}

impl Bystander {
    /// Wraps `ws`, already authenticated, and subscribes it to `conversation`.
    pub async fn subscribe(
        mut ws: WsClient,
        publisher: PublishClient,
        conversation: &str,
    ) -> anyhow::Result<Self> {
        ws.subscribe(conversation).await?;
        let mut bystander = Self { ws, publisher, conversation: conversation.to_owned(), seq: 0 };
        bystander.check().await?;
        Ok(bystander)
    }

    /// Publishes one notification and asserts the bystander receives exactly it.
    pub async fn check(&mut self) -> anyhow::Result<()> {
        self.seq += 1;
        let payload = json!({"type": "job-status", "bystander": self.seq});
        self.publisher.publish(&self.conversation, &payload).await?;
        let got = self.ws.recv_json().await?;
        ensure!(got == payload, "bystander expected {payload}, got {got}");
        Ok(())
    }
}
