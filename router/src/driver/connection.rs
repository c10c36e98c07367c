//! The control listener and one task per connection: line framing in,
//! queued lines out (messages first, bulk file chunks only when nothing else
//! waits), nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plugin_api::SessionId;
use proto::control;
use proto::framing::{Frame, LineFramer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

use super::engine_task::EngineEvent;
use crate::engine::Input;

/// Messages queued for one connection before it counts as a slow consumer.
pub const CONNECTION_QUEUE: usize = 1024;
/// Bulk messages (file chunks) queued for one connection; beyond this they
/// are dropped, and the transfer's acknowledgements repair the loss.
pub const BULK_QUEUE: usize = 64;
/// Bulk messages dropped because a connection's bulk queue was full.
pub static BULK_DROPPED: AtomicU64 = AtomicU64::new(0);
/// A write that takes longer than this closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection task receives.
#[derive(Debug)]
pub enum ConnCommand {
    /// One serialized line, newline included: a message for many (a member
    /// list, a floor grant) is serialized once and shared.
    Send(Arc<[u8]>),
    Close,
}

/// The engine task's end of one connection: its message queue, and its
/// bulk queue, which the connection drains only when the first is empty.
#[derive(Clone)]
pub struct ConnHandle {
    pub tx: mpsc::Sender<ConnCommand>,
    pub bulk: mpsc::Sender<Arc<[u8]>>,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub(crate) async fn accept_loop(listener: TcpListener, engine: mpsc::Sender<EngineEvent>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        let (bulk, bulk_rx) = mpsc::channel(BULK_QUEUE);
        if engine
            .send(EngineEvent::Register {
                session,
                conn: ConnHandle { tx, bulk },
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
        // they can flush SERVER_CLOSE. Each ends when its queue closes.
        tokio::spawn(
            connection(stream, session, engine.clone(), rx, bulk_rx)
                .instrument(info_span!("session", id = session, %peer)),
        );
    }
}

thread_local! {
    /// Where connection tasks running on this thread read their sockets.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

/// Bytes read from a control connection at once.
const READ_CHUNK: usize = 16 * 1024;

async fn connection(
    stream: TcpStream,
    session: SessionId,
    engine: mpsc::Sender<EngineEvent>,
    mut rx: mpsc::Receiver<ConnCommand>,
    mut bulk: mpsc::Receiver<Arc<[u8]>>,
) {
    debug!("connected");
    let (reader, mut writer) = stream.into_split();
    let mut framer = LineFramer::new(control::MAX_LINE_BYTES);
    let mut reading = true;
    loop {
        tokio::select! {
            // Outgoing messages first, bulk last: a file transfer never
            // delays another message to the same client.
            biased;
            cmd = rx.recv() => match cmd {
                Some(ConnCommand::Send(line)) => {
                    let mut out = line.to_vec();
                    // Coalesce whatever else is queued into one write.
                    let mut close = false;
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            ConnCommand::Send(m) => out.extend_from_slice(&m),
                            ConnCommand::Close => { close = true; break; }
                        }
                    }
                    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                    if close {
                        break;
                    }
                }
                Some(ConnCommand::Close) | None => break,
            },
            r = reader.readable(), if reading => {
                // Read into the thread's buffer, not one per connection:
                // an idle session then holds no read buffer at all.
                let read = match r {
                    Ok(()) => READ_BUF.with_borrow_mut(|buf| {
                        reader.try_read(buf).inspect(|&n| framer.push(&buf[..n]))
                    }),
                    Err(e) => Err(e),
                };
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(0) | Err(_) => {
                        reading = false;
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
                                return;
                            }
                        }
                    }
                }
            },
            Some(line) = bulk.recv() => {
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&line)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), writer.shutdown()).await;
    if reading {
        // Closed by the router: make sure the engine has forgotten it.
        let _ = engine
            .send(EngineEvent::Input(Input::Disconnected { session }))
            .await;
    }
    debug!("closed");
}
