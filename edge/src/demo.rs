//! The demo of `crier dev`: the page at `/` (a live view built on `/crier.js`) and `POST /dev/publish`, which
//! publishes through the same [`Publisher`] as the gRPC `Publish`, so what the page shows is the real path.
//!
//! Only `crier dev` builds a [`Demo`]; every other edge answers these paths with 404. The publish endpoint
//! takes `Content-Type: application/json` only: a cross-origin page then needs a CORS preflight, which
//! is never granted, so other sites cannot publish through a developer's browser.

use bytes::Bytes;
use crier_broker::access::AccessError;
use crier_broker::log::LogError;
use crier_broker::publisher::Item;
use crier_broker::{BrokerError, Publisher};
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

/// The demo page and its publish endpoint.
#[derive(Clone)]
pub struct Demo {
    publisher: Publisher,
    page: Asset,
}

impl Demo {
    /// A demo publishing through `publisher`, its page connecting to `ws_path`.
    #[must_use]
    pub fn new(publisher: Publisher, ws_path: &str) -> Self {
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
        let item = Item {
            conversation_id: request.conversation_id,
            payload: Bytes::copy_from_slice(request.payload.get().as_bytes()),
            idempotency_key: request.idempotency_key,
        };
        match self.publisher.publish(&item).await {
            Ok(published) => {
                let position = published.position.to_string();
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "position": position, "duplicate": published.duplicate }),
                )
            }
            Err(err) => {
                tracing::debug!(error = %err, "dev publish refused");
                json_error(error_status(&err), &err.to_string())
            }
        }
    }
}

/// The HTTP status of a publish error (this surface's counterpart of the gRPC mapping).
fn error_status(err: &BrokerError) -> StatusCode {
    match err {
        BrokerError::InvalidConversationId(_)
        | BrokerError::InvalidPayload(_)
        | BrokerError::InvalidIdempotencyKey(_)
        | BrokerError::InvalidRequest(_)
        | BrokerError::InvalidUserId(_) => StatusCode::BAD_REQUEST,
        BrokerError::Log(LogError::Unavailable { .. })
        | BrokerError::Access(AccessError::Unavailable(_) | AccessError::Lagged) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        BrokerError::Log(_) | BrokerError::Access(_) | BrokerError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
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
    use std::sync::Arc;

    use crier_broker::BrokerConfig;
    use crier_broker::log::{MemoryLog, PartitionedLog};
    use http_body_util::BodyExt;

    use super::*;

    fn demo() -> Demo {
        let log: Arc<dyn PartitionedLog> = Arc::new(MemoryLog::new(8, 100));
        Demo::new(Publisher::new(log, &BrokerConfig { partitions: 8, ..BrokerConfig::default() }), "/ws\"x")
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
