//! The measurements: one load point through the router or the bare relay,
//! the floor-grant latency with many rooms, and the scale-up runs.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use proto::control::{ClientMessage, ServerMessage};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::children::{RouterArgs, room_name};
use crate::procfs::{Child, Sample, UdpDrops};
use crate::traffic::{self, Member, Pace, Shared};

/// Room kind of a load point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// Push-to-talk: one member per room holds the floor and sends.
    Ptt,
    /// Open voice: every member sends.
    Voice,
    /// Chat with exclusive voice: like ptt, one member holds the floor.
    Chat,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Ptt => "ptt",
            Kind::Voice => "voice",
            Kind::Chat => "chat",
        }
    }
}

/// Rooms, their size, and who sends.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Layout {
    pub(crate) kind: Kind,
    pub(crate) rooms: usize,
    pub(crate) room_size: usize,
}

impl Layout {
    pub(crate) fn participants(&self) -> usize {
        self.rooms * self.room_size
    }

    /// Whether member `k` of a room sends.
    fn sends(&self, k: usize) -> bool {
        match self.kind {
            Kind::Ptt | Kind::Chat => k == 0,
            Kind::Voice => true,
        }
    }
}

/// Traffic of a load point.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Traffic {
    /// Packets per second per sender; 0 means as fast as possible.
    pub(crate) rate: u32,
    /// RTP payload bytes.
    pub(crate) payload: usize,
    /// Seconds measured, after one second of warm-up.
    pub(crate) seconds: f64,
    /// Receiver threads in the load generator.
    #[serde(skip)]
    pub(crate) receiver_threads: usize,
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Tick {
    pub(crate) t: f64,
    pub(crate) sent_pps: f64,
    pub(crate) received_pps: f64,
    pub(crate) cpu_cores: f64,
    pub(crate) rss_mib: f64,
}

/// The figures of one load point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Point {
    /// "router" or "bare relay".
    pub(crate) through: String,
    pub(crate) workers: usize,
    pub(crate) layout: Layout,
    pub(crate) participants: usize,
    pub(crate) traffic: Traffic,
    /// Packets sent in the window.
    pub(crate) sent: u64,
    /// Copies the receivers should have got (sent × receivers per room).
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) loss: f64,
    /// Sender-side failures and skips (the generator, not the relay).
    pub(crate) send_failed: u64,
    pub(crate) send_skipped: u64,
    /// Kernel UDP receive-buffer drops during the window, any socket.
    pub(crate) kernel_rcvbuf_drops: u64,
    /// Send call to the kernel's receipt at the receiver socket, through
    /// the relay, µs.
    pub(crate) latency_us: Percentiles,
    /// Copies without a kernel receive timestamp (timed on reading).
    pub(crate) unstamped: u64,
    /// Copies received per second.
    pub(crate) delivered_pps: f64,
    /// The relay process's CPU, in cores, over the window.
    pub(crate) cpu_cores: f64,
    /// The router's media threads alone, in cores (0 for the bare relay).
    pub(crate) media_cpu_cores: Vec<f64>,
    /// Delivered copies per CPU-second of the relay process.
    pub(crate) delivered_per_cpu_s: f64,
    /// Resident memory before participants connected, after, and at the end.
    pub(crate) rss_idle_mib: f64,
    pub(crate) rss_connected_mib: f64,
    pub(crate) rss_end_mib: f64,
    /// (connected − idle) / participants.
    pub(crate) rss_per_participant_kib: f64,
    pub(crate) timeline: Vec<Tick>,
}

const MIB: f64 = 1024.0 * 1024.0;

fn lo_socket() -> anyhow::Result<UdpSocket> {
    Ok(UdpSocket::bind("127.0.0.1:0")?)
}

/// Progress on stderr, one line at a time.
fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

