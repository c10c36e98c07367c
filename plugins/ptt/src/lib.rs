//! `ptt`: push-to-talk rooms, one speaker at a time.
//!
//! [`floor`] is the floor state machine; [`ExclusiveVoice`] turns its events
//! into room notices, forwarding routes and the burst-limit timer. The
//! `chat` room kind reuses [`ExclusiveVoice`] for its voice half.

pub mod floor;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use plugin_api::{
    AdminCommand, AdminError, CommandError, DenyReason, ErrorCode, LeaveReason, Member, Notice,
    OptionError, OptionInfo, OptionReader, OptionType, Options, Outbox, PluginFactory, PluginInfo,
    Receivers, RelayPlugin, RevokeReason, RoomCommand, RoomInfo, SessionId, TimerKey,
};

pub use floor::{Floor, FloorConfig, FloorEvent};

/// Timer key of the talk-burst limit.
pub const BURST_TIMER: TimerKey = 1;

/// Exclusive voice for one room: members, the floor, and their effects.
#[derive(Debug)]
pub struct ExclusiveVoice {
    room: String,
    members: BTreeMap<SessionId, Member>,
    /// Members an operator muted: their requests are denied with `MUTED`.
    muted: BTreeSet<SessionId>,
    floor: Floor,
}

impl ExclusiveVoice {
    pub fn new(room: &str, cfg: FloorConfig) -> Self {
        Self {
            room: room.to_owned(),
            members: BTreeMap::new(),
            muted: BTreeSet::new(),
            floor: Floor::new(cfg),
        }
    }

    pub fn floor(&self) -> &Floor {
        &self.floor
    }

    fn nickname(&self, session: SessionId) -> String {
        self.members
            .get(&session)
            .map(|m| m.nickname.clone())
            .unwrap_or_default()
    }

    pub fn on_join(&mut self, _now: Instant, member: &Member, _out: &mut Outbox) {
        // New members start silent: the engine's default route is Nobody.
        self.members.insert(member.session, member.clone());
    }

    pub fn on_leave(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: LeaveReason,
        out: &mut Outbox,
    ) {
        let ev = self.floor.remove(now, session, reason.as_release());
        // Announce with the leaver's name before forgetting it.
        self.apply(ev, out);
        self.members.remove(&session);
        self.muted.remove(&session);
    }

    /// Handles floor requests and releases; `Ok(false)` for other commands.
    pub fn on_command(
        &mut self,
        now: Instant,
        session: SessionId,
        cmd: &RoomCommand,
        out: &mut Outbox,
    ) -> Result<bool, CommandError> {
        match cmd {
            RoomCommand::FloorRequest { priority } => {
                let max = self.floor.config().max_priority;
                if *priority > max {
                    return Err(CommandError::new(
                        ErrorCode::BadField,
                        format!("field `priority` is {priority}, this room allows 0 to {max}"),
                    ));
                }
                let ev = if self.muted.contains(&session) {
                    vec![FloorEvent::Denied {
                        session,
                        reason: DenyReason::Muted,
                        position: None,
                    }]
                } else {
                    self.floor.request(now, session, *priority)
                };
                self.apply(ev, out);
                Ok(true)
            }
            RoomCommand::FloorLost => {
                let ev =
                    self.floor
                        .drop_holder(now, session, LeaveReason::Disconnected.as_release());
                self.apply(ev, out);
                Ok(true)
            }
            RoomCommand::FloorRelease => match self.floor.release(now, session) {
                Ok(ev) => {
                    self.apply(ev, out);
                    Ok(true)
                }
                Err(_) => Err(CommandError::new(
                    ErrorCode::NotFloorHolder,
                    "you neither hold nor wait for the floor",
                )),
            },
            _ => Ok(false),
        }
    }

