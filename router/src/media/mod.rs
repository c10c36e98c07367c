//! The media worker: one thread, one UDP socket, one forwarding table.
//!
//! For every datagram it reads the table (SSRC → source address and
//! receivers) without asking the engine, checks that the SSRC belongs to the
//! address it came from, and queues one copy per receiver; each batch goes out
//! with `sendmmsg`. Receivers are usually a room's **group** (every bound
//! member but the sender), kept here by one-address changes, so a join costs
//! the table one entry whatever the room's size. STUN Binding Requests are parsed here and handed to the
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
use proto::media::{PacketKind, classify, parse_binding_request, rtcp_sources, rtp_header};
use rustc_hash::FxHashMap;

use crate::engine::{Fanout, GroupId, Input, MediaCommand, Route, WorkerId};
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
    /// Longer than the 1,500 bytes a media datagram may have.
    pub dropped_oversize: AtomicU64,
    /// Audio in another codec than its room's, where seed clients are.
    pub dropped_wrong_codec: AtomicU64,
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
    pub dropped_oversize: u64,
    pub dropped_wrong_codec: u64,
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
            dropped_oversize: l(&self.dropped_oversize),
            dropped_wrong_codec: l(&self.dropped_wrong_codec),
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
    oversize: u64,
    wrong_codec: u64,
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
    /// RTP forwarded under a [`Fanout::List`] route: every address of the
    /// list got each of these packets, so one counter serves all receivers.
    sent_under_route: Delivered,
    /// Its sender was told its payload type is not the route's.
    told_wrong_codec: bool,
}

/// One member address of a group, with the RTP it was sent through it.
struct GroupMember {
    addr: SocketAddr,
    delivered: Delivered,
}

/// A room's bound members at this worker.
#[derive(Default)]
struct Group {
    members: Vec<GroupMember>,
    index: FxHashMap<SocketAddr, usize>,
}

impl Group {
    fn add(&mut self, addr: SocketAddr) {
        if self.index.contains_key(&addr) {
            return;
        }
        self.index.insert(addr, self.members.len());
        self.members.push(GroupMember {
            addr,
            delivered: Delivered::default(),
        });
    }

    /// Removes `addr`, returning what it was delivered.
    fn remove(&mut self, addr: &SocketAddr) -> Option<Delivered> {
        let i = self.index.remove(addr)?;
        let gone = self.members.swap_remove(i);
        if let Some(moved) = self.members.get(i) {
            self.index.insert(moved.addr, i);
        }
        Some(gone.delivered)
    }
}

