//! The media worker: one thread, one UDP socket, one forwarding table.
//!
//! For every datagram it reads the table (SSRC → source address and
//! receivers) without asking the engine, checks that the SSRC belongs to the
//! address it came from, and queues one copy per receiver; each batch goes out
//! with `sendmmsg`. STUN Binding Requests are parsed here and handed to the
//! engine, which owns media tokens; its answers come back as
//! [`MediaCommand::Reply`]. Table changes arrive on a channel and are applied
//! between batches, before the packets of the batch are looked up.

pub mod mmsg;
pub mod stats;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use plugin_api::SessionId;
use proto::media::{PacketKind, classify, parse_binding_request, rtcp_sender_ssrc, rtp_header};
use rustc_hash::FxHashMap;

use crate::engine::{Input, MediaCommand, Route, WorkerId};
use stats::{Delivered, MediaSnapshot, StatsRequest, StreamStats};

/// Media counters, shared with the rest of the router.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// Datagrams read from the socket.
    pub received: AtomicU64,
    /// RTP/RTCP datagrams accepted for forwarding (before fan-out).
    pub forwarded: AtomicU64,
    /// Datagrams written to receivers (after fan-out).
    pub sent: AtomicU64,
    /// From an address no session has bound.
    pub dropped_unbound: AtomicU64,
    /// With an SSRC that is not the sender's (or belongs to nobody).
    pub dropped_foreign_ssrc: AtomicU64,
    /// Valid, but the room's rules forward it to nobody (e.g. not the floor holder).
    pub dropped_not_routed: AtomicU64,
    /// Not STUN, RTP or RTCP, or malformed.
    pub dropped_malformed: AtomicU64,
    /// STUN Binding Requests passed to the engine.
    pub stun_requests: AtomicU64,
    /// STUN requests dropped because the engine was busy.
    pub stun_dropped: AtomicU64,
}

/// A plain copy of [`MediaCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub received: u64,
    pub forwarded: u64,
    pub sent: u64,
    pub dropped_unbound: u64,
    pub dropped_foreign_ssrc: u64,
    pub dropped_not_routed: u64,
    pub dropped_malformed: u64,
    pub stun_requests: u64,
    pub stun_dropped: u64,
}

impl MediaCounters {
    pub fn snapshot(&self) -> MediaStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MediaStats {
            received: l(&self.received),
            forwarded: l(&self.forwarded),
            sent: l(&self.sent),
            dropped_unbound: l(&self.dropped_unbound),
            dropped_foreign_ssrc: l(&self.dropped_foreign_ssrc),
            dropped_not_routed: l(&self.dropped_not_routed),
            dropped_malformed: l(&self.dropped_malformed),
            stun_requests: l(&self.stun_requests),
            stun_dropped: l(&self.stun_dropped),
        }
    }
}

/// Per-batch tallies, added to the shared counters once per batch.
#[derive(Default)]
struct Tally {
    forwarded: u64,
    unbound: u64,
    foreign: u64,
    not_routed: u64,
    malformed: u64,
    stun: u64,
    stun_dropped: u64,
}

/// Sends inputs to the engine without blocking the media thread.
pub trait EngineSink: Send + 'static {
    /// `false` when the engine cannot take it now (the input is dropped).
    fn try_send(&self, input: Input) -> bool;
}

/// STUN requests travel on their own bounded channel, so a flood of them is
/// dropped (and counted) here instead of delaying control messages.
impl EngineSink for tokio::sync::mpsc::Sender<Input> {
    fn try_send(&self, input: Input) -> bool {
        tokio::sync::mpsc::Sender::try_send(self, input).is_ok()
    }
}

/// One forwarding entry with its statistics.
struct Entry {
    route: Route,
    stats: StreamStats,
    /// RTP forwarded under this route: every address of `route.media` got
    /// each of these packets, so one counter serves all receivers.
    sent_under_route: Delivered,
}

