//! The data plane of the load: one thread sends every participant's RTP
//! from its own UDP socket, paced (or as fast as it can); receiver threads
//! wait on all the sockets with epoll (mio) and read each with `recvmmsg`.
//!
//! Every packet carries its send time (µs of `CLOCK_REALTIME`, taken just
//! before the send call) and a sequence number in the payload
//! ([`client::SyntheticTalker`]). Latency is measured to the kernel's
//! receive timestamp of the copy (`SO_TIMESTAMPNS`, the same clock): the
//! path through the relay, not how soon the generator's receiver thread
//! got round to that socket. Only
//! packets sent inside the measurement window count: senders tally what
//! they sent in it per room, receivers what arrived from it, so loss is
//! exact once the window has drained.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use router::media::mmsg::{self, RecvBatch, SendBatch};

/// One synthetic participant's media side.
pub(crate) struct Member {
    pub(crate) socket: UdpSocket,
    pub(crate) ssrc: u32,
    pub(crate) room: usize,
    /// Whether it sends (the floor holder in ptt, everyone in voice).
    pub(crate) sends: bool,
    /// Where it sends: its room's media port.
    pub(crate) server: SocketAddr,
}

/// State shared by the orchestrator and the traffic threads.
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    /// Window start and end, µs since `epoch` (`u64::MAX`: not yet).
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Packets sent and received so far (for progress).
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    /// µs since the Unix epoch, the clock of kernel receive timestamps.
    pub(crate) fn now_us(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }

    pub(crate) fn open_window(&self) {
        self.window_start.store(self.now_us(), Ordering::SeqCst);
    }

    pub(crate) fn close_window(&self) {
        self.window_end.store(self.now_us(), Ordering::SeqCst);
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start.load(Ordering::Relaxed)
            && t < self.window_end.load(Ordering::Relaxed)
    }
}

/// What the sender thread reports.
#[derive(Debug, Default, Clone)]
pub(crate) struct SendTally {
    /// Packets sent inside the window, by room.
    pub(crate) in_window: Vec<u64>,
    /// Sends the kernel refused (e.g. a full socket buffer).
    pub(crate) failed: u64,
    /// Sends skipped because the thread fell more than 100 ms behind.
    pub(crate) skipped: u64,
}

/// How fast each sender sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Packets per second per sender, spread evenly over the period.
    Rate(u32),
    /// As fast as the thread can, batches of 32 per sender.
    Blast,
}

/// Sends for every member with `sends` until `shared.stop`.
pub(crate) fn spawn_sender(
    members: Vec<Member>,
    rooms: usize,
    pace: Pace,
    payload: usize,
    shared: Arc<Shared>,
) -> std::thread::JoinHandle<SendTally> {
    std::thread::Builder::new()
        .name("load-send".into())
        .spawn(move || match pace {
            Pace::Rate(rate) => paced(&members, rooms, rate, payload, &shared),
            Pace::Blast => blast(&members, rooms, payload, &shared),
        })
        .unwrap_or_else(|e| panic!("sender thread: {e}"))
}

fn paced(
    members: &[Member],
    rooms: usize,
    rate: u32,
    payload: usize,
    shared: &Shared,
) -> SendTally {
    let mut tally = SendTally {
        in_window: vec![0; rooms],
        ..SendTally::default()
    };
    let n = members.len().max(1) as u64;
    let period = 1_000_000 / u64::from(rate.max(1));
    let start = shared.now_us();
    // Senders are spread over the period, as unsynchronised clients are.
    let mut due: Vec<u64> = (0..n).map(|i| start + i * period / n).collect();
    let mut talkers: Vec<client::SyntheticTalker> = members
        .iter()
        .map(|_| client::SyntheticTalker::new(rate, payload))
        .collect();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = shared.now_us();
        let mut next = now + 2_000;
        for (i, m) in members.iter().enumerate() {
            if now > due[i] + 100_000 {
                // Stalled (descheduled): skip ahead rather than burst.
                let behind = (now - due[i]) / period;
                tally.skipped += behind;
                due[i] += behind * period;
            }
            while due[i] <= now {
                let stamp = shared.now_us();
                let p = talkers[i].next_packet(m.ssrc, stamp);
                match m.socket.send_to(&p, m.server) {
                    Ok(_) => {
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                        if shared.in_window(stamp) {
                            tally.in_window[m.room] += 1;
                        }
                    }
                    Err(_) => tally.failed += 1,
                }
                due[i] += period;
            }
            next = next.min(due[i]);
        }
        let now = shared.now_us();
        if next > now {
            std::thread::sleep(Duration::from_micros(next - now));
        }
    }
    tally
}