/// One load point through a bare relay child.
pub(crate) fn through_bare_relay(layout: Layout, traffic: Traffic) -> anyhow::Result<Point> {
    let mut members = Vec::with_capacity(layout.participants());
    let mut groups = Vec::with_capacity(layout.rooms);
    for room in 0..layout.rooms {
        let mut g = Vec::with_capacity(layout.room_size);
        for k in 0..layout.room_size {
            let socket = lo_socket()?;
            g.push(socket.local_addr()?);
            members.push(Member {
                socket,
                ssrc: (room * layout.room_size + k + 1) as u32,
                room,
                sends: layout.sends(k),
                server: SocketAddr::from(([127, 0, 0, 1], 0)),
            });
        }
        groups.push(g);
    }
    let file = std::env::temp_dir().join(format!(
        "switchboard-load-groups-{}.json",
        std::process::id()
    ));
    std::fs::write(&file, serde_json::to_vec(&groups)?)?;
    let relay = Child::spawn(&[
        "__bare-relay".into(),
        "--groups".into(),
        file.display().to_string(),
    ]);
    let _ = std::fs::remove_file(&file);
    let relay = relay?;
    let Some(addr) = relay.ready.media.first().copied() else {
        bail!("the relay told no address");
    };
    for m in &mut members {
        m.server = addr;
    }
    let idle = relay.sample();
    measure(
        "bare relay",
        1,
        &relay,
        idle.clone(),
        idle,
        members,
        layout,
        traffic,
    )
}

