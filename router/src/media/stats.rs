//! Per-stream statistics, as the router sees each stream arrive.
//!
//! Loss follows RFC 3550 appendix A.1 and A.3 (extended highest sequence
//! number, with the same dropout and misorder bounds and the two-packet
//! re-synchronisation after a large jump); jitter follows appendix A.8
//! (interarrival jitter in timestamp units, smoothed by 1/16). Arrival times
//! come from the worker, once per receive batch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// A sequence-number jump larger than this (forwards) is a restart, not loss.
const MAX_DROPOUT: u16 = 3000;
/// A jump backwards by at most this much is a late packet.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u64 = 1 << 16;

/// Receive statistics of one SSRC.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// RTP and RTCP packets accepted from the stream's bound address.
    pub packets: u64,
    pub bytes: u64,
    /// Copies sent on to receivers.
    pub forwarded: u64,
    /// Accepted, but the room's rules forwarded them to nobody (not the floor
    /// holder, muted).
    pub dropped: u64,
    seq: Option<SeqState>,
    /// RTP packets counted for loss (duplicates included, as in RFC 3550).
    rtp_received: u64,
    /// A.8 jitter, in timestamp units.
    jitter: f64,
    last_transit: Option<i64>,
    /// Clock rate the jitter is measured in.
    jitter_clock: u32,
}

#[derive(Debug, Clone, Copy)]
struct SeqState {
    base_seq: u64,
    max_seq: u16,
    /// Wrap-arounds, times 2^16.
    cycles: u64,
    /// After a large jump: the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
}

/// A plain copy of one stream's statistics with derived figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamSnapshot {
    pub packets: u64,
    pub bytes: u64,
    pub forwarded: u64,
    pub dropped: u64,
    /// RTP packets expected from the sequence numbers seen.
    pub expected: u64,
    /// Cumulative lost packets (negative with duplicates), RFC 3550 A.3.
    pub lost: i64,
    /// Interarrival jitter in milliseconds, RFC 3550 A.8.
    pub jitter_ms: f64,
}

impl StreamStats {
    /// Counts one accepted packet (RTP or RTCP).
    #[inline]
    pub fn count(&mut self, bytes: usize, copies: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
        if copies == 0 {
            self.dropped += 1;
        } else {
            self.forwarded += copies as u64;
        }
    }

    /// Feeds one RTP header for loss and jitter. `arrival` is in seconds
    /// since any fixed origin.
    pub fn rtp(&mut self, seq: u16, timestamp: u32, arrival: f64, clock_rate: u32) {
        self.update_seq(seq);
        if clock_rate == 0 {
            return;
        }
        // Transit time in timestamp units; only differences matter, so the
        // 32-bit wrap is handled by working modulo 2^32.
        let arrival_units = (arrival * f64::from(clock_rate)) as i64;
        let transit = arrival_units.wrapping_sub(i64::from(timestamp)) & 0xffff_ffff;
        if let Some(last) = self.last_transit {
            let mut d = (transit - last).rem_euclid(1 << 32);
            if d > 1 << 31 {
                d = (1 << 32) - d;
            }
            self.jitter += (d as f64 - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.jitter_clock = clock_rate;
    }

    fn update_seq(&mut self, seq: u16) {
        let Some(st) = &mut self.seq else {
            self.seq = Some(SeqState {
                base_seq: u64::from(seq),
                max_seq: seq,
                cycles: 0,
                bad_seq: None,
            });
            self.rtp_received = 1;
            return;
        };
        let delta = seq.wrapping_sub(st.max_seq);
        if delta < MAX_DROPOUT {
            if seq < st.max_seq {
                st.cycles += SEQ_MOD;
            }
            st.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            // A very large jump: a restarted sender, or a stray packet.
            if st.bad_seq == Some(seq) {
                // Two in a row: the sender restarted. Start counting afresh.
                *st = SeqState {
                    base_seq: u64::from(seq),
                    max_seq: seq,
                    cycles: 0,
                    bad_seq: None,
                };
                self.rtp_received = 1;
            } else {
                st.bad_seq = Some(seq.wrapping_add(1));
            }
            return;
        }
        // else: duplicate or late packet, counted below.
        self.rtp_received += 1;
    }

    pub fn snapshot(&self) -> StreamSnapshot {
        let (expected, lost) = match &self.seq {
            Some(st) => {
                let expected = (st.cycles + u64::from(st.max_seq) + 1).saturating_sub(st.base_seq);
                (expected, expected as i64 - self.rtp_received as i64)
            }
            None => (0, 0),
        };
        let jitter_ms = if self.jitter_clock > 0 {
            self.jitter / f64::from(self.jitter_clock) * 1000.0
        } else {
            0.0
        };
        StreamSnapshot {
            packets: self.packets,
            bytes: self.bytes,
            forwarded: self.forwarded,
            dropped: self.dropped,
            expected,
            lost,
            jitter_ms,
        }
    }
}

/// Everything the worker counts per stream and per receiver, at one moment.
#[derive(Debug, Clone, Default)]
pub struct MediaSnapshot {
    /// By SSRC, for every stream with a forwarding entry.
    pub streams: HashMap<u32, StreamSnapshot>,
    /// RTP packets and bytes delivered to each bound address.
    pub delivered: HashMap<SocketAddr, Delivered>,
    pub taken_at: Option<Instant>,
}

/// What the router sent to one receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub packets: u64,
    pub bytes: u64,
}

/// A request for a [`MediaSnapshot`], answered by the worker between batches.
pub type StatsRequest = tokio::sync::oneshot::Sender<MediaSnapshot>;

/// Asks the media workers for their statistics.
#[derive(Clone)]
pub struct MediaStatsHandle(std::sync::Arc<[std::sync::mpsc::Sender<StatsRequest>]>);

impl MediaStatsHandle {
    pub fn new(workers: std::sync::Arc<[std::sync::mpsc::Sender<StatsRequest>]>) -> Self {
        Self(workers)
    }

