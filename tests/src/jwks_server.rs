//! [`JwksServer`]: a tiny HTTP or HTTPS server (hyper, tokio-rustls) on `127.0.0.1:0` serving a JWKS document
//! the test can swap (key rotation), counting fetches (refresh-rate bounds) and failed TLS handshakes. It can
//! also hang: accept requests and never answer them (an identity provider that stalls).
//!
//! Over HTTPS its certificate (for `127.0.0.1` and `localhost`) is signed by a CA made for this server alone
//! (rcgen), so it chains to nothing an edge trusts unless the test hands it [`JwksServer::ca_pem`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::deadline::within;

/// Serves the current document at any path until dropped.
pub struct JwksServer {
    addr: SocketAddr,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    /// PEM of the CA that signed the server certificate; `None` over plain HTTP.
    ca_pem: Option<String>,
    /// Counts TLS handshakes that failed (a client that does not trust the certificate).
    handshake_failures: watch::Receiver<usize>,
    hang: Arc<Hang>,
    task: JoinHandle<()>,
}

/// Whether requests are held unanswered, and how many have been.
#[derive(Default)]
struct Hang {
    on: AtomicBool,
    held: watch::Sender<usize>,
}

/// What one accepted connection needs.
#[derive(Clone)]
struct Shared {
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    tls: Option<TlsAcceptor>,
    handshake_failures: Arc<watch::Sender<usize>>,
    hang: Arc<Hang>,
}

/// A public JWK for `private_pem` (RSA) with `kid`.
pub fn rsa_jwk(private_pem: &[u8], kid: &str) -> anyhow::Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(&EncodingKey::from_rsa_pem(private_pem)?, Algorithm::RS256)?;
    jwk.common.key_id = Some(kid.to_owned());
    Ok(jwk)
}

/// A fresh CA and a server certificate it signed for `127.0.0.1` and `localhost`: (acceptor, CA PEM).
fn tls_acceptor() -> anyhow::Result<(TlsAcceptor, String)> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "crier test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate()?;
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
        .signed_by(&server_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![server.der().clone()], key)?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca_pem))
}

impl JwksServer {
    /// Starts serving `keys` over plain HTTP.
    pub async fn start(keys: Vec<Jwk>) -> anyhow::Result<Self> {
        Self::serve(keys, None).await
    }

    /// Starts serving `keys` over HTTPS, with a certificate signed by a CA of its own ([`Self::ca_pem`]).
    pub async fn start_https(keys: Vec<Jwk>) -> anyhow::Result<Self> {
        let (acceptor, ca_pem) = tls_acceptor()?;
        Self::serve(keys, Some((acceptor, ca_pem))).await
    }

    async fn serve(keys: Vec<Jwk>, tls: Option<(TlsAcceptor, String)>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the JWKS server")?;
        let addr = listener.local_addr()?;
        let (failures, handshake_failures) = watch::channel(0);
        let (tls, ca_pem) = tls.unzip();
        let shared = Shared {
            document: Arc::new(Mutex::new(serde_json::to_string(&JwkSet { keys })?)),
            fetches: Arc::new(AtomicUsize::new(0)),
            tls,
            handshake_failures: Arc::new(failures),
            hang: Arc::new(Hang::default()),
        };
        let (document, fetches) = (Arc::clone(&shared.document), Arc::clone(&shared.fetches));
        let hang = Arc::clone(&shared.hang);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(shared.clone().connection(stream));
            }
        });
        Ok(Self { addr, document, fetches, ca_pem, handshake_failures, hang, task })
    }

    /// The document's URL: `http://` or `https://127.0.0.1:PORT/.well-known/jwks.json`.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/.well-known/jwks.json", self.addr)
    }

    /// PEM of the CA behind an HTTPS server's certificate (`None` over HTTP).
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Waits (bounded) until a client has refused this server's certificate: the TLS handshake failed.
    pub async fn handshake_failed(&self) -> anyhow::Result<()> {
        let mut failures = self.handshake_failures.clone();
        within("a failed TLS handshake at the JWKS server", failures.wait_for(|n| *n > 0)).await??;
        Ok(())
    }

    /// Replaces the served keys (a rotation).
    pub fn set_keys(&self, keys: Vec<Jwk>) -> anyhow::Result<()> {
        *self.document.lock().unwrap_or_else(PoisonError::into_inner) =
            serde_json::to_string(&JwkSet { keys })?;
        Ok(())
    }

    /// From now on, requests are accepted and never answered.
    pub fn hang(&self) {
        self.hang.on.store(true, Ordering::SeqCst);
    }

    /// Waits (bounded) until a request is being held unanswered.
    pub async fn holding_a_request(&self) -> anyhow::Result<()> {
        let mut held = self.hang.held.subscribe();
        within("a JWKS request held by the hanging server", held.wait_for(|n| *n > 0)).await??;
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

impl Shared {
    /// Serves one connection, after its TLS handshake when serving HTTPS.
    async fn connection(self, stream: tokio::net::TcpStream) {
        match self.tls.clone() {
            None => self.http(stream).await,
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => self.http(stream).await,
                Err(_) => self.handshake_failures.send_modify(|n| *n += 1),
            },
        }
    }

    async fn http(self, stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
        let Self { document, fetches, hang, .. } = self;
        let service = service_fn(move |_req| {
            fetches.fetch_add(1, Ordering::SeqCst);
            let body = document.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let hang = Arc::clone(&hang);
            async move {
                if hang.on.load(Ordering::SeqCst) {
                    hang.held.send_modify(|n| *n += 1);
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
            }
        });
        let _ =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
    }
}
