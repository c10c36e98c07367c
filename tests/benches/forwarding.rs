//! Forwarding benchmark: one sender fanned out to 9 receivers on loopback,
//! through the Switchboard router (a plain room and a secure one, whose
//! SRTP it forwards without decrypting) and through a bare
//! recvmmsg/sendmmsg relay, in the same run, reported as figures and as
//! ratios.
//!
//! `cargo bench -p switchboard-tests --bench forwarding [-- --seconds 3 --rounds 3]`
//!
//! The sender blasts 160-byte RTP packets with sendmmsg as fast as it can; the
//! relay under test is the bottleneck. Receivers count what actually arrives.
//! Besides packets per second, the relay thread's CPU time is read from
//! /proc, giving packets per CPU-second, which is less sensitive to the other
//! threads sharing the two cores.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use router::media::mmsg::{self, RecvBatch, SendBatch};

const FANOUT: usize = 9;
const PAYLOAD: usize = 160;

struct Args {
    seconds: f64,
    rounds: usize,
    json: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 3.0,
        rounds: 3,
        json: Some("target/bench-forwarding.json".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.seconds),
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.rounds),
            "--json" => a.json = it.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn socket() -> UdpSocket {
    match mmsg::media_socket(([127, 0, 0, 1], 0).into(), Duration::from_millis(100)) {
        Ok(s) => s,
        Err(e) => panic!("socket: {e}"),
    }
}

/// CPU seconds used so far by this process's thread named `name`.
fn thread_cpu(name: &str) -> Option<f64> {
    let tick = 100.0; // USER_HZ on Linux
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        return Some((utime + stime) / tick);
    }
    None
}

/// Nine receivers, each a thread counting datagrams.
struct Receivers {
    sockets: Vec<UdpSocket>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Receivers {
    fn new() -> Self {
        Self {
            sockets: (0..FANOUT).map(|_| socket()).collect(),
            count: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    fn start(&mut self) {
        for s in &self.sockets {
            let Ok(s) = s.try_clone() else {
                panic!("clone")
            };
            let count = self.count.clone();
            let stop = self.stop.clone();
            self.threads.push(std::thread::spawn(move || {
                let mut b = RecvBatch::new(mmsg::BATCH);
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = b.recv(&s) {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }));
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What the sender's packets carry: plain RTP, or what SRTP looks like
/// to the router (the header in clear, a ciphertext of the payload's
/// length, then the 10-byte authentication tag).
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    Rtp,
    Srtp,
}

/// SRTP's authentication tag (HMAC-SHA1-80).
const SRTP_TAG: usize = 10;

/// Blasts RTP (or SRTP) with `ssrc` at `to` until stopped.
fn spawn_sender(
    sock: UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    wire: Wire,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let mut seq = 0u16;
    // The router never decrypts: it forwards these bytes as they are.
    let body: Vec<u8> = match wire {
        Wire::Rtp => vec![0x55; PAYLOAD],
        Wire::Srtp => (0..PAYLOAD + SRTP_TAG)
            .map(|_| rand::random::<u8>())
            .collect(),
    };
    spawn_blaster(sock, to, stop, move || {
        seq = seq.wrapping_add(1);
        proto::media::build_rtp(96, seq, u32::from(seq) * 160, ssrc, false, &body)
    })
}

/// Blasts what `next` makes at `to`, a batch at a time, until stopped.
fn spawn_blaster(
    sock: UdpSocket,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    mut next: impl FnMut() -> Vec<u8> + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut sb = SendBatch::new();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let pkts: Vec<Vec<u8>> = (0..mmsg::BATCH).map(|_| next()).collect();
            sent += sb.send(&sock, pkts.iter().map(|p| (p.as_slice(), to))) as u64;
        }
        sent
    })
}

/// CPU seconds of every thread of this process whose name starts with one
/// of `prefixes` (the router's: its media workers and the runtime's
/// workers, where the front-ends run).
fn threads_cpu(prefixes: &[&str]) -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if !prefixes.iter().any(|p| comm.trim().starts_with(p)) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (t(11) + t(12)) / 100.0;
    }
    total
}

/// The router's threads, for [`threads_cpu`].
const ROUTER_THREADS: &[&str] = &["media-", "tokio-runtime"];

/// One path's cost in the router: input packets per second, and router CPU
/// (every router thread) per input packet.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    in_pps: f64,
    cpu_us_per_in: f64,
}

