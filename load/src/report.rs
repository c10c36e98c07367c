//! The suite: which points are measured, the goals they are held to, the
//! JSON report and the cost plot.

use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::scenarios::{self, FloorReport, Kind, Layout, Point, Traffic};

/// What a suite measures.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    quick: bool,
    seconds: f64,
    room_size: usize,
    /// Participants of the ptt and voice points, ascending.
    ptt: Vec<usize>,
    voice: Vec<usize>,
    /// The goal loads, and half the ptt one.
    ptt_goal: usize,
    voice_goal: usize,
    half_load: usize,
    floor_rooms: usize,
    floor_seconds: f64,
}

impl Plan {
    pub(crate) fn full() -> Plan {
        Plan {
            quick: false,
            seconds: 10.0,
            room_size: 10,
            ptt: vec![1000, 2000, 4000, 6000],
            voice: vec![100, 200, 400, 600],
            ptt_goal: 4000,
            voice_goal: 400,
            half_load: 2000,
            floor_rooms: 1000,
            floor_seconds: 10.0,
        }
    }

    /// Small loads for CI: the harness works end to end.
    pub(crate) fn quick() -> Plan {
        Plan {
            quick: true,
            seconds: 2.0,
            room_size: 10,
            ptt: vec![200, 400],
            voice: vec![40],
            ptt_goal: 400,
            voice_goal: 40,
            half_load: 200,
            floor_rooms: 100,
            floor_seconds: 2.0,
        }
    }

    pub(crate) fn with_seconds(mut self, s: f64) -> Plan {
        self.seconds = s.max(0.5);
        self.floor_seconds = s.max(0.5);
        self
    }

    fn layout(&self, kind: Kind, participants: usize) -> Layout {
        Layout {
            kind,
            rooms: participants.div_ceil(self.room_size),
            room_size: self.room_size,
        }
    }

    fn paced(&self) -> Traffic {
        Traffic {
            rate: 50,
            payload: 160,
            seconds: self.seconds,
            receiver_threads: 1,
        }
    }

    fn blast(&self) -> Traffic {
        Traffic {
            rate: 0,
            ..self.paced()
        }
    }
}

/// The same load through the bare relay and through the router.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pair {
    pub(crate) bare: Point,
    pub(crate) router: Point,
    /// Router delivered per CPU-second ÷ the bare relay's.
    pub(crate) ratio_per_cpu_s: f64,
    /// Router delivered per second ÷ the bare relay's.
    pub(crate) ratio_delivered_pps: f64,
}

impl Pair {
    fn new(bare: Point, router: Point) -> Pair {
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Pair {
            ratio_per_cpu_s: r(router.delivered_per_cpu_s, bare.delivered_per_cpu_s),
            ratio_delivered_pps: r(router.delivered_pps, bare.delivered_pps),
            bare,
            router,
        }
    }
}

/// Where the figures came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) fd_limit: u64,
}

impl Machine {
    fn here(fd_limit: u64) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            fd_limit,
        }
    }
}

/// One goal of the issue, held against the figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Goal {
    pub(crate) goal: String,
    pub(crate) target: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
    /// How far past (or short of) the target, in words.
    pub(crate) margin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) quick: bool,
    /// One room of 10, the talker as fast as it can: the forwarding ceiling.
    pub(crate) saturated: Pair,
    /// Paced ptt loads through both relays (half the goal load, the goal).
    pub(crate) paced: Vec<Pair>,
    /// Router points, ptt then voice, by participants.
    pub(crate) sweep: Vec<Point>,
    pub(crate) floor: FloorReport,
    /// Two rooms of 10, talkers as fast as they can, with 1 and 2 workers.
    pub(crate) scale: Vec<Point>,
    pub(crate) goals: Vec<Goal>,
}

impl Report {
    /// Every point measured once (the paced router points are in `sweep`).
    fn points(&self) -> impl Iterator<Item = &Point> {
        [&self.saturated.bare, &self.saturated.router]
            .into_iter()
            .chain(&self.sweep)
            .chain(self.paced.iter().map(|p| &p.bare))
            .chain(&self.scale)
    }
}

fn bare(layout: Layout, traffic: Traffic) -> anyhow::Result<Point> {
    tokio::task::block_in_place(|| scenarios::through_bare_relay(layout, traffic))
}

