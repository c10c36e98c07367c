//! The floor: who may talk, as a pure state machine.
//!
//! Modelled on 3GPP MCPTT floor control (TS 24.380): a request is granted when
//! the floor is idle, queued (with its position) or denied when it is taken, and
//! a higher-priority request pre-empts a lower-priority holder where the room
//! allows it. A talk burst has a limit after which the floor is revoked. The
//! floor knows nothing about messages or routes: it returns [`FloorEvent`]s and
//! the room turns them into both.

use std::time::{Duration, Instant};

use plugin_api::{DenyReason, ReleaseReason, RevokeReason, SessionId};

/// How a room's floor behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorConfig {
    /// Longest talk burst; `None` means unlimited.
    pub burst_limit: Option<Duration>,
    /// Whether requests made while the floor is taken wait in a queue.
    pub queue: bool,
    /// Longest queue; requests beyond it are denied with `QUEUE_FULL`.
    pub queue_limit: usize,
    /// Whether a higher-priority request takes the floor from its holder.
    pub preemption: bool,
    /// Highest priority a member may ask for.
    pub max_priority: u8,
}

impl Default for FloorConfig {
    fn default() -> Self {
        Self {
            burst_limit: Some(Duration::from_secs(60)),
            queue: true,
            queue_limit: 16,
            preemption: true,
            max_priority: 7,
        }
    }
}

/// Something that happened to the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorEvent {
    Granted {
        session: SessionId,
        priority: u8,
    },
    Denied {
        session: SessionId,
        reason: DenyReason,
        position: Option<u32>,
    },
    /// A waiting request's 1-based position changed.
    QueuePosition {
        session: SessionId,
        position: u32,
    },
    /// A waiting request was withdrawn by its owner.
    Dequeued {
        session: SessionId,
    },
    Released {
        session: SessionId,
        reason: ReleaseReason,
    },
    Revoked {
        session: SessionId,
        reason: RevokeReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    session: SessionId,
    priority: u8,
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    session: SessionId,
    priority: u8,
}

/// Not the holder and not waiting: nothing to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NothingToRelease;

/// One room's floor.
#[derive(Debug, Clone)]
pub struct Floor {
    cfg: FloorConfig,
    holder: Option<Holder>,
    /// Highest priority first; first come, first served within a priority.
    queue: Vec<Waiting>,
}

impl Floor {
    pub fn new(cfg: FloorConfig) -> Self {
        Self {
            cfg,
            holder: None,
            queue: Vec::new(),
        }
    }

    pub fn config(&self) -> &FloorConfig {
        &self.cfg
    }

    /// The current holder and its priority.
    pub fn holder(&self) -> Option<(SessionId, u8)> {
        self.holder.map(|h| (h.session, h.priority))
    }

    /// When the current talk burst will be revoked.
    pub fn deadline(&self) -> Option<Instant> {
        self.holder.and_then(|h| h.deadline)
    }

    /// 1-based queue position of `session`.
    pub fn queue_position(&self, session: SessionId) -> Option<u32> {
        self.queue
            .iter()
            .position(|w| w.session == session)
            .map(|i| i as u32 + 1)
    }

    /// Sessions waiting, in order.
    pub fn queued(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.queue.iter().map(|w| w.session)
    }

    fn grant(&mut self, now: Instant, session: SessionId, priority: u8, ev: &mut Vec<FloorEvent>) {
        self.holder = Some(Holder {
            session,
            priority,
            deadline: self.cfg.burst_limit.map(|d| now + d),
        });
        ev.push(FloorEvent::Granted { session, priority });
    }

    /// Runs `change` on the queue and reports positions that moved.
    fn with_queue_change(&mut self, ev: &mut Vec<FloorEvent>, change: impl FnOnce(&mut Self)) {
        let before: Vec<SessionId> = self.queued().collect();
        change(self);
        for (i, w) in self.queue.iter().enumerate() {
            if before.iter().position(|s| *s == w.session) != Some(i) && before.contains(&w.session)
            {
                ev.push(FloorEvent::QueuePosition {
                    session: w.session,
                    position: i as u32 + 1,
                });
            }
        }
    }

    fn grant_next(&mut self, now: Instant, ev: &mut Vec<FloorEvent>) {
        if self.holder.is_some() || self.queue.is_empty() {
            return;
        }
        let mut next = None;
        self.with_queue_change(ev, |f| next = Some(f.queue.remove(0)));
        if let Some(w) = next {
            self.grant(now, w.session, w.priority, ev);
        }
    }

