//! TLS to the router's control channel (rustls), and how the client
//! decides to trust a router: a CA, a fingerprint given, or trust on first
//! use with a known-hosts file, as ssh and Mumble do. A pinned router that
//! presents another certificate, or answers without TLS, is refused with
//! a message that says what to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(6);

/// Whether to speak TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Plaintext (the library's default).
    #[default]
    Plain,
    /// TLS, or nothing.
    Tls,
    /// TLS when the router offers it; plaintext from a router that does
    /// not, unless it is pinned (then that is a downgrade, refused).
    Auto,
}

/// Whom to believe about a router's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Certificates signed by the CAs in this PEM file, for the server's
    /// name.
    Ca(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint.
    Fingerprint(String),
    /// Trust on first use: a router seen for the first time is remembered
    /// in this file; later, another certificate is refused.
    KnownHosts(PathBuf),
}

/// TLS settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub transport: Transport,
    pub trust: Trust,
    /// The name to verify (and send as SNI); the address's IP without it.
    pub server_name: Option<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Plain,
            trust: Trust::KnownHosts(default_known_hosts()),
            server_name: None,
        }
    }
}

/// A router address as people type it: `tls://host:port` (TLS or
/// nothing), `tcp://host:port` (plaintext), or `host:port` (TLS when the
/// router offers it). Returns the transport, the `host:port` to resolve,
/// and the host's name when it is not an IP address (verified, and sent
/// as SNI).
pub fn parse_address(s: &str) -> (Transport, &str, Option<String>) {
    let (transport, rest) = if let Some(r) = s.strip_prefix("tls://") {
        (Transport::Tls, r)
    } else if let Some(r) = s.strip_prefix("tcp://") {
        (Transport::Plain, r)
    } else {
        (Transport::Auto, s)
    };
    let rest = rest.trim_end_matches('/');
    let host = match rest.rsplit_once(':') {
        Some((h, _)) => h,
        None => rest,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name =
        (host.parse::<std::net::IpAddr>().is_err() && !host.is_empty()).then(|| host.to_owned());
    (transport, rest, name)
}

/// `$XDG_DATA_HOME/switchboard/known_hosts`, or under `~/.local/share`.
pub fn default_known_hosts() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base = env("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("switchboard").join("known_hosts")
}

/// SHA-256 of a certificate as the router prints it: uppercase hex pairs
/// joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let hex: Vec<String> = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    hex.join(":")
}

/// A fingerprint as typed (any case, colons or not, an optional `SHA256:`)
/// in the router's form.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix("SHA256:")
        .or_else(|| s.strip_prefix("sha256:"))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &up[2 * i..2 * i + 2]).collect();
    Some(pairs.join(":"))
}

/// What went wrong with TLS, in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "the certificate of {host} has changed: {file} says {known}, it presents {seen}. \
         Someone may be intercepting the connection. If the router's certificate was \
         replaced on purpose, remove the line for {host} from {file} and connect again"
    )]
    Changed {
        host: String,
        file: String,
        known: String,
        seen: String,
    },
    #[error("the certificate of {host} is {seen}, not the fingerprint given ({want})")]
    WrongFingerprint {
        host: String,
        want: String,
        seen: String,
    },
    #[error(
        "{host} is pinned in {file} but answered without TLS: refusing a plaintext downgrade \
         (remove its line from {file} if it really stopped speaking TLS)"
    )]
    Downgrade { host: String, file: String },
    #[error("TLS with {host}: {message}")]
    Handshake { host: String, message: String },
    #[error("{0}")]
    Setup(String),
}

/// One line of a known-hosts file: `host:port SHA256 FINGERPRINT`.
fn known_fingerprint(file: &Path, host: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(host) && parts.next() == Some("SHA256"))
            .then(|| parts.next().and_then(normalize_fingerprint))
            .flatten()
    })
}

fn remember(file: &Path, host: &str, fp: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(f, "{host} SHA256 {fp}")
}

