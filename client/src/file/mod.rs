//! File transfer in meetings (see docs/protocol.md, "Files").
//!
//! [`RenoSender`] and [`FileReceiver`] hold the rules, with no I/O; the
//! async drivers [`send_file`] and [`receive_file`] run them over a
//! [`Session`]. While a driver runs it owns the session's events: messages
//! that are not about its transfer are handed to the `other` callback.

pub mod receiver;
pub mod reno;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use proto::control::{ClientMessage, ServerMessage};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub use receiver::{FileReceiver, MAX_PENDING, ReceiveError, hex};
pub use reno::{Phase, Reno, RenoSender, SenderCounters};

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::{ClientError, Control, RequestId, Session, Tagged};

/// Default chunk size (the meeting seed's 8 KiB).
pub const DEFAULT_CHUNK: u32 = 8 * 1024;
/// How long a sender waits for the receivers' verdicts after FILE_END.
pub const RESULT_WAIT: Duration = Duration::from_secs(30);

/// Where a sending transfer stands, for progress displays.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendProgress {
    pub transfer_id: u64,
    pub acked: u64,
    pub chunks: u64,
    pub bytes_acked: u64,
    pub cwnd: f64,
    pub ssthresh: f64,
    pub phase: Phase,
    pub in_flight: u64,
    pub srtt_ms: Option<f64>,
    pub counters: SenderCounters,
}

/// How a sent file ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendReport {
    pub transfer_id: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub sha256: String,
    pub elapsed_ms: u64,
    pub counters: SenderCounters,
    /// (receiver, ok, message)
    pub results: Vec<(String, bool, Option<String>)>,
    /// The largest window reached, in chunks.
    pub max_cwnd: f64,
}

/// SHA-256 of a file, lowercase hex, and its size.
pub async fn digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), size))
}

fn other_error(m: &ServerMessage) -> Option<ClientError> {
    match m {
        ServerMessage::Error { code, message } => Some(ClientError::Router {
            code: *code,
            message: message.clone(),
        }),
        ServerMessage::ServerClose { .. } => Some(ClientError::Closed),
        ServerMessage::Left { .. } => Some(ClientError::Unexpected(Box::new(m.clone()))),
        _ => None,
    }
}

/// Where a sending transfer's messages come from: a [`Session`] read by
/// the sender itself ([`send_file`]), or a channel fed by a task that owns
/// the session and hands each transfer what concerns it
/// ([`send_file_with`], [`concerns_senders`]).
pub trait Inbox {
    /// The next message, `None` once the connection is gone.
    fn next(&mut self) -> impl Future<Output = Option<Tagged>> + Send;
    /// A message that is not about this transfer.
    fn other(&mut self, m: ServerMessage);
}

impl Inbox for mpsc::UnboundedReceiver<Tagged> {
    async fn next(&mut self) -> Option<Tagged> {
        self.recv().await
    }

    fn other(&mut self, _: ServerMessage) {}
}

struct SessionInbox<'a, F> {
    session: &'a mut Session,
    other: F,
}

impl<F: FnMut(ServerMessage) + Send> Inbox for SessionInbox<'_, F> {
    fn next(&mut self) -> impl Future<Output = Option<Tagged>> + Send {
        self.session.next_tagged()
    }

    fn other(&mut self, m: ServerMessage) {
        (self.other)(m)
    }
}

