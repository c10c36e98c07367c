//! A room driven the way the engine drives it, on virtual time, for plugin
//! tests: effects are applied (routes, timers, admissions, removals) and
//! every message is recorded. No sockets, no clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::{
    AdminCommand, AdminError, CommandError, Effect, JoinPolicy, LeaveReason, Member, Options,
    Outbox, PluginFactory, Receivers, RejectReason, RelayPlugin, RoomCommand, RoomInfo,
    ServerMessage, SessionId, Ssrcs, TimerKey, WallClock,
};

/// Room options from `(name, value)` pairs.
pub fn options(pairs: &[(&str, serde_json::Value)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// How a message left the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    To(SessionId),
    Broadcast,
    /// [`Effect::SendBulk`].
    Bulk(SessionId),
}

/// One simulated room.
pub struct Sim {
    pub room: Box<dyn RelayPlugin>,
    pub now: Instant,
    pub clock: WallClock,
    pub timers: BTreeMap<TimerKey, Instant>,
    pub routes: BTreeMap<SessionId, Receivers>,
    /// In joining order.
    pub members: Vec<Member>,
    /// Sessions waiting on a join request.
    pub waiting: Vec<Member>,
    pub muted: BTreeMap<SessionId, bool>,
    pub sent: Vec<(Delivery, ServerMessage)>,
    /// Admissions, rejections, removals and closes, in order.
    pub decisions: Vec<Effect>,
    pub closed: Option<String>,
}

impl Sim {
    /// A room whose clock reads 2026-01-01T00:00:00Z at the start.
    pub fn new(make: impl FnOnce(WallClock) -> Box<dyn RelayPlugin>) -> Self {
        let now = Instant::now();
        let clock = WallClock {
            origin: now,
            origin_unix_ms: 1_767_225_600_000,
        };
        Self {
            room: make(clock),
            now,
            clock,
            timers: BTreeMap::new(),
            routes: BTreeMap::new(),
            members: Vec::new(),
            waiting: Vec::new(),
            muted: BTreeMap::new(),
            sent: Vec::new(),
            decisions: Vec::new(),
            closed: None,
        }
    }

    /// A room named `name` made by `factory` with these options; panics if
    /// the factory refuses them.
    pub fn of(
        factory: &dyn PluginFactory,
        name: &str,
        max_participants: u32,
        opts: &[(&str, serde_json::Value)],
    ) -> Self {
        let opts = options(opts);
        Self::new(|clock| {
            let info = RoomInfo {
                name,
                max_participants,
                clock,
            };
            factory
                .create(&info, &opts)
                .unwrap_or_else(|e| panic!("create: {e}"))
        })
    }

    /// A member with nickname `u{s}` and SSRCs derived from `s`.
    pub fn member(s: SessionId) -> Member {
        Self::named(s, &format!("u{s}"))
    }

    pub fn named(s: SessionId, nickname: &str) -> Member {
        Member {
            session: s,
            nickname: nickname.to_owned(),
            ssrcs: Ssrcs {
                audio: 1000 + s as u32,
                video: 2000 + s as u32,
            },
        }
    }

    pub fn absorb(&mut self, mut out: Outbox) {
        let effects: Vec<Effect> = out.drain().collect();
        let mut later = Vec::new();
        for e in effects {
            match e {
                Effect::Send { to, msg } => self.sent.push((Delivery::To(to), msg)),
                Effect::Broadcast { msg } => self.sent.push((Delivery::Broadcast, msg)),
                Effect::SendBulk { to, msg } => self.sent.push((Delivery::Bulk(to), msg)),
                Effect::SetRoute { sender, receivers } => {
                    if self.members.iter().any(|m| m.session == sender) {
                        self.routes.insert(sender, receivers);
                    }
                }
                Effect::SetTimer { key, at } => {
                    self.timers.insert(key, at);
                }
                Effect::CancelTimer { key } => {
                    self.timers.remove(&key);
                }
                Effect::UserlistChanged => {}
                Effect::Mute { session, muted } => {
                    self.muted.insert(session, muted);
                    self.decisions.push(Effect::Mute { session, muted });
                }
                other => later.push(other),
            }
        }
        // Structural changes after the messages, as the engine does.
        for e in later {
            self.decisions.push(e.clone());
            match e {
                Effect::Admit { session } => {
                    if let Some(i) = self.waiting.iter().position(|m| m.session == session) {
                        let m = self.waiting.remove(i);
                        self.enter(m);
                    }
                }
                Effect::Reject { session, .. } => self.waiting.retain(|m| m.session != session),
                Effect::Remove { session, .. } => self.leave(session, LeaveReason::Kicked),
                Effect::CloseRoom { message } => {
                    let all: Vec<SessionId> = self.members.iter().map(|m| m.session).collect();
                    for s in all {
                        self.leave(s, LeaveReason::RoomClosed);
                    }
                    let waiting: Vec<SessionId> = self.waiting.iter().map(|m| m.session).collect();
                    for s in waiting {
                        self.decisions.push(Effect::Reject {
                            session: s,
                            reason: RejectReason::MeetingEnded,
                            message: message.clone(),
                        });
                    }
                    self.waiting.clear();
                    self.closed = Some(message);
                }
                _ => {}
            }
        }
    }

    fn enter(&mut self, m: Member) {
        self.members.push(m.clone());
        self.routes.insert(m.session, Receivers::Nobody);
        let mut out = Outbox::new();
        self.room.on_join(self.now, &m, &mut out);
        self.absorb(out);
    }

    /// Joins `u{s}` directly (no join request).
    pub fn join(&mut self, s: SessionId) {
        self.enter(Self::member(s));
    }

    /// Asks to join as the engine does for JOIN and REQUEST_JOIN.
    pub fn request_join(&mut self, m: Member) -> JoinPolicy {
        let mut out = Outbox::new();
        let policy = self.room.on_join_request(self.now, &m, &mut out);
        match policy {
            JoinPolicy::Admit => {
                self.absorb(out);
                self.enter(m);
            }
            JoinPolicy::Wait => {
                self.waiting.push(m);
                self.absorb(out);
            }
        }
        policy
    }

    /// A waiting session gives up.
    pub fn withdraw(&mut self, s: SessionId) {
        self.waiting.retain(|m| m.session != s);
        let mut out = Outbox::new();
        self.room.on_join_withdrawn(self.now, s, &mut out);
        self.absorb(out);
    }

    pub fn leave(&mut self, s: SessionId, why: LeaveReason) {
        if !self.members.iter().any(|m| m.session == s) {
            return;
        }
        self.members.retain(|m| m.session != s);
        self.routes.remove(&s);
        self.muted.remove(&s);
        let mut out = Outbox::new();
        self.room.on_leave(self.now, s, why, &mut out);
        self.absorb(out);
    }

    pub fn cmd(&mut self, s: SessionId, c: RoomCommand) -> Result<(), CommandError> {
        let mut out = Outbox::new();
        let r = self.room.on_command(self.now, s, &c, &mut out);
        self.absorb(out);
        r
    }

    /// Advances virtual time, firing due timers in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some((&key, &at)) = self.timers.iter().min_by_key(|(_, at)| **at) {
            if at > end {
                break;
            }
            self.timers.remove(&key);
            self.now = at;
            let mut out = Outbox::new();
            self.room.on_timer(self.now, key, &mut out);
            self.absorb(out);
        }
        self.now = end;
    }

    pub fn admin(&mut self, c: AdminCommand) -> Result<(), AdminError> {
        let mut out = Outbox::new();
        let r = self.room.on_admin(self.now, c, &mut out);
        self.absorb(out);
        r
    }

    /// Every message recorded since the last call.
    pub fn take_all(&mut self) -> Vec<(Delivery, ServerMessage)> {
        std::mem::take(&mut self.sent)
    }

    /// Like [`Sim::take_all`], with `None` for broadcasts and bulk folded into
    /// its recipient.
    pub fn take(&mut self) -> Vec<(Option<SessionId>, ServerMessage)> {
        self.take_all()
            .into_iter()
            .map(|(d, m)| match d {
                Delivery::To(s) | Delivery::Bulk(s) => (Some(s), m),
                Delivery::Broadcast => (None, m),
            })
            .collect()
    }

    /// Messages `s` would have received since the last take, in order
    /// (broadcasts reach members only).
    pub fn inbox(&mut self, s: SessionId) -> Vec<ServerMessage> {
        let member = self.members.iter().any(|m| m.session == s);
        self.sent
            .iter()
            .filter(|(d, _)| match d {
                Delivery::To(t) | Delivery::Bulk(t) => *t == s,
                Delivery::Broadcast => member,
            })
            .map(|(_, m)| m.clone())
            .collect()
    }
}
