//! Adaptive video: the meeting seed's rule, evaluated every second per
//! video sender on what its receivers' RTCP reports say.
//!
//! A sender reports (`VIDEO_STATS`) the fraction lost and RTT from each
//! receiver's latest receiver report. Once a second the worst figures heard
//! since the last evaluation (any receiver, any report) decide: loss above 10% or RTT above 300 ms steps the sender's level down
//! one notch; loss below 2% and RTT below 120 ms step it up one notch;
//! anything between holds. Without a fresh report nothing changes (no news
//! is not good news). Levels run from 144p to 720p.
//!
//! Keeping the worst rather than the latest matters: a receiver report
//! covers only the packets since the previous one (half a second, some
//! fifty video packets), so at 15% loss a single report reads anywhere from
//! 6% to 25%; a clean-looking report arriving last must not hide a lossy
//! one. Down is quick, up is careful, as in congestion control.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plugin_api::ReceiverReport;

/// The video levels, lowest first: (name, frame height).
pub const LEVELS: [(&str, u32); 5] = [
    ("144p", 144),
    ("240p", 240),
    ("360p", 360),
    ("480p", 480),
    ("720p", 720),
];
/// Where every sender starts.
pub const START_LEVEL: usize = 2;
/// How often the rule runs.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(1);
/// Above this loss fraction, step down.
pub const LOSS_DOWN: f64 = 0.10;
/// Below this loss fraction (and RTT), step up.
pub const LOSS_UP: f64 = 0.02;
/// Above this RTT, step down.
pub const RTT_DOWN_MS: f64 = 300.0;
/// Below this RTT (and loss), step up.
pub const RTT_UP_MS: f64 = 120.0;
/// Most reports in one VIDEO_STATS.
pub const MAX_REPORTS: usize = 64;

/// One sender's state.
#[derive(Debug, Clone, Default)]
struct Sender {
    level: usize,
    /// Worst loss heard since the last evaluation; `None`: no report.
    loss: Option<f64>,
    /// Worst RTT heard since the last evaluation, if any report had one.
    rtt_ms: Option<f64>,
}

/// A level change to announce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelChange {
    pub level: usize,
    pub fraction_lost: f64,
    pub rtt_ms: Option<f64>,
}

/// The rule for every video sender of a room.
#[derive(Debug, Default)]
pub struct Adaptive {
    senders: BTreeMap<u64, Sender>,
    next_run: Option<Instant>,
}

impl Adaptive {
    pub fn add(&mut self, session: u64) {
        self.senders.insert(
            session,
            Sender {
                level: START_LEVEL,
                ..Sender::default()
            },
        );
    }

    pub fn remove(&mut self, session: u64) {
        self.senders.remove(&session);
    }

    /// The sender's current level (index into [`LEVELS`]).
    pub fn level(&self, session: u64) -> Option<usize> {
        self.senders.get(&session).map(|s| s.level)
    }

    /// Takes in a sender's reports: the worst figures since the last
    /// evaluation are kept.
    pub fn report(&mut self, session: u64, reports: &[ReceiverReport]) {
        let Some(s) = self.senders.get_mut(&session) else {
            return;
        };
        for r in reports {
            s.loss = Some(s.loss.map_or(r.fraction_lost, |l| l.max(r.fraction_lost)));
            if let Some(rtt) = r.rtt_ms {
                s.rtt_ms = Some(s.rtt_ms.map_or(rtt, |m| m.max(rtt)));
            }
        }
    }

    /// When the rule should next run, arming it at `now + 1 s` if unarmed.
    pub fn schedule(&mut self, now: Instant) -> Instant {
        *self.next_run.get_or_insert(now + EVALUATE_EVERY)
    }

    /// Runs the rule for every sender; returns the changes.
    pub fn evaluate(&mut self, now: Instant) -> Vec<(u64, LevelChange)> {
        self.next_run = Some(now + EVALUATE_EVERY);
        let mut changes = Vec::new();
        for (&session, s) in &mut self.senders {
            let Some(loss) = s.loss.take() else {
                continue;
            };
            let rtt = s.rtt_ms.take();
            let rtt_v = rtt.unwrap_or(0.0);
            let next = if loss > LOSS_DOWN || rtt_v > RTT_DOWN_MS {
                s.level.saturating_sub(1)
            } else if loss < LOSS_UP && rtt_v < RTT_UP_MS {
                (s.level + 1).min(LEVELS.len() - 1)
            } else {
                s.level
            };
            if next != s.level {
                s.level = next;
                changes.push((
                    session,
                    LevelChange {
                        level: next,
                        fraction_lost: loss,
                        rtt_ms: rtt,
                    },
                ));
            }
        }
        changes
    }
}
