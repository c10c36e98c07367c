//! One push-to-talk room growing to thousands of members: what each join
//! costs the router at each size (CPU, memory, bytes written), how long the
//! join storm takes, and how long a floor grant takes inside the router at
//! that size.
//!
//! The members are spread over several child processes of this binary
//! (`__members`), each with its own source address in 127.0.0.0/8: one
//! process may not open enough sockets for ten thousand (a TCP and a UDP
//! socket each), and the router tells members apart by address. They are
//! lean: they speak HELLO, JOIN and a STUN binding, then only read and
//! discard what the router sends (the router's cost is what is measured; a
//! JSON parser per member would only slow the machine). One talker in this
//! process takes and gives back the floor to measure grants.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{TcpSocket, UdpSocket};

use crate::children::{RouterArgs, room_name};
use crate::procfs::Child;

/// How members hear of each other (the features they ask for in HELLO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Lists {
    /// No feature: a whole `USERLIST` on every change.
    Whole,
    /// `member_deltas`: the whole list on joining, then deltas.
    Deltas,
    /// `member_pages`: in a large room, counts instead of lists.
    Pages,
}

impl Lists {
    pub(crate) fn features(self) -> Vec<String> {
        match self {
            Lists::Whole => vec![],
            Lists::Deltas => vec![proto::control::FEATURE_MEMBER_DELTAS.to_owned()],
            Lists::Pages => vec![proto::control::FEATURE_MEMBER_PAGES.to_owned()],
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Lists::Whole => "whole",
            Lists::Deltas => "deltas",
            Lists::Pages => "pages",
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Members at each checkpoint, increasing; the last is the room's size.
    pub(crate) checkpoints: Vec<usize>,
    /// Member processes.
    pub(crate) processes: usize,
    /// How members hear of each other.
    pub(crate) lists: Lists,
    /// Floor grants measured at each checkpoint of at least 1,000 members.
    pub(crate) grants: usize,
    /// Members that join and leave at each checkpoint to price one join at
    /// that size.
    pub(crate) probe: usize,
}

/// One size of the room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) members: usize,
    /// Members that joined since the previous checkpoint.
    pub(crate) joins: usize,
    /// Wall time from the first of those joins to the last JOINED.
    pub(crate) storm_secs: f64,
    /// Then until the router went quiet (coalesced member lists flushed).
    pub(crate) settle_secs: f64,
    /// Router CPU over both, per join.
    pub(crate) cpu_per_join_us: f64,
    /// Bytes the members read from the router, per join.
    pub(crate) sent_per_join_kb: f64,
    /// Members (besides the talker) no longer connected.
    pub(crate) lost: usize,
    pub(crate) rss_mb: f64,
    /// Router CPU per member that joins the room at this size (and leaves
    /// again: the probe keeps the size), over `probe_joins` of them.
    pub(crate) probe_joins: usize,
    pub(crate) probe_cpu_per_join_us: f64,
    pub(crate) grant: Option<Grants>,
}

/// Floor grants at one size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Grants {
    pub(crate) count: u64,
    /// Inside the router: MIC_REQUEST read to every message it caused
    /// queued (GetStats command_latency).
    pub(crate) router_p50_us: u64,
    pub(crate) router_p99_us: u64,
    pub(crate) router_max_us: u64,
    /// At the requester: MIC_REQUEST sent to MIC_GRANTED read.
    pub(crate) requester_p50_us: u64,
    pub(crate) requester_p99_us: u64,
    /// MIC_REQUEST sent to MIC_GRANTED read by the room's last member:
    /// the whole room has heard the grant (absent in earlier reports).
    #[serde(default)]
    pub(crate) whole_room_p50_us: u64,
    #[serde(default)]
    pub(crate) whole_room_p99_us: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    /// Members asked for `member_deltas` or `member_pages`.
    pub(crate) deltas: bool,
    /// Members asked for `member_pages` (absent in reports before it).
    #[serde(default)]
    pub(crate) pages: bool,
    pub(crate) processes: usize,
    pub(crate) checkpoints: Vec<Checkpoint>,
    /// Probe CPU per join at the last checkpoint over the first.
    pub(crate) cpu_per_join_growth: f64,
}

fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

/// Members still connected and bytes read, over every process.
pub(crate) fn alive(procs: &mut [Members]) -> anyhow::Result<(usize, u64)> {
    let mut total = (0, 0);
    for p in procs {
        let (a, r) = p.alive()?;
        total.0 += a;
        total.1 += r;
    }
    Ok(total)
}

