//! The sending side of a file transfer, sans-IO: which chunk to send next,
//! under a TCP Reno congestion window (RFC 5681), with the retransmission
//! timer of RFC 6298.
//!
//! Units are chunks. The window starts at 1 chunk with a slow-start
//! threshold of 8 (the meeting seed's figures). Each newly acknowledged
//! chunk adds one chunk in slow start (the window doubles every round trip)
//! and `1/cwnd` in congestion avoidance (one chunk per round trip). Three
//! duplicate acknowledgements are a loss: the threshold becomes half the
//! window, the missing chunk is sent again at once (fast retransmit) and the
//! window is the threshold plus three, growing by one per further duplicate
//! (fast recovery) until a new acknowledgement sets it to the threshold.
//! A retransmission timeout halves the threshold, resets the window to one
//! chunk and goes back to the first unacknowledged chunk.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Initial window, in chunks.
pub const INITIAL_CWND: f64 = 1.0;
/// Initial slow-start threshold, in chunks.
pub const INITIAL_SSTHRESH: f64 = 8.0;
/// The threshold never drops below this.
pub const MIN_SSTHRESH: f64 = 2.0;
/// Duplicate acknowledgements that signal a loss.
pub const DUP_THRESHOLD: u32 = 3;
/// Retransmission timeout bounds (RFC 6298 allows a lower minimum than 1 s
/// when the clock is fine; Linux uses 200 ms).
pub const MIN_RTO: Duration = Duration::from_millis(200);
pub const MAX_RTO: Duration = Duration::from_secs(60);
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

/// Where the window is in Reno's cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    SlowStart,
    CongestionAvoidance,
    FastRecovery,
}

/// The Reno window alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Reno {
    pub cwnd: f64,
    pub ssthresh: f64,
    recovering: bool,
}

impl Default for Reno {
    fn default() -> Self {
        Self {
            cwnd: INITIAL_CWND,
            ssthresh: INITIAL_SSTHRESH,
            recovering: false,
        }
    }
}

impl Reno {
    pub fn phase(&self) -> Phase {
        if self.recovering {
            Phase::FastRecovery
        } else if self.cwnd < self.ssthresh {
            Phase::SlowStart
        } else {
            Phase::CongestionAvoidance
        }
    }

    /// `n` chunks newly acknowledged.
    pub fn on_new_ack(&mut self, n: u64) {
        if self.recovering {
            self.recovering = false;
            self.cwnd = self.ssthresh;
            return;
        }
        for _ in 0..n {
            if self.cwnd < self.ssthresh {
                self.cwnd += 1.0;
            } else {
                self.cwnd += 1.0 / self.cwnd;
            }
        }
    }

    /// The third duplicate: halve, and inflate by the three that left.
    pub fn on_loss(&mut self) {
        self.ssthresh = (self.cwnd / 2.0).max(MIN_SSTHRESH);
        self.cwnd = self.ssthresh + f64::from(DUP_THRESHOLD);
        self.recovering = true;
    }

    /// A duplicate beyond the third, during fast recovery.
    pub fn on_extra_dup(&mut self) {
        if self.recovering {
            self.cwnd += 1.0;
        }
    }

    pub fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2.0).max(MIN_SSTHRESH);
        self.cwnd = INITIAL_CWND;
        self.recovering = false;
    }
}

/// RFC 6298 round-trip estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
}

impl Rtt {
    fn new() -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
        }
    }

    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + (self.rttvar * 4).max(Duration::from_millis(1))).clamp(MIN_RTO, MAX_RTO);
    }
}

/// What the sender has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SenderCounters {
    pub sent: u64,
    pub retransmitted: u64,
    pub fast_retransmits: u64,
    pub timeouts: u64,
}

/// One transfer's sending state.
#[derive(Debug, Clone)]
pub struct RenoSender {
    chunks: u64,
    /// Every chunk before this is acknowledged.
    acked: u64,
    /// The next chunk to send for the first time (or again, after a timeout).
    next: u64,
    /// One past the highest chunk ever sent.
    high: u64,
    reno: Reno,
    rtt: Rtt,
    dup_acks: u32,
    /// Chunk to send again before anything else.
    retransmit: Option<u64>,
    /// First transmissions in flight, for round-trip samples (Karn: a
    /// retransmitted chunk gives none).
    sent_at: BTreeMap<u64, Instant>,
    timer: Option<Instant>,
    counters: SenderCounters,
}

impl RenoSender {
    pub fn new(chunks: u64) -> Self {
        Self {
            chunks,
            acked: 0,
            next: 0,
            high: 0,
            reno: Reno::default(),
            rtt: Rtt::new(),
            dup_acks: 0,
            retransmit: None,
            sent_at: BTreeMap::new(),
            timer: None,
            counters: SenderCounters::default(),
        }
    }

    pub fn window(&self) -> &Reno {
        &self.reno
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    pub fn is_done(&self) -> bool {
        self.acked >= self.chunks
    }

    pub fn counters(&self) -> SenderCounters {
        self.counters
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt
    }

    pub fn rto(&self) -> Duration {
        self.rtt.rto
    }

    /// Chunks sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.high.saturating_sub(self.acked)
    }

    /// The next chunk to put on the wire now, if the window allows one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<u64> {
        let seq = if let Some(r) = self.retransmit.take() {
            self.sent_at.remove(&r);
            self.counters.retransmitted += 1;
            r
        } else {
            let window = self.reno.cwnd.floor().max(1.0) as u64;
            if self.next >= self.chunks || self.next - self.acked >= window {
                return None;
            }
            let seq = self.next;
            self.next += 1;
            if seq < self.high {
                self.counters.retransmitted += 1;
                self.sent_at.remove(&seq);
            } else {
                self.high = seq + 1;
                self.sent_at.insert(seq, now);
            }
            seq
        };
        self.counters.sent += 1;
        if self.timer.is_none() {
            self.timer = Some(now + self.rtt.rto);
        }
        Some(seq)
    }

    /// A cumulative acknowledgement: every chunk before `next_seq` arrived.
    pub fn on_ack(&mut self, now: Instant, next_seq: u64) {
        let next_seq = next_seq.min(self.chunks);
        if next_seq > self.acked {
            if let Some(at) = self.sent_at.get(&(next_seq - 1)) {
                self.rtt.sample(now.saturating_duration_since(*at));
            }
            let newly = next_seq - self.acked;
            self.acked = next_seq;
            self.sent_at = self.sent_at.split_off(&next_seq);
            self.next = self.next.max(self.acked);
            self.high = self.high.max(self.acked);
            self.dup_acks = 0;
            self.reno.on_new_ack(newly);
            self.timer = (self.acked < self.high).then(|| now + self.rtt.rto);
        } else if next_seq == self.acked && self.high > self.acked {
            self.dup_acks += 1;
            if self.dup_acks == DUP_THRESHOLD {
                self.reno.on_loss();
                self.retransmit = Some(self.acked);
                self.counters.fast_retransmits += 1;
            } else if self.dup_acks > DUP_THRESHOLD {
                self.reno.on_extra_dup();
            }
        }
    }

    /// When [`RenoSender::on_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// The retransmission timer: if due, shrink the window to one chunk
    /// and go back to the first unacknowledged chunk.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.timer.is_none_or(|t| t > now) {
            return;
        }
        self.counters.timeouts += 1;
        self.reno.on_timeout();
        self.dup_acks = 0;
        self.retransmit = None;
        self.next = self.acked;
        self.sent_at.clear();
        self.rtt.rto = (self.rtt.rto * 2).min(MAX_RTO);
        self.timer = Some(now + self.rtt.rto);
    }
}