/// One load point through a router child with `workers` media workers.
pub(crate) async fn through_router(
    layout: Layout,
    traffic: Traffic,
    workers: usize,
) -> anyhow::Result<Point> {
    let router = Child::spawn(
        &RouterArgs {
            kind: layout.kind.name().into(),
            rooms: layout.rooms,
            workers,
            max_sessions: layout.participants() + 16,
            heartbeat_ms: 5000,
        }
        .to_args(),
    )?;
    let Some(ctl) = router.ready.control else {
        bail!("the router told no control address");
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = router.sample();
    let (members, mut sessions) = connect_all(ctl, layout).await?;
    // Let the router settle (USERLISTs sent, routes installed).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = router.sample();
    let point = tokio::task::block_in_place(|| {
        measure(
            "router", workers, &router, idle, connected, members, layout, traffic,
        )
    });
    sessions.abort_all();
    point
}

/// Connects every participant: HELLO, JOIN its room, STUN at the room's
/// port, and in ptt rooms the first member takes the floor. Sessions stay
/// open (their events drained) until the returned set is aborted.
async fn connect_all(
    ctl: SocketAddr,
    layout: Layout,
) -> anyhow::Result<(Vec<Member>, JoinSet<()>)> {
    const AT_ONCE: usize = 64;
    let total = layout.participants();
    let started = Instant::now();
    let mut members = Vec::with_capacity(total);
    let mut sessions = JoinSet::new();
    let mut pending = JoinSet::new();
    let mut next = 0usize;
    let mut last_report = Instant::now();
    while members.len() < total {
        while next < total && pending.len() < AT_ONCE {
            let (room, k) = (next / layout.room_size, next % layout.room_size);
            let sends = layout.sends(k);
            let floor = layout.kind != Kind::Voice && k == 0;
            pending.spawn(async move {
                let r = join_one(ctl, room, k, floor).await;
                r.map(|(s, m, ssrc, server)| (s, m, ssrc, server, room, sends))
                    .with_context(|| format!("participant {k} of room {room}"))
            });
            next += 1;
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        let (mut session, socket, ssrc, server, room, sends) = done??;
        sessions.spawn(async move { while session.next_event().await.is_some() {} });
        members.push(Member {
            socket,
            ssrc,
            room,
            sends,
            server,
        });
        if last_report.elapsed() > Duration::from_secs(1) || members.len() == total {
            last_report = Instant::now();
            say(format!(
                "  connected {}/{total} participants ({:.1} s)",
                members.len(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok((members, sessions))
}

async fn join_one(
    ctl: SocketAddr,
    room: usize,
    k: usize,
    floor: bool,
) -> anyhow::Result<(client::Session, UdpSocket, u32, SocketAddr)> {
    let mut s = client::Session::connect(ctl, &format!("p{room}-{k}")).await?;
    s.join(&room_name(room)).await?;
    let server = s.media_server();
    let media = client::Media::open(server, 0, s.welcome().ssrcs, &s.welcome().media_token).await?;
    if floor {
        match s.request_floor(0).await? {
            client::FloorAnswer::Granted { .. } => {}
            other => bail!("floor not granted: {other:?}"),
        }
    }
    let ssrc = s.welcome().ssrcs.audio;
    Ok((s, media.into_std()?, ssrc, server))
}

/// Runs the traffic through `relay` and measures.
#[allow(clippy::too_many_arguments)]
fn measure(
    through: &str,
    workers: usize,
    relay: &Child,
    idle: Sample,
    connected: Sample,
    members: Vec<Member>,
    layout: Layout,
    traffic: Traffic,
) -> anyhow::Result<Point> {
    let shared = Shared::new();
    let mut senders = Vec::new();
    let mut sockets = Vec::new();
    for m in members {
        if m.sends {
            senders.push(Member {
                socket: m.socket.try_clone()?,
                ..m
            });
        }
        sockets.push(m.socket);
    }
    let sent_in_rooms = senders.len();
    let threads = traffic.receiver_threads.max(1);
    let per = sockets.len().div_ceil(threads);
    let mut receivers = Vec::new();
    let mut it = sockets.into_iter();
    for i in 0..threads {
        let part: Vec<UdpSocket> = it.by_ref().take(per).collect();
        receivers.push(traffic::spawn_receiver(
            part,
            shared.clone(),
            format!("load-recv-{i}"),
        ));
    }
    let pace = match traffic.rate {
        0 => Pace::Blast,
        r => Pace::Rate(r),
    };
    let sender =
        traffic::spawn_sender(senders, layout.rooms, pace, traffic.payload, shared.clone());
    let label = format!(
        "{through} [{} {} in {} rooms of {}, {} senders, {}]",
        layout.kind.name(),
        layout.participants(),
        layout.rooms,
        layout.room_size,
        sent_in_rooms,
        match traffic.rate {
            0 => "as fast as possible".to_string(),
            r => format!("{r} pkt/s each"),
        }
    );
    std::thread::sleep(Duration::from_secs(1)); // warm-up
    let s0 = relay.sample();
    let d0 = UdpDrops::now();
    let t0 = Instant::now();
    shared.open_window();
    let mut timeline = Vec::new();
    let mut last = (
        t0,
        s0.clone(),
        shared.sent.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
    );
    let mut rss_end = connected.rss;
    while t0.elapsed().as_secs_f64() < traffic.seconds {
        std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs_f64(
            (traffic.seconds - t0.elapsed().as_secs_f64()).max(0.01),
        )));
        let s = relay.sample();
        let now = Instant::now();
        let (sent, recv) = (
            shared.sent.load(Ordering::Relaxed),
            shared.received.load(Ordering::Relaxed),
        );
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let tick = Tick {
            t: t0.elapsed().as_secs_f64(),
            sent_pps: (sent - last.2) as f64 / dt,
            received_pps: (recv - last.3) as f64 / dt,
            cpu_cores: (s.cpu - last.1.cpu) / dt,
            rss_mib: s.rss as f64 / MIB,
        };
        say(format!(
            "  {label} {:>4.1}/{:.0} s: sent {:>7.0}/s received {:>8.0}/s  relay CPU {:.2} cores  RSS {:.1} MiB",
            tick.t, traffic.seconds, tick.sent_pps, tick.received_pps, tick.cpu_cores, tick.rss_mib
        ));
        rss_end = s.rss;
        timeline.push(tick);
        last = (now, s, sent, recv);
    }
    let s1 = relay.sample();
    let wall = t0.elapsed().as_secs_f64();
    shared.close_window();
    std::thread::sleep(Duration::from_millis(400)); // drain
    let drops = UdpDrops::now().since(d0);
    shared.stop.store(true, Ordering::SeqCst);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
    let mut latency = traffic::new_histogram();
    let mut received = 0;
    let mut unstamped = 0;
    for r in receivers {
        let t = r
            .join()
            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
        received += t.in_window;
        unstamped += t.unstamped;
        latency.add(&t.latency)?;
    }
    let fanout = (layout.room_size - 1) as u64;
    let sent_total: u64 = sent.in_window.iter().sum();
    let expected = sent_total * fanout;
    let cpu = s1.cpu - s0.cpu;
    let media_cpu_cores = s1
        .media_threads
        .iter()
        .map(|(name, c)| {
            let before = s0
                .media_threads
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, c)| *c);
            (c - before) / wall
        })
        .collect();
    let participants = layout.participants();
    let point = Point {
        through: through.into(),
        workers,
        layout,
        participants,
        traffic,
        sent: sent_total,
        expected,
        received,
        loss: if expected > 0 {
            1.0 - received as f64 / expected as f64
        } else {
            0.0
        },
        send_failed: sent.failed,
        send_skipped: sent.skipped,
        kernel_rcvbuf_drops: drops.rcvbuf_errors,
        unstamped,
        latency_us: Percentiles::of(&latency),
        delivered_pps: received as f64 / wall,
        cpu_cores: cpu / wall,
        media_cpu_cores,
        delivered_per_cpu_s: if cpu > 0.0 {
            received as f64 / cpu
        } else {
            0.0
        },
        rss_idle_mib: idle.rss as f64 / MIB,
        rss_connected_mib: connected.rss as f64 / MIB,
        rss_end_mib: rss_end as f64 / MIB,
        rss_per_participant_kib: (connected.rss as f64 - idle.rss as f64).max(0.0)
            / 1024.0
            / participants.max(1) as f64,
        timeline,
    };
    say(format!(
        "  {label}: loss {:.4}%  latency p50 {} µs p99 {} µs p99.9 {} µs  CPU {:.2} cores  {:.0} delivered per CPU-s",
        point.loss * 100.0,
        point.latency_us.p50,
        point.latency_us.p99,
        point.latency_us.p999,
        point.cpu_cores,
        point.delivered_per_cpu_s
    ));
    Ok(point)
}

/// Floor-grant latency with many rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FloorReport {
    pub(crate) rooms: usize,
    pub(crate) participants: usize,
    pub(crate) seconds: f64,
    /// MIC_REQUEST sent to MIC_GRANTED read, at the requester, µs.
    pub(crate) grant_us: Percentiles,
    /// HEARTBEAT sent to HEARTBEAT_ACK read on the same connections (the
    /// cost of the round trip itself), µs.
    pub(crate) heartbeat_us: Percentiles,
    /// MIC_REQUEST inside the router (GetStats `command_latency`): line
    /// read to MIC_GRANTED queued for writing, µs.
    pub(crate) router_grant_us: Percentiles,
    /// The same for HEARTBEAT.
    pub(crate) router_heartbeat_us: Percentiles,
    /// Grants per second over all rooms.
    pub(crate) grants_per_s: f64,
    pub(crate) router_cpu_cores: f64,
    pub(crate) rss_mib: f64,
}

/// `rooms` ptt rooms of two; in each, one member requests and releases the
/// floor about once a second and pings between, for `seconds`.
pub(crate) async fn floor(rooms: usize, seconds: f64) -> anyhow::Result<FloorReport> {
    let router = Child::spawn(
        &RouterArgs {
            kind: "ptt".into(),
            rooms,
            workers: 1,
            max_sessions: rooms * 2 + 16,
            heartbeat_ms: 5000,
        }
        .to_args(),
    )?;
    let Some(ctl) = router.ready.control else {
        bail!("the router told no control address");
    };
    let started = Instant::now();
    let mut pairs = Vec::with_capacity(rooms);
    let mut pending = JoinSet::new();
    let mut next = 0;
    while pairs.len() < rooms {
        while next < rooms && pending.len() < 64 {
            let room = next;
            pending.spawn(async move {
                let mut a = client::Session::connect(ctl, &format!("a{room}")).await?;
                a.join(&room_name(room)).await?;
                let mut b = client::Session::connect(ctl, &format!("b{room}")).await?;
                b.join(&room_name(room)).await?;
                anyhow::Ok((a, b))
            });
            next += 1;
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        pairs.push(done??);
        if pairs.len() % 250 == 0 || pairs.len() == rooms {
            say(format!(
                "  floor: {}/{rooms} rooms filled ({:.1} s)",
                pairs.len(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let epoch = Instant::now();
    let warm = Duration::from_secs(1);
    let end = epoch + warm + Duration::from_secs_f64(seconds);
    let mut tasks = JoinSet::new();
    let mut idle = JoinSet::new();
    for (mut a, mut b) in pairs {
        idle.spawn(async move { while b.next_event().await.is_some() {} });
        tasks.spawn(async move {
            let me = a.welcome().session_id;
            let mut grants = traffic::new_histogram();
            let mut pings = traffic::new_histogram();
            // Rooms start out of step.
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..1000))).await;
            while Instant::now() < end {
                let counted = Instant::now() > epoch + warm;
                let t = Instant::now();
                a.send(ClientMessage::MicRequest { priority: 0 }).await?;
                wait(&mut a, |m| {
                    matches!(m, ServerMessage::MicGranted { session_id, .. } if *session_id == me)
                })
                .await?;
                if counted {
                    let _ = grants.record(t.elapsed().as_micros().max(1) as u64);
                }
                a.send(ClientMessage::MicRelease).await?;
                tokio::time::sleep(Duration::from_millis(rand::random_range(200..800))).await;
                let t = Instant::now();
                a.send(ClientMessage::Heartbeat).await?;
                wait(&mut a, |m| matches!(m, ServerMessage::HeartbeatAck)).await?;
                if counted {
                    let _ = pings.record(t.elapsed().as_micros().max(1) as u64);
                }
                tokio::time::sleep(Duration::from_millis(rand::random_range(200..800))).await;
            }
            anyhow::Ok((grants, pings))
        });
    }
    tokio::time::sleep(warm).await;
    let s0 = router.sample();
    let t0 = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    while Instant::now() < end {
        ticker.tick().await;
        say(format!(
            "  floor: {:.0}/{seconds:.0} s, router CPU {:.2} cores",
            t0.elapsed().as_secs_f64(),
            (router.sample().cpu - s0.cpu) / t0.elapsed().as_secs_f64().max(1e-3)
        ));
    }
    let s1 = router.sample();
    let wall = t0.elapsed().as_secs_f64();
    let mut grants = traffic::new_histogram();
    let mut pings = traffic::new_histogram();
    while let Some(r) = tasks.join_next().await {
        let (g, p) = r??;
        grants.add(&g)?;
        pings.add(&p)?;
    }
    idle.abort_all();
    let inside = match router.ready.admin {
        Some(admin) => command_latency(admin).await?,
        None => Vec::new(),
    };
    let pick = |name: &str| {
        inside
            .iter()
            .find(|c| c.command == name)
            .map(|c| Percentiles {
                count: c.count,
                p50: c.p50_us,
                p99: c.p99_us,
                p999: c.p999_us,
                max: c.max_us,
            })
            .unwrap_or_default()
    };
    let report = FloorReport {
        router_grant_us: pick("MIC_REQUEST"),
        router_heartbeat_us: pick("HEARTBEAT"),
        rooms,
        participants: rooms * 2,
        seconds,
        grant_us: Percentiles::of(&grants),
        heartbeat_us: Percentiles::of(&pings),
        grants_per_s: grants.len() as f64 / seconds,
        router_cpu_cores: (s1.cpu - s0.cpu) / wall,
        rss_mib: s1.rss as f64 / MIB,
    };
    say(format!(
        "  floor: {} grants in {rooms} rooms; in the router p50 {} µs p99 {} µs; at the requester p50 {} µs p99 {} µs (HEARTBEAT round trip p50 {} µs p99 {} µs)",
        report.grant_us.count,
        report.router_grant_us.p50,
        report.router_grant_us.p99,
        report.grant_us.p50,
        report.grant_us.p99,
        report.heartbeat_us.p50,
        report.heartbeat_us.p99
    ));
    Ok(report)
}

/// The router's own command timings, from its admin API.
async fn command_latency(
    admin: SocketAddr,
) -> anyhow::Result<Vec<proto_grpc::admin::CommandLatency>> {
    let mut c = proto_grpc::admin::admin_client::AdminClient::connect(format!("http://{admin}"))
        .await
        .context("connecting to the admin API")?;
    let stats = c
        .get_stats(proto_grpc::admin::GetStatsRequest {
            room: room_name(0),
            ..Default::default()
        })
        .await
        .context("GetStats")?
        .into_inner();
    Ok(stats.router.map(|r| r.command_latency).unwrap_or_default())
}

/// Reads events until `want` matches (5 s at most).
async fn wait(
    s: &mut client::Session,
    want: impl Fn(&ServerMessage) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.next_event()).await {
            Ok(Some(m)) if want(&m) => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => bail!("connection closed"),
            Err(_) => bail!("no answer within 5 s"),
        }
    }
}