/// Seed 000 datagrams (2,048 bytes of PCM, re-framed into two RTP L16
/// packets each) from a seed client holding the floor, to 9 native
/// receivers, through the push-to-talk front-end.
fn through_seed_front_end(rt: &tokio::runtime::Runtime, seconds: f64) -> Cost {
    use std::io::{Read, Write};
    let router = rt.block_on(switchboard_tests::start_router(|c| {
        c.rooms.push(router::config::RoomConfig {
            name: "walkie".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: [("codec".to_owned(), serde_json::json!("l16-44k"))]
                .into_iter()
                .collect(),
        });
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
        c.compat.push(router::config::CompatConfig {
            seed: router::config::Seed::Ptt,
            control: lo,
            media: Some(lo),
            room: Some("walkie".into()),
        });
    }));
    let ctl = router.control_addr();
    let media = router.media_addr();
    let front = router.front_addrs()[0];
    let rx = Receivers::new();
    let mut sessions = Vec::new();
    for (i, s) in rx.sockets.iter().enumerate() {
        let sess = rt.block_on(async {
            let mut sess = client::Session::connect(ctl, &format!("rx{i}")).await?;
            sess.join("walkie").await?;
            Ok::<_, client::ClientError>(sess)
        });
        let Ok(sess) = sess else {
            panic!("receiver session")
        };
        stun_bind(s, media, sess.welcome());
        sessions.push(sess);
    }
    // The seed client: its name, its port, the floor.
    let Ok(mut tcp) = std::net::TcpStream::connect(front.control) else {
        panic!("seed connect")
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.write_all(b"seed");
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).unwrap_or(0);
    let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap_or_default();
    let port = v["udp_port"]
        .as_u64()
        .unwrap_or_else(|| panic!("no udp_port: {v}")) as u16;
    let Ok(seed_sock) = UdpSocket::bind(("127.0.0.1", port)) else {
        panic!("seed UDP port {port}")
    };
    let _ = tcp.write_all(b"MIC_REQUEST");
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert!(buf[..n].starts_with(b"MIC_GRANTED:seed"), "{:?}", &buf[..n]);
    let to = front.media.unwrap_or_else(|| unreachable!());
    // Each seed datagram reaches each receiver as two RTP packets.
    let cost = seed_window(rx, seed_sock, to, vec![0x11; 2048], 2, seconds);
    rt.block_on(router.shutdown());
    drop((sessions, tcp));
    cost
}

/// Blasts `datagram` from `sock` at `to` for `seconds` (after a warm-up):
/// the router's cost per input datagram, each reaching every receiver as
/// `packets` packets.
fn seed_window(
    mut rx: Receivers,
    sock: UdpSocket,
    to: SocketAddr,
    datagram: Vec<u8>,
    packets: usize,
    seconds: f64,
) -> Cost {
    rx.start();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = spawn_blaster(sock, to, stop.clone(), move || datagram.clone());
    std::thread::sleep(Duration::from_millis(300));
    let c0 = rx.count.load(Ordering::Relaxed);
    let cpu0 = threads_cpu(ROUTER_THREADS);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let c1 = rx.count.load(Ordering::Relaxed);
    let cpu1 = threads_cpu(ROUTER_THREADS);
    let dt = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    rx.stop();
    let seed_in = (c1 - c0) as f64 / FANOUT as f64 / packets.max(1) as f64;
    Cost {
        in_pps: seed_in / dt,
        cpu_us_per_in: if seed_in > 0.0 {
            (cpu1 - cpu0) * 1e6 / seed_in
        } else {
            0.0
        },
    }
}

/// A 320 × 240 JPEG of noise (as costly to carry as camera video gets).
fn noisy_jpeg() -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    let rgb: Vec<u8> = (0..320 * 240 * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 60);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    if let Err(err) = e.encode(&rgb, 320, 240, jpeg_encoder::ColorType::Rgb) {
        panic!("encode: {err}");
    }
    out
}