pub(crate) async fn run_suite(plan: &Plan, fd_limit: u64) -> anyhow::Result<Report> {
    let machine = Machine::here(fd_limit);
    eprintln!(
        "suite ({}): {} CPUs ({}), kernel {}",
        if plan.quick { "quick" } else { "full" },
        machine.cpus,
        machine.cpu_model,
        machine.kernel
    );
    let steps = 2 + 2 + plan.ptt.len() + plan.voice.len() + 1 + 2;
    let mut step = 0;
    let mut next = |what: &str| {
        step += 1;
        eprintln!("[{step}/{steps}] {what}");
    };

    let one_room = plan.layout(Kind::Ptt, plan.room_size);
    next("saturation, bare relay: one room of 10, the talker as fast as it can");
    let sat_bare = bare(one_room, plan.blast())?;
    next("saturation, router (1 worker)");
    let sat_router = scenarios::through_router(one_room, plan.blast(), 1).await?;
    let saturated = Pair::new(sat_bare, sat_router);

    let mut sweep = Vec::new();
    for &n in &plan.ptt {
        next(&format!("router, ptt, {n} participants at 50 pkt/s"));
        sweep.push(scenarios::through_router(plan.layout(Kind::Ptt, n), plan.paced(), 1).await?);
    }
    for &n in &plan.voice {
        next(&format!("router, voice, {n} participants at 50 pkt/s"));
        sweep.push(scenarios::through_router(plan.layout(Kind::Voice, n), plan.paced(), 1).await?);
    }
    let mut paced = Vec::new();
    for n in [plan.half_load, plan.ptt_goal] {
        next(&format!(
            "bare relay, ptt layout, {n} participants at 50 pkt/s"
        ));
        let b = bare(plan.layout(Kind::Ptt, n), plan.paced())?;
        let r = sweep
            .iter()
            .find(|p| p.layout.kind == Kind::Ptt && p.participants == n)
            .cloned();
        let r = match r {
            Some(r) => r,
            None => scenarios::through_router(plan.layout(Kind::Ptt, n), plan.paced(), 1).await?,
        };
        paced.push(Pair::new(b, r));
    }

    next(&format!(
        "floor grants, {} ptt rooms of 2",
        plan.floor_rooms
    ));
    let floor = scenarios::floor(plan.floor_rooms, plan.floor_seconds).await?;

    let two_rooms = Layout {
        rooms: 2,
        ..one_room
    };
    let mut scale = Vec::new();
    for workers in [1, 2] {
        next(&format!(
            "scale-up, {workers} worker(s): two rooms of 10, talkers as fast as they can"
        ));
        scale.push(scenarios::through_router(two_rooms, plan.blast(), workers).await?);
    }
    let mut report = Report {
        machine,
        quick: plan.quick,
        saturated,
        paced,
        sweep,
        floor,
        scale,
        goals: Vec::new(),
    };
    report.goals = goals(plan, &report);
    Ok(report)
}

fn pct(x: f64) -> String {
    format!("{:+.0}%", x * 100.0)
}

