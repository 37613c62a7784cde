//! Files the edge serves over plain HTTP, embedded in the binary: the browser client (`/crier.js` and its
//! types, on every edge) and the demo page (`crier dev` only, see [`crate::demo`]).
//!
//! Public, credential-free content: answered with `Access-Control-Allow-Origin: *` so pages on other
//! origins can `import` the client, and `no-cache` so an upgraded edge is picked up at once.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

/// The browser client, an ES module.
pub const CLIENT_JS: &str = include_str!("../static/crier.js");
/// TypeScript declarations of the client.
pub const CLIENT_TYPES: &str = include_str!("../static/crier.d.ts");
/// The demo page; `{{WS_PATH}}` is replaced by the configured WebSocket path.
pub const DEMO_HTML: &str = include_str!("../static/demo.html");

/// An embedded file and its media type.
#[derive(Debug, Clone)]
pub struct Asset {
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file.
    pub body: Bytes,
}

impl Asset {
    /// The client library file at `path`, if it is one.
    #[must_use]
    pub fn client_library(path: &str) -> Option<Self> {
        let (content_type, text) = match path {
            "/crier.js" => ("text/javascript; charset=utf-8", CLIENT_JS),
            "/crier.d.ts" => ("application/typescript; charset=utf-8", CLIENT_TYPES),
            _ => return None,
        };
        Some(Self { content_type, body: Bytes::from_static(text.as_bytes()) })
    }

    /// The answer to `method` for this file: the file for GET, headers only for HEAD, 405 otherwise.
    #[must_use]
    pub fn response(&self, method: &Method) -> Response<Full<Bytes>> {
        let body = match *method {
            Method::GET => self.body.clone(),
            Method::HEAD => Bytes::new(),
            _ => return method_not_allowed("GET, HEAD"),
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        response
    }
}

/// 405 with the `Allow` header listing `allowed`.
#[must_use]
pub fn method_not_allowed(allowed: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"method not allowed\n")));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client is served as JavaScript to any origin; HEAD has no body; POST is refused.
    #[test]
    fn client_is_served_as_a_cross_origin_module() {
        let asset = Asset::client_library("/crier.js").unwrap();
        let response = asset.response(&Method::GET);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(asset.body.starts_with(b"// crier browser client"));
        assert_eq!(asset.response(&Method::POST).status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(Asset::client_library("/other.js").is_none());
    }
}