    /// Every worker's statistics, merged (each answers between batches,
    /// within [`super::POLL_INTERVAL`]); `None` once a worker has stopped.
    pub async fn snapshot(&self) -> Option<MediaSnapshot> {
        let mut waiting = Vec::with_capacity(self.0.len());
        for worker in self.0.iter() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            worker.send(tx).ok()?;
            waiting.push(rx);
        }
        let mut merged = MediaSnapshot::default();
        for rx in waiting {
            let part = rx.await.ok()?;
            merged.streams.extend(part.streams);
            for (addr, d) in part.delivered {
                let t = merged.delivered.entry(addr).or_default();
                t.packets += d.packets;
                t.bytes += d.bytes;
            }
            merged.taken_at = merged.taken_at.max(part.taken_at);
        }
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u16]) -> StreamSnapshot {
        let mut s = StreamStats::default();
        for (i, &q) in seqs.iter().enumerate() {
            s.rtp(q, (i as u32) * 960, i as f64 * 0.02, 48_000);
        }
        s.snapshot()
    }

    #[test]
    fn counts_loss_across_the_sequence_wrap() {
        let mut seqs: Vec<u16> = (65_500..=65_535).collect();
        seqs.extend(0..100);
        seqs.retain(|q| *q != 10 && *q != 65_530);
        let s = feed(&seqs);
        assert_eq!(s.expected, 136);
        assert_eq!(s.lost, 2);
    }

    #[test]
    fn late_and_duplicate_packets_are_not_loss() {
        let s = feed(&[1, 2, 4, 3, 5, 5, 6]);
        assert_eq!(s.expected, 6);
        assert_eq!(s.lost, -1, "a duplicate counts as received, as in RFC 3550");
    }

    #[test]
    fn a_restart_resynchronises_after_two_packets() {
        let s = feed(&[1, 2, 3, 40_000, 40_001, 40_002]);
        assert_eq!((s.expected, s.lost), (2, 0));
        // One stray packet far away is ignored.
        let s = feed(&[1, 2, 30_000, 3, 4]);
        assert_eq!((s.expected, s.lost), (4, 0));
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_variation() {
        let mut s = StreamStats::default();
        for i in 0..200u32 {
            s.rtp(i as u16, i * 960, f64::from(i) * 0.02, 48_000);
        }
        assert!(s.snapshot().jitter_ms < 0.01, "{:?}", s.snapshot());
        let mut s = StreamStats::default();
        for i in 0..2000u32 {
            // Every other packet arrives 10 ms late: |D| = 10 ms each time,
            // so A.8 converges on 10 ms.
            let late = if i % 2 == 1 { 0.010 } else { 0.0 };
            s.rtp(i as u16, i * 960, f64::from(i) * 0.02 + late, 48_000);
        }
        let j = s.snapshot().jitter_ms;
        assert!((j - 10.0).abs() < 0.5, "jitter {j} ms");
    }

    #[test]
    fn timestamp_wrap_does_not_spike_jitter() {
        let mut s = StreamStats::default();
        let start = u32::MAX - 960 * 50;
        for i in 0..100u32 {
            s.rtp(
                i as u16,
                start.wrapping_add(i * 960),
                f64::from(i) * 0.02,
                48_000,
            );
        }
        assert!(s.snapshot().jitter_ms < 0.01, "{:?}", s.snapshot());
    }

    #[test]
    fn forwarded_and_dropped_are_counted_per_packet() {
        let mut s = StreamStats::default();
        s.count(100, 3);
        s.count(50, 0);
        let snap = s.snapshot();
        assert_eq!(
            (snap.packets, snap.bytes, snap.forwarded, snap.dropped),
            (2, 150, 3, 1)
        );
    }
}
