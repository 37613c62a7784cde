//! The broker's errors and their one mapping to gRPC status codes.

use crier_store::access::AccessError;
use crier_store::control::ControlError;
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
    /// A position (`since`) that does not parse.
    #[error("invalid position: {0}")]
    InvalidPosition(String),
    /// The control plane failed.
    #[error(transparent)]
    Control(#[from] ControlError),
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
            | BrokerError::InvalidUserId(_)
            | BrokerError::InvalidPosition(_) => tonic::Code::InvalidArgument,
            BrokerError::Log(LogError::Unavailable { .. })
            | BrokerError::Access(AccessError::Unavailable(_) | AccessError::Lagged)
            | BrokerError::Control(ControlError::Unavailable(_)) => tonic::Code::Unavailable,
            BrokerError::Log(
                LogError::Protocol { .. }
                | LogError::NoSuchPartition { .. }
                | LogError::PartitionMismatch { .. }
                // Readers' errors; publishing never meets them.
                | LogError::Gap { .. }
                | LogError::EpochChanged { .. },
            )
            | BrokerError::Access(AccessError::Protocol(_))
            | BrokerError::Control(ControlError::Protocol { .. })
            | BrokerError::Internal(_) => tonic::Code::Internal,
        }
    }
}

/// The conversation-id rule shared with the edge, under the broker's configured length limit.
pub fn check_conversation_id(id: &str, max_bytes: usize) -> Result<(), BrokerError> {
    crier_proto::conversation_id::validate_conversation_id(id, max_bytes)
        .map_err(BrokerError::InvalidConversationId)
}

/// The user-id rule shared with the edge.
pub fn check_user_id(id: &str) -> Result<(), BrokerError> {
    crier_proto::user_id::validate_user_id(id).map_err(|reason| BrokerError::InvalidUserId(reason.into()))
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

    /// Admin's user ids follow the one shared rule: empty and control characters are invalid arguments.
    #[test]
    fn user_ids_follow_the_shared_rule() {
        for bad in ["", "a\u{7}b"] {
            let status = tonic::Status::from(check_user_id(bad).unwrap_err());
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        assert!(check_user_id("alice").is_ok());
    }

    /// A control plane that cannot be reached is UNAVAILABLE; one holding foreign data is INTERNAL.
    #[test]
    fn control_plane_errors_map_like_the_log() {
        let source = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(BrokerError::from(ControlError::Unavailable(source)).code(), tonic::Code::Unavailable);
        let foreign = ControlError::Protocol { key: "k".into(), detail: "d".into() };
        assert_eq!(BrokerError::from(foreign).code(), tonic::Code::Internal);
    }

    /// A log outside the broker's control is UNAVAILABLE, so callers retry.
    #[test]
    fn unreachable_log_is_unavailable() {
        let source = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let status = tonic::Status::from(BrokerError::Log(LogError::Unavailable { partition: 3, source }));
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
}