/// Seed 002 datagrams from a seed host to 9 native guests of its meeting,
/// through the meeting front-end: audio (19-byte header + 2,048 bytes,
/// re-framed into 2 RTP L16 packets) or video (40-byte header + a 320 × 240
/// JPEG, re-framed into RTP JPEG packets of 1,200 bytes). Cost per input
/// datagram.
fn through_seed_meeting(rt: &tokio::runtime::Runtime, seconds: f64, video: bool) -> Cost {
    use switchboard_tests::seed::Seed002;
    let router = rt.block_on(switchboard_tests::start_router(|c| {
        // Nine guests from one address ask at once.
        c.limits.join_attempts_burst = 2 * FANOUT as u32;
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
        c.compat.push(router::config::CompatConfig {
            seed: router::config::Seed::Meeting,
            control: lo,
            media: Some(lo),
            room: None,
        });
    }));
    let ctl = router.control_addr();
    let media = router.media_addr();
    let front = router.front_addrs()[0];
    let to = front.media.unwrap_or_else(|| unreachable!());
    let rx = Receivers::new();
    let (host, sessions) = rt.block_on(async {
        let lo = std::net::Ipv4Addr::LOCALHOST;
        let mut host = Seed002::connect(front.control, to, lo, "host").await;
        let code = host.create().await;
        let mut sessions = Vec::new();
        for i in 0..FANOUT {
            let mut s = match client::Session::connect(ctl, &format!("rx{i}")).await {
                Ok(s) => s,
                Err(e) => panic!("receiver: {e}"),
            };
            let code = code.clone();
            let asking = tokio::spawn(async move {
                let r = s.request_join(&code, Duration::from_secs(10)).await;
                (s, r)
            });
            let req = host.expect("NEW_JOIN_REQUEST").await;
            let name = req["client_name"].clone();
            host.send(serde_json::json!({"type": "ALLOW_JOIN", "client_name": name}))
                .await;
            match asking.await {
                Ok((s, Ok(_))) => sessions.push(s),
                Ok((_, Err(e))) => panic!("receiver {i}: {e}"),
                Err(e) => panic!("receiver {i}: {e}"),
            }
        }
        (host, sessions)
    });
    for (s, sess) in rx.sockets.iter().zip(&sessions) {
        stun_bind(s, media, sess.welcome());
    }
    let (datagram, per_datagram) = if video {
        let jpeg = noisy_jpeg();
        let packets =
            router::compat::jpeg::packetize(&jpeg, router::compat::meeting::VIDEO_PAYLOAD)
                .map_or(1, |p| p.len());
        let mut d = vec![0u8; 40];
        d[16..18].copy_from_slice(&320u16.to_be_bytes());
        d[18..20].copy_from_slice(&240u16.to_be_bytes());
        d[20..24].copy_from_slice(&(jpeg.len() as i32).to_be_bytes());
        d.extend_from_slice(&jpeg);
        (d, packets)
    } else {
        let mut d = vec![0u8; 19];
        d[12..14].copy_from_slice(&16_000u16.to_be_bytes());
        d[14] = 1;
        d[15..19].copy_from_slice(&2048i32.to_be_bytes());
        d.extend_from_slice(&[0x11; 2048]);
        (d, 2)
    };
    let cost = seed_window(rx, socket(), to, datagram, per_datagram, seconds);
    rt.block_on(router.shutdown());
    drop((sessions, host));
    cost
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Input packets per second that reached all receivers (received / 9 / s).
    in_pps: f64,
    /// Datagrams per second delivered to receivers.
    out_pps: f64,
    /// Relay thread CPU seconds during the window.
    cpu: f64,
    /// Delivered datagrams per relay CPU-second.
    out_per_cpu_s: f64,
    /// CPU µs of every router thread per input packet.
    cpu_us_per_in: f64,
}

