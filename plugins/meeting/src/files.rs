//! File transfer through a meeting: the router relays, it does not store.
//!
//! The sender offers a file (`FILE_OFFER`) to one participant or everyone;
//! chunks (`FILE_CHUNK`, base64) are relayed to the receivers as **bulk**
//! messages, which wait behind every other message to the receiver and are
//! dropped when its bulk queue is full, as a congested router drops packets.
//! Receivers acknowledge cumulatively (`FILE_ACK next_seq`); the router
//! passes the slowest receiver's acknowledgement back, so the sender's
//! TCP-Reno window (client side) paces itself to the slowest receiver and
//! sees drops as duplicate acknowledgements or timeouts. The sender ends
//! with `FILE_END` once everything is acknowledged; receivers check the
//! SHA-256 and say so (`FILE_RESULT`), which the sender is told.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plugin_api::{CommandError, ErrorCode, Notice, Outbox, SessionId, TimerKey};

/// Smallest and largest chunk a sender may choose, in bytes.
pub const MIN_CHUNK: u32 = 1024;
/// A chunk's base64 must fit a control line with room to spare.
pub const MAX_CHUNK: u32 = 32 * 1024;
/// Transfers one sender may have running at once.
pub const MAX_PER_SENDER: usize = 4;
/// Transfers a room may have running at once.
pub const MAX_PER_ROOM: usize = 32;
/// Longest file name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Timer keys of transfers: this bit plus the transfer id.
pub const TIMER_BIT: TimerKey = 1 << 62;

/// Limits of a room's transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileConfig {
    pub max_bytes: u64,
    /// A transfer with no chunk, acknowledgement or result for this long is
    /// aborted.
    pub stall: Duration,
}

#[derive(Debug)]
struct Transfer {
    sender: SessionId,
    chunks: u64,
    chunk_size: u32,
    /// Receiver → next chunk it expects (cumulative acknowledgement);
    /// receivers leave the map when they report a result or go.
    receivers: BTreeMap<SessionId, u64>,
    nicknames: BTreeMap<SessionId, String>,
    /// The slowest receiver's acknowledgement last passed to the sender.
    acked: u64,
    ended: bool,
}

impl Transfer {
    /// Tells the sender where the slowest receiver stands when that moved
    /// on, or when the receiver at `own` is the slowest and repeats itself
    /// (a duplicate: the sender's loss signal); a faster receiver's
    /// acknowledgements say nothing.
    fn pass_on_slowest(&mut self, id: u64, own: Option<u64>, out: &mut Outbox) {
        let min = self
            .receivers
            .values()
            .copied()
            .min()
            .unwrap_or(self.chunks);
        if min > self.acked || own == Some(min) {
            self.acked = self.acked.max(min);
            out.notify(
                self.sender,
                Notice::FileAcked {
                    transfer: id,
                    next_seq: min,
                },
            );
        }
    }
}

/// Every transfer of one room.
#[derive(Debug)]
pub struct Files {
    cfg: FileConfig,
    transfers: BTreeMap<u64, Transfer>,
    last_id: u64,
}

fn bad(msg: String) -> CommandError {
    CommandError::new(ErrorCode::BadFile, msg)
}

fn unknown(id: u64) -> CommandError {
    CommandError::new(
        ErrorCode::UnknownTransfer,
        format!("no transfer {id} of yours is running"),
    )
}

/// A file name a receiver may save as is: no path, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(format!(
            "file name must have 1 to {MAX_NAME_CHARS} characters, got {n}"
        ));
    }
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err("file name must not be a path".into());
    }
    if name.chars().any(char::is_control) {
        return Err("file name must not contain control characters".into());
    }
    Ok(())
}

impl Files {
    pub fn new(cfg: FileConfig) -> Self {
        Self {
            cfg,
            transfers: BTreeMap::new(),
            last_id: 0,
        }
    }

    /// Transfers running now.
    pub fn running(&self) -> usize {
        self.transfers.len()
    }

    fn touch(&self, id: u64, now: Instant, out: &mut Outbox) {
        out.set_timer(TIMER_BIT | id, now + self.cfg.stall);
    }