    pub fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox) {
        if key == BURST_TIMER {
            let ev = self.floor.expire(now);
            self.apply(ev, out);
        }
    }

    /// Operator commands: grant or revoke the floor, mute a member.
    pub fn on_admin(
        &mut self,
        now: Instant,
        cmd: AdminCommand,
        out: &mut Outbox,
    ) -> Result<(), AdminError> {
        match cmd {
            AdminCommand::GrantFloor { session } => {
                if !self.members.contains_key(&session) {
                    return Err(AdminError::Precondition(format!(
                        "session {session} is not in room `{}`",
                        self.room
                    )));
                }
                if self.muted.contains(&session) {
                    return Err(AdminError::Precondition(format!(
                        "{} is muted; unmute before granting the floor",
                        self.nickname(session)
                    )));
                }
                let priority = self.floor.config().max_priority;
                let ev = self.floor.force_grant(now, session, priority);
                self.apply(ev, out);
                Ok(())
            }
            AdminCommand::RevokeFloor => {
                if self.floor.holder().is_none() {
                    return Err(AdminError::Precondition(format!(
                        "nobody holds the floor of room `{}`",
                        self.room
                    )));
                }
                let ev = self.floor.revoke(now, RevokeReason::Admin);
                self.apply(ev, out);
                Ok(())
            }
            AdminCommand::Lobby { .. } => Err(AdminError::NotSupported(format!(
                "room `{}` has no lobby",
                self.room
            ))),
            AdminCommand::Chat { .. } => Err(AdminError::NotSupported(format!(
                "room `{}` keeps no chat log",
                self.room
            ))),
            AdminCommand::Mute { session, muted } => {
                if muted {
                    self.muted.insert(session);
                    let ev = self.floor.silence(now, session);
                    self.apply(ev, out);
                } else {
                    self.muted.remove(&session);
                }
                Ok(())
            }
        }
    }

    pub fn is_talking(&self, session: SessionId) -> bool {
        self.floor.holder().is_some_and(|(s, _)| s == session)
    }

    fn apply(&mut self, events: Vec<FloorEvent>, out: &mut Outbox) {
        for e in events {
            match e {
                FloorEvent::Granted { session, priority } => {
                    out.set_route(session, Receivers::AllOthers);
                    let ssrc = self.members.get(&session).map_or(0, |m| m.ssrcs.audio);
                    let limit = self.floor.config().burst_limit;
                    out.notify_all(Notice::FloorGranted {
                        session,
                        nickname: self.nickname(session),
                        ssrc,
                        priority,
                        burst_limit_ms: limit.map_or(0, |d| d.as_millis() as u64),
                    });
                    match self.floor.deadline() {
                        Some(at) => out.set_timer(BURST_TIMER, at),
                        None => out.cancel_timer(BURST_TIMER),
                    }
                    out.member_changed(session);
                }
                FloorEvent::Denied {
                    session,
                    reason,
                    position,
                } => {
                    let holder = self.floor.holder().map(|(h, _)| self.nickname(h));
                    out.notify(
                        session,
                        Notice::FloorDenied {
                            session,
                            nickname: self.nickname(session),
                            reason,
                            holder,
                            queue_position: position,
                        },
                    );
                }
                FloorEvent::QueuePosition { session, position } => out.notify(
                    session,
                    Notice::FloorQueued {
                        queue_position: position,
                    },
                ),
                FloorEvent::Dequeued { session } => out.notify(session, Notice::FloorDequeued),
                FloorEvent::Released { session, reason } => {
                    out.set_route(session, Receivers::Nobody);
                    out.cancel_timer(BURST_TIMER);
                    out.notify_all(Notice::FloorReleased {
                        session,
                        nickname: self.nickname(session),
                        reason,
                    });
                    out.member_changed(session);
                }
                FloorEvent::Revoked { session, reason } => {
                    out.set_route(session, Receivers::Nobody);
                    out.cancel_timer(BURST_TIMER);
                    out.notify_all(Notice::FloorRevoked {
                        session,
                        nickname: self.nickname(session),
                        reason,
                    });
                    out.member_changed(session);
                }
            }
        }
    }
}

