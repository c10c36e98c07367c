//! What a room's members are told of each other, by deltas.
//!
//! A join, leave, mute or floor change marks one member dirty. Clients that
//! asked for `member_deltas` get one `MEMBERS_CHANGED` with every dirty
//! member in its state now, rendered once for all of them; other clients get
//! the whole `USERLIST`, as protocol version 1 always did. A joiner gets the
//! whole list once, at once.
//!
//! Small rooms are told at once, after every change. In rooms larger than
//! [`SMALL_ROOM`] changes are coalesced: deltas go out at most every
//! [`DELTA_INTERVAL`], and whole lists to old clients at most every
//! [`legacy_interval`], which grows with the square of the room (a list of N
//! to N members), so a join storm costs each member a few messages a second
//! instead of one list of N per join.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use plugin_api::SessionId;

/// Rooms up to this size hear every change at once.
pub const SMALL_ROOM: usize = 64;
/// Larger rooms get deltas at most this often.
pub const DELTA_INTERVAL: Duration = Duration::from_millis(100);

/// Longest wait for a whole list.
pub const LEGACY_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// How often clients without deltas get the whole list in a room of `n`:
/// n² µs (a list of n to each of n members costs n² entries), at least
/// [`DELTA_INTERVAL`] and at most [`LEGACY_MAX_INTERVAL`]: 122 ms at 350
/// members, 1 s at 1,000, 60 s from 7,746.
pub fn legacy_interval(n: usize) -> Duration {
    if n <= SMALL_ROOM {
        return Duration::ZERO;
    }
    let n = n as u64;
    Duration::from_micros(n.saturating_mul(n)).clamp(DELTA_INTERVAL, LEGACY_MAX_INTERVAL)
}

/// Longest wait for a `MEMBER_COUNT`.
pub const COUNT_MAX_INTERVAL: Duration = Duration::from_secs(10);

/// How often `member_pages` clients in a large room of `n` hear its count:
/// n × 100 µs (a count to each of n members), at least [`DELTA_INTERVAL`]
/// and at most [`COUNT_MAX_INTERVAL`]: 100 ms up to 1,000 members, 1 s at
/// 10,000. A join storm then costs each member about one message per
/// interval however fast members join, and the router a flat cost per join.
pub fn count_interval(n: usize) -> Duration {
    Duration::from_micros((n as u64).saturating_mul(100)).clamp(DELTA_INTERVAL, COUNT_MAX_INTERVAL)
}

/// What a member list shows of a member that can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub talking: bool,
    pub muted: bool,
}

/// A room's member-list bookkeeping.
#[derive(Debug, Default)]
pub struct Roster {
    /// Each member's state as the last delta told it.
    shown: HashMap<SessionId, Shown>,
    /// Members changed since the last delta, with the nickname of those
    /// that left (they may be gone from the engine by the flush).
    dirty: BTreeMap<SessionId, Option<String>>,
    /// Whether the whole list changed since old clients last got it.
    legacy_dirty: bool,
    /// Whether the count changed since `member_pages` clients were told it
    /// (large rooms only).
    count_dirty: bool,
    last_delta: Option<Instant>,
    last_legacy: Option<Instant>,
    last_count: Option<Instant>,
    /// The count they were told last.
    pub told_count: usize,
    /// When a flush timer is armed for.
    pub armed: Option<Instant>,
}

/// What a flush found.
#[derive(Debug, Default)]
pub struct Delta {
    pub joined: Vec<SessionId>,
    pub changed: Vec<SessionId>,
    pub left: Vec<(SessionId, String)>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.changed.is_empty() && self.left.is_empty()
    }
}

impl Roster {
    /// `session` joined, changed, or (with its nickname) left.
    pub fn touch(&mut self, session: SessionId, left_as: Option<String>) {
        let e = self.dirty.entry(session).or_insert(None);
        if left_as.is_some() {
            *e = left_as;
        }
        self.legacy_dirty = true;
    }

    /// A large room's count changed.
    pub fn touch_count(&mut self) {
        self.count_dirty = true;
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.legacy_dirty || self.count_dirty
    }

    pub fn count_dirty(&self) -> bool {
        self.count_dirty
    }

    /// When what is still untold may go out, if anything is.
    pub fn next_due(&self, now: Instant, members: usize) -> Option<Instant> {
        let delta = (!self.dirty.is_empty()).then(|| self.delta_due(now, members));
        let legacy = self.legacy_dirty.then(|| self.legacy_due(now, members));
        let count = self.count_dirty.then(|| self.count_due(now, members));
        delta.into_iter().chain(legacy).chain(count).min()
    }

    /// When `member_pages` clients may next hear the count.
    pub fn count_due(&self, now: Instant, members: usize) -> Instant {
        match self.last_count {
            Some(t) => (t + count_interval(members)).max(now),
            None => now,
        }
    }

