//! `crier dev`'s demo page publishes through the broker's [`Publisher`]: the edge defines what it needs
//! ([`DemoPublisher`]) and this adapter, in the only crate that depends on both roles, supplies it.

use async_trait::async_trait;
use bytes::Bytes;
use crier_broker::publisher::Item;
use crier_broker::{BrokerError, Publisher};
use crier_edge::{DemoPublished, DemoPublisher, DemoRefusal};

/// A [`Publisher`] seen as the demo page's [`DemoPublisher`].
pub struct DevPublisher(pub Publisher);

#[async_trait]
impl DemoPublisher for DevPublisher {
    async fn publish(
        &self,
        conversation_id: String,
        payload: Bytes,
        idempotency_key: String,
    ) -> Result<DemoPublished, DemoRefusal> {
        let item = Item { conversation_id, payload, idempotency_key };
        match self.0.publish(&item).await {
            Ok(published) => {
                Ok(DemoPublished { position: published.position.to_string(), duplicate: published.duplicate })
            }
            Err(err) => Err(refusal(&err)),
        }
    }
}

/// The refusal for `err`, classified by the same code the gRPC surface answers with.
fn refusal(err: &BrokerError) -> DemoRefusal {
    let message = err.to_string();
    match err.code() {
        tonic::Code::InvalidArgument => DemoRefusal::Invalid(message),
        tonic::Code::Unavailable => DemoRefusal::Unavailable(message),
        _ => DemoRefusal::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use crier_store::log::LogError;

    use super::*;

    /// The demo's refusals follow the gRPC classification: invalid arguments, unavailable stores, and
    /// everything else internal.
    #[test]
    fn refusals_follow_the_grpc_codes() {
        let invalid = refusal(&BrokerError::InvalidPayload("not JSON".into()));
        assert!(matches!(invalid, DemoRefusal::Invalid(m) if m == "invalid payload: not JSON"));
        let source = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let down = refusal(&BrokerError::Log(LogError::Unavailable { partition: 1, source }));
        assert!(matches!(down, DemoRefusal::Unavailable(_)));
        assert!(matches!(refusal(&BrokerError::Internal("bug")), DemoRefusal::Internal(_)));
    }
}