/// A member process, spoken to over its stdin and stdout.
pub(crate) struct Members {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Members {
    pub(crate) fn spawn(
        control: SocketAddr,
        ip: Ipv4Addr,
        prefix: &str,
        lists: Lists,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this program")?;
        // The members run at a lower priority than the router: on a
        // machine this small they would otherwise take the router's cores
        // in the middle of a command, which a router machine of its own
        // would not see (coreutils `nice`, present wherever this runs).
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "10"]).arg(exe).args([
            "__members",
            "--control",
            &control.to_string(),
            "--ip",
            &ip.to_string(),
            "--prefix",
            prefix,
        ]);
        cmd.args(["--lists", lists.arg()]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a member process")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("member process without pipes");
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    pub(crate) fn ask(&mut self, n: usize) -> anyhow::Result<()> {
        self.say(&format!("join {n}"))
    }

    /// Asks for `n` members that join and at once disconnect.
    fn churn(&mut self, n: usize) -> anyhow::Result<()> {
        self.say(&format!("churn {n}"))
    }

    fn say(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Members still connected, and bytes they read.
    fn alive(&mut self) -> anyhow::Result<(usize, u64)> {
        writeln!(self.stdin, "alive")?;
        self.stdin.flush()?;
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .context("a member process did not answer")?;
        let mut it = line.split_whitespace().skip(1);
        let alive = it.next().and_then(|v| v.parse().ok());
        let read = it.next().and_then(|v| v.parse().ok());
        match (alive, read) {
            (Some(a), Some(r)) => Ok((a, r)),
            _ => bail!("member process said {line:?}"),
        }
    }

    /// Waits for the answer to [`Members::ask`]: members joined so far.
    pub(crate) fn answer(&self, within: Duration) -> anyhow::Result<usize> {
        let line = self
            .lines
            .recv_timeout(within)
            .context("a member process did not answer")?;
        let Some(rest) = line.strip_prefix("joined ") else {
            bail!("member process said {line:?}");
        };
        Ok(rest.trim().parse()?)
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the router has been nearly idle (under 3% of a core) for
/// two 250 ms windows in a row, at most `max`.
pub(crate) async fn settle(router: &Child, max: Duration) -> Duration {
    let started = Instant::now();
    let mut quiet = 0;
    let mut last = router.sample().cpu;
    while started.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = router.sample().cpu;
        if now - last < 0.0075 {
            quiet += 1;
            if quiet == 2 {
                break;
            }
        } else {
            quiet = 0;
        }
        last = now;
    }
    started.elapsed()
}

type Admin = proto_grpc::admin::admin_client::AdminClient<tonic::transport::Channel>;

async fn mic_request_latency(
    admin: &mut Admin,
    reset: bool,
) -> anyhow::Result<Option<(u64, u64, u64)>> {
    let stats = admin
        .get_stats(proto_grpc::admin::GetStatsRequest {
            room: room_name(0),
            reset_command_latency: reset,
        })
        .await?
        .into_inner();
    Ok(stats
        .router
        .map(|r| r.command_latency)
        .unwrap_or_default()
        .iter()
        .find(|c| c.command == "MIC_REQUEST")
        .map(|c| (c.p50_us, c.p99_us, c.max_us)))
}

async fn drain(talker: &mut client::Session) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, talker.next_event()).await {}
}

async fn released(s: &mut client::Session) -> anyhow::Result<()> {
    s.expect("MIC_RELEASED", |m| {
        matches!(m, proto::control::ServerMessage::MicReleased { .. }).then_some(())
    })
    .await?;
    Ok(())
}

/// `grants` floor grants and releases by the talker, each once the whole
/// room heard the one before: a member that joined last (so the router
/// writes to it last) tells when the room has heard a message. Pressing
/// faster than a room of thousands can be told would only measure a
/// backlog, which no talker makes.
async fn grants(
    talker: &mut client::Session,
    control: SocketAddr,
    admin: &mut Admin,
    grants: usize,
) -> anyhow::Result<Grants> {
    let mut last = client::Session::connect_with(
        control,
        "last",
        client::ConnectOptions {
            features: Lists::Pages.features(),
            ..client::ConnectOptions::default()
        },
    )
    .await?;
    last.join(&room_name(0)).await?;
    drain(talker).await;
    let hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
    let (mut at_requester, mut whole_room) = (hist()?, hist()?);
    // A few grants first, not counted.
    const WARM_UP: usize = 5;
    for i in 0..WARM_UP + grants {
        if i == WARM_UP {
            mic_request_latency(admin, true).await?;
            at_requester.reset();
            whole_room.reset();
        }
        drain(&mut last).await;
        let t = Instant::now();
        match talker.request_floor(0).await? {
            client::FloorAnswer::Granted { .. } => {}
            other => bail!("floor not granted: {other:?}"),
        }
        at_requester.saturating_record(t.elapsed().as_micros() as u64);
        last.expect("MIC_GRANTED", |m| {
            matches!(m, proto::control::ServerMessage::MicGranted { .. }).then_some(())
        })
        .await?;
        whole_room.saturating_record(t.elapsed().as_micros() as u64);
        talker.release_floor().await?;
        released(talker).await?;
        released(&mut last).await?;
        drain(talker).await;
    }
    last.send(proto::control::ClientMessage::Leave).await?;
    let Some((p50, p99, max)) = mic_request_latency(admin, false).await? else {
        bail!("the router timed no MIC_REQUEST");
    };
    Ok(Grants {
        count: grants as u64,
        router_p50_us: p50,
        router_p99_us: p99,
        router_max_us: max,
        requester_p50_us: at_requester.value_at_quantile(0.5),
        requester_p99_us: at_requester.value_at_quantile(0.99),
        whole_room_p50_us: whole_room.value_at_quantile(0.5),
        whole_room_p99_us: whole_room.value_at_quantile(0.99),
    })
}

/// Runs the plan.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let Some(&size) = plan.checkpoints.last() else {
        bail!("no checkpoints");
    };
    let router = Child::spawn(
        &RouterArgs {
            kind: "ptt".into(),
            rooms: 1,
            workers: 1,
            // Room for the probe's members, which come and go 32 at a time per process.
            max_sessions: size + 64 + 64 * plan.processes.max(1),
            // Members send no heartbeats: 10 minutes of silence allowed.
            heartbeat_ms: 200_000,
        }
        .to_args(),
    )?;
    let (Some(ctl), Some(admin_addr)) = (router.ready.control, router.ready.admin) else {
        bail!("the router told no control or admin address");
    };
    let mut admin = Admin::connect(format!("http://{admin_addr}")).await?;
    let features = plan.lists.features();
    let mut talker = client::Session::connect_with(
        ctl,
        "talker",
        client::ConnectOptions {
            features,
            ..client::ConnectOptions::default()
        },
    )
    .await?;
    talker.join(&room_name(0)).await?;
    let _media = talker.bind_media().await?;
    let mut procs = Vec::new();
    for k in 0..plan.processes.max(1) {
        let ip = Ipv4Addr::new(127, 0, (k + 1) as u8, 1);
        procs.push(Members::spawn(ctl, ip, &format!("m{k}"), plan.lists)?);
    }
    let mut current = 1usize; // the talker
    let mut before = router.sample();
    let mut read = alive(&mut procs)?.1;
    let mut out = Vec::new();
    for &target in &plan.checkpoints {
        let need = target.saturating_sub(current);
        let n = procs.len();
        let started = Instant::now();
        for (i, p) in procs.iter_mut().enumerate() {
            p.ask(need / n + usize::from(i < need % n))?;
        }
        for p in &procs {
            p.answer(Duration::from_secs(600))?;
        }
        let storm = started.elapsed();
        let settled = settle(&router, Duration::from_secs(120)).await;
        current = target;
        let after = router.sample();
        let (connected, read_now) = alive(&mut procs)?;
        let joins = need.max(1);
        let cp = Checkpoint {
            members: target,
            joins: need,
            storm_secs: storm.as_secs_f64(),
            settle_secs: settled.as_secs_f64(),
            cpu_per_join_us: (after.cpu - before.cpu) * 1e6 / joins as f64,
            sent_per_join_kb: read_now.saturating_sub(read) as f64 / 1024.0 / joins as f64,
            lost: (target - 1).saturating_sub(connected),
            rss_mb: after.rss as f64 / (1 << 20) as f64,
            probe_joins: 0,
            probe_cpu_per_join_us: 0.0,
            grant: None,
        };
        say(format!(
            "  {target} members: {need} joins in {:.1} s (+{:.1} s to settle), {:.0} µs router CPU and {:.1} KiB sent per join, RSS {:.0} MB, {} lost",
            cp.storm_secs,
            cp.settle_secs,
            cp.cpu_per_join_us,
            cp.sent_per_join_kb,
            cp.rss_mb,
            cp.lost
        ));
        out.push(cp);
        if plan.probe > 0 {
            let before = router.sample();
            for (i, p) in procs.iter_mut().enumerate() {
                p.churn(plan.probe / n + usize::from(i < plan.probe % n))?;
            }
            for p in &procs {
                p.answer(Duration::from_secs(600))?;
            }
            settle(&router, Duration::from_secs(60)).await;
            let per = (router.sample().cpu - before.cpu) * 1e6 / plan.probe as f64;
            say(format!(
                "  {target} members: {} more joined and left, {per:.0} µs router CPU per join",
                plan.probe
            ));
            if let Some(last) = out.last_mut() {
                last.probe_joins = plan.probe;
                last.probe_cpu_per_join_us = per;
            }
        }
        if target >= 1000 && plan.grants > 0 {
            let g = grants(&mut talker, ctl, &mut admin, plan.grants).await?;
            say(format!(
                "  {target} members: floor grant inside the router p50 {} µs, p99 {} µs, max {} µs; \
                 at the requester p50 {} µs, p99 {} µs; the whole room p50 {:.1} ms, p99 {:.1} ms",
                g.router_p50_us,
                g.router_p99_us,
                g.router_max_us,
                g.requester_p50_us,
                g.requester_p99_us,
                g.whole_room_p50_us as f64 / 1000.0,
                g.whole_room_p99_us as f64 / 1000.0,
            ));
            if let Some(last) = out.last_mut() {
                last.grant = Some(g);
            }
            settle(&router, Duration::from_secs(30)).await;
        }
        drain(&mut talker).await;
        before = router.sample();
        read = alive(&mut procs)?.1;
    }
    let first = out
        .first()
        .map_or(1.0, |c| c.probe_cpu_per_join_us.max(1e-9));
    let last = out.last().map_or(1.0, |c| c.probe_cpu_per_join_us);
    Ok(Report {
        deltas: plan.lists != Lists::Whole,
        pages: plan.lists == Lists::Pages,
        processes: procs.len(),
        cpu_per_join_growth: last / first,
        checkpoints: out,
    })
}