    /// `FILE_OFFER` from `sender`, to `receivers` (nicknames by session).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        now: Instant,
        sender: (SessionId, &str),
        receivers: BTreeMap<SessionId, String>,
        name: &str,
        size: u64,
        sha256: &str,
        chunk_size: u32,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        check_name(name).map_err(bad)?;
        if size > self.cfg.max_bytes {
            return Err(bad(format!(
                "{size} bytes is over this meeting's limit of {} bytes",
                self.cfg.max_bytes
            )));
        }
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(bad(format!(
                "chunk_size must be from {MIN_CHUNK} to {MAX_CHUNK}, got {chunk_size}"
            )));
        }
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad("sha256 must be 64 lowercase hex digits".into()));
        }
        if receivers.is_empty() {
            return Err(bad("nobody else is in the meeting".into()));
        }
        let mine = self
            .transfers
            .values()
            .filter(|t| t.sender == sender.0)
            .count();
        if mine >= MAX_PER_SENDER || self.transfers.len() >= MAX_PER_ROOM {
            return Err(CommandError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {MAX_PER_SENDER} transfers per sender and {MAX_PER_ROOM} per meeting at once"
                ),
            ));
        }
        self.last_id += 1;
        let id = self.last_id;
        let chunks = size.div_ceil(u64::from(chunk_size));
        for &r in receivers.keys() {
            out.notify(
                r,
                Notice::FileOffered {
                    transfer: id,
                    from: sender.1.to_owned(),
                    session: sender.0,
                    name: name.to_owned(),
                    size,
                    sha256: sha256.to_owned(),
                    chunk_size,
                    chunks,
                },
            );
        }
        out.notify(
            sender.0,
            Notice::FileStarted {
                transfer: id,
                receivers: receivers.values().cloned().collect(),
                chunks,
            },
        );
        self.transfers.insert(
            id,
            Transfer {
                sender: sender.0,
                chunks,
                chunk_size,
                receivers: receivers.keys().map(|&r| (r, 0)).collect(),
                nicknames: receivers,
                acked: 0,
                ended: false,
            },
        );
        self.touch(id, now, out);
        Ok(())
    }

    /// `FILE_CHUNK` from the sender: relayed in bulk to every receiver that
    /// still misses it.
    pub fn chunk(
        &mut self,
        now: Instant,
        from: SessionId,
        id: u64,
        seq: u64,
        data: &str,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        let t = self
            .transfers
            .get(&id)
            .filter(|t| t.sender == from)
            .ok_or_else(|| unknown(id))?;
        if seq >= t.chunks {
            return Err(bad(format!(
                "seq {seq} is past the last chunk ({})",
                t.chunks.saturating_sub(1)
            )));
        }
        let max_b64 = (t.chunk_size as usize).div_ceil(3) * 4;
        if data.len() > max_b64 {
            return Err(bad(format!(
                "{} base64 characters for chunks of {} bytes (at most {max_b64})",
                data.len(),
                t.chunk_size
            )));
        }
        // Receivers get what they can decode, or nothing.
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(bytes) if bytes.len() <= t.chunk_size as usize => {}
            Ok(bytes) => {
                return Err(bad(format!(
                    "a chunk of {} bytes for chunks of {} bytes",
                    bytes.len(),
                    t.chunk_size
                )));
            }
            Err(e) => {
                return Err(bad(format!(
                    "data is not base64 (standard alphabet, padded): {e}"
                )));
            }
        }
        for (&r, &next) in &t.receivers {
            if next <= seq {
                out.notify_bulk(
                    r,
                    Notice::FileChunk {
                        transfer: id,
                        seq,
                        data: data.to_owned(),
                    },
                );
            }
        }
        self.touch(id, now, out);
        Ok(())
    }

    /// `FILE_ACK` from a receiver.
    pub fn ack(
        &mut self,
        now: Instant,
        from: SessionId,
        id: u64,
        next_seq: u64,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        let t = self
            .transfers
            .get_mut(&id)
            .filter(|t| t.receivers.contains_key(&from))
            .ok_or_else(|| unknown(id))?;
        if next_seq > t.chunks {
            return Err(bad(format!(
                "next_seq {next_seq} is past the end ({} chunks)",
                t.chunks
            )));
        }
        let own = t.receivers.entry(from).or_insert(0);
        *own = (*own).max(next_seq);
        let own = *own;
        t.pass_on_slowest(id, Some(own), out);
        self.touch(id, now, out);
        Ok(())
    }

    /// `FILE_END` from the sender: only once every receiver has everything.
    pub fn end(
        &mut self,
        now: Instant,
        from: SessionId,
        id: u64,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        let t = self
            .transfers
            .get_mut(&id)
            .filter(|t| t.sender == from)
            .ok_or_else(|| unknown(id))?;
        if t.acked < t.chunks {
            return Err(bad(format!(
                "only {} of {} chunks are acknowledged",
                t.acked, t.chunks
            )));
        }
        t.ended = true;
        for &r in t.receivers.keys() {
            out.notify(r, Notice::FileEnded { transfer: id });
        }
        self.touch(id, now, out);
        Ok(())
    }

    /// `FILE_RESULT` from a receiver: told to the sender.
    pub fn result(
        &mut self,
        from: SessionId,
        id: u64,
        ok: bool,
        message: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        let t = self
            .transfers
            .get_mut(&id)
            .filter(|t| t.receivers.contains_key(&from))
            .ok_or_else(|| unknown(id))?;
        let message = message.map(|m| m.chars().take(256).collect::<String>());
        let ok = ok && t.ended;
        t.receivers.remove(&from);
        out.notify(
            t.sender,
            Notice::FileResult {
                transfer: id,
                nickname: t.nicknames.get(&from).cloned().unwrap_or_default(),
                ok,
                message,
            },
        );
        if t.receivers.is_empty() {
            self.transfers.remove(&id);
            out.cancel_timer(TIMER_BIT | id);
        }
        Ok(())
    }

    /// `FILE_CANCEL` from the sender (everyone's transfer stops) or a
    /// receiver (only its own part).
    pub fn cancel(
        &mut self,
        from: SessionId,
        id: u64,
        reason: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        let Some(t) = self.transfers.get(&id) else {
            return Err(unknown(id));
        };
        let reason: String = reason.unwrap_or("cancelled").chars().take(256).collect();
        if t.sender == from {
            self.abort(id, &format!("the sender cancelled: {reason}"), out);
            Ok(())
        } else if t.receivers.contains_key(&from) {
            self.result(from, id, false, Some(&format!("cancelled: {reason}")), out)
        } else {
            Err(unknown(id))
        }
    }

    fn abort(&mut self, id: u64, reason: &str, out: &mut Outbox) {
        let Some(t) = self.transfers.remove(&id) else {
            return;
        };
        out.cancel_timer(TIMER_BIT | id);
        for to in t.receivers.keys().copied().chain([t.sender]) {
            out.notify(
                to,
                Notice::FileAborted {
                    transfer: id,
                    reason: reason.to_owned(),
                },
            );
        }
    }

    /// A transfer's stall timer fired.
    pub fn on_timer(&mut self, key: TimerKey, out: &mut Outbox) {
        let id = key & !TIMER_BIT;
        let secs = self.cfg.stall.as_secs();
        self.abort(id, &format!("nothing happened for {secs} s"), out);
    }

    /// A member left: its transfers stop, and it stops receiving others'.
    pub fn on_leave(&mut self, now: Instant, session: SessionId, out: &mut Outbox) {
        let ids: Vec<u64> = self.transfers.keys().copied().collect();
        for id in ids {
            let Some(t) = self.transfers.get_mut(&id) else {
                continue;
            };
            if t.sender == session {
                self.abort(id, "the sender left", out);
            } else if t.receivers.remove(&session).is_some() {
                if t.receivers.is_empty() {
                    self.abort(id, "every receiver left", out);
                } else {
                    // The slowest may have gone: pass on the new minimum.
                    t.pass_on_slowest(id, None, out);
                    self.touch(id, now, out);
                }
            }
        }
    }
}