/// One media worker.
pub struct Worker<E: EngineSink> {
    id: WorkerId,
    socket: UdpSocket,
    table: FxHashMap<u32, Entry>,
    groups: FxHashMap<GroupId, Group>,
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
    /// The sources of the RTCP packet being checked (kept between packets).
    rtcp_sources: Vec<u32>,
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
            groups: FxHashMap::default(),
            bound: FxHashMap::default(),
            delivered: FxHashMap::default(),
            commands,
            stats_requests,
            engine,
            counters,
            stop,
            epoch: Instant::now(),
            rtcp_sources: Vec::new(),
        }
    }

    /// Adds `d` to what `to` was delivered, if it is still bound.
    fn credit(&mut self, to: SocketAddr, d: Delivered) {
        if d.packets > 0 && self.bound.contains_key(&to) {
            let t = self.delivered.entry(to).or_default();
            t.packets += d.packets;
            t.bytes += d.bytes;
        }
    }

    /// Moves a list route's per-receiver counts into the per-address totals
    /// (group members count their own).
    fn fold_delivered(&mut self, entry: &Entry) {
        if let Fanout::List(list) = &entry.route.media {
            for to in list.iter() {
                self.credit(*to, entry.sent_under_route);
            }
        }
    }

    fn snapshot(&self) -> MediaSnapshot {
        let mut delivered: std::collections::HashMap<SocketAddr, Delivered> =
            self.delivered.iter().map(|(a, d)| (*a, *d)).collect();
        let mut add = |to: SocketAddr, d: Delivered| {
            let t = delivered.entry(to).or_default();
            t.packets += d.packets;
            t.bytes += d.bytes;
        };
        for e in self.table.values() {
            if let Fanout::List(list) = &e.route.media {
                for to in list.iter() {
                    add(*to, e.sent_under_route);
                }
            }
        }
        for g in self.groups.values() {
            for m in &g.members {
                add(m.addr, m.delivered);
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
                        told_wrong_codec: false,
                    };
                    self.table.insert(ssrc, entry);
                }
                Ok(MediaCommand::RemoveRoute { ssrc }) => {
                    if let Some(old) = self.table.remove(&ssrc) {
                        self.fold_delivered(&old);
                    }
                }
                Ok(MediaCommand::GroupAdd { group, addr }) => {
                    self.groups.entry(group).or_default().add(addr);
                }
                Ok(MediaCommand::GroupRemove { group, addr }) => {
                    let mut gone = None;
                    if let Some(g) = self.groups.get_mut(&group) {
                        gone = g.remove(&addr);
                        if g.members.is_empty() {
                            self.groups.remove(&group);
                        }
                    }
                    if let Some(d) = gone {
                        self.credit(addr, d);
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
                if batch.is_truncated(i) {
                    t.oversize += 1;
                    continue;
                }
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
            add(&c.dropped_oversize, t.oversize);
            add(&c.dropped_wrong_codec, t.wrong_codec);
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
            PacketKind::Rtcp => {
                // Every source the compound claims must be the sender's
                // own: a BYE, SDES or feedback further on may not speak
                // for another member.
                let sources = &mut self.rtcp_sources;
                if !rtcp_sources(data, sources) {
                    (None, None)
                } else if sources
                    .iter()
                    .all(|s| self.table.get(s).is_some_and(|e| e.route.source == from))
                {
                    (sources.first().copied(), None)
                } else {
                    if self.bound.contains_key(&from) {
                        t.foreign += 1;
                    } else {
                        t.unbound += 1;
                    }
                    return;
                }
            }
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
                if let (Some(h), Some(pt)) = (rtp, e.route.payload_type)
                    && h.payload_type != pt
                {
                    t.wrong_codec += 1;
                    if !e.told_wrong_codec {
                        e.told_wrong_codec = true;
                        let _ = self.engine.try_send(Input::WrongCodec {
                            worker: self.id,
                            from,
                            payload_type: h.payload_type,
                        });
                    }
                    return;
                }
                let is_rtp = rtp.is_some();
                if let Some(h) = rtp {
                    e.stats.rtp(h.seq, h.timestamp, arrival, e.route.clock_rate);
                }
                let fanout = if is_rtp {
                    &e.route.media
                } else {
                    &e.route.rtcp
                };
                let before = out.len();
                let len = data.len() as u64;
                match fanout {
                    Fanout::Nobody => {}
                    Fanout::List(list) => {
                        out.extend(list.iter().map(|to| (i, *to)));
                        if is_rtp && !list.is_empty() {
                            e.sent_under_route.packets += 1;
                            e.sent_under_route.bytes += len;
                        }
                    }
                    Fanout::Group(g) => {
                        if let Some(g) = self.groups.get_mut(g) {
                            for m in &mut g.members {
                                if m.addr != from {
                                    out.push((i, m.addr));
                                    if is_rtp {
                                        m.delivered.packets += 1;
                                        m.delivered.bytes += len;
                                    }
                                }
                            }
                        }
                    }
                }
                let copies = out.len() - before;
                e.stats.count(data.len(), copies);
                if copies == 0 {
                    t.not_routed += 1;
                    return;
                }
                t.forwarded += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_group_keeps_its_index_right_through_adds_and_removes() {
        let mut g = Group::default();
        let mut model: Vec<SocketAddr> = Vec::new();
        // A seeded walk of adds and removes, checked against a plain list.
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let addr = a(1000 + (x >> 16) as u16 % 64);
            if (x >> 8) & 1 == 0 {
                g.add(addr);
                if !model.contains(&addr) {
                    model.push(addr);
                }
            } else {
                let was = model.contains(&addr);
                assert_eq!(g.remove(&addr).is_some(), was);
                model.retain(|m| *m != addr);
            }
            assert_eq!(g.members.len(), model.len());
            for (i, m) in g.members.iter().enumerate() {
                assert_eq!(g.index.get(&m.addr), Some(&i));
                assert!(model.contains(&m.addr));
            }
        }
    }
}
