//! The connection as the window shows it: connected or not, reconnecting
//! with back-off, the rooms the router lists, the room to be back in after
//! a reconnect, a meeting guest's wait in the lobby.

use std::time::Duration;

use proto::control::{RejectReason, RoomInfo, ServerMessage};

/// Where the link to the router stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Disconnected {
        reason: Option<String>,
    },
    Connecting,
    Connected {
        session_id: u64,
        nickname: String,
        /// This connection continued the session of the one before.
        resumed: bool,
    },
    /// Lost; trying again (attempt `attempt`, next in `retry_in`).
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        reason: String,
    },
}

/// What to be in, so a reconnect can get back there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A room by name (created by us if `create` names its kind).
    Room { name: String },
    /// A meeting by code (a guest asks the host again).
    Meeting { code: String },
}

/// Exponential back-off between reconnect attempts: 0.5 s doubling to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max: Duration::from_secs(10),
            attempt: 0,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt, and its number (from 1).
    pub fn next_wait(&mut self) -> (u32, Duration) {
        let wait = self
            .first
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt += 1;
        (self.attempt, wait)
    }

    /// After a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A meeting guest's wait for the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub room: String,
    pub timeout_ms: u64,
}

/// The session view-model.
#[derive(Debug, Clone)]
pub struct SessionModel {
    pub link: Link,
    pub rooms: Vec<RoomInfo>,
    pub target: Option<Target>,
    pub waiting: Option<Waiting>,
    /// The last error or refusal worth showing.
    pub error: Option<String>,
}

impl Default for SessionModel {
    fn default() -> Self {
        Self {
            link: Link::Disconnected { reason: None },
            rooms: Vec::new(),
            target: None,
            waiting: None,
            error: None,
        }
    }
}

impl SessionModel {
    /// Takes in one server message; true if anything shown changed.
    pub fn apply(&mut self, msg: &ServerMessage) -> bool {
        match msg {
            ServerMessage::Rooms { rooms } => self.rooms = rooms.clone(),
            ServerMessage::JoinPending { room, timeout_ms } => {
                self.waiting = Some(Waiting {
                    room: room.clone(),
                    timeout_ms: *timeout_ms,
                });
            }
            ServerMessage::JoinAccepted { .. } => self.waiting = None,
            ServerMessage::JoinRejected {
                reason, message, ..
            } => {
                self.waiting = None;
                self.target = None;
                self.error = Some(match reason {
                    RejectReason::Denied => format!("The host said no: {message}"),
                    RejectReason::TimedOut => "Nobody let you in in time".into(),
                    RejectReason::MeetingEnded => "The meeting ended".into(),
                });
            }
            ServerMessage::Joined { room, .. } => {
                self.waiting = None;
                self.error = None;
                // A meeting we were let into is rejoined by its code.
                if !matches!(self.target, Some(Target::Meeting { .. })) {
                    self.target = Some(Target::Room { name: room.clone() });
                }
            }
            ServerMessage::Left {
                reason, message, ..
            } => {
                self.target = None;
                if let Some(m) = message {
                    self.error = Some(format!("{}: {m}", super::room::leave_words(*reason)));
                }
            }
            ServerMessage::Error { message, .. } => self.error = Some(message.clone()),
            ServerMessage::Full { message, .. } => self.error = Some(message.clone()),
            _ => return false,
        }
        true
    }

    /// The words for the link, as the header shows them.
    pub fn link_text(&self) -> String {
        match &self.link {
            Link::Disconnected { reason: None } => "Disconnected".into(),
            Link::Disconnected { reason: Some(r) } => format!("Disconnected: {r}"),
            Link::Connecting => "Connecting…".into(),
            Link::Connected { nickname, .. } => format!("Connected as {nickname}"),
            Link::Reconnecting {
                attempt, retry_in, ..
            } => format!(
                "Reconnecting (attempt {attempt}, next in {:.1} s)…",
                retry_in.as_secs_f32()
            ),
        }
    }

    pub fn connected(&self) -> bool {
        matches!(self.link, Link::Connected { .. })
    }
}
