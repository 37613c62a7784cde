//! [`JwksServer`]: a tiny HTTP server (hyper) on `127.0.0.1:0` serving a JWKS document the test can swap
//! (key rotation) and counting fetches (refresh-rate bounds).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves the current document at any path until dropped.
pub struct JwksServer {
    addr: SocketAddr,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// A public JWK for `private_pem` (RSA) with `kid`.
pub fn rsa_jwk(private_pem: &[u8], kid: &str) -> anyhow::Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(&EncodingKey::from_rsa_pem(private_pem)?, Algorithm::RS256)?;
    jwk.common.key_id = Some(kid.to_owned());
    Ok(jwk)
}

impl JwksServer {
    /// Starts serving `keys`.
    pub async fn start(keys: Vec<Jwk>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the JWKS server")?;
        let addr = listener.local_addr()?;
        let document = Arc::new(Mutex::new(serde_json::to_string(&JwkSet { keys })?));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (Arc::clone(&document), Arc::clone(&fetches));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (doc, count) = (Arc::clone(&doc), Arc::clone(&count));
                let service = service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = doc.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    std::future::ready(Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    )))))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(conn);
            }
        });
        Ok(Self { addr, document, fetches, task })
    }

    /// The document's URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Replaces the served keys (a rotation).
    pub fn set_keys(&self, keys: Vec<Jwk>) -> anyhow::Result<()> {
        *self.document.lock().unwrap_or_else(PoisonError::into_inner) =
            serde_json::to_string(&JwkSet { keys })?;
        Ok(())
    }

    /// How many times the document was fetched.
    #[must_use]
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