/// Runs the sender against `target` for the window; `relay_thread` names the
/// thread whose CPU is charged.
fn measure(
    target: SocketAddr,
    ssrc: u32,
    wire: Wire,
    sender_sock: UdpSocket,
    rx: Receivers,
    relay_thread: &str,
    seconds: f64,
) -> Figures {
    let mut rx = rx;
    rx.start();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = spawn_sender(sender_sock, target, ssrc, wire, stop.clone());
    std::thread::sleep(Duration::from_millis(300)); // warm-up
    let c0 = rx.count.load(Ordering::Relaxed);
    let cpu0 = thread_cpu(relay_thread).unwrap_or(0.0);
    let all0 = threads_cpu(ROUTER_THREADS);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let c1 = rx.count.load(Ordering::Relaxed);
    let cpu1 = thread_cpu(relay_thread).unwrap_or(0.0);
    let all1 = threads_cpu(ROUTER_THREADS);
    let dt = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    rx.stop();
    let out = (c1 - c0) as f64;
    let cpu = cpu1 - cpu0;
    let input = out / FANOUT as f64;
    Figures {
        in_pps: input / dt,
        out_pps: out / dt,
        cpu,
        out_per_cpu_s: if cpu > 0.0 { out / cpu } else { 0.0 },
        cpu_us_per_in: if input > 0.0 {
            (all1 - all0) * 1e6 / input
        } else {
            0.0
        },
    }
}

/// The ceiling: recvmmsg, then one sendmmsg with 9 copies of each packet.
fn bare_relay(seconds: f64) -> Figures {
    let relay = socket();
    let Ok(relay_addr) = relay.local_addr() else {
        panic!()
    };
    let rx = Receivers::new();
    let dests = rx.addrs();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::Builder::new()
        .name("bare-relay".into())
        .spawn(move || {
            let mut b = RecvBatch::new(mmsg::BATCH);
            let mut sb = SendBatch::new();
            while !stop2.load(Ordering::Relaxed) {
                let Ok(n) = b.recv(&relay) else { continue };
                sb.send(
                    &relay,
                    (0..n)
                        .flat_map(|i| dests.iter().map(move |d| (i, *d)))
                        .map(|(i, d)| (b.data(i), d))
                        .collect::<Vec<_>>()
                        .into_iter(),
                );
            }
        });
    let Ok(t) = t else { panic!() };
    let f = measure(
        relay_addr,
        1,
        Wire::Rtp,
        socket(),
        rx,
        "bare-relay",
        seconds,
    );
    stop.store(true, Ordering::Relaxed);
    let _ = t.join();
    f
}

/// Binds a std socket at the router with STUN: signed under the public
/// media id when the session has one (`stun_integrity`), by the token
/// otherwise.
fn stun_bind(sock: &UdpSocket, server: SocketAddr, welcome: &client::Welcome) {
    let request = match &welcome.media_id {
        Some(id) => proto::media::binding_request_signed(id, &welcome.media_token, None),
        None => proto::media::binding_request(&welcome.media_token),
    };
    let Ok((req, tid)) = request else { panic!() };
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        let _ = sock.send_to(&req, server);
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(proto::media::BindingResponse::Success(_)) =
                proto::media::parse_binding_response(&buf[..n], tid)
        {
            return;
        }
    }
    panic!("STUN bind failed");
}

/// Through a ptt room of the router; with `Wire::Srtp` a secure room, its
/// members on TLS with signed bindings, sending SRTP-sized packets.
fn through_router(rt: &tokio::runtime::Runtime, seconds: f64, wire: Wire) -> Figures {
    let router = rt.block_on(switchboard_tests::start_router(|c| {
        if wire == Wire::Srtp {
            c.rooms = vec![switchboard_tests::secure_room("lobby")];
        }
    }));
    let ctl = router.control_addr();
    let media = router.media_addr();
    let opts = match wire {
        Wire::Rtp => client::ConnectOptions::default(),
        Wire::Srtp => switchboard_tests::secure_options(&router),
    };
    let join = |nick: String| {
        let opts = opts.clone();
        async move {
            let mut sess = client::Session::connect_with(ctl, &nick, opts).await?;
            sess.join("lobby").await?;
            assert_eq!(sess.room_secure(), wire == Wire::Srtp);
            Ok::<_, client::ClientError>(sess)
        }
    };
    let rx = Receivers::new();
    let mut sessions = Vec::new();
    for (i, s) in rx.sockets.iter().enumerate() {
        let Ok(sess) = rt.block_on(join(format!("rx{i}"))) else {
            panic!("receiver session")
        };
        stun_bind(s, media, sess.welcome());
        sessions.push(sess);
    }
    let sender_sock = socket();
    let talker = rt
        .block_on(join("tx".into()))
        .unwrap_or_else(|e| panic!("talker: {e}"));
    let ssrc = talker.welcome().ssrcs.audio;
    stun_bind(&sender_sock, media, talker.welcome());
    let mut talker = talker;
    let granted = rt.block_on(talker.request_floor(0));
    assert!(
        matches!(granted, Ok(client::FloorAnswer::Granted { .. })),
        "{granted:?}"
    );
    let f = measure(media, ssrc, wire, sender_sock, rx, "media-0", seconds);
    let stats = router.media_stats();
    eprintln!(
        "  router counters: received {} forwarded {} sent {} dropped(not routed {}, foreign {}, unbound {})",
        stats.received,
        stats.forwarded,
        stats.sent,
        stats.dropped_not_routed,
        stats.dropped_foreign_ssrc,
        stats.dropped_unbound
    );
    rt.block_on(router.shutdown());
    drop(sessions);
    f
}

