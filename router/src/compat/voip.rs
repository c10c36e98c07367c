//! Seed 001, VoIP calls (docs/compat.md): one request per TCP connection
//! (`HELLO` + 4-byte big-endian UDP port + the target's IP as ASCII,
//! `HEARTBEAT`, `DISCONNECT`), answered `WELCOME` / `FULL` / `INVALID` /
//! `TIMEOUT` / `ALIVE` / `BYE` before the server closes; clients are known by
//! their IP. A registration is a session of its own, in a two-person voice
//! room for the pair (client, target), made when the first of the two
//! registers and closed when both have left. Audio: a 4-byte big-endian
//! sequence number + exactly 1,764 bytes (882 samples at 44.1 kHz), the
//! sequence consecutive per receiver, and one end-of-transmission datagram
//! (sequence 99999999, 1,764 zero bytes) when the peer stops.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugin_api::Notice;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{Instrument, info_span};

use super::gateway::{Leg, Rechunk, SEED_DATAGRAM};
use super::{Bound, Context, Link, ended};
use crate::driver::engine_task::call_engine;
use crate::engine::{Command, RoomSpec, SessionCommand, SessionNotice, Told};

/// Samples in one seed datagram: 882 at 44.1 kHz, 20 ms.
pub const FRAME_SAMPLES: usize = 882;
pub const FRAME_BYTES: usize = FRAME_SAMPLES * 2;
/// The sequence number that marks the end of a transmission.
pub const EOT: u32 = 99_999_999;

/// Registered clients at most; the next gets `FULL` (as the original).
pub const MAX_CLIENTS: usize = 10;
/// A request must arrive within this, or it gets `TIMEOUT`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest request; anything longer is `INVALID`.
pub const MAX_REQUEST_BYTES: usize = 64;
/// Requests answered at once; connections beyond wait to be accepted.
pub const MAX_PENDING_REQUESTS: usize = 64;

/// How long a reply and the close after it may take.
const LINGER: Duration = Duration::from_secs(5);
/// Bytes read and dropped after the reply, waiting for the client's close.
const MAX_DRAIN_BYTES: usize = 1 << 20;

/// After a request's first bytes, how long more may follow (the client
/// writes a request at once, but TCP may split it).
const GATHER: Duration = Duration::from_millis(50);
/// Without audio from the peer for this long, it has stopped: the rest of
/// a frame is sent padded with silence, then EOT.
const STOPPED: Duration = Duration::from_millis(150);
/// Frames a receiver's audio waits at most (100 ms).
const MAX_FRAMES: usize = 5;

/// One request, as the seed's client writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Hello {
        port: u16,
        target: IpAddr,
    },
    Heartbeat,
    Disconnect,
    /// Too short, unknown, or a HELLO with a bad port or target.
    Invalid,
    /// Nothing within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The client closed without a byte.
    Closed,
}

/// A whole request's bytes (NULs and whitespace at the end are ignored).
pub fn parse(raw: &[u8]) -> Request {
    let end = raw
        .iter()
        .rposition(|b| !(b.is_ascii_whitespace() || *b == 0))
        .map_or(0, |i| i + 1);
    let raw = &raw[..end];
    if raw == b"HEARTBEAT" {
        return Request::Heartbeat;
    }
    if raw == b"DISCONNECT" {
        return Request::Disconnect;
    }
    let Some(rest) = raw.strip_prefix(b"HELLO") else {
        return Request::Invalid;
    };
    if rest.len() < 4 + 1 {
        return Request::Invalid;
    }
    let port = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let target = std::str::from_utf8(&rest[4..]).ok().and_then(|t| {
        t.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .parse()
            .ok()
    });
    match (u16::try_from(port), target) {
        (Ok(port @ 1..), Some(target)) => Request::Hello { port, target },
        _ => Request::Invalid,
    }
}

/// Whether `raw` could still become a whole request with more bytes.
fn incomplete(raw: &[u8]) -> bool {
    let words: [&[u8]; 3] = [b"HEARTBEAT", b"DISCONNECT", b"HELLO"];
    words
        .iter()
        .any(|w| w.len() > raw.len() && w.starts_with(raw))
}

