//! [`TestCa`]: a throwaway certificate authority made per test run (rcgen), issuing server certificates for
//! `127.0.0.1`/`localhost` and client certificates, written as PEM files the servers are pointed at; and the
//! rustls client configs and raw TLS connections tests use to see which certificate a server presents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::deadline::within;

/// A CA of its own, trusted by nothing but the configs made from it.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate the CA issued, with its key.
pub struct Leaf {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { issuer: Issuer::new(params, key), pem })
    }

    /// A server certificate for `127.0.0.1` and `localhost`, with a key of its own.
    pub fn server(&self) -> anyhow::Result<Leaf> {
        self.issue(&["127.0.0.1", "localhost"], "crier test server")
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> anyhow::Result<Leaf> {
        self.issue(&[], name)
    }

    fn issue(&self, names: &[&str], common_name: &str) -> anyhow::Result<Leaf> {
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() })
    }

    /// Writes the CA certificate to `dir/name`; returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A rustls client config trusting this CA only, speaking HTTP/1.1 (ALPN), presenting `client` if given.
    pub fn client_config(&self, client: Option<&Leaf>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.pem.as_bytes()).context("parsing the test CA")?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match client {
            Some(leaf) => builder.with_client_auth_cert(vec![leaf.der.clone()], leaf.private_key()?)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Leaf {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key`; returns their paths. Each file is replaced at once
    /// (written aside, then renamed), as a secret volume or cert-manager rotation does.
    pub fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert = replace(dir, &format!("{stem}.crt"), &self.cert_pem)?;
        let key = replace(dir, &format!("{stem}.key"), &self.key_pem)?;
        Ok((cert, key))
    }

    /// The certificate, DER: compare with what a server presented.
    #[must_use]
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    fn private_key(&self) -> anyhow::Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).context("parsing the test key")
    }
}

fn replace(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let (path, aside) = (dir.join(name), dir.join(format!(".{name}.new")));
    std::fs::write(&aside, contents).with_context(|| format!("writing {}", aside.display()))?;
    std::fs::rename(&aside, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

/// A TLS connection to `addr` (handshake done) with `config`, checking the name `127.0.0.1`.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = within(format!("TCP connect to {addr}"), TcpStream::connect(addr)).await??;
    let name = ServerName::try_from("127.0.0.1")?;
    let tls = within(format!("TLS handshake with {addr}"), TlsConnector::from(config).connect(name, tcp))
        .await?
        .with_context(|| format!("TLS handshake with {addr}"))?;
    Ok(tls)
}

/// The leaf certificate `addr` presents to a new connection.
pub async fn presented_certificate(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<CertificateDer<'static>> {
    let tls = tls_connect(addr, config).await?;
    let chain = tls.get_ref().1.peer_certificates().context("no certificate presented")?;
    Ok(chain.first().context("empty chain")?.clone().into_owned())
}