/// What the churn run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChurnReport {
    pub(crate) members: usize,
    pub(crate) deltas: bool,
    pub(crate) seconds: f64,
    /// JOIN + LEAVE round trips the churner made.
    pub(crate) cycles: u64,
    pub(crate) rss_before_mb: f64,
    pub(crate) rss_max_mb: f64,
    /// Members disconnected by the end (the router dropped them).
    pub(crate) lost: usize,
    /// Bytes the members read from the router, per second.
    pub(crate) sent_mb_per_sec: f64,
}

/// One client joins and leaves a room of `members` as fast as it can for
/// `seconds`, while the router's resident memory is sampled every 50 ms.
pub(crate) async fn churn(
    members: usize,
    seconds: f64,
    deltas: bool,
) -> anyhow::Result<ChurnReport> {
    let router = Child::spawn(
        &RouterArgs {
            kind: "ptt".into(),
            rooms: 1,
            workers: 1,
            max_sessions: members + 64,
            heartbeat_ms: 200_000,
        }
        .to_args(),
    )?;
    let Some(ctl) = router.ready.control else {
        bail!("the router told no control address");
    };
    let mut procs = vec![Members::spawn(
        ctl,
        Ipv4Addr::new(127, 0, 1, 1),
        "m",
        if deltas { Lists::Deltas } else { Lists::Whole },
    )?];
    for p in &mut procs {
        p.ask(members)?;
    }
    for p in &procs {
        p.answer(Duration::from_secs(120))?;
    }
    settle(&router, Duration::from_secs(30)).await;
    let rss_before = router.sample().rss;
    let read_before = alive(&mut procs)?.1;
    // The churner: one session, JOIN and LEAVE in a loop.
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from(([127, 0, 2, 1], 0)))?;
    let stream = sock.connect(ctl).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = AsyncBufReader::with_capacity(64 * 1024, r);
    w.write_all(b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"churner\"}\n")
        .await?;
    read_until(&mut r, "WELCOME").await?;
    let pid = router.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut max = 0u64;
            while sampling.load(Ordering::Relaxed) {
                max = max.max(crate::procfs::Sample::of(pid).rss);
                std::thread::sleep(Duration::from_millis(50));
            }
            max
        })
    };
    let started = Instant::now();
    let mut cycles = 0u64;
    let join = format!("{{\"type\":\"JOIN\",\"room\":\"{}\"}}\n", room_name(0));
    let mut last_report = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        w.write_all(join.as_bytes()).await?;
        read_until(&mut r, "JOINED").await?;
        w.write_all(b"{\"type\":\"LEAVE\"}\n").await?;
        read_until(&mut r, "LEFT").await?;
        cycles += 1;
        if last_report.elapsed() > Duration::from_secs(1) {
            last_report = Instant::now();
            say(format!(
                "  churn: {cycles} joins and leaves in {:.0} s, router RSS {:.0} MB",
                started.elapsed().as_secs_f64(),
                router.sample().rss as f64 / (1 << 20) as f64
            ));
        }
    }
    let took = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let rss_max = sampler.join().unwrap_or(0);
    settle(&router, Duration::from_secs(30)).await;
    let (connected, read_after) = alive(&mut procs)?;
    Ok(ChurnReport {
        members,
        deltas,
        seconds: took,
        cycles,
        rss_before_mb: rss_before as f64 / (1 << 20) as f64,
        rss_max_mb: rss_max as f64 / (1 << 20) as f64,
        lost: members.saturating_sub(connected),
        sent_mb_per_sec: read_after.saturating_sub(read_before) as f64 / (1 << 20) as f64 / took,
    })
}

