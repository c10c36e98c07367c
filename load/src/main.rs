//! `switchboard-load`: the load harness.
//!
//! Synthetic participants on loopback (real TCP control sessions, real UDP
//! with STUN binding, RTP stamped with its send time) in many rooms of a
//! chosen kind, through a router running as a child process, whose CPU time
//! and resident memory are read from `/proc` during the run. A bare
//! `recvmmsg`/`sendmmsg` relay with the same fan-out runs in the same
//! invocation as the baseline. See docs/performance.md.
//!
//! ```text
//! switchboard-load suite [--quick]          # every goal, a JSON report and a plot
//! switchboard-load point --kind ptt --participants 4000 [--bare]
//! switchboard-load floor --rooms 1000
//! switchboard-load big-room --checkpoints 100,1000,5000,10000
//! ```

mod bigroom;
mod bindings;
mod children;
mod procfs;
mod report;
mod scenarios;
mod soak;
mod traffic;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use scenarios::{Kind, Layout, Traffic};

#[derive(Debug, Parser)]
#[command(version, about = "Load harness for the Switchboard router")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every measurement the goals need, in one run: a JSON report and a plot.
    Suite {
        /// A short run (seconds, small loads) that checks the harness works.
        #[arg(long)]
        quick: bool,
        /// Seconds measured per load point (after 1 s of warm-up).
        #[arg(long)]
        seconds: Option<f64>,
        #[arg(long, default_value = "target/load-report.json")]
        json: PathBuf,
        /// The cost-growth plot (SVG).
        #[arg(long, default_value = "target/load-cost.svg")]
        plot: PathBuf,
        /// Exit non-zero when a goal is missed (not only when the harness
        /// fails).
        #[arg(long)]
        strict: bool,
    },
    /// One load point, through the router or the bare relay.
    Point {
        #[arg(long, value_enum, default_value = "ptt")]
        kind: Kind,
        #[arg(long, default_value_t = 1000)]
        participants: usize,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        /// Packets per second per sender (50: 20 ms voice frames; a video
        /// rate such as 90 with --payload 1100); 0: as fast as possible.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// RTP payload bytes, 16 to 1400.
        #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(16..=1400))]
        payload: u16,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value_t = 1)]
        receiver_threads: usize,
        /// Through the bare relay instead of the router.
        #[arg(long)]
        bare: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Draws the cost plot and prints the goals again from a suite's report.
    Plot {
        #[arg(long, default_value = "target/load-report.json")]
        json: PathBuf,
        #[arg(long, default_value = "target/load-cost.svg")]
        out: PathBuf,
    },
    /// Floor-grant latency with many ptt rooms active.
    Floor {
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One ptt room growing to thousands of members (members in several
    /// processes): join cost, memory and floor grants at each size.
    BigRoom {
        /// Members at each checkpoint, increasing.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,10000")]
        checkpoints: Vec<usize>,
        /// Member processes (each with its own source address).
        #[arg(long, default_value_t = 4)]
        processes: usize,
        /// How members hear of each other: `pages` (`member_pages`: counts
        /// in a large room), `deltas` (`member_deltas`: the whole list on
        /// joining, then deltas) or `whole` (a whole USERLIST each time).
        #[arg(long, value_enum, default_value_t = bigroom::Lists::Pages)]
        lists: bigroom::Lists,
        /// Floor grants measured at each checkpoint of 1,000 or more.
        #[arg(long, default_value_t = 200)]
        grants: usize,
        /// Members that join and leave at each checkpoint, to price one
        /// join at that size.
        #[arg(long, default_value_t = 1000)]
        probe: usize,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the costs against the room's size (SVG).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Only draw the plot from an earlier run's JSON report.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// One client joins and leaves a room of old (or, with --deltas, delta)
    /// clients as fast as it can; the router's memory is sampled.
    Churn {
        #[arg(long, default_value_t = 350)]
        members: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        deltas: bool,
        /// Fail when the router's memory passes this many MB or a member
        /// was disconnected.
        #[arg(long)]
        max_rss_mb: Option<f64>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// STUN binding round trips (HELLO, then one Binding Request per
    /// session, timed) against a bare UDP echo in the same run.
    Bindings {
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Mixed load for a long time (members staying, active clients coming
    /// and going with chat and floor changes), the router's RSS and CPU
    /// sampled, printed and plotted. Not part of CI: a figure for the docs.
    Soak {
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        #[arg(long, default_value_t = 300)]
        members: usize,
        #[arg(long, default_value_t = 40)]
        active: usize,
        /// Seconds between two samples.
        #[arg(long, default_value_t = 30.0)]
        sample_secs: f64,
        #[arg(long, default_value = "target/soak.json")]
        json: PathBuf,
        #[arg(long, default_value = "target/soak.svg")]
        plot: PathBuf,
    },
    #[command(name = "__router", hide = true)]
    Router(children::RouterArgs),
    #[command(name = "__members", hide = true)]
    Members {
        #[arg(long)]
        control: std::net::SocketAddr,
        #[arg(long)]
        ip: std::net::Ipv4Addr,
        #[arg(long)]
        prefix: String,
        #[arg(long, value_enum)]
        lists: bigroom::Lists,
    },
    #[command(name = "__bare-relay", hide = true)]
    BareRelay {
        #[arg(long)]
        groups: PathBuf,
    },
}

/// Writes a report as pretty JSON to `path`, or to stdout without one.
fn write_report(path: Option<&std::path::Path>, r: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(r)?;
    match path {
        Some(path) => std::fs::write(path, text)?,
        None => println!("{text}"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(router::logging::filter(
            std::env::var("RUST_LOG").ok().as_deref(),
            "warn",
        ))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Router(args) => return children::run_router(args),
        Command::Members {
            control,
            ip,
            prefix,
            lists,
        } => {
            procfs::raise_fd_limit();
            return bigroom::run_members(control, ip, &prefix, lists);
        }
        Command::BareRelay { groups } => return children::run_bare_relay(&groups),
        Command::Plot { json, out } => {
            let r: report::Report = serde_json::from_slice(&std::fs::read(&json)?)?;
            report::plot(&out, &r)?;
            report::print_goals(&r);
            return Ok(());
        }
        _ => {}
    }
    let fds = procfs::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Suite {
                quick,
                seconds,
                json,
                plot,
                strict,
            } => {
                let plan = if quick {
                    report::Plan::quick()
                } else {
                    report::Plan::full()
                };
                let plan = match seconds {
                    Some(s) => plan.with_seconds(s),
                    None => plan,
                };
                let r = report::run_suite(&plan, fds).await?;
                report::write_json(&json, &r)?;
                eprintln!("report written to {}", json.display());
                report::plot(&plot, &r)?;
                eprintln!("plot written to {}", plot.display());
                report::print_goals(&r);
                report::check(&r, quick, strict)
            }
            Command::Point {
                kind,
                participants,
                room_size,
                rate,
                payload,
                seconds,
                workers,
                receiver_threads,
                bare,
                json,
            } => {
                let room_size = room_size.max(2);
                // A TCP and a UDP socket per participant, here and (TCP) in
                // the router, which inherits the limit.
                let need = participants as u64 * 2 + 128;
                if need > fds {
                    anyhow::bail!(
                        "{participants} participants need about {need} open files; the limit is {fds} (raise it with ulimit -n)"
                    );
                }
                let layout = Layout {
                    kind,
                    rooms: participants.div_ceil(room_size),
                    room_size,
                };
                let traffic = Traffic {
                    rate,
                    payload: usize::from(payload),
                    seconds,
                    receiver_threads,
                };
                let p = if bare {
                    tokio::task::block_in_place(|| scenarios::through_bare_relay(layout, traffic))?
                } else {
                    scenarios::through_router(layout, traffic, workers).await?
                };
                let text = serde_json::to_string_pretty(&p)?;
                match json {
                    Some(path) => std::fs::write(path, text)?,
                    None => println!("{text}"),
                }
                Ok(())
            }
            Command::Floor {
                rooms,
                seconds,
                json,
            } => {
                let r = scenarios::floor(rooms, seconds).await?;
                write_report(json.as_deref(), &r)?;
                Ok(())
            }
            Command::BigRoom {
                checkpoints,
                processes,
                lists,
                grants,
                probe,
                json,
                plot,
                from,
            } => {
                let r = match from {
                    Some(path) => serde_json::from_slice(&std::fs::read(&path)?)?,
                    None => {
                        let plan = bigroom::Plan {
                            checkpoints,
                            processes,
                            lists,
                            grants,
                            probe,
                        };
                        let r = bigroom::run(&plan).await?;
                        write_report(json.as_deref(), &r)?;
                        r
                    }
                };
                if let Some(path) = plot {
                    bigroom::plot(&path, &r)?;
                    eprintln!("plot written to {}", path.display());
                }
                Ok(())
            }
            Command::Bindings { sessions, json } => {
                let r = bindings::run(sessions).await?;
                write_report(json.as_deref(), &r)?;
                eprintln!(
                    "bindings: {} sessions; STUN binding round trip p50 {} µs, p99 {} µs, max {} µs ({} retransmitted); UDP echo p50 {} µs, p99 {} µs; p99 ratio {:.1}",
                    r.sessions,
                    r.binding_p50_us,
                    r.binding_p99_us,
                    r.binding_max_us,
                    r.retransmitted,
                    r.echo_p50_us,
                    r.echo_p99_us,
                    r.p99_ratio
                );
                Ok(())
            }
            Command::Soak {
                minutes,
                members,
                active,
                sample_secs,
                json,
                plot,
            } => {
                let r = soak::soak(minutes, members, active, sample_secs).await?;
                write_report(Some(&json), &r)?;
                soak::plot(&plot, &r)?;
                eprintln!(
                    "soak: {:.1} min, {} cycles, {} chats, {} floor requests, {} refusals; RSS {:.1} MiB first, {:.1} last, {:.1} max; {} unexpected closes, {} members lost; {} and {}",
                    r.minutes, r.cycles, r.chats, r.floor_requests, r.refusals, r.rss_first_mib,
                    r.rss_last_mib, r.rss_max_mib, r.unexpected_closes, r.members_lost,
                    json.display(), plot.display()
                );
                if r.unexpected_closes > 0 || r.members_lost > 0 || r.cycles == 0 {
                    anyhow::bail!("the soak lost sessions or made no progress");
                }
                Ok(())
            }
            Command::Churn {
                members,
                seconds,
                deltas,
                max_rss_mb,
                json,
            } => {
                let r = bigroom::churn(members, seconds, deltas).await?;
                write_report(json.as_deref(), &r)?;
                eprintln!(
                    "churn: {} joins and leaves in {:.1} s beside {} members; router RSS {:.0} MB before, {:.0} MB at most; {} members lost; {:.1} MB/s sent to members",
                    r.cycles, r.seconds, r.members, r.rss_before_mb, r.rss_max_mb, r.lost, r.sent_mb_per_sec
                );
                if let Some(max) = max_rss_mb {
                    if r.rss_max_mb > max {
                        anyhow::bail!("router RSS reached {:.0} MB (limit {max:.0} MB)", r.rss_max_mb);
                    }
                    if r.lost > 0 {
                        anyhow::bail!("{} members were disconnected", r.lost);
                    }
                    if r.cycles == 0 {
                        anyhow::bail!("the churner never joined");
                    }
                }
                Ok(())
            }
            Command::Router(_)
            | Command::Members { .. }
            | Command::BareRelay { .. }
            | Command::Plot { .. } => Ok(()),
        }
    })
}
