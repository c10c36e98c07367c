//! TLS on the control channel (rustls, ring).
//!
//! TLS shares the control port with plaintext: a TLS client's first byte
//! is a handshake record (0x16), a plaintext client's is its HELLO's `{`.
//! The connection's task peeks at that byte; a TLS client is handshaken,
//! and its plaintext is carried over a local socket pair to the same
//! connection machinery plaintext clients use ([`super::stream`]), so the
//! engine, the outbox and the writers never see TLS. With `mode =
//! "require"` a plaintext client is answered `ERROR TLS_REQUIRED` and
//! closed.
//!
//! The certificate comes from `[tls] cert` and `key`, or is made once
//! (self-signed, ECDSA P-256, rcgen) and kept in the state directory, so
//! that clients that pinned its fingerprint keep trusting it across
//! restarts. SIGHUP reads it again ([`TlsShared::reload`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsConfig, TlsMode};

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The self-signed certificate and its key, in the state directory.
pub const STATE_FILE: &str = "tls.pem";

/// A certificate in force: what accepts with it, and what identifies it.
struct Loaded {
    acceptor: TlsAcceptor,
    /// The same certificate for the gRPC admin API, offering HTTP/2 by
    /// ALPN (gRPC clients insist on it).
    admin_acceptor: TlsAcceptor,
    fingerprint: String,
    /// Where it came from, for the log.
    source: String,
}

/// The TLS settings the accept loop and the admin reload share.
pub struct TlsShared {
    mode: TlsMode,
    cfg: TlsConfig,
    state_dir: Option<PathBuf>,
    loaded: RwLock<Arc<Loaded>>,
}

/// SHA-256 of a certificate (DER) as clients pin it: uppercase hex pairs
/// joined by colons, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

