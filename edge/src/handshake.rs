//! What the edge reads from the HTTP upgrade request before any WebSocket byte: whether its `Origin` may
//! connect, and a token from the handshake (DESIGN.md §2 token sources, after the `auth` frame):
//! `Authorization: Bearer`, the `Sec-WebSocket-Protocol` bearer subprotocol (`["bearer", "<JWT>"]` in the
//! browser's `new WebSocket(url, protocols)`), then `?token=`. Pure: no I/O, and nothing here logs.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};

use crate::config::OriginPolicy;

/// The subprotocol name that marks the next offered subprotocol as a bearer token.
pub const BEARER_SUBPROTOCOL: &str = "bearer";

/// Where a handshake token came from (for the response: a subprotocol must be echoed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// `Sec-WebSocket-Protocol: bearer, <token>`: the server must select `bearer`.
    Subprotocol,
    /// `?token=`.
    Query,
}

/// Whether `headers`' `Origin` may open a WebSocket under `policy`.
#[must_use]
pub fn origin_allowed(policy: &OriginPolicy, headers: &HeaderMap) -> bool {
    let OriginPolicy::AllowList(allowed) = policy else { return true };
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser: browsers always send Origin on WebSocket handshakes.
        return headers.get(ORIGIN).is_none();
    };
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    // Same origin: the Origin's authority is the Host this request was sent to.
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    headers.get(HOST).and_then(|h| h.to_str().ok()).is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

/// The first handshake token, in DESIGN.md's order of sources.
#[must_use]
pub fn token(headers: &HeaderMap, query: Option<&str>) -> Option<(String, TokenSource)> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| (t.trim().to_owned(), TokenSource::Header));
    bearer
        .or_else(|| subprotocol_token(headers).map(|t| (t, TokenSource::Subprotocol)))
        .or_else(|| query_token(query?).map(|t| (t, TokenSource::Query)))
        .filter(|(t, _)| !t.is_empty())
}

fn subprotocol_token(headers: &HeaderMap) -> Option<String> {
    let offered = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok());
    let mut protocols = offered.flat_map(|v| v.split(',')).map(str::trim);
    protocols.find(|p| *p == BEARER_SUBPROTOCOL)?;
    protocols.next().map(str::to_owned)
}

fn query_token(query: &str) -> Option<String> {
    // JWTs are base64url and dots: nothing in them needs percent-decoding.
    query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    /// Same-origin, listed and Origin-less requests pass; other origins do not, unless any is allowed.
    #[test]
    fn origin_policy() {
        let list = OriginPolicy::AllowList(vec!["https://app.example".into()]);
        assert!(origin_allowed(&list, &headers(&[("host", "edge:3000")])));
        assert!(origin_allowed(&list, &headers(&[("host", "edge:3000"), ("origin", "http://edge:3000")])));
        assert!(origin_allowed(&list, &headers(&[("host", "edge"), ("origin", "https://app.example")])));
        assert!(!origin_allowed(&list, &headers(&[("host", "edge"), ("origin", "https://evil.example")])));
        assert!(origin_allowed(&OriginPolicy::Any, &headers(&[("origin", "https://evil.example")])));
    }

    /// Header first, then subprotocol, then query.
    #[test]
    fn token_sources_in_order() {
        let h = headers(&[("authorization", "Bearer a.b.c"), ("sec-websocket-protocol", "bearer, d.e.f")]);
        assert_eq!(token(&h, Some("token=g.h.i")), Some(("a.b.c".into(), TokenSource::Header)));
        let h = headers(&[("sec-websocket-protocol", "chat, bearer, d.e.f")]);
        assert_eq!(token(&h, Some("token=g.h.i")), Some(("d.e.f".into(), TokenSource::Subprotocol)));
        assert_eq!(
            token(&HeaderMap::new(), Some("positions=1&token=g.h.i")),
            Some(("g.h.i".into(), TokenSource::Query))
        );
        assert_eq!(token(&HeaderMap::new(), Some("token=")), None);
    }
}