    /// A member asks for the floor. `priority` must already be checked against
    /// `max_priority` by the caller.
    pub fn request(&mut self, now: Instant, session: SessionId, priority: u8) -> Vec<FloorEvent> {
        let mut ev = Vec::new();
        let priority = priority.min(self.cfg.max_priority);
        let Some(holder) = self.holder else {
            self.grant(now, session, priority, &mut ev);
            return ev;
        };
        if holder.session == session {
            ev.push(FloorEvent::Denied {
                session,
                reason: DenyReason::AlreadyHolder,
                position: None,
            });
            return ev;
        }
        if self.cfg.preemption && priority > holder.priority {
            self.queue.retain(|w| w.session != session);
            ev.push(FloorEvent::Revoked {
                session: holder.session,
                reason: RevokeReason::Preempted,
            });
            self.grant(now, session, priority, &mut ev);
            return ev;
        }
        if let Some(position) = self.queue_position(session) {
            ev.push(FloorEvent::Denied {
                session,
                reason: DenyReason::AlreadyQueued,
                position: Some(position),
            });
            return ev;
        }
        if !self.cfg.queue {
            ev.push(FloorEvent::Denied {
                session,
                reason: DenyReason::FloorBusy,
                position: None,
            });
            return ev;
        }
        if self.queue.len() >= self.cfg.queue_limit {
            ev.push(FloorEvent::Denied {
                session,
                reason: DenyReason::QueueFull,
                position: None,
            });
            return ev;
        }
        let at = self
            .queue
            .iter()
            .position(|w| w.priority < priority)
            .unwrap_or(self.queue.len());
        self.with_queue_change(&mut ev, |f| {
            f.queue.insert(at, Waiting { session, priority })
        });
        ev.push(FloorEvent::Denied {
            session,
            reason: DenyReason::Queued,
            position: Some(at as u32 + 1),
        });
        ev
    }

    /// Takes the floor from `session` if it holds it (for `reason`), and
    /// grants it to the next in the queue; its own place in the queue, if
    /// any, is kept. Nothing happens when it does not hold the floor.
    pub fn drop_holder(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: ReleaseReason,
    ) -> Vec<FloorEvent> {
        let mut ev = Vec::new();
        if self.holder.is_some_and(|h| h.session == session) {
            self.holder = None;
            ev.push(FloorEvent::Released { session, reason });
            self.grant_next(now, &mut ev);
        }
        ev
    }

    /// The holder gives up the floor, or a waiting member withdraws.
    pub fn release(
        &mut self,
        now: Instant,
        session: SessionId,
    ) -> Result<Vec<FloorEvent>, NothingToRelease> {
        let mut ev = Vec::new();
        if self.holder.is_some_and(|h| h.session == session) {
            Ok(self.drop_holder(now, session, ReleaseReason::Released))
        } else if self.queue_position(session).is_some() {
            self.with_queue_change(&mut ev, |f| f.queue.retain(|w| w.session != session));
            ev.push(FloorEvent::Dequeued { session });
            Ok(ev)
        } else {
            Err(NothingToRelease)
        }
    }

    /// A member vanished (left, disconnected, timed out): the floor is freed at
    /// once if it held it, and its queued request is dropped.
    pub fn remove(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: ReleaseReason,
    ) -> Vec<FloorEvent> {
        let mut ev = Vec::new();
        if self.queue_position(session).is_some() {
            self.with_queue_change(&mut ev, |f| f.queue.retain(|w| w.session != session));
        }
        if self.holder.is_some_and(|h| h.session == session) {
            self.holder = None;
            ev.push(FloorEvent::Released { session, reason });
            self.grant_next(now, &mut ev);
        }
        ev
    }

    /// Revokes a talk burst that reached its limit; call when the deadline fires.
    pub fn expire(&mut self, now: Instant) -> Vec<FloorEvent> {
        match self.holder {
            Some(h) if h.deadline.is_some_and(|d| d <= now) => {
                self.revoke(now, RevokeReason::BurstLimit)
            }
            _ => Vec::new(),
        }
    }

    /// Takes the floor from its holder (operator or burst limit) and grants the
    /// next waiting request.
    pub fn revoke(&mut self, now: Instant, reason: RevokeReason) -> Vec<FloorEvent> {
        let mut ev = Vec::new();
        if let Some(h) = self.holder.take() {
            ev.push(FloorEvent::Revoked {
                session: h.session,
                reason,
            });
            self.grant_next(now, &mut ev);
        }
        ev
    }

    /// An operator muted `session`: its talk burst is revoked (the next waiting
    /// request is granted) and its queued request withdrawn.
    pub fn silence(&mut self, now: Instant, session: SessionId) -> Vec<FloorEvent> {
        let mut ev = Vec::new();
        if self.queue_position(session).is_some() {
            self.with_queue_change(&mut ev, |f| f.queue.retain(|w| w.session != session));
            ev.push(FloorEvent::Dequeued { session });
        }
        if self.holder.is_some_and(|h| h.session == session) {
            ev.extend(self.revoke(now, RevokeReason::Muted));
        }
        ev
    }

    /// An operator gives the floor to `session`, overriding the queue and any
    /// holder.
    pub fn force_grant(
        &mut self,
        now: Instant,
        session: SessionId,
        priority: u8,
    ) -> Vec<FloorEvent> {
        let mut ev = Vec::new();
        if let Some(h) = self.holder.take() {
            if h.session == session {
                self.holder = Some(h);
                return ev;
            }
            ev.push(FloorEvent::Revoked {
                session: h.session,
                reason: RevokeReason::Admin,
            });
        }
        if self.queue_position(session).is_some() {
            self.with_queue_change(&mut ev, |f| f.queue.retain(|w| w.session != session));
        }
        self.grant(now, session, priority, &mut ev);
        ev
    }
}
