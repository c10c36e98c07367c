//! The room's language: [`RoomCommand`]s a member gives a room, and
//! [`Notice`]s the room gives its members and watchers.
//!
//! Rooms never see a wire format. Every front-end (the native NDJSON control
//! channel, the gRPC admin API's WatchRoom, a seed system's protocol) parses
//! its own messages into commands and renders notices back into its own
//! messages, each in one place. A notice is addressed to an [`Audience`] once,
//! however many receive it, so a watcher sees one event per notice and a
//! front-end renders it once for all its receivers.

use crate::{Member, SessionId};

pub use proto::control::{DenyReason, LeaveReason, RejectReason, ReleaseReason, RevokeReason};

/// What a member asks of its room.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomCommand {
    /// Ask for the floor; 0 is normal, higher may pre-empt a lower holder
    /// where the room allows it.
    FloorRequest { priority: u8 },
    /// Give up the floor, or leave the floor queue.
    FloorRelease,
    /// The member's connection dropped and it may come back (a resumable
    /// session): it holds the floor no more (released as `DISCONNECTED`),
    /// but keeps its place in the queue. Sent by the engine, not a client.
    FloorLost,
    /// A chat message to everyone, or privately to the member with this
    /// nickname.
    Chat { text: String, to: Option<String> },
    /// Host: admit a waiting session, or refuse it (with words).
    LobbyAnswer {
        session: SessionId,
        admit: bool,
        reason: Option<String>,
    },
    /// The member's microphone and camera state.
    MediaState { audio: bool, video: bool },
    /// Host: mute or unmute the member with this nickname.
    Mute { nickname: String, muted: bool },
    /// Host: take the member with this nickname out of the room.
    Remove {
        nickname: String,
        reason: Option<String>,
    },
    /// Offer a file to everyone or to the member with nickname `to`.
    FileOffer(FileOffer),
    /// One chunk of an offered file (base64, as the control channels carry it).
    FileChunk {
        transfer: u64,
        seq: u64,
        data: String,
    },
    /// Receiver: every chunk before `next_seq` arrived.
    FileAck { transfer: u64, next_seq: u64 },
    /// Sender: every chunk was acknowledged.
    FileEnd { transfer: u64 },
    /// Receiver: the file checked out (or not).
    FileResult {
        transfer: u64,
        ok: bool,
        message: Option<String>,
    },
    /// Either side: stop a transfer.
    FileCancel {
        transfer: u64,
        reason: Option<String>,
    },
    /// Video sender: what its receivers report about its video.
    VideoReports { reports: Vec<ReceiverReport> },
}

/// A file a member offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    pub to: Option<String>,
    pub name: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    pub chunk_size: u32,
}

/// One receiver's view of a sender's video (from its RTCP receiver report).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiverReport {
    pub from_ssrc: u32,
    /// 0.0 to 1.0.
    pub fraction_lost: f64,
    pub rtt_ms: Option<f64>,
}

/// A logged chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Increasing within the room; 0 when the room keeps no log.
    pub id: u64,
    /// Server time, ms since the Unix epoch.
    pub ts_ms: u64,
    pub from: String,
    /// `None` when the operator sent it.
    pub session: Option<SessionId>,
    pub text: String,
}

/// A session waiting in a lobby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LobbyEntry {
    pub session: SessionId,
    pub nickname: String,
    pub waited_ms: u64,
}

/// Who a notice is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// One member (or a session waiting to join).
    One(SessionId),
    /// These members (a private message and its sender's copy).
    Some(Vec<SessionId>),
    /// Every member of the room.
    All,
}

impl Audience {
    /// Whether `session` is in the audience, given the room's members.
    pub fn includes(&self, session: SessionId, is_member: bool) -> bool {
        match self {
            Audience::One(s) => *s == session,
            Audience::Some(v) => v.contains(&session),
            Audience::All => is_member,
        }
    }
}

/// What a room tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    // ----- membership (the engine's room layer emits these) -----
    /// A member entered the room.
    MemberJoined {
        member: Member,
    },
    /// A member left, for `reason` (with words when an operator did it).
    MemberLeft {
        session: SessionId,
        nickname: String,
        reason: LeaveReason,
        message: Option<String>,
    },
    /// An operator (or host) muted or unmuted a member.
    Muted {
        session: SessionId,
        nickname: String,
        muted: bool,
    },
    /// The room is gone; its last notice.
    RoomClosed {
        reason: String,
    },

    // ----- floor -----
    FloorGranted {
        session: SessionId,
        nickname: String,
        ssrc: u32,
        priority: u8,
        /// 0: no limit.
        burst_limit_ms: u64,
    },
    /// To the requester.
    FloorDenied {
        session: SessionId,
        nickname: String,
        reason: DenyReason,
        holder: Option<String>,
        queue_position: Option<u32>,
    },
    /// To a queued requester whose position changed.
    FloorQueued {
        queue_position: u32,
    },
    /// To a requester whose queued request was withdrawn.
    FloorDequeued,
    FloorReleased {
        session: SessionId,
        nickname: String,
        reason: ReleaseReason,
    },
    FloorRevoked {
        session: SessionId,
        nickname: String,
        reason: RevokeReason,
    },

    // ----- chat -----
    /// A message; `to` names the one recipient of a private message.
    ChatPosted {
        line: ChatLine,
        to: Option<(SessionId, String)>,
    },
    /// To a joiner: the room's recent public messages, oldest first.
    ChatHistory {
        messages: Vec<ChatLine>,
    },

    // ----- calls -----
    /// In a two-person room: the call started; to each, naming the other.
    CallStarted {
        peer: String,
        peer_session: SessionId,
    },
    /// The other member left; to the one who stays.
    CallEnded {
        peer: String,
        peer_session: SessionId,
        reason: LeaveReason,
    },

    // ----- lobby, host, media state -----
    /// To a session asking to join: it waits at most `timeout_ms`.
    JoinPending {
        timeout_ms: u64,
    },
    /// To the host: who waits now.
    LobbyWaiting {
        waiting: Vec<LobbyEntry>,
    },
    HostChanged {
        session: SessionId,
        nickname: String,
    },
    MediaState {
        session: SessionId,
        nickname: String,
        audio: bool,
        video: bool,
    },

    // ----- files -----
    /// To the sender.
    FileStarted {
        transfer: u64,
        receivers: Vec<String>,
        chunks: u64,
    },
    /// To receivers.
    FileOffered {
        transfer: u64,
        from: String,
        session: SessionId,
        name: String,
        size: u64,
        sha256: String,
        chunk_size: u32,
        chunks: u64,
    },
    FileChunk {
        transfer: u64,
        seq: u64,
        data: String,
    },
    /// To the sender: the slowest receiver has every chunk before `next_seq`.
    FileAcked {
        transfer: u64,
        next_seq: u64,
    },
    /// To receivers: every chunk was sent.
    FileEnded {
        transfer: u64,
    },
    /// To the sender: one receiver's verdict.
    FileResult {
        transfer: u64,
        nickname: String,
        ok: bool,
        message: Option<String>,
    },
    FileAborted {
        transfer: u64,
        reason: String,
    },

    // ----- video -----
    /// To a video sender: a viewer joined and needs a keyframe now.
    KeyframeRequest,
    /// To a video sender: send at this level.
    VideoLevel {
        level: &'static str,
        height: u32,
        fraction_lost: f64,
        rtt_ms: Option<f64>,
    },
}