fn best_cost(v: &[Cost]) -> f64 {
    v.iter().map(|c| c.in_pps).fold(0.0, f64::max)
}

fn main() {
    let a = args();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    println!(
        "forwarding: 1 sender -> {FANOUT} receivers, {PAYLOAD}-byte payload, {} s x {} rounds",
        a.seconds, a.rounds
    );
    let mut base = Vec::new();
    let mut sb = Vec::new();
    let mut secure = Vec::new();
    let mut seeds: Vec<Cost> = Vec::new();
    let mut meeting_audio: Vec<Cost> = Vec::new();
    let mut meeting_video: Vec<Cost> = Vec::new();
    for round in 1..=a.rounds {
        let b = bare_relay(a.seconds);
        eprintln!(
            "round {round}/{}: bare relay  {:>9.0} pkt/s in, {:>9.0} out, {:>10.0} out per CPU-s ({:.2} CPU-s)",
            a.rounds, b.in_pps, b.out_pps, b.out_per_cpu_s, b.cpu
        );
        let r = through_router(&rt, a.seconds, Wire::Rtp);
        eprintln!(
            "round {round}/{}: switchboard {:>9.0} pkt/s in, {:>9.0} out, {:>10.0} out per CPU-s ({:.2} CPU-s)",
            a.rounds, r.in_pps, r.out_pps, r.out_per_cpu_s, r.cpu
        );
        let sr = through_router(&rt, a.seconds, Wire::Srtp);
        eprintln!(
            "round {round}/{}: secure room {:>9.0} pkt/s in, {:>9.0} out, {:>10.0} out per CPU-s ({:.2} CPU-s)",
            a.rounds, sr.in_pps, sr.out_pps, sr.out_per_cpu_s, sr.cpu
        );
        secure.push(sr);
        let seed = through_seed_front_end(&rt, a.seconds);
        eprintln!(
            "round {round}/{}: seed 000    {:>9.0} datagrams/s in, {:.1} router CPU-µs each (native RTP: {:.1})",
            a.rounds, seed.in_pps, seed.cpu_us_per_in, r.cpu_us_per_in
        );
        let audio = through_seed_meeting(&rt, a.seconds, false);
        let video = through_seed_meeting(&rt, a.seconds, true);
        eprintln!(
            "round {round}/{}: seed 002    {:>9.0} audio datagrams/s in, {:.1} CPU-µs each; {:>7.0} JPEG frames/s, {:.1} CPU-µs each",
            a.rounds, audio.in_pps, audio.cpu_us_per_in, video.in_pps, video.cpu_us_per_in
        );
        base.push(b);
        sb.push(r);
        seeds.push(seed);
        meeting_audio.push(audio);
        meeting_video.push(video);
    }
    let best = |v: &[Figures], f: fn(&Figures) -> f64| v.iter().map(f).fold(0.0, f64::max);
    let b_in = best(&base, |f| f.in_pps);
    let r_in = best(&sb, |f| f.in_pps);
    let b_cpu = best(&base, |f| f.out_per_cpu_s);
    let r_cpu = best(&sb, |f| f.out_per_cpu_s);
    println!();
    println!("| relay | input pkt/s | delivered pkt/s | delivered per relay CPU-s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| bare sendmmsg relay | {:.0} | {:.0} | {:.0} |",
        b_in,
        b_in * FANOUT as f64,
        b_cpu
    );
    println!(
        "| switchboard router | {:.0} | {:.0} | {:.0} |",
        r_in,
        r_in * FANOUT as f64,
        r_cpu
    );
    let (s_in, s_cpu) = (
        best(&secure, |f| f.in_pps),
        best(&secure, |f| f.out_per_cpu_s),
    );
    println!(
        "| switchboard router, secure room (SRTP) | {:.0} | {:.0} | {:.0} |",
        s_in,
        s_in * FANOUT as f64,
        s_cpu
    );
    println!(
        "| ratio router / bare | {:.2} | | {:.2} |",
        r_in / b_in.max(1.0),
        r_cpu / b_cpu.max(1.0)
    );
    println!(
        "| ratio secure / plain room | {:.2} | | {:.2} |",
        s_in / r_in.max(1.0),
        s_cpu / r_cpu.max(1.0)
    );
    // The cheapest round of each path (the least disturbed by the machine).
    let least = |v: &mut dyn Iterator<Item = f64>| v.filter(|c| *c > 0.0).fold(f64::MAX, f64::min);
    let native_us = least(&mut sb.iter().map(|f| f.cpu_us_per_in));
    let seed_us = least(&mut seeds.iter().map(|c| c.cpu_us_per_in));
    let seed_in = best_cost(&seeds);
    println!();
    println!("| input | packets/s in | router CPU µs per input packet (all router threads) |");
    println!("|---|---:|---:|");
    println!("| native RTP, {PAYLOAD}-byte payload | {r_in:.0} | {native_us:.1} |");
    println!(
        "| seed 000 PCM, 2,048-byte datagram (re-framed into 2 RTP) | {seed_in:.0} | {seed_us:.1} |"
    );
    println!(
        "| ratio seed 000 / native | | {:.2} |",
        seed_us / native_us.max(1e-9)
    );
    let audio_us = least(&mut meeting_audio.iter().map(|c| c.cpu_us_per_in));
    let video_us = least(&mut meeting_video.iter().map(|c| c.cpu_us_per_in));
    let (audio_in, video_in) = (best_cost(&meeting_audio), best_cost(&meeting_video));
    println!(
        "| seed 002 audio, 2,067-byte datagram (re-framed into 2 RTP) | {audio_in:.0} | {audio_us:.1} |"
    );
    let jpeg = noisy_jpeg();
    let packets = router::compat::jpeg::packetize(&jpeg, router::compat::meeting::VIDEO_PAYLOAD)
        .map_or(0, |p| p.len());
    println!(
        "| seed 002 video, a 320x240 JPEG of {} bytes (re-framed into {packets} RTP JPEG) | {video_in:.0} | {video_us:.1} |",
        jpeg.len()
    );
    println!(
        "| seed 002 video, per RTP JPEG packet made | | {:.1} |",
        video_us / packets.max(1) as f64
    );
    println!(
        "| ratio seed 002 audio / native | | {:.2} |",
        audio_us / native_us.max(1e-9)
    );
    if let Some(path) = a.json {
        let report = serde_json::json!({
            "fanout": FANOUT, "payload": PAYLOAD, "seconds": a.seconds, "rounds": a.rounds,
            "bare": {"in_pps": b_in, "out_per_cpu_s": b_cpu},
            "router": {"in_pps": r_in, "out_per_cpu_s": r_cpu},
            "router_secure_room": {"in_pps": s_in, "out_per_cpu_s": s_cpu},
            "ratio_secure_per_cpu": s_cpu / r_cpu.max(1.0),
            "ratio_pps": r_in / b_in.max(1.0), "ratio_per_cpu": r_cpu / b_cpu.max(1.0),
            "native_cpu_us_per_packet": native_us,
            "seed_ptt": {"in_pps": seed_in, "cpu_us_per_datagram": seed_us},
            "seed_meeting_audio": {"in_pps": audio_in, "cpu_us_per_datagram": audio_us},
            "seed_meeting_video": {"in_pps": video_in, "cpu_us_per_datagram": video_us},
        });
        if std::fs::write(&path, report.to_string()).is_ok() {
            println!("\nreport written to {path}");
        }
    }
}
