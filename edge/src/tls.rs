//! TLS on the edge's listener (`--tls-cert-file`, `--tls-key-file`): PEM files loaded with rustls (ring),
//! served through a resolver whose certificate is swapped when the files change, so that a rotated
//! certificate is used by new connections while live ones keep theirs.
//!
//! The files are polled every `reload_interval` (mtime and length) and re-read on SIGHUP. A pair that does
//! not load (a half-written rotation, a key that does not match) is logged and the current one kept; the
//! next change is tried again.
//!
//! The PEM helpers here also validate the broker's and the publish client's files (the CLI's exit 64).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A file's modification time, length and inode.
type Stamp = (SystemTime, u64, u64);

/// How often `crier edge` looks at its certificate files.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Where the edge's certificate chain and private key are, and how often to look for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: PathBuf,
    /// Period of the change check.
    pub reload_interval: Duration,
}

impl TlsFiles {
    /// `cert_file` and `key_file`, checked every [`DEFAULT_RELOAD_INTERVAL`].
    #[must_use]
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        let (cert_file, key_file) = (cert_file.into(), key_file.into());
        Self { cert_file, key_file, reload_interval: DEFAULT_RELOAD_INTERVAL }
    }

    /// The pair, loaded and checked against each other.
    pub fn load(&self) -> Result<CertifiedKey, String> {
        certified_key(&self.cert_file, &self.key_file)
    }

    /// Each problem with the files, one line each (for the CLI's exit 64).
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.reload_interval.is_zero() {
            problems.push("TLS reload interval must be positive".to_owned());
        }
        problems.extend(self.load().err());
        problems
    }

    /// Both files' identity as far as the file system tells: modification time (coarse: a few ms), length and
    /// inode (a rename, as secret volumes and most rotation tools do, makes a new one).
    fn stamp(&self) -> Option<[Stamp; 2]> {
        let stamp = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len(), std::os::unix::fs::MetadataExt::ino(&meta)))
        };
        Some([stamp(&self.cert_file)?, stamp(&self.key_file)?])
    }
}

/// The ring provider every TLS config of crier uses.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in the PEM file at `path`; a problem line (naming `flag`) when it is unreadable or holds
/// none.
pub fn pem_certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|err| format!("{flag} {}: {err}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(format!("{flag} {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The PEM private key at `path`; a problem line (naming `flag`) when unreadable or not a PEM key.
pub fn pem_private_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|err| format!("{flag} {}: {err}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| format!("{flag} {} holds no PEM private key", path.display()))
}

/// A certificate chain and its key, checked to match: the edge's and the broker's server identity.
pub fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    certified_key_for(["--tls-cert-file", "--tls-key-file"], cert_file, key_file)
}

/// [`certified_key`] with the flags to name in problems: `[certificate flag, key flag]`.
pub fn certified_key_for(
    flags: [&str; 2],
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, String> {
    let [cert_flag, key_flag] = flags;
    let chain = pem_certificates(cert_flag, cert_file);
    let key = pem_private_key(key_flag, key_file);
    let (chain, key) = match (chain, key) {
        (Ok(chain), Ok(key)) => (chain, key),
        (Err(problem), Ok(_)) | (Ok(_), Err(problem)) => return Err(problem),
        (Err(cert), Err(key)) => return Err(format!("{cert}; {key}")),
    };
    CertifiedKey::from_der(chain, key, &provider()).map_err(|err| {
        let (cert, key) = (cert_file.display(), key_file.display());
        format!("{key_flag} {key} does not fit {cert_flag} {cert}: {err}")
    })
}

/// Serves the current certificate to every handshake; [`CertStore::reload`] swaps it.
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp at the last load attempt: a change is tried once.
    seen: RwLock<Option<[Stamp; 2]>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").field("files", &self.files).finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads `files`; the problem line when they do not load.
    pub fn open(files: TlsFiles) -> Result<Arc<Self>, String> {
        let seen = files.stamp();
        let key = files.load()?;
        Ok(Arc::new(Self { files, current: RwLock::new(Arc::new(key)), seen: RwLock::new(seen) }))
    }

    /// A TLS acceptor for HTTP/1.1 (ALPN `http/1.1`) serving this store's certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::clone(self) as _;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS configuration: {err}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Re-reads the files if they changed since the last attempt (or always, with `force`); keeps the
    /// current certificate when they do not load.
    pub fn reload(&self, force: bool) {
        let stamp = self.files.stamp();
        {
            let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
            if !force && *seen == stamp {
                return;
            }
            *seen = stamp;
        }
        match self.files.load() {
            Ok(key) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
            }
            Err(problem) => tracing::warn!(%problem, "TLS certificate not reloaded; keeping the current one"),
        }
    }

    /// Reloads on change (polled) and on SIGHUP until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|err| tracing::warn!(error = %err, "cannot watch SIGHUP; TLS files are only polled"))
            .ok();
        let mut tick = tokio::time::interval(self.files.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.reload(false),
                _ = hangup => self.reload(true),
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh self-signed certificate for `localhost`: (certificate PEM, key PEM, certificate DER).
    fn pair() -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn current(store: &CertStore) -> Vec<u8> {
        store.current.read().unwrap().cert[0].to_vec()
    }

    /// A rotation caught half-way (new certificate, old key) keeps the current pair; once the key follows,
    /// the next check loads the new pair.
    #[test]
    fn half_written_rotation_keeps_the_current_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (old_cert, old_key, old_der) = pair();
        std::fs::write(&files.cert_file, old_cert).unwrap();
        std::fs::write(&files.key_file, old_key).unwrap();
        let store = CertStore::open(files.clone()).unwrap();
        let (new_cert, new_key, new_der) = pair();
        std::fs::write(&files.cert_file, new_cert).unwrap();
        store.reload(true);
        assert_eq!(current(&store), old_der, "a certificate without its key was served");
        // Replaced by a rename, as rotation tools do: a new inode even within one mtime tick.
        let aside = dir.path().join("tls.key.new");
        std::fs::write(&aside, new_key).unwrap();
        std::fs::rename(&aside, &files.key_file).unwrap();
        store.reload(false);
        assert_eq!(current(&store), new_der, "the completed rotation was not loaded");
    }
}
