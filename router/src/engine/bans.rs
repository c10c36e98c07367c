//! Temporary bans of addresses that keep abusing the protocol, as Mumble
//! does (by default 10 strikes within 120 s ban the address for 300 s). A
//! strike is what no working client does: a connection closed for too many
//! errors, a HELLO refused as malformed, a connection that never said
//! HELLO within its deadline.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How strikes turn into bans (`[limits] ban_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Strikes within `window` that ban an address; 0 bans nobody.
    pub strikes: u32,
    pub window: Duration,
    /// How long a ban lasts.
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub(super) struct Bans {
    strikes: HashMap<IpAddr, VecDeque<Instant>>,
    until: HashMap<IpAddr, Instant>,
    /// Bans given since start.
    pub(super) total: u64,
}

impl Bans {
    /// Counts a strike against `ip`; `true` when it bans the address now.
    pub(super) fn strike(&mut self, policy: &BanPolicy, ip: IpAddr, now: Instant) -> bool {
        if policy.strikes == 0 || self.banned(ip, now).is_some() {
            return false;
        }
        let q = self.strikes.entry(ip).or_default();
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= policy.window)
        {
            q.pop_front();
        }
        q.push_back(now);
        if q.len() < policy.strikes as usize {
            return false;
        }
        self.strikes.remove(&ip);
        self.until.insert(ip, now + policy.duration);
        self.total += 1;
        true
    }

    /// How long `ip` stays banned, if it is.
    pub(super) fn banned(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.until
            .get(&ip)
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Addresses banned, as of the last [`Bans::sweep`].
    pub(super) fn banned_now(&self) -> usize {
        self.until.len()
    }

    /// When `ip`'s ban ends, if it is banned.
    pub(super) fn ends(&self, ip: IpAddr) -> Option<Instant> {
        self.until.get(&ip).copied()
    }

    /// Forgets what has expired; the addresses banned now.
    pub(super) fn sweep(&mut self, policy: &BanPolicy, now: Instant) -> usize {
        self.until.retain(|_, t| *t > now);
        self.strikes.retain(|_, q| {
            q.back()
                .is_some_and(|t| now.saturating_duration_since(*t) < policy.window)
        });
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_strikes_within_the_window_ban_for_the_duration() {
        let p = BanPolicy {
            strikes: 10,
            window: Duration::from_secs(120),
            duration: Duration::from_secs(300),
        };
        let (t0, ip, other) = (
            Instant::now(),
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
        );
        let mut b = Bans::default();
        // Nine, then the window passes: the tenth starts afresh.
        for i in 0..9 {
            assert!(!b.strike(&p, ip, t0 + Duration::from_secs(i)));
        }
        let later = t0 + Duration::from_secs(200);
        assert!(!b.strike(&p, ip, later));
        for i in 1..9 {
            assert!(!b.strike(&p, ip, later + Duration::from_secs(i)));
        }
        assert!(b.strike(&p, ip, later + Duration::from_secs(9)));
        let at = later + Duration::from_secs(10);
        assert!(
            b.banned(ip, at)
                .is_some_and(|d| d > Duration::from_secs(298))
        );
        assert!(
            b.banned(other, at).is_none(),
            "one address's abuse bans only it"
        );
        assert_eq!((b.sweep(&p, at), b.total), (1, 1));
        let after = at + Duration::from_secs(300);
        assert!(b.banned(ip, after).is_none());
        assert_eq!(b.sweep(&p, after), 0);
        // 0 strikes: nobody is banned.
        let off = BanPolicy { strikes: 0, ..p };
        assert!((0..100).all(|_| !b.strike(&off, other, after)));
    }
}