/// One media worker.
pub struct Worker<E: EngineSink> {
    id: WorkerId,
    socket: UdpSocket,
    table: FxHashMap<u32, Entry>,
    bound: FxHashMap<SocketAddr, SessionId>,
    /// RTP delivered to each bound address under routes that have changed
    /// since (the live part is in each [`Entry`]).
    delivered: FxHashMap<SocketAddr, Delivered>,
    commands: Receiver<MediaCommand>,
    stats_requests: Receiver<StatsRequest>,
    engine: E,
    counters: Arc<MediaCounters>,
    stop: Arc<AtomicBool>,
    /// Origin of arrival times for jitter.
    epoch: Instant,
}

/// How long a worker blocks in `recvmmsg` before checking for shutdown.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl<E: EngineSink> Worker<E> {
    pub fn new(
        id: WorkerId,
        socket: UdpSocket,
        commands: Receiver<MediaCommand>,
        stats_requests: Receiver<StatsRequest>,
        engine: E,
        counters: Arc<MediaCounters>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            id,
            socket,
            table: FxHashMap::default(),
            bound: FxHashMap::default(),
            delivered: FxHashMap::default(),
            commands,
            stats_requests,
            engine,
            counters,
            stop,
            epoch: Instant::now(),
        }
    }

    /// Moves an entry's per-receiver counts into the per-address totals.
    fn fold_delivered(&mut self, entry: &Entry) {
        let d = entry.sent_under_route;
        if d.packets == 0 {
            return;
        }
        for to in entry.route.media.iter() {
            if self.bound.contains_key(to) {
                let t = self.delivered.entry(*to).or_default();
                t.packets += d.packets;
                t.bytes += d.bytes;
            }
        }
    }

    fn snapshot(&self) -> MediaSnapshot {
        let mut delivered: std::collections::HashMap<SocketAddr, Delivered> =
            self.delivered.iter().map(|(a, d)| (*a, *d)).collect();
        for e in self.table.values() {
            for to in e.route.media.iter() {
                let t = delivered.entry(*to).or_default();
                t.packets += e.sent_under_route.packets;
                t.bytes += e.sent_under_route.bytes;
            }
        }
        MediaSnapshot {
            streams: self
                .table
                .iter()
                .map(|(ssrc, e)| (*ssrc, e.stats.snapshot()))
                .collect(),
            delivered,
            taken_at: Some(Instant::now()),
        }
    }

    /// Applies queued table changes; returns false once the engine is gone.
    fn apply_commands(&mut self, sends: &mut mmsg::SendBatch) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(MediaCommand::SetRoute { ssrc, route }) => {
                    // Same stream with new receivers keeps its statistics.
                    let mut stats = StreamStats::default();
                    if let Some(old) = self.table.remove(&ssrc) {
                        self.fold_delivered(&old);
                        if old.route.source == route.source {
                            stats = old.stats;
                        }
                    }
                    let entry = Entry {
                        route,
                        stats,
                        sent_under_route: Delivered::default(),
                    };
                    self.table.insert(ssrc, entry);
                }
                Ok(MediaCommand::RemoveRoute { ssrc }) => {
                    if let Some(old) = self.table.remove(&ssrc) {
                        self.fold_delivered(&old);
                    }
                }
                Ok(MediaCommand::Bind { addr, session }) => {
                    self.bound.insert(addr, session);
                }
                Ok(MediaCommand::Unbind { addr }) => {
                    self.bound.remove(&addr);
                    self.delivered.remove(&addr);
                }
                Ok(MediaCommand::Reply { to, bytes }) => {
                    sends.send(&self.socket, std::iter::once((bytes.as_slice(), to)));
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Runs until told to stop or the engine goes away.
    pub fn run(mut self) {
        let mut batch = mmsg::RecvBatch::new(mmsg::BATCH);
        let mut sends = mmsg::SendBatch::new();
        let mut out: Vec<(usize, SocketAddr)> = Vec::with_capacity(mmsg::BATCH * 16);
        while !self.stop.load(Ordering::Relaxed) {
            let n = match batch.recv(&self.socket) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    0
                }
                Err(e) => {
                    // ECONNREFUSED from an earlier send's ICMP, and the like:
                    // not fatal for a UDP server.
                    tracing::trace!(error = %e, "media recv");
                    0
                }
            };
            if !self.apply_commands(&mut sends) {
                break;
            }
            while let Ok(reply) = self.stats_requests.try_recv() {
                let _ = reply.send(self.snapshot());
            }
            if n == 0 {
                continue;
            }
            self.counters
                .received
                .fetch_add(n as u64, Ordering::Relaxed);
            out.clear();
            let mut t = Tally::default();
            let arrival = self.epoch.elapsed().as_secs_f64();
            for i in 0..n {
                let (data, from) = batch.get(i);
                let Some(from) = from else {
                    t.malformed += 1;
                    continue;
                };
                self.route_one(data, from, i, arrival, &mut out, &mut t);
            }
            if !out.is_empty() {
                let sent = sends.send(&self.socket, out.iter().map(|&(i, to)| (batch.data(i), to)));
                self.counters.sent.fetch_add(sent as u64, Ordering::Relaxed);
            }
            let c = &self.counters;
            let add = |a: &AtomicU64, v: u64| {
                if v > 0 {
                    a.fetch_add(v, Ordering::Relaxed);
                }
            };
            add(&c.forwarded, t.forwarded);
            add(&c.dropped_unbound, t.unbound);
            add(&c.dropped_foreign_ssrc, t.foreign);
            add(&c.dropped_not_routed, t.not_routed);
            add(&c.dropped_malformed, t.malformed);
            add(&c.stun_requests, t.stun);
            add(&c.stun_dropped, t.stun_dropped);
        }
    }

    #[inline]
    fn route_one(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        i: usize,
        arrival: f64,
        out: &mut Vec<(usize, SocketAddr)>,
        t: &mut Tally,
    ) {
        let kind = classify(data);
        if kind == PacketKind::Stun {
            match parse_binding_request(data) {
                Ok(req) => {
                    t.stun += 1;
                    let input = Input::StunBinding {
                        worker: self.id,
                        from,
                        username: req.username,
                        request: data.to_vec(),
                    };
                    if !self.engine.try_send(input) {
                        t.stun_dropped += 1;
                    }
                }
                Err(_) => t.malformed += 1,
            }
            return;
        }
        // Classified once above; parse only as what the first bytes say.
        let (ssrc, rtp) = match kind {
            PacketKind::Rtp => match rtp_header(data) {
                Some(h) => (Some(h.ssrc), Some(h)),
                None => (None, None),
            },
            PacketKind::Rtcp => (rtcp_sender_ssrc(data), None),
            _ => (None, None),
        };
        let Some(ssrc) = ssrc else {
            if self.bound.contains_key(&from) {
                t.malformed += 1;
            } else {
                t.unbound += 1;
            }
            return;
        };
        match self.table.get_mut(&ssrc) {
            Some(e) if e.route.source == from => {
                let targets = if let Some(h) = rtp {
                    e.stats.rtp(h.seq, h.timestamp, arrival, e.route.clock_rate);
                    if !e.route.media.is_empty() {
                        e.sent_under_route.packets += 1;
                        e.sent_under_route.bytes += data.len() as u64;
                    }
                    &e.route.media
                } else {
                    &e.route.rtcp
                };
                e.stats.count(data.len(), targets.len());
                if targets.is_empty() {
                    t.not_routed += 1;
                    return;
                }
                t.forwarded += 1;
                out.extend(targets.iter().map(|to| (i, *to)));
            }
            _ => {
                // Slow path only: tell "who are you" from "not your SSRC".
                if self.bound.contains_key(&from) {
                    t.foreign += 1;
                } else {
                    t.unbound += 1;
                }
            }
        }
    }
}