/// Reads one request: waits up to `timeout` for its first bytes, then
/// gathers what follows until the client pauses, closes, or has sent more
/// than a request can be.
pub async fn read_request<R: AsyncRead + Unpin>(rd: &mut R, timeout: Duration) -> Request {
    let mut buf = Vec::with_capacity(MAX_REQUEST_BYTES + 1);
    let mut chunk = [0u8; 256];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let wait = if buf.is_empty() || incomplete(&buf) {
            deadline
        } else {
            // HEARTBEAT and DISCONNECT are whole at once; a HELLO's target
            // may go on.
            match parse(&buf) {
                Request::Heartbeat | Request::Disconnect => return parse(&buf),
                _ => (tokio::time::Instant::now() + GATHER).min(deadline),
            }
        };
        match tokio::time::timeout_at(wait, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return Request::Closed,
            Ok(Ok(0)) | Ok(Err(_)) => return parse(&buf),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_REQUEST_BYTES {
                    return Request::Invalid;
                }
            }
            Err(_) if buf.is_empty() => return Request::Timeout,
            Err(_) => return parse(&buf),
        }
    }
}

/// One datagram to a client: its sequence number, then the audio.
pub fn datagram(seq: u32, pcm: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + pcm.len());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(pcm);
    d
}

/// The room of the call between `a` and `b`, whichever called.
pub fn call_room(a: IpAddr, b: IpAddr) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let name = format!("call-{lo}-{hi}").replace(':', "_");
    if name.chars().count() <= proto::control::ROOM_NAME_MAX_CHARS {
        return name;
    }
    // Two long IPv6 addresses: a digest of them (the same within a run,
    // which is all a call's room needs).
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (lo, hi).hash(&mut h);
    format!("call-{:016x}", h.finish())
}

/// What the request handler tells a registration.
#[derive(Debug)]
enum Order {
    Heartbeat,
    End,
}

/// A live registration, by its client's IP.
struct Registration {
    id: u64,
    port: u16,
    target: IpAddr,
    orders: mpsc::Sender<Order>,
    leg: Option<Arc<Leg>>,
    done: Option<oneshot::Receiver<()>>,
}

struct Front {
    codec: &'static proto::codec::Codec,
    media: Arc<UdpSocket>,
    clients: Mutex<HashMap<IpAddr, Registration>>,
    ids: AtomicU64,
}

pub async fn run(bound: Bound, ctx: Context) {
    let (config, listener, media) = bound.into_parts();
    let Some(media) = media else { return };
    let Some(codec) = proto::codec::audio(config.seed.codec()) else {
        return;
    };
    let front = Arc::new(Front {
        codec,
        media,
        clients: Mutex::new(HashMap::new()),
        ids: AtomicU64::new(1),
    });
    let media_task = tokio::spawn(media_in(front.clone()));
    let pending = Arc::new(Semaphore::new(MAX_PENDING_REQUESTS));
    let mut acceptor = crate::driver::accept::Acceptor::new(listener, "seed voip");
    loop {
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = acceptor.accept().await;
        let (front, ctx) = (front.clone(), ctx.clone());
        tokio::spawn(
            async move {
                request(stream, peer, front, ctx).await;
                drop(permit);
            }
            .instrument(info_span!("seed-voip", %peer)),
        );
        if media_task.is_finished() {
            return;
        }
    }
}