/// Members of this process still connected, and bytes they have read.
static ALIVE: AtomicUsize = AtomicUsize::new(0);
static READ: AtomicU64 = AtomicU64::new(0);

/// `__members`: joins members on request (`join N` on stdin, answered
/// `joined TOTAL` on stdout), keeps them connected until killed, and says
/// how many still are (`alive`, answered `alive N BYTES_READ`).
pub(crate) fn run_members(
    control: SocketAddr,
    ip: Ipv4Addr,
    prefix: &str,
    lists: Lists,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // None: `alive`; Some((n, stay)): `join n` (stay) or `churn n`.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<(usize, bool)>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            let count = |p: &str| line.strip_prefix(p).and_then(|n| n.trim().parse().ok());
            let ask = if line.trim() == "alive" {
                Some(None)
            } else if let Some(n) = count("join ") {
                Some(Some((n, true)))
            } else {
                count("churn ").map(|n| Some((n, false)))
            };
            if let Some(ask) = ask
                && tx.send(ask).is_err()
            {
                break;
            }
        }
    });
    rt.block_on(async move {
        const AT_ONCE: usize = 32;
        let mut total = 0usize;
        while let Some(ask) = rx.recv().await {
            let Some((n, stay)) = ask else {
                println!(
                    "alive {} {}",
                    ALIVE.load(Ordering::Relaxed),
                    READ.load(Ordering::Relaxed)
                );
                continue;
            };
            let mut pending = tokio::task::JoinSet::new();
            let mut next = 0;
            while next < n || !pending.is_empty() {
                while next < n && pending.len() < AT_ONCE {
                    let nick = if stay {
                        format!("{prefix}-{}", total + next)
                    } else {
                        format!("{prefix}-c{next}")
                    };
                    pending
                        .spawn(async move { join_member(control, ip, &nick, lists, stay).await });
                    next += 1;
                }
                if let Some(r) = pending.join_next().await {
                    r??;
                }
            }
            if stay {
                total += n;
            }
            println!("joined {total}");
        }
        Ok(())
    })
}