fn goals(plan: &Plan, r: &Report) -> Vec<Goal> {
    let mut g = Vec::new();
    let at = if plan.quick {
        " (quick run: reduced load)"
    } else {
        ""
    };
    let s = &r.saturated;
    g.push(Goal {
        goal: "forwarding on one core, fan-out 9, 160-byte packets".into(),
        target: "≥ 80% of the bare relay's packets per CPU-second".into(),
        measured: format!(
            "{:.0}% ({:.0} vs {:.0} delivered per CPU-s; {:.0} vs {:.0} delivered/s)",
            s.ratio_per_cpu_s * 100.0,
            s.router.delivered_per_cpu_s,
            s.bare.delivered_per_cpu_s,
            s.router.delivered_pps,
            s.bare.delivered_pps
        ),
        met: s.ratio_per_cpu_s >= 0.8,
        margin: pct(s.ratio_per_cpu_s / 0.8 - 1.0),
    });
    if let Some(half) = r
        .paced
        .iter()
        .find(|p| p.router.participants == plan.half_load)
    {
        let l = half.router.latency_us;
        let b = half.bare.latency_us;
        g.push(Goal {
            goal: format!(
                "forwarding latency at half load (ptt, {} participants){at}",
                plan.half_load
            ),
            target: "p50 ≤ 150 µs, p99 ≤ 1 ms".into(),
            measured: format!(
                "router p50 {} µs p99 {} µs p99.9 {} µs; bare relay p50 {} µs p99 {} µs (send to receipt, generator included)",
                l.p50, l.p99, l.p999, b.p50, b.p99
            ),
            met: l.count > 0 && l.p50 <= 150 && l.p99 <= 1000,
            margin: format!(
                "p50 {}, p99 {}",
                pct(1.0 - l.p50 as f64 / 150.0),
                pct(1.0 - l.p99 as f64 / 1000.0)
            ),
        });
    }
    for (kind, n) in [(Kind::Ptt, plan.ptt_goal), (Kind::Voice, plan.voice_goal)] {
        let Some(p) = r
            .sweep
            .iter()
            .find(|p| p.layout.kind == kind && p.participants == n)
        else {
            continue;
        };
        let media: f64 = p.media_cpu_cores.iter().sum();
        g.push(Goal {
            goal: format!(
                "{} rooms of 10 at 50 pkt/s, {n} participants on one core{at}",
                kind.name()
            ),
            target: "loss < 0.1% with one media worker".into(),
            measured: format!(
                "loss {:.4}% ({} of {}), media worker {:.2} cores, router process {:.2} cores",
                p.loss * 100.0,
                p.expected - p.received.min(p.expected),
                p.expected,
                media,
                p.cpu_cores
            ),
            met: p.received > 0 && p.loss < 0.001,
            margin: format!(
                "loss at {:.0}% of the limit; media worker at {:.0}% of a core",
                p.loss / 0.001 * 100.0,
                media * 100.0
            ),
        });
    }
    let f = &r.floor;
    g.push(Goal {
        goal: format!("floor grant with {} rooms active{at}", f.rooms),
        target: "p99 ≤ 1 ms in the router".into(),
        measured: format!(
            "in the router (MIC_REQUEST read to MIC_GRANTED queued) p50 {} µs p99 {} µs p99.9 {} µs over {} requests; at the requester p50 {} µs p99 {} µs (HEARTBEAT round trip p50 {} µs p99 {} µs)",
            f.router_grant_us.p50,
            f.router_grant_us.p99,
            f.router_grant_us.p999,
            f.router_grant_us.count,
            f.grant_us.p50,
            f.grant_us.p99,
            f.heartbeat_us.p50,
            f.heartbeat_us.p99
        ),
        met: f.router_grant_us.count > 0 && f.router_grant_us.p99 <= 1000,
        margin: pct(1.0 - f.router_grant_us.p99 as f64 / 1000.0),
    });
    // Memory: the point with the most participants gives the steadiest
    // per-participant figure.
    if let Some(p) = r.sweep.iter().max_by_key(|p| p.participants) {
        g.push(Goal {
            goal: format!(
                "router memory per connected participant ({} participants){at}",
                p.participants
            ),
            target: "≤ 16 KiB".into(),
            measured: format!(
                "{:.1} KiB (RSS {:.1} MiB idle, {:.1} MiB connected, {:.1} MiB at the end)",
                p.rss_per_participant_kib, p.rss_idle_mib, p.rss_connected_mib, p.rss_end_mib
            ),
            met: p.rss_per_participant_kib <= 16.0,
            margin: pct(1.0 - p.rss_per_participant_kib / 16.0),
        });
    }
    g
}

pub(crate) fn print_goals(r: &Report) {
    println!();
    println!("| goal | target | measured | met | margin |");
    println!("|---|---|---|---|---|");
    for g in &r.goals {
        println!(
            "| {} | {} | {} | {} | {} |",
            g.goal,
            g.target,
            g.measured,
            if g.met { "yes" } else { "**no**" },
            g.margin
        );
    }
    println!();
    println!(
        "| point | participants | loss | p50 µs | p99 µs | p99.9 µs | CPU cores | delivered/s | per CPU-s | RSS/participant KiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in r.points() {
        println!(
            "| {} {} {}w {} | {} | {:.4}% | {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.1} |",
            p.through,
            p.layout.kind.name(),
            p.workers,
            if p.traffic.rate == 0 {
                "max rate"
            } else {
                "50 pkt/s"
            },
            p.participants,
            p.loss * 100.0,
            p.latency_us.p50,
            p.latency_us.p99,
            p.latency_us.p999,
            p.cpu_cores,
            p.delivered_pps,
            p.delivered_per_cpu_s,
            p.rss_per_participant_kib
        );
    }
}

pub(crate) fn write_json(path: &Path, r: &Report) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(r)?)?;
    Ok(())
}