/// Request ids of file offers: `file-N`, unique in this process.
pub fn offer_id() -> RequestId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    RequestId::Text(format!(
        "{OFFER_ID_PREFIX}{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// What every offer id starts with.
pub const OFFER_ID_PREFIX: &str = "file-";

/// Whether a message may concern a sending transfer: the answer to an
/// offer (tagged with its id), acknowledgements, verdicts and aborts, and
/// the end of the connection or of the meeting. A task that owns the
/// session gives these to its senders' inboxes.
pub fn concerns_senders(t: &Tagged) -> bool {
    let offer = matches!(&t.id, Some(RequestId::Text(s)) if s.starts_with(OFFER_ID_PREFIX));
    offer
        || matches!(
            t.message,
            ServerMessage::FileAck { .. }
                | ServerMessage::FileResult { .. }
                | ServerMessage::FileAborted { .. }
                | ServerMessage::ServerClose { .. }
                | ServerMessage::Left { .. }
        )
}

/// Offers `path` to `to` (or everyone) and sends it under a Reno window,
/// reporting progress after every acknowledgement; returns once every
/// receiver gave its verdict. Reads the session's events meanwhile: those
/// not about this transfer go to `other`, errors included (only the
/// offer's own refusal, told by its request id, ends the transfer).
pub async fn send_file(
    session: &mut Session,
    path: &Path,
    to: Option<&str>,
    chunk_size: u32,
    progress: impl FnMut(&SendProgress),
    other: impl FnMut(ServerMessage) + Send,
) -> Result<SendReport, ClientError> {
    let control = session.control();
    let mut inbox = SessionInbox { session, other };
    send_file_with(&control, &mut inbox, path, to, chunk_size, progress).await
}

/// A sent file's transfer, once the router accepted the offer.
#[derive(Debug, Clone)]
pub struct Started {
    pub transfer_id: u64,
    pub name: String,
    pub receivers: Vec<String>,
    pub chunks: u64,
}

/// As [`send_file`], with the transfer's messages from `inbox` and its
/// commands through `control`: for a transfer running as its own task
/// beside the one that reads the session. `progress` hears of the start
/// too, through [`send_file_reporting`].
pub async fn send_file_with(
    control: &Control,
    inbox: &mut impl Inbox,
    path: &Path,
    to: Option<&str>,
    chunk_size: u32,
    progress: impl FnMut(&SendProgress),
) -> Result<SendReport, ClientError> {
    send_file_reporting(control, inbox, path, to, chunk_size, |_| {}, progress).await
}

/// As [`send_file_with`]; `started` is told when the router accepts the
/// offer (the transfer's id, its receivers).
pub async fn send_file_reporting(
    control: &Control,
    inbox: &mut impl Inbox,
    path: &Path,
    to: Option<&str>,
    chunk_size: u32,
    started: impl FnOnce(&Started),
    mut progress: impl FnMut(&SendProgress),
) -> Result<SendReport, ClientError> {
    let begun = Instant::now();
    let (sha256, size) = digest(path).await?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let offer = offer_id();
    control
        .request(
            ClientMessage::FileOffer {
                to: to.map(str::to_owned),
                name: name.clone(),
                size,
                sha256: sha256.clone(),
                chunk_size,
            },
            offer.clone(),
        )
        .await?;
    // The answer carries the offer's id: FILE_STARTED, or its refusal.
    let (id, receivers, chunks) = loop {
        let t = inbox.next().await.ok_or(ClientError::Closed)?;
        if t.id.as_ref() == Some(&offer) {
            match t.message {
                ServerMessage::FileStarted {
                    transfer_id,
                    receivers,
                    chunks,
                    ..
                } => break (transfer_id, receivers, chunks),
                ServerMessage::Error { code, message } => {
                    return Err(ClientError::Router { code, message });
                }
                ServerMessage::Full { message, .. } => return Err(ClientError::Full(message)),
                m => inbox.other(m),
            }
            continue;
        }
        match &t.message {
            ServerMessage::ServerClose { .. } => return Err(ClientError::Closed),
            ServerMessage::Left { .. } => {
                return Err(ClientError::Unexpected(Box::new(t.message)));
            }
            _ => inbox.other(t.message),
        }
    };
    started(&Started {
        transfer_id: id,
        name,
        receivers: receivers.clone(),
        chunks,
    });
    let mut file = tokio::fs::File::open(path).await?;
    let mut sender = RenoSender::new(chunks);
    let mut buf = vec![0u8; chunk_size as usize];
    let mut max_cwnd: f64 = sender.window().cwnd;
    let snapshot = |s: &RenoSender| SendProgress {
        transfer_id: id,
        acked: s.acked(),
        chunks: s.chunks(),
        bytes_acked: (s.acked() * u64::from(chunk_size)).min(size),
        cwnd: s.window().cwnd,
        ssthresh: s.window().ssthresh,
        phase: s.window().phase(),
        in_flight: s.in_flight(),
        srtt_ms: s.srtt().map(|d| d.as_secs_f64() * 1000.0),
        counters: s.counters(),
    };
    while !sender.is_done() {
        while let Some(seq) = sender.poll_transmit(Instant::now()) {
            let offset = seq * u64::from(chunk_size);
            let len = (size - offset).min(u64::from(chunk_size)) as usize;
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            file.read_exact(&mut buf[..len]).await?;
            let data = base64::engine::general_purpose::STANDARD.encode(&buf[..len]);
            control
                .send(ClientMessage::FileChunk {
                    transfer_id: id,
                    seq,
                    data,
                })
                .await?;
        }
        let deadline = sender
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        match tokio::time::timeout_at(deadline.into(), inbox.next()).await {
            Err(_) => sender.on_timeout(Instant::now()),
            Ok(None) => return Err(ClientError::Closed),
            Ok(Some(t)) => match t.message {
                ServerMessage::FileAck {
                    transfer_id,
                    next_seq,
                } if transfer_id == id => {
                    sender.on_ack(Instant::now(), next_seq);
                    max_cwnd = max_cwnd.max(sender.window().cwnd);
                    progress(&snapshot(&sender));
                }
                ServerMessage::FileAborted {
                    transfer_id,
                    reason,
                } if transfer_id == id => {
                    return Err(ClientError::Media(format!("transfer aborted: {reason}")));
                }
                ServerMessage::FileResult {
                    transfer_id,
                    nickname,
                    ok,
                    message,
                } if transfer_id == id && !ok => {
                    return Err(ClientError::Media(format!(
                        "{nickname} gave up: {}",
                        message.unwrap_or_default()
                    )));
                }
                m => match ended(&m) {
                    Some(e) => return Err(e),
                    None => inbox.other(m),
                },
            },
        }
    }
    control
        .send(ClientMessage::FileEnd { transfer_id: id })
        .await?;
    let mut results = Vec::new();
    let until = tokio::time::Instant::now() + RESULT_WAIT;
    while results.len() < receivers.len() {
        match tokio::time::timeout_at(until, inbox.next()).await {
            Err(_) => return Err(ClientError::Timeout("FILE_RESULT")),
            Ok(None) => return Err(ClientError::Closed),
            Ok(Some(t)) => match t.message {
                ServerMessage::FileResult {
                    transfer_id,
                    nickname,
                    ok,
                    message,
                } if transfer_id == id => results.push((nickname, ok, message)),
                ServerMessage::FileAborted {
                    transfer_id,
                    reason,
                } if transfer_id == id => {
                    return Err(ClientError::Media(format!("transfer aborted: {reason}")));
                }
                m => match ended(&m) {
                    Some(e) => return Err(e),
                    None => inbox.other(m),
                },
            },
        }
    }
    Ok(SendReport {
        transfer_id: id,
        bytes: size,
        chunks,
        sha256,
        elapsed_ms: begun.elapsed().as_millis() as u64,
        counters: sender.counters(),
        results,
        max_cwnd,
    })
}

/// What ends a sending transfer that is not about it: the connection's
/// end, or leaving the meeting. Errors do not: they answer other commands.
fn ended(m: &ServerMessage) -> Option<ClientError> {
    match m {
        ServerMessage::ServerClose { .. } => Some(ClientError::Closed),
        ServerMessage::Left { .. } => Some(ClientError::Unexpected(Box::new(m.clone()))),
        _ => None,
    }
}

/// A file received intact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedFile {
    pub transfer_id: u64,
    pub from: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub duplicates: u64,
    pub elapsed_ms: u64,
}

/// Waits for the next file offered to this session, receives it into `dir`
/// (as its offered name; an existing file is not overwritten: a number is
/// added), checks it and tells the sender. `progress` gets (chunks in
/// order, chunks).
pub async fn receive_file(
    session: &mut Session,
    dir: &Path,
    mut progress: impl FnMut(u64, u64),
    mut other: impl FnMut(ServerMessage),
) -> Result<ReceivedFile, ClientError> {
    let (id, from, name, size, sha256, chunk_size) = loop {
        match session.next_event().await {
            None => return Err(ClientError::Closed),
            Some(ServerMessage::FileOffered {
                transfer_id,
                from,
                name,
                size,
                sha256,
                chunk_size,
                ..
            }) => break (transfer_id, from, name, size, sha256, chunk_size),
            Some(m) => match other_error(&m) {
                Some(e) => return Err(e),
                None => other(m),
            },
        }
    };
    let started = Instant::now();
    let target = free_name(dir, &name);
    let part = target.with_extension("part");
    let mut out = tokio::fs::File::create(&part).await?;
    let mut rx = FileReceiver::new(size, chunk_size, &sha256);
    let mut ordered = Vec::new();
    let mut duplicates = 0;
    let verdict: Result<(), ReceiveError> = loop {
        match session.next_event().await {
            None => return Err(ClientError::Closed),
            Some(ServerMessage::FileChunk {
                transfer_id,
                seq,
                data,
            }) if transfer_id == id => {
                ordered.clear();
                match rx.on_chunk(seq, &data, &mut ordered) {
                    Ok(next_seq) => {
                        out.write_all(&ordered).await?;
                        session
                            .send(ClientMessage::FileAck {
                                transfer_id: id,
                                next_seq,
                            })
                            .await?;
                        progress(next_seq, rx.chunks());
                    }
                    Err(e) => break Err(e),
                }
            }
            Some(ServerMessage::FileEnd { transfer_id }) if transfer_id == id => {
                duplicates = rx.duplicates();
                break rx.finish();
            }
            Some(ServerMessage::FileAborted {
                transfer_id,
                reason,
            }) if transfer_id == id => {
                drop(out);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(ClientError::Media(format!("transfer aborted: {reason}")));
            }
            Some(m) => match other_error(&m) {
                Some(e) => return Err(e),
                None => other(m),
            },
        }
    };
    out.flush().await?;
    drop(out);
    let result = ClientMessage::FileResult {
        transfer_id: id,
        ok: verdict.is_ok(),
        message: verdict.as_ref().err().map(ToString::to_string),
    };
    session.send(result).await?;
    match verdict {
        Ok(()) => {
            tokio::fs::rename(&part, &target).await?;
            Ok(ReceivedFile {
                transfer_id: id,
                from,
                path: target,
                bytes: size,
                sha256,
                duplicates,
                elapsed_ms: started.elapsed().as_millis() as u64,
            })
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(ClientError::Media(format!(
                "file from {from} rejected: {e}"
            )))
        }
    }
}

/// `dir/name`, or `dir/name (2)`… if taken. The router refuses names that
/// are paths; only the last component is used all the same.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let name = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let first = dir.join(&name);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| dir.join(format!("{name} ({i})")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests;