/// Reads lines until one of `ty`; refuses ERROR and FULL.
pub(crate) async fn read_until(
    r: &mut AsyncBufReader<tokio::net::tcp::OwnedReadHalf>,
    ty: &str,
) -> anyhow::Result<serde_json::Value> {
    let want = format!(r#"{{"type":"{ty}""#);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            bail!("closed while waiting for {ty}");
        }
        if line.starts_with(want.as_bytes()) {
            return Ok(serde_json::from_slice(&line)?);
        }
        if line.starts_with(br#"{"type":"ERROR""#) || line.starts_with(br#"{"type":"FULL""#) {
            bail!("waiting for {ty}: {}", String::from_utf8_lossy(&line));
        }
    }
}

/// One lean member: HELLO, JOIN, STUN binding; then it reads and discards
/// (`stay`) or disconnects.
async fn join_member(
    control: SocketAddr,
    ip: Ipv4Addr,
    nick: &str,
    lists: Lists,
    stay: bool,
) -> anyhow::Result<()> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    let stream = sock.connect(control).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = AsyncBufReader::with_capacity(16 * 1024, r);
    let features = match lists {
        Lists::Whole => "",
        Lists::Deltas => r#","features":["member_deltas"]"#,
        Lists::Pages => r#","features":["member_pages"]"#,
    };
    w.write_all(
        format!("{{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"{nick}\"{features}}}\n")
            .as_bytes(),
    )
    .await?;
    let welcome = read_until(&mut r, "WELCOME").await?;
    let token = welcome["media_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    w.write_all(format!("{{\"type\":\"JOIN\",\"room\":\"{}\"}}\n", room_name(0)).as_bytes())
        .await?;
    let joined = read_until(&mut r, "JOINED").await?;
    let port = joined["udp_port"].as_u64().unwrap_or(0) as u16;
    let udp = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0)).await?;
    let server = SocketAddr::new(control.ip(), port);
    let (req, tid) = proto::media::binding_request(&token).map_err(anyhow::Error::msg)?;
    let mut buf = [0u8; 1500];
    let mut bound = false;
    for _ in 0..10 {
        udp.send_to(&req, server).await?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), udp.recv_from(&mut buf)).await
            && proto::media::parse_binding_response(&buf[..n], tid).is_some()
        {
            bound = true;
            break;
        }
    }
    if !bound {
        bail!("{nick}: no STUN answer");
    }
    if !stay {
        // A member that leaves says BYE: a dropped connection would keep
        // its session for the resume grace (and count toward max_sessions).
        w.write_all(b"{\"type\":\"BYE\"}\n").await?;
        // Gone once the router closes: a member that reuses this nickname
        // at once would otherwise race the BYE on another connection and
        // find the nickname still taken.
        let mut sink = vec![0u8; 16 * 1024];
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(n) = r.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        return Ok(());
    }
    ALIVE.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let _keep = (udp, w);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    READ.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        ALIVE.fetch_sub(1, Ordering::Relaxed);
    });
    Ok(())
}

