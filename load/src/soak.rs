//! `soak`: hours of mixed load on one router, sampled. Passive members sit
//! in a room; active clients come and go in cycles (connect, HELLO, JOIN one
//! of four rooms, chat, ask for and release the floor, heartbeat, then LEAVE
//! and BYE, or drop the connection without a word). Every `sample_secs` the
//! router's resident memory and CPU share are sampled, printed and kept;
//! the report holds the series, and a plot draws it. A router that leaks
//! shows a rising RSS line; one that loses sessions shows `unexpected`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

use crate::bigroom::{Lists, Members, alive, read_until};
use crate::children::{RouterArgs, room_name};
use crate::procfs::Child;

/// Rooms the active clients spread over (the members sit in the first).
const ROOMS: usize = 4;

/// One sample of the router.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SoakSample {
    pub(crate) minutes: f64,
    pub(crate) rss_mib: f64,
    /// Share of one core since the previous sample, in percent.
    pub(crate) cpu_percent: f64,
    /// Active-client cycles completed so far.
    pub(crate) cycles: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SoakReport {
    pub(crate) minutes: f64,
    pub(crate) members: usize,
    pub(crate) active: usize,
    pub(crate) cycles: u64,
    pub(crate) chats: u64,
    pub(crate) floor_requests: u64,
    /// Commands refused (rate limits, floor held by another, ...): expected.
    pub(crate) refusals: u64,
    /// Active connections the router ended that the client did not end.
    pub(crate) unexpected_closes: u64,
    /// Passive members no longer connected at the end.
    pub(crate) members_lost: usize,
    pub(crate) rss_first_mib: f64,
    pub(crate) rss_last_mib: f64,
    pub(crate) rss_max_mib: f64,
    pub(crate) samples: Vec<SoakSample>,
}

#[derive(Default)]
struct Counters {
    cycles: AtomicU64,
    chats: AtomicU64,
    floor: AtomicU64,
    refusals: AtomicU64,
    unexpected: AtomicU64,
}