/// The `ptt` room: exclusive voice and nothing else.
#[derive(Debug)]
pub struct PttRoom {
    voice: ExclusiveVoice,
}

impl RelayPlugin for PttRoom {
    fn kind(&self) -> &'static str {
        KIND
    }
    fn on_join(&mut self, now: Instant, member: &Member, out: &mut Outbox) {
        self.voice.on_join(now, member, out);
    }
    fn on_leave(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: LeaveReason,
        out: &mut Outbox,
    ) {
        self.voice.on_leave(now, session, reason, out);
    }
    fn on_command(
        &mut self,
        now: Instant,
        session: SessionId,
        cmd: &RoomCommand,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        if self.voice.on_command(now, session, cmd, out)? {
            Ok(())
        } else {
            Err(CommandError::not_supported(KIND))
        }
    }
    fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox) {
        self.voice.on_timer(now, key, out);
    }
    fn is_talking(&self, session: SessionId) -> bool {
        self.voice.is_talking(session)
    }
    fn on_admin(
        &mut self,
        now: Instant,
        cmd: AdminCommand,
        out: &mut Outbox,
    ) -> Result<(), AdminError> {
        self.voice.on_admin(now, cmd, out)
    }
}

/// Registry name of the kind.
pub const KIND: &str = "ptt";

/// Reads the floor options shared by every room kind with exclusive voice.
pub fn floor_options(r: &mut OptionReader<'_>) -> Result<FloorConfig, OptionError> {
    let d = FloorConfig::default();
    let burst = r.int("burst_limit_secs", 60, 0, 3600)?;
    Ok(FloorConfig {
        burst_limit: (burst > 0).then(|| Duration::from_secs(burst)),
        queue: r.bool("queue", d.queue)?,
        queue_limit: r.int("queue_limit", d.queue_limit as u64, 1, 256)? as usize,
        preemption: r.bool("preemption", d.preemption)?,
        max_priority: r.int("max_priority", u64::from(d.max_priority), 0, 255)? as u8,
    })
}

/// Describes the options read by [`floor_options`].
pub fn floor_option_info() -> Vec<OptionInfo> {
    vec![
        OptionInfo {
            name: "burst_limit_secs",
            ty: OptionType::Integer,
            default: "60".into(),
            help: "talk-burst limit in seconds (0: none, max 3600); the floor is revoked after it",
        },
        OptionInfo {
            name: "queue",
            ty: OptionType::Bool,
            default: "true".into(),
            help: "queue requests made while the floor is taken (otherwise deny them)",
        },
        OptionInfo {
            name: "queue_limit",
            ty: OptionType::Integer,
            default: "16".into(),
            help: "longest floor queue (1-256)",
        },
        OptionInfo {
            name: "preemption",
            ty: OptionType::Bool,
            default: "true".into(),
            help: "a request of higher priority takes the floor from its holder",
        },
        OptionInfo {
            name: "max_priority",
            ty: OptionType::Integer,
            default: "7".into(),
            help: "highest priority a member may ask for with a floor request (0-255)",
        },
    ]
}

/// Makes `ptt` rooms.
#[derive(Debug, Default)]
pub struct PttFactory;

impl PluginFactory for PttFactory {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            kind: KIND,
            description: "push-to-talk: one speaker at a time, with floor requests, queue, priority pre-emption and a talk-burst limit",
            options: floor_option_info(),
        }
    }

    fn create(
        &self,
        room: &RoomInfo<'_>,
        options: &Options,
    ) -> Result<Box<dyn RelayPlugin>, OptionError> {
        let mut r = OptionReader::new(options);
        let cfg = floor_options(&mut r)?;
        r.finish()?;
        Ok(Box::new(PttRoom {
            voice: ExclusiveVoice::new(room.name, cfg),
        }))
    }
}

#[cfg(test)]
mod tests;
