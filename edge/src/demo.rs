//! The demo of `crier dev`: the page at `/` (a live view built on `/crier.js`) and `POST /dev/publish`, which
//! publishes through a [`DemoPublisher`]: `crier dev` passes the broker's publisher, the same one as gRPC
//! `Publish`, so what the page shows is the real path (the CLI crate owns both roles; the edge never depends
//! on the broker).
//!
//! Only `crier dev` builds a [`Demo`]; every other edge answers these paths with 404. The publish endpoint
//! takes `Content-Type: application/json` only: a cross-origin page then needs a CORS preflight, which
//! is never granted, so other sites cannot publish through a developer's browser.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::assets::{self, Asset};

/// Largest `POST /dev/publish` body: a maximal payload plus its envelope.
const MAX_PUBLISH_BODY: usize = 256 * 1024;

type Body = Full<Bytes>;

/// `POST /dev/publish` body.
#[derive(Deserialize)]
struct PublishBody<'a> {
    #[serde(rename = "conversationId")]
    conversation_id: String,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default, rename = "idempotencyKey")]
    idempotency_key: String,
}

/// Where `POST /dev/publish` publishes.
#[async_trait]
pub trait DemoPublisher: Send + Sync + 'static {
    /// Publishes `payload` (a JSON object, verbatim) to `conversation_id`; `idempotency_key` may be empty.
    async fn publish(
        &self,
        conversation_id: String,
        payload: Bytes,
        idempotency_key: String,
    ) -> Result<DemoPublished, DemoRefusal>;
}

/// A demo publish that was appended (or recognised as a duplicate).
#[derive(Debug)]
pub struct DemoPublished {
    /// Its position, as clients see it.
    pub position: String,
    /// `true` when its idempotency key had been seen: nothing new was appended.
    pub duplicate: bool,
}

/// Why a demo publish was refused, classified as the gRPC surface classifies the same error.
#[derive(Debug)]
pub enum DemoRefusal {
    /// The caller's mistake (gRPC `INVALID_ARGUMENT`): 400.
    Invalid(String),
    /// The log or store is unreachable (gRPC `UNAVAILABLE`): 503.
    Unavailable(String),
    /// Anything else (gRPC `INTERNAL`): 500.
    Internal(String),
}

/// The demo page and its publish endpoint.
#[derive(Clone)]
pub struct Demo {
    publisher: Arc<dyn DemoPublisher>,
    page: Asset,
}

impl Demo {
    /// A demo publishing through `publisher`, its page connecting to `ws_path`.
    #[must_use]
    pub fn new(publisher: Arc<dyn DemoPublisher>, ws_path: &str) -> Self {
        let html = assets::DEMO_HTML.replace("{{WS_PATH}}", &escape_html(ws_path));
        let page = Asset { content_type: "text/html; charset=utf-8", body: Bytes::from(html) };
        Self { publisher, page }
    }

    /// Whether `path` belongs to the demo.
    #[must_use]
    pub fn serves(path: &str) -> bool {
        matches!(path, "/" | "/index.html" | "/dev/publish")
    }

    /// Answers a request for one of the demo's paths.
    pub async fn respond(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != "/dev/publish" {
            return self.page.response(req.method());
        }
        if req.method() != Method::POST {
            return assets::method_not_allowed("POST");
        }
        let is_json =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json");
        }
        match Limited::new(req.into_body(), MAX_PUBLISH_BODY).collect().await {
            Ok(body) => self.publish(&body.to_bytes()).await,
            Err(_) => json_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable"),
        }
    }

    /// Publishes `{"conversationId","payload","idempotencyKey"?}`; answers `{"position","duplicate"}` or
    /// `{"error"}`.
    pub async fn publish(&self, body: &[u8]) -> Response<Body> {
        let Ok(request) = serde_json::from_slice::<PublishBody<'_>>(body) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "expected {\"conversationId\": string, \"payload\": object}",
            );
        };
        let payload = Bytes::copy_from_slice(request.payload.get().as_bytes());
        let published =
            self.publisher.publish(request.conversation_id, payload, request.idempotency_key).await;
        match published {
            Ok(published) => json(
                StatusCode::OK,
                &serde_json::json!({ "position": published.position, "duplicate": published.duplicate }),
            ),
            Err(refusal) => {
                tracing::debug!(?refusal, "dev publish refused");
                let (status, message) = refusal.status_and_message();
                json_error(status, message)
            }
        }
    }
}

impl DemoRefusal {
    /// This surface's status for the refusal, and its reason.
    fn status_and_message(&self) -> (StatusCode, &str) {
        match self {
            Self::Invalid(message) => (StatusCode::BAD_REQUEST, message),
            Self::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
            Self::Internal(message) => (StatusCode::INTERNAL_SERVER_ERROR, message),
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// Accepts objects, refuses anything else as the broker would (the real publisher is tested end to end
    /// in `tests/tests/browser.rs`).
    struct ObjectsOnly;

    #[async_trait]
    impl DemoPublisher for ObjectsOnly {
        async fn publish(&self, _: String, payload: Bytes, _: String) -> Result<DemoPublished, DemoRefusal> {
            if payload.starts_with(b"{") {
                Ok(DemoPublished { position: "0:1-0".into(), duplicate: false })
            } else {
                Err(DemoRefusal::Invalid("invalid payload: must be a JSON object".into()))
            }
        }
    }

    fn demo() -> Demo {
        Demo::new(Arc::new(ObjectsOnly), "/ws\"x")
    }

    async fn body_of(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A valid publish answers its position; bad input is a 400 with the publisher's reason.
    #[tokio::test]
    async fn publish_answers_position_or_reason() {
        let demo = demo();
        let ok = demo.publish(br#"{"conversationId":"c1","payload":{"type":"job-status"}}"#).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let position: serde_json::Value = serde_json::from_str(&body_of(ok).await).unwrap();
        assert!(position["position"].as_str().unwrap().contains(':'), "{position}");
        let not_object = demo.publish(br#"{"conversationId":"c1","payload":[1]}"#).await;
        assert_eq!(not_object.status(), StatusCode::BAD_REQUEST);
        assert!(body_of(not_object).await.contains("JSON object"));
        let garbage = demo.publish(b"nope").await;
        assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    }

    /// The page gets the configured WebSocket path, HTML-escaped, and nothing of the placeholder.
    #[test]
    fn page_carries_the_escaped_ws_path() {
        let page = String::from_utf8(demo().page.body.to_vec()).unwrap();
        assert!(page.contains("/ws&quot;x"));
        assert!(!page.contains("{{WS_PATH}}"));
    }
}
