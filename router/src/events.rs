//! Room events: what `WatchRoom` streams.
//!
//! The engine emits one [`RoomEvent`] per thing that happens in a room, with a
//! per-room sequence number that increases by one, so a watcher can tell it
//! missed nothing. The driver fans them out to watchers through a bounded
//! broadcast buffer per room (see `driver::WatchHub`).

use std::net::SocketAddr;
use std::time::Duration;

use plugin_api::SessionId;
use proto::control::{DenyReason, LeaveReason, ReleaseReason, RevokeReason, RoomInfo, Ssrcs};

/// One event of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub room: String,
    /// 1 for the room's first event; each event adds one.
    pub seq: u64,
    pub kind: RoomEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEventKind {
    Joined {
        session: SessionId,
        nickname: String,
    },
    Left {
        session: SessionId,
        nickname: String,
        reason: LeaveReason,
        message: Option<String>,
    },
    FloorGranted {
        session: SessionId,
        nickname: String,
        priority: u8,
    },
    FloorDenied {
        session: SessionId,
        nickname: String,
        reason: DenyReason,
        queue_position: Option<u32>,
    },
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
    Chat {
        from: String,
        /// `None` when the operator sent it.
        session: Option<SessionId>,
        /// The one recipient of a private message.
        to: Option<(SessionId, String)>,
        text: String,
    },
    Muted {
        session: SessionId,
        nickname: String,
        muted: bool,
    },
    /// The room is gone; this is its last event.
    Closed { reason: String },
}

/// A participant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub session: SessionId,
    pub nickname: String,
    pub ssrcs: Ssrcs,
    pub talking: bool,
    pub muted: bool,
    /// The UDP address bound with STUN, if any.
    pub media_addr: Option<SocketAddr>,
    pub in_room_for: Duration,
    /// What the room's kind says about the member (a meeting's video level…).
    pub room_state: Vec<(&'static str, String)>,
}

/// A room's state at one point of its event sequence: what a watcher gets
/// first, so that the events after it tell the whole story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSnapshot {
    pub info: RoomInfo,
    pub participants: Vec<ParticipantInfo>,
    /// The `seq` of the last event before the snapshot (0 if none).
    pub seq: u64,
}