    /// `member_pages` clients were told the count `n`.
    pub fn count_sent(&mut self, now: Instant, n: usize) {
        self.count_dirty = false;
        self.last_count = Some(now);
        self.told_count = n;
    }

    /// When deltas may next go out (`now` if they may now).
    pub fn delta_due(&self, now: Instant, members: usize) -> Instant {
        match self.last_delta {
            Some(t) if members > SMALL_ROOM => (t + DELTA_INTERVAL).max(now),
            _ => now,
        }
    }

    /// When whole lists may next go out to old clients.
    pub fn legacy_due(&self, now: Instant, members: usize) -> Instant {
        match self.last_legacy {
            Some(t) => (t + legacy_interval(members)).max(now),
            None => now,
        }
    }

    /// Takes the delta since the last one: `state` says whether a session
    /// is a member now, and how it shows.
    pub fn take_delta(
        &mut self,
        now: Instant,
        mut state: impl FnMut(SessionId) -> Option<Shown>,
    ) -> Delta {
        self.last_delta = Some(now);
        let mut d = Delta::default();
        for (session, left_as) in std::mem::take(&mut self.dirty) {
            match (state(session), self.shown.get(&session).copied()) {
                (Some(now), None) => {
                    self.shown.insert(session, now);
                    d.joined.push(session);
                }
                (Some(now), Some(was)) => {
                    if now != was {
                        self.shown.insert(session, now);
                        d.changed.push(session);
                    }
                }
                (None, Some(_)) => {
                    self.shown.remove(&session);
                    d.left.push((session, left_as.unwrap_or_default()));
                }
                (None, None) => {} // came and went between two deltas
            }
        }
        d
    }

    /// Old clients were sent the whole list.
    pub fn legacy_sent(&mut self, now: Instant) {
        self.legacy_dirty = false;
        self.last_legacy = Some(now);
    }

    /// Members whose state is known to delta clients (for tests).
    #[cfg(test)]
    pub fn shown_members(&self) -> std::collections::BTreeSet<SessionId> {
        self.shown.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_coalesce_each_member_once_in_its_state_now() {
        let t0 = Instant::now();
        let mut r = Roster::default();
        let mut members: HashMap<SessionId, Shown> = HashMap::new();
        let quiet = Shown {
            talking: false,
            muted: false,
        };
        for s in 1..=3 {
            members.insert(s, quiet);
            r.touch(s, None);
        }
        let d = r.take_delta(t0, |s| members.get(&s).copied());
        assert_eq!(d.joined, [1, 2, 3]);
        // 2 talks, stops, talks again; 3 leaves; 4 comes and goes: one
        // change for 2, one leave for 3, nothing about 4.
        for talking in [true, false, true] {
            members.insert(
                2,
                Shown {
                    talking,
                    muted: false,
                },
            );
            r.touch(2, None);
        }
        members.remove(&3);
        r.touch(3, Some("c".into()));
        members.insert(4, quiet);
        r.touch(4, None);
        members.remove(&4);
        r.touch(4, Some("d".into()));
        let d = r.take_delta(t0, |s| members.get(&s).copied());
        assert!(d.joined.is_empty());
        assert_eq!(d.changed, [2]);
        assert_eq!(d.left, [(3, "c".to_string())]);
        assert_eq!(r.shown_members(), [1, 2].into_iter().collect());
        // A change undone before the delta is no change.
        members.insert(
            1,
            Shown {
                talking: true,
                muted: false,
            },
        );
        r.touch(1, None);
        members.insert(1, quiet);
        r.touch(1, None);
        assert!(r.take_delta(t0, |s| members.get(&s).copied()).is_empty());
    }

    #[test]
    fn large_rooms_are_told_at_most_every_interval() {
        let t0 = Instant::now();
        let mut r = Roster::default();
        assert_eq!(r.delta_due(t0, 1000), t0, "the first change goes at once");
        r.take_delta(t0, |_| None);
        r.legacy_sent(t0);
        let t1 = t0 + Duration::from_millis(30);
        assert_eq!(r.delta_due(t1, SMALL_ROOM), t1, "small rooms: at once");
        assert_eq!(r.delta_due(t1, SMALL_ROOM + 1), t0 + DELTA_INTERVAL);
        assert_eq!(r.legacy_due(t1, 10), t1);
        assert_eq!(r.legacy_due(t1, 100), t0 + DELTA_INTERVAL);
        assert_eq!(r.legacy_due(t1, 350), t0 + Duration::from_micros(122_500));
        assert_eq!(r.legacy_due(t1, 1000), t0 + Duration::from_secs(1));
        assert_eq!(
            r.legacy_due(t1, 10_000),
            t0 + LEGACY_MAX_INTERVAL,
            "old clients in a room of 10,000 get the whole list every minute"
        );
    }
}
