//! The control listener and one task per connection: line framing in, and
//! out whatever the writers could not write at once (see [`super::outbox`]),
//! nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::control;
use proto::framing::{Frame, LineFramer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span};

use super::engine_task::EngineEvent;
use super::outbox::{Drained, Outbox, WRITE_TIMEOUT};
use super::stream::ControlStream;
use super::tls::TlsShared;
use crate::engine::Input;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A session id no connection of any front-end has had.
pub(crate) fn next_session() -> plugin_api::SessionId {
    NEXT_SESSION.fetch_add(1, Ordering::Relaxed)
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    engine: mpsc::Sender<EngineEvent>,
    tls: Option<Arc<TlsShared>>,
) {
    let mut acceptor = super::accept::Acceptor::new(listener, "control");
    loop {
        let (stream, peer) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        let session = next_session();
        // Without TLS the stream is known now; with it, once the first
        // byte has said which (the session is registered first, so the
        // HELLO deadline, bans and per-address limits hold meanwhile).
        let (outbox, plain) = match tls {
            None => {
                let stream = Arc::new(ControlStream::Tcp(stream));
                (Outbox::new(session, stream.clone()), Ok(stream))
            }
            Some(_) => (Outbox::unattached(session), Err(stream)),
        };
        if engine
            .send(EngineEvent::Register {
                session,
                outbox: outbox.clone(),
            })
            .await
            .is_err()
            || engine
                .send(EngineEvent::Input(Input::Connected { session, peer }))
                .await
                .is_err()
        {
            return;
        }
        // Detached: connection tasks outlive the accept loop at shutdown, so
        // they can flush SERVER_CLOSE. Each ends when the router closes it.
        let span = info_span!("session", id = session, %peer);
        match (plain, &tls) {
            (Ok(stream), _) => {
                tokio::spawn(connection(stream, outbox, engine.clone()).instrument(span));
            }
            (Err(tcp), Some(tls)) => {
                tokio::spawn(negotiate(tcp, outbox, engine.clone(), tls.clone()).instrument(span));
            }
            (Err(_), None) => {}
        }
    }
}

/// Connections handshaken with TLS, refused for want of it, and failed
/// handshakes.
pub static TLS_SESSIONS: AtomicU64 = AtomicU64::new(0);
pub static TLS_REFUSED_PLAIN: AtomicU64 = AtomicU64::new(0);
pub static TLS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Tells a TLS client from a plaintext one by its first byte and serves
/// it: TLS through a local pair and [`super::tls::relay`], plaintext on
/// its socket (or, when TLS is required, `ERROR TLS_REQUIRED`).
async fn negotiate(
    tcp: tokio::net::TcpStream,
    outbox: Arc<Outbox>,
    engine: mpsc::Sender<EngineEvent>,
    tls: Arc<TlsShared>,
) {
    let session = outbox.session();
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        r = tcp.peek(&mut first) => r.ok().filter(|&n| n > 0).map(|_| first[0]),
        // The router ends it before a byte came (HELLO deadline, a ban):
        // the last word goes out as plaintext.
        () = outbox.woken() => None,
    };
    match peeked {
        Some(b) if super::tls::is_tls_start(b) => {
            let handshake = tokio::select! {
                r = tls.accept(tcp) => Some(r),
                () = wait_until_ending(&outbox) => None,
            };
            let stream = match handshake {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    TLS_FAILED.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "TLS handshake failed");
                    return abandon(&outbox, &engine, session).await;
                }
                None => return abandon(&outbox, &engine, session).await,
            };
            let (router_end, relay_end) = match tokio::net::UnixStream::pair() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "no socket pair for a TLS session");
                    return abandon(&outbox, &engine, session).await;
                }
            };
            TLS_SESSIONS.fetch_add(1, Ordering::Relaxed);
            // Before any line: the engine gives keys only to TLS sessions.
            if engine
                .send(EngineEvent::Input(Input::Encrypted { session }))
                .await
                .is_err()
            {
                return;
            }
            tokio::spawn(super::tls::relay(stream, relay_end).in_current_span());
            let local = Arc::new(ControlStream::Local(router_end));
            outbox.attach(local.clone());
            connection(local, outbox, engine).await;
        }
        Some(_) if tls.mode() == crate::config::TlsMode::Require => {
            TLS_REFUSED_PLAIN.fetch_add(1, Ordering::Relaxed);
            let line = control::to_line(&control::ServerMessage::Error {
                code: control::ErrorCode::TlsRequired,
                message: "this router takes TLS only: connect with TLS (docs/security.md)".into(),
            });
            let stream = ControlStream::Tcp(tcp);
            let _ = stream.try_write(&line);
            abandon(&outbox, &engine, session).await;
            linger(&stream, true).await;
        }
        _ => {
            let stream = Arc::new(ControlStream::Tcp(tcp));
            outbox.attach(stream.clone());
            connection(stream, outbox, engine).await;
        }
    }
}

