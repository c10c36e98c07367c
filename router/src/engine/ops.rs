//! Operator verbs (what the admin API calls): inspect, close, kick, mute, floor
//! overrides, server chat. Each checks its arguments, changes the state the
//! same way a client action would (so members get the same messages and
//! watchers the same events), and returns a typed error the admin layer maps
//! to a gRPC status in one place.

use std::fmt;
use std::time::Instant;

use plugin_api::{AdminCommand, AdminError, ChatLine, Notice, Outbox, SessionId};
use proto::control::{self, LeaveReason};

use super::Engine;
use crate::events::{ParticipantInfo, RoomSnapshot};

/// A participant, named by session id or by nickname (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Session(SessionId),
    Nickname(String),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Session(id) => write!(f, "with session id {id}"),
            Who::Nickname(n) => {
                let shown: String = n.chars().take(40).collect();
                write!(f, "`{shown}`")
            }
        }
    }
}

/// Why an operator verb did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("no room named `{0}`")]
    NoRoom(String),
    #[error("no participant {who} in room `{room}`")]
    NoParticipant { room: String, who: String },
    /// A request field is unusable; `field` is its name in the admin API.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The room's kind or state does not allow it (no floor, nobody talking,
    /// participant muted, no lobby).
    #[error("{0}")]
    Precondition(String),
}

fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Checks an operator's reason text; empty means `default`.
fn reason_text(reason: &str, default: &str) -> Result<String, OpError> {
    let n = reason.chars().count();
    if n > control::REASON_MAX_CHARS {
        return Err(OpError::Invalid {
            field: "reason",
            message: format!("at most {} characters, got {n}", control::REASON_MAX_CHARS),
        });
    }
    if reason.chars().any(char::is_control) {
        return Err(OpError::Invalid {
            field: "reason",
            message: "control characters are not allowed".into(),
        });
    }
    let r = reason.trim();
    Ok(if r.is_empty() { default } else { r }.to_owned())
}

impl Engine {
    fn room(&self, room: &str) -> Result<&super::rooms::Room, OpError> {
        self.rooms
            .get(room)
            .ok_or_else(|| OpError::NoRoom(shown(room)))
    }

    /// The member of `room` that `who` names.
    pub fn resolve(&self, room: &str, who: &Who) -> Result<SessionId, OpError> {
        let r = self.room(room)?;
        let found = r.members.iter().copied().find(|id| self.is(*id, who));
        found.ok_or_else(|| OpError::NoParticipant {
            room: shown(room),
            who: who.to_string(),
        })
    }

    /// Whether session `id` is the one `who` names.
    fn is(&self, id: SessionId, who: &Who) -> bool {
        match who {
            Who::Session(s) => *s == id,
            Who::Nickname(n) => self
                .sessions
                .get(&id)
                .and_then(|s| s.identity.as_ref())
                .is_some_and(|i| super::same_nickname(&i.nickname, n)),
        }
    }

    /// The members of `room`, in joining order.
    pub fn participants(&self, now: Instant, room: &str) -> Result<Vec<ParticipantInfo>, OpError> {
        let r = self.room(room)?;
        Ok(r.members
            .iter()
            .filter_map(|id| {
                let s = self.sessions.get(id)?;
                let ident = s.identity.as_ref()?;
                Some(ParticipantInfo {
                    session: *id,
                    nickname: ident.nickname.clone(),
                    ssrcs: ident.ssrcs,
                    talking: r.plugin.is_talking(*id),
                    muted: r.muted.contains(id),
                    media_addr: s.media.map(|(_, a)| a),
                    in_room_for: now.saturating_duration_since(s.joined_at),
                    room_state: r.plugin.member_stats(*id),
                })
            })
            .collect())
    }

    /// The room's state now, with the sequence number of its last event.
    pub fn snapshot(&self, now: Instant, room: &str) -> Result<RoomSnapshot, OpError> {
        let participants = self.participants(now, room)?;
        let seq = self.room(room)?.seq;
        let info = self
            .room_info(room)
            .ok_or_else(|| OpError::NoRoom(shown(room)))?;
        Ok(RoomSnapshot {
            info,
            participants,
            seq,
        })
    }

    /// Closes `room`: every member gets `LEFT` with reason `ROOM_CLOSED` and
    /// `reason` in words; their sessions end too unless `keep_connected`.
    /// Returns how many members there were.
    pub fn close_room(
        &mut self,
        now: Instant,
        room: &str,
        reason: &str,
        keep_connected: bool,
    ) -> Result<usize, OpError> {
        let r = self.close_room_now(now, room, reason, keep_connected);
        self.drain_pending(now);
        r
    }

    /// [`Engine::close_room`] without draining (for the drain itself).
    pub(super) fn close_room_now(
        &mut self,
        now: Instant,
        room: &str,
        reason: &str,
        keep_connected: bool,
    ) -> Result<usize, OpError> {
        self.room(room)?;
        let reason = reason_text(reason, "the room was closed by an operator")?;
        let members = self
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for &m in &members {
            self.leave_room_with(now, m, LeaveReason::RoomClosed, Some(reason.clone()));
            if !keep_connected {
                self.remove_session(now, m, LeaveReason::RoomClosed);
            }
        }
        self.drop_room(now, room, reason);
        Ok(members.len())
    }

    /// Takes a member out of its room with `reason` in words, and ends its
    /// session.
    pub fn kick(
        &mut self,
        now: Instant,
        room: &str,
        who: &Who,
        reason: &str,
    ) -> Result<(), OpError> {
        let id = self.resolve(room, who)?;
        let reason = reason_text(reason, "removed by an operator")?;
        self.leave_room_with(now, id, LeaveReason::Kicked, Some(reason));
        self.remove_session(now, id, LeaveReason::Kicked);
        self.drain_pending(now);
        Ok(())
    }

