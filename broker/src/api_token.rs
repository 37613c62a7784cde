//! Caller authentication: a shared bearer secret in the `authorization` metadata of every call to
//! `PublishService` and `AccessService` (the API token) and `AdminService` (the admin token when one is
//! configured, else the API token); health and reflection stay open for probes and grpcurl. Off when no
//! secret is configured (`crier dev`).
//!
//! The secret is compared in constant time and never logged.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// A tonic interceptor requiring `authorization: Bearer <secret>`.
#[derive(Clone)]
pub struct ApiToken {
    /// `None`: every caller is let through.
    expected: Option<Arc<[u8]>>,
}

impl ApiToken {
    /// Requires `secret` when it is `Some`.
    #[must_use]
    pub fn new(secret: Option<&str>) -> Self {
        Self { expected: secret.map(|s| Arc::from(s.as_bytes())) }
    }
}

impl Interceptor for ApiToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), expected) => Ok(request),
            Some(_) => {
                tracing::debug!("gRPC call with a wrong API token refused");
                Err(Status::unauthenticated("invalid API token"))
            }
            None => Err(Status::unauthenticated("missing `authorization: Bearer <API token>`")),
        }
    }
}

/// Equal contents, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(token: &mut ApiToken, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(header) = header {
            request.metadata_mut().insert("authorization", header.parse().unwrap());
        }
        token.call(request).map(drop).map_err(|s| s.code())
    }

    /// With a secret, only the exact bearer passes; without one, everything does.
    #[test]
    fn bearer_secret_is_required_when_configured() {
        let mut token = ApiToken::new(Some("s3cret-s3cret-s3cret"));
        assert_eq!(call(&mut token, Some("Bearer s3cret-s3cret-s3cret")), Ok(()));
        assert_eq!(call(&mut token, Some("Bearer s3cret-s3cret-s3cre")), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&mut token, None), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&mut ApiToken::new(None), None), Ok(()));
    }
}