/// Draws how the costs grow with the room: CPU and bytes per join, and
/// floor-grant time inside the router (SVG).
pub(crate) fn plot(path: &std::path::Path, r: &Report) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1500, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    let max_x = r.checkpoints.iter().map(|c| c.members).max().unwrap_or(1) as f64 * 1.05;
    type Pick = fn(&Checkpoint) -> Option<f64>;
    type Line = (&'static str, Pick, RGBColor);
    let charts: [(&str, &str, Vec<Line>); 3] = [
        (
            "Router CPU per join",
            "µs",
            vec![
                ("join storm", |c| Some(c.cpu_per_join_us), BLUE),
                (
                    "one join at this size",
                    |c| (c.probe_joins > 0).then_some(c.probe_cpu_per_join_us),
                    RED,
                ),
            ],
        ),
        (
            "Sent to members per join",
            "KiB",
            vec![("join storm", |c| Some(c.sent_per_join_kb), BLUE)],
        ),
        (
            "Floor grant inside the router",
            "µs",
            vec![
                (
                    "p50",
                    |c| c.grant.as_ref().map(|g| g.router_p50_us as f64),
                    BLUE,
                ),
                (
                    "p99",
                    |c| c.grant.as_ref().map(|g| g.router_p99_us as f64),
                    CYAN,
                ),
                ("goal p99", |c| c.grant.as_ref().map(|_| 1000.0), BLACK),
            ],
        ),
    ];
    for (panel, (title, unit, lines)) in panels.iter().zip(charts) {
        let max_y = lines
            .iter()
            .flat_map(|(_, f, _)| r.checkpoints.iter().filter_map(f))
            .fold(0.0f64, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, 0f64..(max_y * 1.15).max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("members in the room")
            .y_desc(unit)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (name, f, color) in lines {
            let pts: Vec<(f64, f64)> = r
                .checkpoints
                .iter()
                .filter_map(|c| f(c).map(|y| (c.members as f64, y)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