/// Resolves once the router has asked to end the connection.
async fn wait_until_ending(outbox: &Outbox) {
    loop {
        if outbox.ending() {
            return;
        }
        outbox.woken().await;
    }
}

/// Forgets a connection that never got a stream to serve.
async fn abandon(
    outbox: &Outbox,
    engine: &mpsc::Sender<EngineEvent>,
    session: plugin_api::SessionId,
) {
    outbox.finish();
    let _ = engine
        .send(EngineEvent::Input(Input::Disconnected { session }))
        .await;
}

thread_local! {
    /// Where connection tasks running on this thread read their sockets.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

/// Bytes read from a control connection at once.
const READ_CHUNK: usize = 16 * 1024;

/// How long a connection the router closes waits, at most, for its peer
/// to take what was written. At shutdown the router waits no longer than
/// its grace (1.5 s) for all of them.
const LINGER: Duration = Duration::from_millis(2000);

/// Half-closes a connection the router ends, then reads and drops what the
/// peer still sends until the peer has acknowledged everything written
/// (the last message and the FIN), the peer closes too, or [`LINGER`]
/// passes. Closing a socket with unread input makes the kernel answer with
/// a reset, and a reset throws away what the peer has not yet received:
/// the last message (SERVER_CLOSE, TOO_MANY_ERRORS, FULL, LEFT KICKED) was
/// lost whenever the client was writing at that moment. What the peer has
/// received survives a reset.
pub(crate) async fn linger(stream: &ControlStream, peer_open: bool) {
    stream.shutdown_write();
    if !peer_open {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    loop {
        if stream.unacknowledged() == Some(0) {
            return;
        }
        tokio::select! {
            r = stream.readable() => {
                if r.is_err() {
                    return;
                }
                match READ_BUF.with_borrow_mut(|buf| stream.try_read(buf)) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = tick.tick() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

async fn connection(
    stream: Arc<ControlStream>,
    outbox: Arc<Outbox>,
    engine: mpsc::Sender<EngineEvent>,
) {
    debug!("connected");
    let session = outbox.session();
    let mut framer = LineFramer::new(control::MAX_LINE_BYTES);
    let mut reading = true;
    // The peer closed its side (its input ended).
    let mut peer_closed = false;
    'conn: loop {
        tokio::select! {
            // What the writers could not write at once comes first.
            biased;
            () = outbox.woken() => match outbox.drain(WRITE_TIMEOUT).await {
                Drained::Idle => {}
                Drained::Close => {
                    linger(&stream, !peer_closed).await;
                    break;
                }
                Drained::Abort => break,
            },
            r = stream.readable(), if reading => {
                // Read into the thread's buffer, not one per connection:
                // an idle session then holds no read buffer at all.
                let read = match r {
                    Ok(()) => READ_BUF.with_borrow_mut(|buf| {
                        stream.try_read(buf).inspect(|&n| framer.push(&buf[..n]))
                    }),
                    Err(e) => Err(e),
                };
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(0) | Err(_) => {
                        reading = false;
                        peer_closed = true;
                        let _ = engine.send(EngineEvent::Input(Input::Disconnected { session })).await;
                    }
                    Ok(_) => {
                        let read_at = std::time::Instant::now();
                        while let Some(frame) = framer.next_frame() {
                            let ev = match frame {
                                Frame::Line(line) => EngineEvent::Line {
                                    input: Input::Line { session, line },
                                    read_at,
                                },
                                Frame::TooLong => EngineEvent::Input(Input::LineTooLong { session }),
                            };
                            if engine.send(ev).await.is_err() {
                                // The engine is gone (the router stops):
                                // what it told is still written, then the
                                // connection closes as the router's own
                                // closes do.
                                reading = false;
                                outbox.close();
                                continue 'conn;
                            }
                        }
                    }
                }
            },
        }
    }
    outbox.finish();
    if reading {
        // Closed by the router: make sure the engine has forgotten it.
        let _ = engine
            .send(EngineEvent::Input(Input::Disconnected { session }))
            .await;
    }
    debug!("closed");
}