pub(crate) async fn soak(
    minutes: f64,
    members: usize,
    active: usize,
    sample_secs: f64,
) -> anyhow::Result<SoakReport> {
    let router = Child::spawn(
        &RouterArgs {
            kind: "chat".into(),
            rooms: ROOMS,
            workers: 1,
            max_sessions: members + active + 64,
            // The passive members never heartbeat: an hour's interval
            // (silence timeout three hours) keeps them.
            heartbeat_ms: 3_600_000,
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
        Lists::Deltas,
    )?];
    for p in &mut procs {
        p.ask(members)?;
    }
    for p in &procs {
        p.answer(Duration::from_secs(120))?;
    }
    eprintln!(
        "soak: {members} members in {}, {active} active clients, {minutes} min",
        room_name(0)
    );
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..active {
        let (counters, stop) = (counters.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(i as u64);
            let ip = Ipv4Addr::new(127, 0, 3, 1 + (i % 250) as u8);
            let mut generation = 0u64;
            while !stop.load(Ordering::Relaxed) {
                generation += 1;
                if let Err(e) = cycle(ctl, ip, i, generation, &mut rng, &counters, &stop).await {
                    counters.unexpected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("active client {i}: {e:#}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }));
    }
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    let mut samples = Vec::new();
    let mut last = (Instant::now(), router.sample().cpu);
    let mut rss_max: f64 = 0.0;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    loop {
        let s = router.sample();
        let now = Instant::now();
        let cpu_percent =
            (s.cpu - last.1) / now.duration_since(last.0).as_secs_f64().max(1e-3) * 100.0;
        last = (now, s.cpu);
        let sample = SoakSample {
            minutes: started.elapsed().as_secs_f64() / 60.0,
            rss_mib: mib(s.rss),
            cpu_percent: if samples.is_empty() { 0.0 } else { cpu_percent },
            cycles: counters.cycles.load(Ordering::Relaxed),
        };
        rss_max = rss_max.max(sample.rss_mib);
        eprintln!(
            "  soak {:5.1} min: RSS {:6.1} MiB, CPU {:5.1}%, {} cycles, {} chats, {} floor requests, {} unexpected closes",
            sample.minutes,
            sample.rss_mib,
            sample.cpu_percent,
            sample.cycles,
            counters.chats.load(Ordering::Relaxed),
            counters.floor.load(Ordering::Relaxed),
            counters.unexpected.load(Ordering::Relaxed),
        );
        samples.push(sample);
        if now >= end {
            break;
        }
        let next = (now + Duration::from_secs_f64(sample_secs)).min(end);
        tokio::time::sleep_until(next.into()).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let (connected, _) = alive(&mut procs)?;
    Ok(SoakReport {
        minutes: started.elapsed().as_secs_f64() / 60.0,
        members,
        active,
        cycles: counters.cycles.load(Ordering::Relaxed),
        chats: counters.chats.load(Ordering::Relaxed),
        floor_requests: counters.floor.load(Ordering::Relaxed),
        refusals: counters.refusals.load(Ordering::Relaxed),
        unexpected_closes: counters.unexpected.load(Ordering::Relaxed),
        members_lost: members.saturating_sub(connected),
        rss_first_mib: samples.first().map_or(0.0, |s| s.rss_mib),
        rss_last_mib: samples.last().map_or(0.0, |s| s.rss_mib),
        rss_max_mib: rss_max,
        samples,
    })
}

/// One active client's life: connect, HELLO, JOIN, a random number of
/// actions a random 50 to 400 ms apart, then LEAVE and BYE, or a drop.
async fn cycle(
    ctl: SocketAddr,
    ip: Ipv4Addr,
    i: usize,
    generation: u64,
    rng: &mut StdRng,
    counters: &Arc<Counters>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((ip, 0)))?;
    let stream = sock.connect(ctl).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let hello = format!(
        "{{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"a{i}-{generation}\",\"features\":[\"member_deltas\"]}}\n"
    );
    w.write_all(hello.as_bytes()).await?;
    read_until(&mut r, "WELCOME").await?;
    let room = room_name(rng.random_range(0..ROOMS));
    w.write_all(format!("{{\"type\":\"JOIN\",\"room\":\"{room}\"}}\n").as_bytes())
        .await?;
    read_until(&mut r, "JOINED").await?;
    // Read everything from here on; refusals are counted, a close is not
    // expected until we end the session.
    let reader_counters = counters.clone();
    let reader = tokio::spawn(async move {
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            if line.starts_with(br#"{"type":"ERROR""#) {
                reader_counters.refusals.fetch_add(1, Ordering::Relaxed);
            }
            if line.starts_with(br#"{"type":"GOODBYE""#) {
                return true;
            }
        }
    });
    let actions = rng.random_range(10..120);
    for n in 0..actions {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let line = match rng.random_range(0..10) {
            0..=3 => {
                counters.chats.fetch_add(1, Ordering::Relaxed);
                format!("{{\"type\":\"CHAT\",\"text\":\"soak {n} from a{i}\"}}\n")
            }
            4..=5 => {
                counters.floor.fetch_add(1, Ordering::Relaxed);
                "{\"type\":\"MIC_REQUEST\"}\n".to_owned()
            }
            6..=7 => "{\"type\":\"MIC_RELEASE\"}\n".to_owned(),
            _ => "{\"type\":\"HEARTBEAT\"}\n".to_owned(),
        };
        if w.write_all(line.as_bytes()).await.is_err() || reader.is_finished() {
            bail!("the router closed an active client's connection");
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
    if rng.random_bool(0.5) {
        w.write_all(b"{\"type\":\"LEAVE\"}\n{\"type\":\"BYE\"}\n")
            .await?;
        match tokio::time::timeout(Duration::from_secs(10), reader).await {
            Ok(Ok(true)) => {}
            _ => bail!("no GOODBYE after BYE"),
        }
    } else {
        // Gone without a word: the router must notice and clean up.
        reader.abort();
    }
    counters.cycles.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// RSS and CPU over the run, one panel each.
pub(crate) fn plot(path: &Path, r: &SoakReport) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let max_x = r.samples.last().map_or(1.0, |s| s.minutes).max(0.1);
    type Pick = fn(&SoakSample) -> f64;
    let charts: [(&str, &str, Pick, RGBColor); 2] = [
        ("Router resident memory", "MiB", |s| s.rss_mib, BLUE),
        (
            "Router CPU (share of one core)",
            "%",
            |s| s.cpu_percent,
            RED,
        ),
    ];
    for (panel, (title, unit, pick, color)) in panels.iter().zip(charts) {
        let max_y = r.samples.iter().map(pick).fold(0.0, f64::max).max(1.0) * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{title}: {} members, {} active clients",
                    r.members, r.active
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(unit)
            .draw()?;
        chart.draw_series(LineSeries::new(
            r.samples.iter().map(|s| (s.minutes, pick(s))),
            color.stroke_width(2),
        ))?;
        chart.draw_series(
            r.samples
                .iter()
                .map(|s| Circle::new((s.minutes, pick(s)), 3, color.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}