/// Checks the presented certificate against a pin, or a CA, and keeps
/// what it saw; the handshake's signatures are checked as rustls does.
#[derive(Debug)]
struct Verifier {
    ca: Option<Arc<dyn ServerCertVerifier>>,
    pin: Option<String>,
    seen: Mutex<Option<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(fp.clone());
        }
        if let Some(ca) = &self.ca {
            return ca.verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        }
        match &self.pin {
            Some(pin) if *pin != fp => Err(rustls::Error::General("fingerprint mismatch".into())),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The stream to the router: TLS or plain.
pub enum Connected {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// What was decided about a connection, for the user to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustInfo {
    /// The certificate's fingerprint (`None`: plaintext).
    pub fingerprint: Option<String>,
    /// In words: "verified by CA", "pinned", "first use: remembered in …",
    /// "plaintext".
    pub decision: String,
}

/// Connects to `server` as `opts` says.
pub async fn connect(
    server: std::net::SocketAddr,
    opts: &TlsOptions,
) -> Result<(Connected, TrustInfo), crate::ClientError> {
    let host = match &opts.server_name {
        Some(n) => format!("{n}:{}", server.port()),
        None => server.to_string(),
    };
    let pinned_in = match &opts.trust {
        Trust::KnownHosts(f) => known_fingerprint(f, &host).map(|fp| (fp, f.clone())),
        _ => None,
    };
    let tcp = TcpStream::connect(server).await?;
    tcp.set_nodelay(true)?;
    if opts.transport == Transport::Plain {
        return Ok((Connected::Plain(tcp), plain_info()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = match &opts.trust {
        Trust::Ca(file) => Some(ca_verifier(file, provider.clone())?),
        _ => None,
    };
    let pin = match &opts.trust {
        Trust::Fingerprint(f) => Some(normalize_fingerprint(f).ok_or_else(|| {
            TlsError::Setup(format!(
                "`{f}` is not a SHA-256 fingerprint (64 hex digits)"
            ))
        })?),
        Trust::KnownHosts(_) => pinned_in.as_ref().map(|(fp, _)| fp.clone()),
        Trust::Ca(_) => None,
    };
    let verifier = Arc::new(Verifier {
        ca,
        pin: pin.clone(),
        seen: Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = match &opts.server_name {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| TlsError::Setup(format!("server name `{n}`: {e}")))?,
        None => ServerName::from(server.ip()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await;
    let seen = verifier.seen.lock().ok().and_then(|s| s.clone());
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // A certificate was shown and refused: say whose.
            if let (Some(seen), Some(want)) = (&seen, &pin)
                && seen != want
            {
                return Err(match &pinned_in {
                    Some((known, file)) => TlsError::Changed {
                        host,
                        file: file.display().to_string(),
                        known: known.clone(),
                        seen: seen.clone(),
                    },
                    None => TlsError::WrongFingerprint {
                        host,
                        want: want.clone(),
                        seen: seen.clone(),
                    },
                }
                .into());
            }
            // No certificate at all: the router speaks no TLS.
            if seen.is_none() {
                if let Some((_, file)) = &pinned_in {
                    return Err(TlsError::Downgrade {
                        host,
                        file: file.display().to_string(),
                    }
                    .into());
                }
                if opts.transport == Transport::Auto {
                    tracing::warn!(%host, "the router speaks no TLS: connecting in plaintext");
                    let tcp = TcpStream::connect(server).await?;
                    tcp.set_nodelay(true)?;
                    return Ok((Connected::Plain(tcp), plain_info()));
                }
            }
            return Err(TlsError::Handshake {
                host,
                message: e.to_string(),
            }
            .into());
        }
        Err(_) => {
            return Err(TlsError::Handshake {
                host,
                message: "the handshake timed out".into(),
            }
            .into());
        }
    };
    let fp = seen.unwrap_or_default();
    let decision = match (&opts.trust, &pinned_in) {
        (Trust::Ca(f), _) => format!("verified by the CA in {}", f.display()),
        (Trust::Fingerprint(_), _) => "the fingerprint given".to_owned(),
        (Trust::KnownHosts(f), Some(_)) => format!("pinned in {}", f.display()),
        (Trust::KnownHosts(f), None) => {
            remember(f, &host, &fp).map_err(|e| {
                TlsError::Setup(format!("remembering {host} in {}: {e}", f.display()))
            })?;
            tracing::warn!(%host, fingerprint = %fp, file = %f.display(), "first connection to this router: its certificate is remembered");
            format!("first use: remembered in {}", f.display())
        }
    };
    Ok((
        Connected::Tls(Box::new(stream)),
        TrustInfo {
            fingerprint: Some(fp),
            decision,
        },
    ))
}

fn plain_info() -> TrustInfo {
    TrustInfo {
        fingerprint: None,
        decision: "plaintext".into(),
    }
}

fn ca_verifier(
    file: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| TlsError::Setup(format!("{}: {e}", file.display())))?;
    for c in certs {
        let c = c.map_err(|e| TlsError::Setup(format!("{}: {e}", file.display())))?;
        roots
            .add(c)
            .map_err(|e| TlsError::Setup(format!("{}: {e}", file.display())))?;
    }
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::Setup(format!("{}: {e}", file.display())))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_however_they_are_typed() {
        let fp = "b4:52:e8:23:2d:61:51:e5:5c:fb:a5:e4:1a:69:a3:5b:1e:70:32:cb:1d:92:9e:36:df:35:d6:d9:52:8c:84:5a";
        let want = fp.to_ascii_uppercase();
        assert_eq!(normalize_fingerprint(fp).as_deref(), Some(want.as_str()));
        let bare: String = fp.chars().filter(|c| *c != ':').collect();
        assert_eq!(
            normalize_fingerprint(&format!("SHA256:{bare}")).as_deref(),
            Some(want.as_str())
        );
        assert_eq!(normalize_fingerprint("abc"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn addresses_say_their_transport() {
        assert_eq!(
            parse_address("tls://router.example:7070"),
            (
                Transport::Tls,
                "router.example:7070",
                Some("router.example".into())
            )
        );
        assert_eq!(
            parse_address("tcp://127.0.0.1:7070"),
            (Transport::Plain, "127.0.0.1:7070", None)
        );
        assert_eq!(
            parse_address("[::1]:7070"),
            (Transport::Auto, "[::1]:7070", None)
        );
    }

    #[test]
    fn known_hosts_are_remembered_and_found() {
        let file = std::env::temp_dir()
            .join(format!("sb-known-{}", std::process::id()))
            .join("known_hosts");
        let fp = normalize_fingerprint(&"ab".repeat(32)).unwrap_or_default();
        assert!(remember(&file, "127.0.0.1:7070", &fp).is_ok());
        assert_eq!(known_fingerprint(&file, "127.0.0.1:7070"), Some(fp));
        assert_eq!(known_fingerprint(&file, "127.0.0.1:7071"), None);
        if let Some(d) = file.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
