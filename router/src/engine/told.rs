//! The engine's language with sessions, in no wire format. In: a
//! [`Command`], either about the session ([`SessionCommand`]: HELLO, JOIN,
//! ...) or for its room ([`RoomCommand`]). Out: what it [`Told`] a session,
//! a room's [`Notice`] or a [`SessionNotice`] about the session itself
//! (welcome, joined, left, refused, ...). Each front-end parses into these
//! and renders these its own way (`router/src/native.rs` for the NDJSON
//! channel).

use std::sync::Arc;
use std::time::Duration;

use plugin_api::{Notice, RoomCommand, SessionId};
use proto::control::{ErrorCode, FullScope, LeaveReason, RejectReason, RoomInfo, Ssrcs, UserInfo};

/// An SRTP master key and salt ([`proto::control::SRTP_PROFILE`]).
pub type SrtpKey = [u8; proto::control::SRTP_KEY_BYTES];

/// The key one member of a secure room sends with, for its SSRCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderKey {
    pub session: SessionId,
    pub ssrcs: Ssrcs,
    pub key: SrtpKey,
}

/// What a session asks of the router.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Session(SessionCommand),
    Room(RoomCommand),
}

/// What a session asks about itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    /// The first command: who it is and which protocol version and
    /// optional features it speaks.
    Hello {
        version: u32,
        nickname: String,
        features: Vec<String>,
        /// A resume token from an earlier WELCOME.
        resume: Option<String>,
        /// An access token (docs/security.md).
        token: Option<String>,
        /// A seed front-end's session (docs/compat.md): its client hears the
        /// room's codec only, so while it is in a room the room's members
        /// must send that codec.
        legacy: bool,
    },
    Join {
        room: String,
    },
    /// Leave the room, or withdraw a join request.
    Leave,
    Heartbeat,
    ListRooms,
    /// Part of its room's member list (`limit` already capped).
    ListMembers {
        offset: usize,
        limit: usize,
    },
    /// Join the meeting with this code.
    RequestJoin {
        code: String,
    },
    CreateMeeting {
        end_with_host: bool,
        /// Its audio codec; the room option's default when `None`.
        codec: Option<String>,
    },
    CreateRoom(super::RoomSpec),
    /// End the session.
    Bye,
}

/// One thing told to one or more sessions.
#[derive(Debug, Clone, PartialEq)]
pub enum Told {
    /// A notice of room `room`.
    Room { room: String, notice: Notice },
    /// About the session itself.
    Session(SessionNotice),
}

/// What a session is told about itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionNotice {
    /// Its identity, after HELLO.
    Welcome {
        /// Its public STUN USERNAME, with `stun_integrity`.
        media_id: Option<String>,
        session: SessionId,
        nickname: String,
        /// The first media worker's port.
        udp_port: u16,
        media_token: String,
        ssrcs: Ssrcs,
        heartbeat_interval: Duration,
        silence_timeout: Duration,
        /// The optional features it asked for and got.
        features: Vec<String>,
        /// The limits it must respect.
        limits: proto::control::Limits,
        /// Its resume token and grace period, when sessions are kept.
        resume: Option<(String, Duration)>,
        /// This connection continues an earlier session.
        resumed: bool,
    },
    /// It is in `room` now; media goes to `udp_port`.
    Joined {
        room: String,
        kind: String,
        udp_port: u16,
        /// The room's settings in force.
        settings: Arc<plugin_api::Options>,
        /// With `stun_integrity`: a nonce for binding from a new socket.
        media_nonce: Option<String>,
        /// Its media is SRTP.
        secure: bool,
        /// In a secure room: the key it sends with.
        srtp_key: Option<SrtpKey>,
    },
    /// In a secure room: the keys these members send with.
    SrtpKeys {
        room: String,
        keys: Vec<SenderKey>,
    },
    /// It is out of `room`, for `reason`.
    Left {
        room: String,
        reason: LeaveReason,
        message: Option<String>,
    },
    /// The router or the room is full.
    Full {
        scope: FullScope,
        message: String,
    },
    /// A command was refused (or the input was bad).
    Refused {
        code: ErrorCode,
        message: String,
    },
    HeartbeatAck,
    /// A move of its media needs this nonce in the Binding Request.
    MediaNonce {
        nonce: String,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
    },
    /// Its meeting exists, with this code; it is the host.
    MeetingCreated {
        room: String,
        code: String,
        end_with_host: bool,
    },
    JoinAccepted {
        room: String,
    },
    JoinRejected {
        room: String,
        reason: RejectReason,
        message: String,
    },
    /// The router is going away.
    ServerClose {
        reason: String,
    },
    /// Its BYE was heard.
    Goodbye,
    /// The room's whole member list, in joining order. Entries are shared:
    /// one per member state, kept by the engine, so a front-end may keep
    /// what it made of each.
    Members {
        room: String,
        users: Vec<Arc<UserInfo>>,
    },
    /// How many members its (large) room has, instead of the list.
    MemberCount {
        room: String,
        count: usize,
    },
    /// The part of the member list it asked for.
    MemberPage {
        room: String,
        count: usize,
        offset: usize,
        users: Vec<Arc<UserInfo>>,
    },
    /// How the member list changed since it was last told (each member at
    /// most once, in its state now).
    MembersChanged {
        room: String,
        joined: Vec<Arc<UserInfo>>,
        changed: Vec<Arc<UserInfo>>,
        left: Vec<(SessionId, String)>,
    },
}

impl From<SessionNotice> for Told {
    fn from(n: SessionNotice) -> Self {
        Told::Session(n)
    }
}
