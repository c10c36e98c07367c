//! A room driven the way the engine drives it, on virtual time, for plugin
//! tests: commands go in, effects are applied (routes, timers, admissions,
//! removals) and every notice is recorded. No sockets, no clock, no wire
//! format.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::{
    AdminCommand, AdminError, Audience, CommandError, Effect, JoinPolicy, LeaveReason, Member,
    Notice, Options, Outbox, PluginFactory, Receivers, RejectReason, RelayPlugin, RoomCommand,
    RoomInfo, SessionId, Ssrcs, TimerKey, WallClock,
};

/// Room options from `(name, value)` pairs.
pub fn options(pairs: &[(&str, serde_json::Value)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// How a notice left the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    To(Audience),
    /// [`Effect::NotifyBulk`].
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
    pub sent: Vec<(Delivery, Notice)>,
    /// Members whose shown state the plugin said changed, in order.
    pub changed: Vec<SessionId>,
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
            changed: Vec::new(),
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
                Effect::Notify { to, notice } => self.sent.push((Delivery::To(to), notice)),
                Effect::NotifyBulk { to, notice } => self.sent.push((Delivery::Bulk(to), notice)),
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
                Effect::MemberChanged { session } => self.changed.push(session),
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

    /// Every notice recorded since the last call.
    pub fn take_all(&mut self) -> Vec<(Delivery, Notice)> {
        std::mem::take(&mut self.sent)
    }

    /// Like [`Sim::take_all`], with `None` for notices to all, bulk folded
    /// into its recipient, and a notice to several once per recipient.
    pub fn take(&mut self) -> Vec<(Option<SessionId>, Notice)> {
        let mut v = Vec::new();
        for (d, n) in self.take_all() {
            match d {
                Delivery::To(Audience::One(s)) | Delivery::Bulk(s) => v.push((Some(s), n)),
                Delivery::To(Audience::All) => v.push((None, n)),
                Delivery::To(Audience::Some(list)) => {
                    v.extend(list.into_iter().map(|s| (Some(s), n.clone())));
                }
            }
        }
        v
    }

    /// Notices `s` would have received since the last take, in order
    /// (notices to all reach members only).
    pub fn inbox(&mut self, s: SessionId) -> Vec<Notice> {
        let member = self.members.iter().any(|m| m.session == s);
        self.sent
            .iter()
            .filter(|(d, _)| match d {
                Delivery::To(a) => a.includes(s, member),
                Delivery::Bulk(t) => *t == s,
            })
            .map(|(_, m)| m.clone())
            .collect()
    }
}