/// Clients' audio into their registration's leg, by source IP only (the
/// client sends from any port).
async fn media_in(front: Arc<Front>) {
    let mut buf = vec![0u8; SEED_DATAGRAM + 1];
    loop {
        let Ok((n, from)) = front.media.recv_from(&mut buf).await else {
            continue;
        };
        if n < 4 + 2 {
            continue;
        }
        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if seq == EOT {
            continue; // the receiver's side sees the pause and ends it
        }
        let leg = front
            .clients
            .lock()
            .ok()
            .and_then(|c| c.get(&from.ip()).and_then(|r| r.leg.clone()));
        if let Some(leg) = leg {
            leg.send_pcm(&buf[4..n], Instant::now());
        }
    }
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    front: Arc<Front>,
    ctx: Context,
) {
    let reply: &[u8] = match read_request(&mut stream, REQUEST_TIMEOUT).await {
        Request::Closed => return,
        Request::Timeout => b"TIMEOUT",
        Request::Invalid => b"INVALID",
        Request::Heartbeat => {
            let orders = front
                .clients
                .lock()
                .ok()
                .and_then(|c| c.get(&peer.ip()).map(|r| r.orders.clone()));
            match orders {
                Some(o) if o.send(Order::Heartbeat).await.is_ok() => b"ALIVE",
                _ => b"INVALID",
            }
        }
        Request::Disconnect => {
            end(&front, peer.ip()).await;
            b"BYE"
        }
        Request::Hello { port, target } => {
            if register(&front, &ctx, peer, port, target).await {
                b"WELCOME"
            } else {
                b"FULL"
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, async {
        stream.write_all(reply).await?;
        stream.shutdown().await?;
        // What the client still sends (an oversized request) is read and
        // dropped until it closes: closing with it unread would reset the
        // connection and could lose the reply.
        let mut sink = [0u8; 4096];
        let mut left = MAX_DRAIN_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

/// Ends `ip`'s registration, if any, and waits until it has left its room.
async fn end(front: &Front, ip: IpAddr) {
    let old = front.clients.lock().ok().and_then(|mut c| c.remove(&ip));
    if let Some(mut old) = old {
        let _ = old.orders.send(Order::End).await;
        if let Some(done) = old.done.take() {
            let _ = done.await;
        }
    }
}

/// Registers `peer`'s client (again): a session in its call's room. False
/// when the front-end or the router is full.
async fn register(
    front: &Arc<Front>,
    ctx: &Context,
    peer: SocketAddr,
    port: u16,
    target: IpAddr,
) -> bool {
    let ip = peer.ip();
    let same = front
        .clients
        .lock()
        .ok()
        .and_then(|c| c.get(&ip).map(|r| (r.port, r.target, r.orders.clone())));
    match same {
        // The same registration again: it is refreshed.
        Some((p, t, orders)) if p == port && t == target => {
            return orders.send(Order::Heartbeat).await.is_ok();
        }
        Some(_) => end(front, ip).await,
        None => {}
    }
    let (orders, rx) = mpsc::channel(8);
    let (ready_tx, ready) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let id = front.ids.fetch_add(1, Ordering::Relaxed);
    {
        let Ok(mut c) = front.clients.lock() else {
            return false;
        };
        if c.len() >= MAX_CLIENTS {
            return false;
        }
        c.insert(
            ip,
            Registration {
                id,
                port,
                target,
                orders,
                leg: None,
                done: Some(done),
            },
        );
    }
    let call = Call {
        id,
        client: SocketAddr::new(ip, port),
        target,
        peer,
    };
    tokio::spawn(
        call.run(front.clone(), ctx.clone(), rx, ready_tx, done_tx)
            .instrument(info_span!("seed-voip-call", %ip, %target)),
    );
    matches!(ready.await, Ok(true))
}

/// One registration's session.
struct Call {
    id: u64,
    /// Where its audio goes: (its IP, its registered port).
    client: SocketAddr,
    target: IpAddr,
    /// Its registering connection.
    peer: SocketAddr,
}

impl Call {
    async fn run(
        self,
        front: Arc<Front>,
        ctx: Context,
        mut orders: mpsc::Receiver<Order>,
        ready: oneshot::Sender<bool>,
        done: oneshot::Sender<()>,
    ) {
        let why = match self.enter(&front, &ctx).await {
            Some((link, leg, beat)) => {
                let _ = ready.send(true);
                self.serve(&front, &ctx, link, leg, beat, &mut orders).await
            }
            None => {
                let _ = ready.send(false);
                "it could not join its call's room"
            }
        };
        if let Ok(mut c) = front.clients.lock()
            && c.get(&self.client.ip()).is_some_and(|r| r.id == self.id)
        {
            c.remove(&self.client.ip());
        }
        let _ = done.send(());
        ended(why);
    }

    /// Makes the call's room if it is not there, joins it, binds the leg;
    /// answers the session, its leg and the router's heartbeat interval.
    async fn enter(&self, front: &Front, ctx: &Context) -> Option<(Link, Arc<Leg>, Duration)> {
        let room = call_room(self.client.ip(), self.target);
        let spec = RoomSpec {
            name: room.clone(),
            kind: "voice".into(),
            max_participants: 2,
            options: [("codec".to_owned(), serde_json::json!(front.codec.name))]
                .into_iter()
                .collect(),
        };
        // Made by whichever of the two registers first (the other finds it
        // there); a router at its room limit fails the join below.
        let _exists = call_engine(&ctx.engine, move |e, _| e.create_transient_room(spec)).await?;
        let link = Link::open(&ctx.engine, self.peer).await?;
        let nickname = self.client.ip().to_string();
        let (link, welcome, udp_port) = link.enter(self.peer, &nickname, &room).await.ok()?;
        let Some(leg) = ctx.leg(&link, &welcome, udp_port, front.codec).await else {
            link.close().await;
            return None;
        };
        let leg = Arc::new(leg);
        if let Ok(mut c) = front.clients.lock()
            && let Some(r) = c.get_mut(&self.client.ip()).filter(|r| r.id == self.id)
        {
            r.leg = Some(leg.clone());
        }
        Some((link, leg, welcome.heartbeat_interval))
    }

    async fn serve(
        &self,
        front: &Front,
        ctx: &Context,
        mut link: Link,
        leg: Arc<Leg>,
        beat: Duration,
        orders: &mut mpsc::Receiver<Order>,
    ) -> &'static str {
        let mut seq: u32 = 0;
        let mut frames = Rechunk::new(FRAME_BYTES, MAX_FRAMES);
        // When the peer's audio last came, while it talks.
        let mut talking: Option<tokio::time::Instant> = None;
        let lifetime = ctx.voip_registration_timeout;
        let mut expires = tokio::time::Instant::now() + lifetime;
        let mut heartbeat = tokio::time::interval(beat);
        let mut heard = vec![0u8; 2048];
        let send = |d: Vec<u8>| {
            let _ = front.media.try_send_to(&d, self.client);
        };
        let why = loop {
            let stop_at = talking.map(|t| t + STOPPED);
            tokio::select! {
                biased;
                o = orders.recv() => match o {
                    Some(Order::Heartbeat) => {
                        expires = tokio::time::Instant::now() + lifetime;
                    }
                    Some(Order::End) | None => break "it said DISCONNECT",
                },
                told = link.next() => {
                    let Some(told) = told else { break "closed by the router" };
                    match &*told {
                        Told::Session(
                            SessionNotice::Left { .. }
                            | SessionNotice::ServerClose { .. }
                            | SessionNotice::Goodbye,
                        )
                        | Told::Room { notice: Notice::RoomClosed { .. }, .. } => {
                            break "told to leave";
                        }
                        _ => {}
                    }
                }
                h = leg.recv(&mut heard) => {
                    if let Ok(h) = h {
                        frames.push(&h.pcm);
                        while let Some(f) = frames.pop() {
                            send(datagram(seq, &f));
                            seq = seq.wrapping_add(1) % EOT;
                        }
                        talking = Some(tokio::time::Instant::now());
                    }
                }
                _ = sleep_until(stop_at) => {
                    // The peer stopped: the rest of its frame, then EOT.
                    let mut rest = Vec::new();
                    frames.push(&[0u8; FRAME_BYTES]);
                    if let Some(f) = frames.pop() {
                        rest = f;
                    }
                    if rest.iter().any(|b| *b != 0) {
                        send(datagram(seq, &rest));
                        seq = seq.wrapping_add(1) % EOT;
                    }
                    frames.clear();
                    send(datagram(EOT, &[0u8; FRAME_BYTES]));
                    talking = None;
                }
                _ = tokio::time::sleep_until(expires) => break "no HEARTBEAT in time",
                _ = heartbeat.tick() => {
                    let _ = link.send("HEARTBEAT", Command::Session(SessionCommand::Heartbeat)).await;
                }
            }
        };
        if talking.is_some() {
            send(datagram(EOT, &[0u8; FRAME_BYTES]));
        }
        link.close().await;
        why
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(port: u32, target: &str) -> Vec<u8> {
        let mut r = b"HELLO".to_vec();
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(target.as_bytes());
        r
    }

    #[test]
    fn requests_parse_as_the_seed_writes_them() {
        assert_eq!(
            parse(&hello(5000, "127.0.0.3")),
            Request::Hello {
                port: 5000,
                target: "127.0.0.3".parse().unwrap_or_else(|_| unreachable!())
            }
        );
        assert_eq!(
            parse(&hello(5000, "::1\n")),
            Request::Hello {
                port: 5000,
                target: "::1".parse().unwrap_or_else(|_| unreachable!())
            }
        );
        assert_eq!(parse(b"HEARTBEAT"), Request::Heartbeat);
        assert_eq!(parse(b"DISCONNECT\n"), Request::Disconnect);
        for bad in [
            b"HELLO".to_vec(),
            b"HELLO\0\0\x13".to_vec(),
            hello(5000, ""),
            hello(5000, "not an ip"),
            hello(0, "127.0.0.3"),
            hello(70_000, "127.0.0.3"),
            b"HEARTBEATS".to_vec(),
            b"hello".to_vec(),
            vec![0xff; 20],
        ] {
            assert_eq!(parse(&bad), Request::Invalid, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_is_gathered_timed_out_or_cut() {
        // Split across writes.
        let (mut client, mut server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move { read_request(&mut server, REQUEST_TIMEOUT).await });
        let whole = hello(4000, "127.0.0.9");
        client
            .write_all(&whole[..7])
            .await
            .unwrap_or_else(|_| unreachable!());
        tokio::time::sleep(Duration::from_millis(10)).await;
        client
            .write_all(&whole[7..])
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(
            reader.await.ok(),
            Some(Request::Hello {
                port: 4000,
                target: "127.0.0.9".parse().unwrap_or_else(|_| unreachable!())
            })
        );
        // Nothing for 30 s.
        let (_client, mut server) = tokio::io::duplex(1024);
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            read_request(&mut server, REQUEST_TIMEOUT).await,
            Request::Timeout
        );
        assert_eq!(t0.elapsed(), REQUEST_TIMEOUT);
        // Half a word, then nothing: still waits the whole timeout.
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"HEART")
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(
            read_request(&mut server, REQUEST_TIMEOUT).await,
            Request::Invalid
        );
        // Too long.
        let (mut client, mut server) = tokio::io::duplex(4096);
        client
            .write_all(&[b'A'; 1000])
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(
            read_request(&mut server, REQUEST_TIMEOUT).await,
            Request::Invalid
        );
        // Closed at once.
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert_eq!(
            read_request(&mut server, REQUEST_TIMEOUT).await,
            Request::Closed
        );
    }

    #[test]
    fn a_call_has_one_room_whoever_calls() {
        let a: IpAddr = "127.0.0.2".parse().unwrap_or_else(|_| unreachable!());
        let b: IpAddr = "127.0.0.10".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(call_room(a, b), call_room(b, a));
        assert_eq!(call_room(a, b), "call-127.0.0.2-127.0.0.10");
        let x: IpAddr = "fd00:1234:5678:9abc:def0:1234:5678:9abc"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let y: IpAddr = "fd00:1234:5678:9abc:def0:1234:5678:9abd"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        for name in [call_room(x, y), call_room(a, x)] {
            assert!(proto::control::validate_room_name(&name).is_ok(), "{name}");
        }
        assert_ne!(call_room(x, y), call_room(y, y));
    }
}
