//! [`Fetcher`]: one GET of the JWKS document, over `http://` or `https://`, with hyper-util's client and a
//! rustls connector; the answer is bounded in time (by the caller) and in size (here), then parsed.
//!
//! Trust for `https://`: the CA certificates of `--jwt-jwks-ca-file` when given (an internal CA; they
//! replace the public roots, as kube-apiserver's `--oidc-ca-file` does), else Mozilla's root set compiled in
//! (webpki-roots), so a container needs no OS certificate store. ring is the one crypto provider: it is
//! named here, never picked up from a process-wide default. This module never sees a token.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Largest accepted JWKS document.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Fetches one JWKS URL. Holds its connection pool, so refreshes reuse connections.
pub struct Fetcher {
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    /// A fetcher for `url` trusting the certificates of `ca_pem` (PEM), or the public roots without it.
    /// `Err` names the problem, as [`problems`] does.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        if let Some(problem) = problems(url, ca_pem).into_iter().next() {
            return Err(problem);
        }
        let url = url.parse::<http::Uri>().map_err(|e| format!("--jwt-jwks-url {url:?}: {e}"))?;
        let roots = match ca_pem {
            Some(pem) => ca_roots(pem)?,
            None => webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Ok(Self { url, client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    /// The document's URL (it carries no secret; logged on fetch failures).
    #[must_use]
    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    /// GETs and parses the document; `Err` says why, with the causes of a connection failure (a TLS
    /// error names the certificate problem).
    pub async fn fetch(&self) -> Result<JwkSet, String> {
        let response = self.client.get(self.url.clone()).await.map_err(|e| with_causes(&e))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("not a JWKS document: {e}"))
    }
}

/// Every problem with a JWKS `url` and its optional CA bundle, one line each (config validation).
#[must_use]
pub fn problems(url: &str, ca_pem: Option<&[u8]>) -> Vec<String> {
    let mut problems = Vec::new();
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("http" | "https")) {
        problems.push(format!("--jwt-jwks-url must be an http:// or https:// URL, got {url:?}"));
    } else if let Err(err) = has_host(url) {
        problems.push(format!("--jwt-jwks-url {url:?} is not a usable URL: {err}"));
    }
    if let Some(pem) = ca_pem {
        if scheme == Some("http") {
            problems.push("--jwt-jwks-ca-file applies only to an https:// --jwt-jwks-url".to_owned());
        }
        if let Err(err) = ca_roots(pem) {
            problems.push(err);
        }
    }
    problems
}

fn has_host(url: &str) -> Result<(), String> {
    match url.parse::<http::Uri>().map_err(|e| e.to_string())?.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("no host".to_owned()),
    }
}

/// The CA certificates of a PEM bundle; `Err` when it holds none or one is unusable.
fn ca_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("--jwt-jwks-ca-file is not a PEM bundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("--jwt-jwks-ca-file holds an unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("--jwt-jwks-ca-file holds no PEM certificate".to_owned());
    }
    Ok(roots)
}

/// `err` and its sources, `: `-separated (hyper-util's own message is only "client error (Connect)").
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// http and https URLs with a host are accepted; other schemes, hostless URLs, a CA bundle for a plain
    /// http URL and a bundle without certificates are each reported.
    #[test]
    fn url_and_ca_problems() {
        assert!(problems("http://idp.internal/jwks.json", None).is_empty());
        assert!(problems("https://idp.example.com/.well-known/jwks.json", None).is_empty());
        assert!(problems("ftp://idp/jwks", None)[0].contains("http:// or https://"));
        assert!(problems("idp/jwks", None)[0].contains("http:// or https://"));
        assert!(problems("https:///jwks", None)[0].contains("not a usable URL"));
        let not_pem = problems("https://idp/jwks", Some(b"hello"));
        assert_eq!(not_pem, ["--jwt-jwks-ca-file holds no PEM certificate"]);
        let both = problems("http://idp/jwks", Some(b""));
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[0].contains("only to an https://"));
    }

    /// Without a CA file the public roots are trusted, and building needs no runtime.
    #[test]
    fn builds_with_public_roots() {
        let fetcher = Fetcher::new("https://idp.example.com/jwks.json", None).unwrap();
        assert_eq!(fetcher.url().scheme_str(), Some("https"));
        assert!(Fetcher::new("gopher://x/", None).is_err());
    }
}