impl TlsShared {
    /// Loads (or makes) the certificate `cfg` names; `None` when TLS is off.
    pub fn start(cfg: &TlsConfig, state_dir: Option<&Path>) -> anyhow::Result<Option<Arc<Self>>> {
        if cfg.mode == TlsMode::Off {
            return Ok(None);
        }
        let loaded = match load(cfg, state_dir) {
            Ok(l) => l,
            // Offering TLS with a certificate of its own making is the
            // default: where none can be made, the router still starts.
            Err(e) if cfg.mode == TlsMode::Offer && cfg.cert.is_none() => {
                tracing::warn!(error = %e, "no TLS on the control channel: plaintext only");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        tracing::info!(
            fingerprint = %loaded.fingerprint,
            source = %loaded.source,
            mode = ?cfg.mode,
            "TLS on the control channel"
        );
        Ok(Some(Arc::new(Self {
            mode: cfg.mode,
            cfg: cfg.clone(),
            state_dir: state_dir.map(Path::to_path_buf),
            loaded: RwLock::new(Arc::new(loaded)),
        })))
    }

    /// Reads the certificate again (SIGHUP): new handshakes use it, those
    /// done keep theirs.
    pub fn reload(&self) -> anyhow::Result<String> {
        let loaded = load(&self.cfg, self.state_dir.as_deref())?;
        let fp = loaded.fingerprint.clone();
        tracing::info!(fingerprint = %fp, source = %loaded.source, "TLS certificate reloaded");
        match self.loaded.write() {
            Ok(mut l) => *l = Arc::new(loaded),
            Err(p) => *p.into_inner() = Arc::new(loaded),
        }
        Ok(fp)
    }

    fn current(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The SHA-256 fingerprint of the certificate in force.
    pub fn fingerprint(&self) -> String {
        self.current().fingerprint.clone()
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Handshakes a client whose first byte said TLS.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = self.current().acceptor.clone();
        Self::handshake(acceptor, tcp).await
    }

    /// Handshakes a gRPC admin client (ALPN `h2`).
    pub async fn accept_admin(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = self.current().admin_acceptor.clone();
        Self::handshake(acceptor, tcp).await
    }

    async fn handshake(
        acceptor: TlsAcceptor,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// Whether a connection's first byte starts a TLS handshake record.
pub fn is_tls_start(first: u8) -> bool {
    first == 0x16
}

fn load(cfg: &TlsConfig, state_dir: Option<&Path>) -> anyhow::Result<Loaded> {
    let (certs, key, source) = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow!("{}: no private key: {e}", key.display()))?;
            (certs, key, cert.display().to_string())
        }
        (None, None) => {
            let dir = state_dir.ok_or_else(|| {
                anyhow!("TLS needs a certificate: set [tls] cert and key, or state_dir for a self-signed one")
            })?;
            let path = dir.join(STATE_FILE);
            if !path.exists() {
                make_self_signed(&path, &cfg.names)?;
            }
            let certs = read_certs(&path)?;
            let key = PrivateKeyDer::from_pem_file(&path)
                .map_err(|e| anyhow!("{}: no private key: {e}", path.display()))?;
            (certs, key, format!("{} (self-signed)", path.display()))
        }
        _ => return Err(anyhow!("[tls] cert and key go together")),
    };
    let fp = fingerprint(certs.first().map(|c| c.as_ref()).unwrap_or_default());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |certs, key| {
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .with_context(|| format!("TLS certificate {source}"))
    };
    let mut admin = build(certs.clone(), key.clone_key())?;
    admin.alpn_protocols = vec![b"h2".to_vec()];
    let config = build(certs, key)?;
    Ok(Loaded {
        admin_acceptor: TlsAcceptor::from(Arc::new(admin)),
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint: fp,
        source,
    })
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Makes a self-signed certificate for `names` (localhost and the loopback
/// addresses when empty) and writes it with its key to `path` (mode 0600),
/// atomically: a router starting beside finds the whole file or none.
fn make_self_signed(path: &Path, names: &[String]) -> anyhow::Result<()> {
    let mut names = names.to_vec();
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
            let h = h.trim();
            if !h.is_empty() && !names.iter().any(|n| n == h) {
                names.push(h.to_owned());
            }
        }
    }
    let key = rcgen::KeyPair::generate().context("making a key")?;
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Switchboard router (self-signed)",
    );
    let cert = params.self_signed(&key).context("making a certificate")?;
    let text = format!("{}{}", key.serialize_pem(), cert.pem());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!(
        "tmp{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    // Another router may have made one meanwhile: keep the first.
    if path.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Ok(());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "made a self-signed TLS certificate");
    Ok(())
}

/// How long the relay lets a client finish sending once the router has
/// closed its side, and the router finish once the client has.
const RELAY_LINGER: Duration = Duration::from_secs(10);

/// Carries plaintext between a TLS client and the router's end of the
/// local pair until both sides are done, then lingers on the TCP
/// connection as the router's own closes do (the last message and the TLS
/// close_notify reach the client before the socket closes).
pub async fn relay(tls: tokio_rustls::server::TlsStream<TcpStream>, local: UnixStream) {
    let (mut tr, mut tw) = tokio::io::split(tls);
    let (mut lr, mut lw) = local.into_split();
    // The futures borrow the halves; they end before the halves are joined.
    {
        let up = async {
            let _ = tokio::io::copy(&mut tr, &mut lw).await;
            let _ = lw.shutdown().await;
        };
        let down = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match lr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tw.write_all(&buf[..n]).await.is_err() || tw.flush().await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tw.shutdown().await;
        };
        tokio::pin!(up, down);
        tokio::select! {
            () = &mut up => { let _ = tokio::time::timeout(RELAY_LINGER, &mut down).await; }
            () = &mut down => { let _ = tokio::time::timeout(RELAY_LINGER, &mut up).await; }
        }
    }
    drop(lw);
    let tls = tr.unsplit(tw);
    let (tcp, _) = tls.into_inner();
    super::connection::linger(&super::stream::ControlStream::Tcp(tcp), true).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("sb-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = TlsConfig::default();
        let a = load(&cfg, Some(&dir));
        let Ok(a) = a else { panic!("{:?}", a.err()) };
        let b = load(&cfg, Some(&dir));
        let Ok(b) = b else { panic!("{:?}", b.err()) };
        assert_eq!(a.fingerprint, b.fingerprint, "kept across starts");
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let mode = std::fs::metadata(dir.join(STATE_FILE))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        // Configured files win; a key without a certificate is an error.
        let only_key = TlsConfig {
            key: Some(dir.join(STATE_FILE)),
            ..TlsConfig::default()
        };
        assert!(load(&only_key, Some(&dir)).is_err());
        let both = TlsConfig {
            cert: Some(dir.join(STATE_FILE)),
            key: Some(dir.join(STATE_FILE)),
            ..TlsConfig::default()
        };
        assert!(load(&both, None).is_ok_and(|l| l.fingerprint == a.fingerprint));
        assert!(load(&TlsConfig::default(), None).is_err(), "no state dir");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
