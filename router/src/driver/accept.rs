//! Accepting connections without spinning. When the process is out of file
//! descriptors, `accept` fails (EMFILE) while the connection waiting for it
//! stays, so the listener is readable again at once: retried at once, the
//! loop burns a core (the admin API's did, at 80-117% CPU, with one pending
//! connection). An [`Acceptor`] waits after each failure, longer each time
//! up to [`MAX_BACKOFF`], and says so in the log once per [`WARN_EVERY`]
//! with the number of failures, not once per failure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

/// The first wait after a failed accept.
pub const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Failed accepts on every listener of this process (GetStats).
pub static ACCEPT_FAILURES: AtomicU64 = AtomicU64::new(0);

/// A listener with back-off on errors.
pub struct Acceptor {
    listener: TcpListener,
    /// What the listener is for, in the log.
    what: &'static str,
    backoff: Duration,
    failed_since_warning: u64,
    warned_at: Option<tokio::time::Instant>,
}

impl Acceptor {
    pub fn new(listener: TcpListener, what: &'static str) -> Self {
        Self {
            listener,
            what,
            backoff: MIN_BACKOFF,
            failed_since_warning: 0,
            warned_at: None,
        }
    }

    /// The next connection; failures are waited out, never returned.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(conn) => {
                    self.backoff = MIN_BACKOFF;
                    return conn;
                }
                Err(e) => {
                    ACCEPT_FAILURES.fetch_add(1, Ordering::Relaxed);
                    self.failed_since_warning += 1;
                    let now = tokio::time::Instant::now();
                    if self.warned_at.is_none_or(|at| now - at >= WARN_EVERY) {
                        warn!(
                            listener = self.what,
                            error = %e,
                            failures = self.failed_since_warning,
                            retry_ms = self.backoff.as_millis() as u64,
                            "accept failed (out of file descriptors? raise `ulimit -n`); backing off"
                        );
                        self.warned_at = Some(now);
                        self.failed_since_warning = 0;
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The accepted connections as a stream (for tonic's
    /// `serve_with_incoming`), each with TCP_NODELAY set: accepted by a task
    /// of their own, which ends when the stream is dropped.
    pub fn into_stream(
        mut self,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    (s, _) = self.accept() => {
                        let _ = s.set_nodelay(true);
                        if tx.send(Ok(s)).await.is_err() {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// As [`Acceptor::into_stream`], each connection handshaken with TLS
    /// first, by a task of its own (a slow client holds up no other);
    /// failed handshakes are dropped.
    pub fn into_tls_stream(
        mut self,
        tls: std::sync::Arc<super::tls::TlsShared>,
    ) -> impl tokio_stream::Stream<
        Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>,
    > + Send
    + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    (s, peer) = self.accept() => {
                        let _ = s.set_nodelay(true);
                        let (tx, tls) = (tx.clone(), tls.clone());
                        tokio::spawn(async move {
                            match tls.accept_admin(s).await {
                                Ok(t) => { let _ = tx.send(Ok(t)).await; }
                                Err(e) => tracing::debug!(%peer, error = %e, "admin TLS handshake failed"),
                            }
                        });
                    }
                    () = tx.closed() => return,
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}