/// The harness itself must work: every point delivered, small loads
/// without loss, grants measured. With `strict`, every goal must be met.
pub(crate) fn check(r: &Report, quick: bool, strict: bool) -> anyhow::Result<()> {
    for p in r.points() {
        if p.received == 0 || p.cpu_cores <= 0.0 {
            bail!(
                "{} {} with {} participants: nothing measured ({} received, {:.3} cores)",
                p.through,
                p.layout.kind.name(),
                p.participants,
                p.received,
                p.cpu_cores
            );
        }
        if quick && p.traffic.rate > 0 && p.loss > 0.01 {
            bail!(
                "{} {} with {} participants lost {:.2}% at a small load",
                p.through,
                p.layout.kind.name(),
                p.participants,
                p.loss * 100.0
            );
        }
    }
    if r.floor.grant_us.count == 0 || r.floor.router_grant_us.count == 0 {
        bail!("no floor grant was measured");
    }
    if strict && let Some(g) = r.goals.iter().find(|g| !g.met) {
        bail!("goal missed: {} ({})", g.goal, g.measured);
    }
    Ok(())
}

/// Three panels over participants: router CPU, latency, memory.
pub(crate) fn plot(path: &Path, r: &Report) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1500, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    let series =
        |kind: Kind| -> Vec<&Point> { r.sweep.iter().filter(|p| p.layout.kind == kind).collect() };
    let bare: Vec<&Point> = r.paced.iter().map(|p| &p.bare).collect();
    let max_x = r.sweep.iter().map(|p| p.participants).max().unwrap_or(1) as f64 * 1.05;
    type Pick = fn(&Point) -> f64;
    type Line = (&'static str, Kind, Pick, RGBColor);
    let charts: [(&str, &str, Vec<Line>); 3] = [
        (
            "CPU (cores) at 50 pkt/s per talker",
            "cores",
            vec![
                ("ptt: router process", Kind::Ptt, |p| p.cpu_cores, BLUE),
                (
                    "ptt: media worker",
                    Kind::Ptt,
                    |p| p.media_cpu_cores.iter().sum(),
                    CYAN,
                ),
                ("voice: router process", Kind::Voice, |p| p.cpu_cores, RED),
            ],
        ),
        (
            "Send-to-receipt latency",
            "µs",
            vec![
                ("ptt p50", Kind::Ptt, |p| p.latency_us.p50 as f64, BLUE),
                ("ptt p99", Kind::Ptt, |p| p.latency_us.p99 as f64, CYAN),
                ("voice p99", Kind::Voice, |p| p.latency_us.p99 as f64, RED),
            ],
        ),
        (
            "Router resident memory",
            "MiB",
            vec![
                ("ptt, connected", Kind::Ptt, |p| p.rss_connected_mib, BLUE),
                (
                    "voice, connected",
                    Kind::Voice,
                    |p| p.rss_connected_mib,
                    RED,
                ),
            ],
        ),
    ];
    for (i, (panel, (title, unit, lines))) in panels.iter().zip(charts).enumerate() {
        // Latency spans decades: its panel plots log10(µs).
        let log = i == 1;
        let tf = move |v: f64| if log { v.max(1.0).log10() } else { v };
        let bare_y = |p: &Point| {
            if i == 0 {
                p.cpu_cores
            } else {
                p.latency_us.p99 as f64
            }
        };
        let mut max_y: f64 = 0.0;
        for (_, kind, f, _) in &lines {
            for p in series(*kind) {
                max_y = max_y.max(tf(f(p)));
            }
        }
        if i < 2 {
            for p in &bare {
                max_y = max_y.max(tf(bare_y(p)));
            }
        }
        let (min_y, max_y) = if log {
            (1.0, max_y.max(2.0) + 0.3)
        } else {
            (0.0, if max_y > 0.0 { max_y * 1.15 } else { 1.0 })
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, min_y..max_y)?;
        let y_fmt = move |y: &f64| {
            if log {
                format!("{:.0}", 10f64.powf(*y))
            } else {
                format!("{y:.1}")
            }
        };
        chart
            .configure_mesh()
            .x_desc("participants")
            .y_desc(if log { "µs (log scale)" } else { unit })
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&y_fmt)
            .draw()?;
        for (name, kind, f, color) in lines {
            let pts: Vec<(f64, f64)> = series(kind)
                .iter()
                .map(|p| (p.participants as f64, tf(f(p))))
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
        if i < 2 {
            let pts: Vec<(f64, f64)> = bare
                .iter()
                .map(|p| (p.participants as f64, tf(bare_y(p))))
                .collect();
            let label = if i == 0 {
                "ptt: bare relay"
            } else {
                "ptt p99: bare relay"
            };
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y)| TriangleMarker::new((x, y), 7, BLACK.filled())),
                )?
                .label(label)
                .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, BLACK.filled()));
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
