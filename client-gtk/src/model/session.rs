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
        /// TLS or not, and why its certificate is trusted.
        security: Security,
    },
    /// Lost; trying again (attempt `attempt`, next in `retry_in`).
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        reason: String,
    },
}

/// How the control connection is protected, as the header's lock shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    /// The router certificate's SHA-256 fingerprint; `None`: plaintext.
    pub fingerprint: Option<String>,
    /// Why it is trusted ("pinned in …", "first use: remembered in …").
    pub decision: String,
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
    /// In a room: whether its media is SRTP (JOINED's `secure`).
    pub media_secure: Option<bool>,
}

impl Default for SessionModel {
    fn default() -> Self {
        Self {
            link: Link::Disconnected { reason: None },
            rooms: Vec::new(),
            target: None,
            waiting: None,
            error: None,
            media_secure: None,
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
            ServerMessage::Joined { room, secure, .. } => {
                self.media_secure = Some(*secure);
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
                self.media_secure = None;
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

    /// The header's lock: secure, insecure, or none while not connected.
    pub fn security_icon(&self) -> &'static str {
        match &self.link {
            Link::Connected { security, .. } if security.fingerprint.is_some() => {
                "channel-secure-symbolic"
            }
            Link::Connected { .. } => "channel-insecure-symbolic",
            _ => "",
        }
    }

    /// Says in the log what the lock shows (the GUI tests read it).
    pub fn log_security(&self) {
        if let Link::Connected { security, .. } = &self.link {
            tracing::info!(
                icon = self.security_icon(),
                fingerprint = security.fingerprint.as_deref().unwrap_or("none"),
                decision = %security.decision,
                "ui: security"
            );
        }
    }

    /// The opened lock's heading.
    pub fn security_title(&self) -> String {
        match &self.link {
            Link::Connected { security, .. } if security.fingerprint.is_some() => {
                crate::i18n::tr("Encrypted (TLS)")
            }
            Link::Connected { .. } => crate::i18n::tr("Not encrypted"),
            _ => String::new(),
        }
    }

    /// The router certificate's SHA-256 fingerprint, to compare with the
    /// one the router printed (empty without TLS).
    pub fn security_fingerprint(&self) -> String {
        match &self.link {
            Link::Connected { security, .. } => security.fingerprint.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Why the certificate is trusted, or what plaintext means; in a room,
    /// whether its media is encrypted too.
    pub fn security_detail(&self) -> String {
        let link = match &self.link {
            Link::Connected { security, .. } if security.fingerprint.is_some() => {
                trust_words(&security.decision)
            }
            Link::Connected { .. } => crate::i18n::tr(
                "This router speaks no TLS: what you say and write can be read on the network.",
            ),
            _ => return String::new(),
        };
        let media = match self.media_secure {
            Some(true) => crate::i18n::tr(
                "Voice and video in this room are encrypted (SRTP), with keys only the router and its members hold.",
            ),
            Some(false) => crate::i18n::tr(
                "Voice and video in this room are not encrypted: they can be heard on the network.",
            ),
            None => return link,
        };
        format!("{link}\n\n{media}")
    }

    pub fn connected(&self) -> bool {
        matches!(self.link, Link::Connected { .. })
    }
}

/// The trust decision in a person's words.
fn trust_words(decision: &str) -> String {
    if let Some(file) = decision.strip_prefix("first use: remembered in ") {
        format!(
            "{} ({file})",
            crate::i18n::tr(
                "First connection to this router: its certificate is now remembered, and a different one will be refused."
            )
        )
    } else if let Some(file) = decision.strip_prefix("pinned in ") {
        format!(
            "{} ({file})",
            crate::i18n::tr("The same certificate as the first time you connected.")
        )
    } else {
        decision.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_lock_says_whether_the_link_is_encrypted_and_why_it_is_trusted() {
        let mut s = SessionModel::default();
        assert_eq!(s.security_icon(), "", "no lock while not connected");
        let fp = "AB:".repeat(31) + "AB";
        s.link = Link::Connected {
            session_id: 1,
            nickname: "me".into(),
            resumed: false,
            security: Security {
                fingerprint: Some(fp.clone()),
                decision: "first use: remembered in /k".into(),
            },
        };
        assert_eq!(s.security_icon(), "channel-secure-symbolic");
        assert_eq!(s.security_title(), "Encrypted (TLS)");
        assert_eq!(s.security_fingerprint(), fp);
        assert!(
            s.security_detail().contains("now remembered") && s.security_detail().contains("/k")
        );
        s.link = Link::Connected {
            session_id: 1,
            nickname: "me".into(),
            resumed: false,
            security: Security::default(),
        };
        assert_eq!(s.security_icon(), "channel-insecure-symbolic");
        assert_eq!(s.security_title(), "Not encrypted");
        assert!(s.security_detail().contains("no TLS"));
    }

    fn joined(secure: bool) -> ServerMessage {
        let line = serde_json::json!({
            "type": "JOINED", "room": "r", "kind": "ptt", "udp_port": 1, "secure": secure,
        });
        serde_json::from_value(line).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_lock_says_whether_the_rooms_media_is_encrypted() {
        let mut m = SessionModel {
            link: Link::Connected {
                session_id: 1,
                nickname: "ann".into(),
                resumed: false,
                security: Security {
                    fingerprint: Some("AB:CD".into()),
                    decision: "pinned".into(),
                },
            },
            ..SessionModel::default()
        };
        assert!(!m.security_detail().contains("SRTP"));
        m.apply(&joined(true));
        assert!(m.security_detail().contains("are encrypted (SRTP)"));
        m.apply(&joined(false));
        assert!(m.security_detail().contains("are not encrypted"));
        m.apply(&ServerMessage::Left {
            room: "r".into(),
            reason: proto::control::LeaveReason::Left,
            message: None,
        });
        assert!(!m.security_detail().contains("this room"));
    }
}
