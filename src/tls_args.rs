//! TLS flags: the servers' certificate and key (`--tls-cert-file`, `--tls-key-file`), the broker's client CA
//! (`--tls-client-ca-file`, mTLS), and `crier publish`'s `--ca-file`, `--cert-file`, `--key-file`. Files are
//! read and checked here (PEM, key fits certificate, CA holds a certificate), so a bad one is one line and
//! exit 64 before any port is bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use crier_broker::BrokerTls;
use crier_edge::tls::{self, TlsFiles};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A server's certificate and key.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first): serve TLS (`https://`, `wss://`, gRPC over TLS). Needs
    /// --tls-key-file. The edge re-reads both files when they change (checked every 5 s) or on SIGHUP.
    #[arg(long, env = "CRIER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert-file's leaf certificate.
    #[arg(long, env = "CRIER_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
}

/// The broker's client-certificate requirement.
#[derive(Debug, Args)]
pub struct ClientCaArgs {
    /// PEM CA bundle: require every gRPC client to present a certificate chaining to it (mTLS). Needs
    /// --tls-cert-file.
    #[arg(long, env = "CRIER_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// `crier publish`'s TLS settings.
#[derive(Debug, Args)]
pub struct ClientTlsArgs {
    /// PEM CA bundle the broker's certificate must chain to (default: the public Mozilla roots). `https://`
    /// brokers only.
    #[arg(long, env = "CRIER_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a broker that requires one (mTLS). Needs --key-file.
    #[arg(long, env = "CRIER_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of --cert-file.
    #[arg(long, env = "CRIER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The edge's TLS files (checked with the rest of the edge's config); `None` without the flags.
    pub fn edge_files(&self, problems: &mut Vec<String>) -> Option<TlsFiles> {
        let (cert, key) = self.pair(problems)?;
        Some(TlsFiles::new(cert, key))
    }

    /// The broker's TLS settings, checked; `None` without the flags. `client_ca` requires client
    /// certificates.
    pub fn broker(&self, client_ca: &ClientCaArgs, problems: &mut Vec<String>) -> Option<BrokerTls> {
        let ca = client_ca.tls_client_ca_file.as_deref();
        if ca.is_some() && self.tls_cert_file.is_none() {
            problems.push("--tls-client-ca-file needs --tls-cert-file".to_owned());
        }
        let client_ca_pem = ca.and_then(|ca| certificate_pem("--tls-client-ca-file", ca, problems));
        let (cert, key) = self.pair(problems)?;
        if let Err(problem) = tls::certified_key(cert, key) {
            problems.push(problem);
            return None;
        }
        let cert_pem = read(cert, "--tls-cert-file", problems)?;
        let key_pem = read(key, "--tls-key-file", problems)?;
        let handshake_timeout = Duration::from_secs(10);
        if ca.is_some() && client_ca_pem.is_none() {
            return None;
        }
        Some(BrokerTls { cert_pem, key_pem, client_ca_pem, handshake_timeout })
    }

    /// Both files, or neither; one without the other is a problem.
    fn pair(&self, problems: &mut Vec<String>) -> Option<(&Path, &Path)> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                problems.push("--tls-cert-file needs --tls-key-file".to_owned());
                None
            }
            (None, Some(_)) => {
                problems.push("--tls-key-file needs --tls-cert-file".to_owned());
                None
            }
        }
    }
}

impl ClientTlsArgs {
    /// The channel's TLS settings for `broker`, or every problem: `None` for an `http://` broker.
    pub fn config(&self, broker: &str) -> Result<Option<ClientTlsConfig>, Vec<String>> {
        let mut problems = Vec::new();
        let https = broker.starts_with("https://");
        if !https && !broker.starts_with("http://") {
            problems.push(format!("--broker must be an http:// or https:// URL, got {broker:?}"));
        }
        let any = self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if any && !https {
            problems.push("--ca-file, --cert-file and --key-file need an https:// --broker".to_owned());
        }
        let mut config = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &self.ca_file
            && let Some(pem) = certificate_pem("--ca-file", ca, &mut problems)
        {
            config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        }
        if let Some(identity) = self.identity(&mut problems) {
            config = config.identity(identity);
        }
        match problems.is_empty() {
            true => Ok(https.then_some(config)),
            false => Err(problems),
        }
    }

    fn identity(&self, problems: &mut Vec<String>) -> Option<Identity> {
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => return None,
            (Some(_), None) => {
                problems.push("--cert-file needs --key-file".to_owned());
                return None;
            }
            (None, Some(_)) => {
                problems.push("--key-file needs --cert-file".to_owned());
                return None;
            }
        };
        if let Err(problem) = tls::certified_key_for(["--cert-file", "--key-file"], cert, key) {
            problems.push(problem);
            return None;
        }
        Some(Identity::from_pem(read(cert, "--cert-file", problems)?, read(key, "--key-file", problems)?))
    }
}

/// The PEM file at `path` if it holds a certificate; otherwise a problem noted.
fn certificate_pem(flag: &str, path: &Path, problems: &mut Vec<String>) -> Option<Vec<u8>> {
    match tls::pem_certificates(flag, path) {
        Ok(_) => read(path, flag, problems),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

fn read(path: &Path, flag: &str, problems: &mut Vec<String>) -> Option<Vec<u8>> {
    std::fs::read(path).map_err(|err| problems.push(format!("{flag} {}: {err}", path.display()))).ok()
}
