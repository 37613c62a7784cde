//! The broker's errors and their one mapping to gRPC status codes.

use crier_store::access::AccessError;
use crier_store::log::LogError;

/// Why a broker request failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The conversation id is empty, too long or not printable ASCII.
    #[error("invalid conversation_id: {0}")]
    InvalidConversationId(String),
    /// The payload is not a JSON object within the size limit.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The idempotency key is too long or not printable ASCII.
    #[error("invalid idempotency_key: {0}")]
    InvalidIdempotencyKey(String),
    /// A batch or broadcast is empty or too large.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A bug: the broker broke its own invariant.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The user id is empty, too long or has control characters.
    #[error("invalid user_id: {0}")]
    InvalidUserId(String),
    /// The access store failed.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The log failed; see [`LogError`] for whether anything may have been appended.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl BrokerError {
    /// The one classification of broker errors: the gRPC code, which every other surface (the dev HTTP
    /// publish) translates from.
    #[must_use]
    pub fn code(&self) -> tonic::Code {
        match self {
            BrokerError::InvalidConversationId(_)
            | BrokerError::InvalidPayload(_)
            | BrokerError::InvalidIdempotencyKey(_)
            | BrokerError::InvalidRequest(_)
            | BrokerError::InvalidUserId(_) => tonic::Code::InvalidArgument,
            BrokerError::Log(LogError::Unavailable { .. })
            | BrokerError::Access(AccessError::Unavailable(_) | AccessError::Lagged) => {
                tonic::Code::Unavailable
            }
            BrokerError::Log(
                LogError::Protocol { .. }
                | LogError::NoSuchPartition { .. }
                | LogError::PartitionMismatch { .. }
                // Readers' errors; publishing never meets them.
                | LogError::Gap { .. }
                | LogError::EpochChanged { .. },
            )
            | BrokerError::Access(AccessError::Protocol(_))
            | BrokerError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<BrokerError> for tonic::Status {
    fn from(err: BrokerError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client mistakes are INVALID_ARGUMENT with the reason in the message.
    #[test]
    fn validation_errors_are_invalid_argument() {
        let status = tonic::Status::from(BrokerError::InvalidPayload("not JSON".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid payload: not JSON");
    }

    /// A log outside the broker's control is UNAVAILABLE, so callers retry.
    #[test]
    fn unreachable_log_is_unavailable() {
        let source = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let status = tonic::Status::from(BrokerError::Log(LogError::Unavailable { partition: 3, source }));
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
}
