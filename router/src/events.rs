//! Room events: what `WatchRoom` streams.
//!
//! The engine emits one [`RoomEvent`] per thing that happens in a room, with a
//! per-room sequence number that increases by one, so a watcher can tell it
//! missed nothing. The driver fans them out to watchers through a bounded
//! broadcast buffer per room (see `driver::watch::WatchHub`).

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

/// The WatchRoom event a room notice is, if watchers see it: the admin
/// front-end's selection, made from the notice itself (one notice, one
/// event, however many members it was addressed to).
pub fn watched(notice: &plugin_api::Notice) -> Option<RoomEventKind> {
    use plugin_api::Notice as N;
    Some(match notice {
        N::MemberJoined { member } => RoomEventKind::Joined {
            session: member.session,
            nickname: member.nickname.clone(),
        },
        N::MemberLeft {
            session,
            nickname,
            reason,
            message,
        } => RoomEventKind::Left {
            session: *session,
            nickname: nickname.clone(),
            reason: *reason,
            message: message.clone(),
        },
        N::Muted {
            session,
            nickname,
            muted,
        } => RoomEventKind::Muted {
            session: *session,
            nickname: nickname.clone(),
            muted: *muted,
        },
        N::RoomClosed { reason } => RoomEventKind::Closed {
            reason: reason.clone(),
        },
        N::FloorGranted {
            session,
            nickname,
            priority,
            ..
        } => RoomEventKind::FloorGranted {
            session: *session,
            nickname: nickname.clone(),
            priority: *priority,
        },
        N::FloorDenied {
            session,
            nickname,
            reason,
            queue_position,
            ..
        } => RoomEventKind::FloorDenied {
            session: *session,
            nickname: nickname.clone(),
            reason: *reason,
            queue_position: *queue_position,
        },
        N::FloorReleased {
            session,
            nickname,
            reason,
        } => RoomEventKind::FloorReleased {
            session: *session,
            nickname: nickname.clone(),
            reason: *reason,
        },
        N::FloorRevoked {
            session,
            nickname,
            reason,
        } => RoomEventKind::FloorRevoked {
            session: *session,
            nickname: nickname.clone(),
            reason: *reason,
        },
        N::ChatPosted { line, to } => RoomEventKind::Chat {
            from: line.from.clone(),
            session: line.session,
            to: to.clone(),
            text: line.text.clone(),
        },
        _ => return None,
    })
}