    /// Mutes or unmutes a member: while muted its media is dropped at the
    /// router whatever the room's rules, and the room's plugin is told (a
    /// `ptt` room revokes its floor and denies its requests).
    pub fn mute(
        &mut self,
        now: Instant,
        room: &str,
        who: &Who,
        muted: bool,
    ) -> Result<(), OpError> {
        let id = self.resolve(room, who)?;
        let r = self.set_muted(now, room, id, muted, true);
        self.drain_pending(now);
        r
    }

    /// Mutes or unmutes `id` (a member of `room`): the member gets MUTED,
    /// watchers an event, everyone USERLIST. `tell_plugin`: an operator did
    /// it, so the plugin's `on_admin` hears of it (not when the plugin itself
    /// asked, as a meeting host's mute does).
    pub(super) fn set_muted(
        &mut self,
        now: Instant,
        room: &str,
        id: SessionId,
        muted: bool,
        tell_plugin: bool,
    ) -> Result<(), OpError> {
        let Some(r) = self.rooms.get_mut(room) else {
            return Err(OpError::NoRoom(shown(room)));
        };
        let changed = if muted {
            r.muted.insert(id)
        } else {
            r.muted.remove(&id)
        };
        if !changed {
            return Ok(());
        }
        let nickname = self
            .sessions
            .get(&id)
            .and_then(|s| s.identity.as_ref())
            .map(|i| i.nickname.clone())
            .unwrap_or_default();
        let Some(r) = self.rooms.get_mut(room) else {
            return Err(OpError::NoRoom(shown(room)));
        };
        // The member hears it is muted before what follows from it (a
        // revoked floor).
        let mut out = Outbox::new();
        out.notify(
            id,
            Notice::Muted {
                session: id,
                nickname,
                muted,
            },
        );
        let result = if tell_plugin {
            r.plugin
                .on_admin(now, AdminCommand::Mute { session: id, muted }, &mut out)
        } else {
            Ok(())
        };
        self.apply(now, room, out);
        result.map_err(plugin_error)
    }

    /// Gives the floor to a member, pre-empting any holder and skipping the
    /// queue.
    pub fn grant_floor(&mut self, now: Instant, room: &str, who: &Who) -> Result<(), OpError> {
        let id = self.resolve(room, who)?;
        self.plugin_admin(now, room, AdminCommand::GrantFloor { session: id })
    }

    /// Takes the floor from its holder; the next waiting request is granted.
    pub fn revoke_floor(&mut self, now: Instant, room: &str) -> Result<(), OpError> {
        self.room(room)?;
        self.plugin_admin(now, room, AdminCommand::RevokeFloor)
    }

    fn plugin_admin(&mut self, now: Instant, room: &str, cmd: AdminCommand) -> Result<(), OpError> {
        let Some(r) = self.rooms.get_mut(room) else {
            return Err(OpError::NoRoom(shown(room)));
        };
        let mut out = Outbox::new();
        let result = r.plugin.on_admin(now, cmd, &mut out);
        self.apply(now, room, out);
        self.drain_pending(now);
        result.map_err(plugin_error)
    }

    /// Sends `text` as the server to every member of `room`, or privately to
    /// one. Rooms with a chat log number and keep it.
    pub fn send_chat(
        &mut self,
        now: Instant,
        room: &str,
        to: Option<&Who>,
        text: &str,
    ) -> Result<(), OpError> {
        self.room(room)?;
        let n = text.chars().count();
        if text.trim().is_empty() {
            return Err(OpError::Invalid {
                field: "text",
                message: "required".into(),
            });
        }
        if n > control::CHAT_MAX_CHARS {
            return Err(OpError::Invalid {
                field: "text",
                message: format!("at most {} characters, got {n}", control::CHAT_MAX_CHARS),
            });
        }
        let to = to.map(|w| self.resolve(room, w)).transpose()?;
        let Some(r) = self.rooms.get_mut(room) else {
            return Err(OpError::NoRoom(shown(room)));
        };
        let mut out = Outbox::new();
        let logged = r.plugin.on_admin(
            now,
            AdminCommand::Chat {
                to,
                text: text.to_owned(),
            },
            &mut out,
        );
        if logged.is_err() {
            let line = ChatLine {
                id: 0,
                ts_ms: self.clock.unix_ms(now),
                from: control::SERVER_NICKNAME.to_owned(),
                session: None,
                text: text.to_owned(),
            };
            match to {
                Some(id) => out.notify(
                    id,
                    Notice::ChatPosted {
                        line,
                        to: Some((id, self.nickname(id))),
                    },
                ),
                None => out.notify_all(Notice::ChatPosted { line, to: None }),
            }
        }
        self.apply(now, room, out);
        self.drain_pending(now);
        Ok(())
    }

    /// Approves or denies (with `reason`) a session waiting to join `room`
    /// (a meeting's lobby).
    pub fn lobby_decision(
        &mut self,
        now: Instant,
        room: &str,
        request: &Who,
        approve: bool,
        reason: &str,
    ) -> Result<(), OpError> {
        let r = self.room(room)?;
        let reason = reason_text(reason, "denied by an operator")?;
        let found = r.waiting.iter().copied().find(|id| self.is(*id, request));
        let Some(session) = found else {
            return Err(OpError::NoParticipant {
                room: shown(room),
                who: format!("{request} waiting in the lobby"),
            });
        };
        self.plugin_admin(
            now,
            room,
            AdminCommand::Lobby {
                session,
                approve,
                reason,
            },
        )
    }
}

fn plugin_error(e: AdminError) -> OpError {
    OpError::Precondition(e.to_string())
}