fn blast(members: &[Member], rooms: usize, payload: usize, shared: &Shared) -> SendTally {
    const PER_TURN: usize = 32;
    let mut tally = SendTally {
        in_window: vec![0; rooms],
        ..SendTally::default()
    };
    let mut talkers: Vec<client::SyntheticTalker> = members
        .iter()
        .map(|_| client::SyntheticTalker::new(50, payload))
        .collect();
    let mut sb = SendBatch::new();
    let mut pkts: Vec<Vec<u8>> = Vec::with_capacity(PER_TURN);
    while !shared.stop.load(Ordering::Relaxed) {
        for (i, m) in members.iter().enumerate() {
            let stamp = shared.now_us();
            pkts.clear();
            pkts.extend((0..PER_TURN).map(|_| talkers[i].next_packet(m.ssrc, stamp)));
            let sent = sb.send(&m.socket, pkts.iter().map(|p| (p.as_slice(), m.server)));
            shared.sent.fetch_add(sent as u64, Ordering::Relaxed);
            tally.failed += (PER_TURN - sent) as u64;
            if shared.in_window(stamp) {
                tally.in_window[m.room] += sent as u64;
            }
        }
    }
    tally
}

/// What a receiver thread reports.
pub(crate) struct RecvTally {
    /// Packets sent inside the window that arrived.
    pub(crate) in_window: u64,
    /// Send call to the kernel's receipt at the receiver socket, µs.
    pub(crate) latency: Histogram<u64>,
    /// Packets without a kernel timestamp (timed on reading instead).
    pub(crate) unstamped: u64,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

/// Reads every socket until `shared.stop`.
pub(crate) fn spawn_receiver(
    sockets: Vec<UdpSocket>,
    shared: Arc<Shared>,
    name: String,
) -> std::thread::JoinHandle<anyhow::Result<RecvTally>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || receive(sockets, &shared))
        .unwrap_or_else(|e| panic!("receiver thread: {e}"))
}

fn receive(sockets: Vec<UdpSocket>, shared: &Shared) -> anyhow::Result<RecvTally> {
    use mio::unix::SourceFd;
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new()?;
    for (i, s) in sockets.iter().enumerate() {
        s.set_nonblocking(true)?;
        mmsg::enable_timestamps(s)?;
        let fd = s.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut batch = RecvBatch::with_timestamps(mmsg::BATCH);
    let mut tally = RecvTally {
        in_window: 0,
        latency: new_histogram(),
        unstamped: 0,
    };
    while !shared.stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        let mut got = 0u64;
        for ev in events.iter() {
            let Some(sock) = sockets.get(ev.token().0) else {
                continue;
            };
            // Edge-triggered: read until a call returns less than a batch.
            loop {
                let n = batch.recv(sock).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got += n as u64;
                let now = shared.now_us();
                for i in 0..n {
                    let Some(sent) = sent_us(batch.data(i)) else {
                        continue;
                    };
                    if shared.in_window(sent) {
                        tally.in_window += 1;
                        let at = match batch.timestamp(i) {
                            Some(t) => t.as_micros() as u64,
                            None => {
                                tally.unstamped += 1;
                                now
                            }
                        };
                        let _ = tally.latency.record(at.saturating_sub(sent).max(1));
                    }
                }
                if n < mmsg::BATCH {
                    break;
                }
            }
        }
        if got > 0 {
            shared.received.fetch_add(got, Ordering::Relaxed);
        }
    }
    Ok(tally)
}

/// The send time a [`client::SyntheticTalker`] put in the payload.
pub(crate) fn sent_us(datagram: &[u8]) -> Option<u64> {
    let p = rtp_types::RtpPacket::parse(datagram).ok()?;
    let b: [u8; 8] = p.payload().get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let b = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        (a, b)
    }

    #[test]
    fn the_send_time_round_trips() {
        let mut t = client::SyntheticTalker::new(50, 160);
        let p = t.next_packet(7, 123_456_789);
        assert_eq!(sent_us(&p), Some(123_456_789));
        assert_eq!(sent_us(&[0x80, 0, 0]), None);
    }

    /// Paced senders straight to receivers (no relay): every packet sent in
    /// the window is counted once at each end, at the configured rate.
    #[test]
    fn paced_traffic_is_counted_exactly() {
        let shared = Shared::new();
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for room in 0..4 {
            let (a, b) = pair();
            let to = b.local_addr().unwrap_or_else(|e| panic!("{e}"));
            senders.push(Member {
                socket: a,
                ssrc: room as u32 + 1,
                room,
                sends: true,
                server: to,
            });
            receivers.push(b);
        }
        let rx = spawn_receiver(receivers, shared.clone(), "t-recv".into());
        let tx = spawn_sender(senders, 4, Pace::Rate(100), 160, shared.clone());
        std::thread::sleep(Duration::from_millis(100));
        shared.open_window();
        std::thread::sleep(Duration::from_millis(500));
        shared.close_window();
        std::thread::sleep(Duration::from_millis(100));
        shared.stop.store(true, Ordering::SeqCst);
        let sent = tx.join().unwrap_or_else(|_| panic!("sender"));
        let got = match rx.join() {
            Ok(Ok(t)) => t,
            _ => panic!("receiver"),
        };
        let total: u64 = sent.in_window.iter().sum();
        // 4 senders × 100 pps × 0.5 s, give or take a tick at each edge.
        assert!((190..=210).contains(&total), "{sent:?}");
        assert_eq!(got.in_window, total);
        assert_eq!(got.latency.len(), total);
        assert!(got.latency.value_at_quantile(0.5) < 20_000);
        assert_eq!(got.unstamped, 0, "the kernel stamps every datagram");
    }
}
