//! What the child processes run: the router (the library the `switchboard`
//! binary runs, with rooms made for the load) and the bare relay baseline.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use router::config::RoomConfig;
use router::media::mmsg::{self, RecvBatch, SendBatch};
use router::{Config, Router};
use rustc_hash::FxHashMap;

use crate::procfs::Ready;

/// How the router child is set up.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RouterArgs {
    /// Room kind of every room.
    #[arg(long, default_value = "ptt")]
    pub(crate) kind: String,
    /// Rooms named r0, r1, …
    #[arg(long)]
    pub(crate) rooms: usize,
    /// Media workers.
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    /// Sessions the router accepts.
    #[arg(long)]
    pub(crate) max_sessions: usize,
    /// Heartbeat interval told to clients.
    #[arg(long, default_value_t = 5000)]
    pub(crate) heartbeat_ms: u64,
}

impl RouterArgs {
    pub(crate) fn to_args(&self) -> Vec<String> {
        vec![
            "__router".into(),
            "--kind".into(),
            self.kind.clone(),
            "--rooms".into(),
            self.rooms.to_string(),
            "--workers".into(),
            self.workers.to_string(),
            "--max-sessions".into(),
            self.max_sessions.to_string(),
            "--heartbeat-ms".into(),
            self.heartbeat_ms.to_string(),
        ]
    }
}

/// The name of room `i`.
pub(crate) fn room_name(i: usize) -> String {
    format!("r{i}")
}

fn print_ready(ready: &Ready) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(ready)?);
    Ok(())
}

/// `__router`: runs a router until killed.
pub(crate) fn run_router(args: RouterArgs) -> anyhow::Result<()> {
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut config = Config {
        control: lo(0),
        media: lo(0),
        admin: lo(0),
        media_workers: args.workers,
        ..Config::default()
    };
    config.limits.max_sessions = args.max_sessions;
    config.limits.max_rooms = args.rooms + 16;
    config.limits.heartbeat_interval_ms = args.heartbeat_ms.max(1);
    // The harness measures the router's work, not its rate limits: its
    // talkers take the floor and its churner joins far faster than a
    // person would (docs/performance.md says so where it matters).
    let unlimited = router::config::Rate {
        burst: 1_000_000,
        refill_ms: 1,
    };
    config.limits.rates.membership = unlimited;
    config.limits.rates.floor = unlimited;
    // Thousands of members share a few source addresses here.
    config.limits.max_connections_per_address = args.max_sessions.max(1);
    config.limits.max_pending = args.max_sessions.max(1);
    config.rooms = (0..args.rooms)
        .map(|i| RoomConfig {
            name: room_name(i),
            kind: args.kind.clone(),
            max_participants: 0,
            options: Default::default(),
        })
        .collect();
    let rt = router::driver::runtime().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let router = Router::start(config).await?;
        print_ready(&Ready {
            control: Some(router.control_addr()),
            media: router.media_addrs().to_vec(),
            admin: Some(router.admin_addr()),
        })?;
        // Until the parent kills us.
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    })
}

/// `__bare-relay`: the ceiling. One thread: `recvmmsg`, look the source up
/// in a fixed map of groups, one `sendmmsg` with a copy for each other
/// member of the sender's group. No validation, no statistics.
pub(crate) fn run_bare_relay(groups_file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(groups_file)
        .with_context(|| format!("reading {}", groups_file.display()))?;
    let groups: Vec<Vec<SocketAddr>> = serde_json::from_str(&text)?;
    let mut fanout: FxHashMap<SocketAddr, Vec<SocketAddr>> = FxHashMap::default();
    for g in &groups {
        for a in g {
            fanout.insert(*a, g.iter().filter(|b| *b != a).copied().collect());
        }
    }
    let socket = mmsg::media_socket(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Duration::from_secs(1),
    )?;
    print_ready(&Ready {
        control: None,
        media: vec![socket.local_addr()?],
        admin: None,
    })?;
    let mut batch = RecvBatch::new(mmsg::BATCH);
    let mut sends = SendBatch::new();
    let mut out: Vec<(usize, SocketAddr)> = Vec::with_capacity(mmsg::BATCH * 16);
    loop {
        let Ok(n) = batch.recv(&socket) else { continue };
        out.clear();
        for i in 0..n {
            let (_, from) = batch.get(i);
            if let Some(dests) = from.and_then(|f| fanout.get(&f)) {
                out.extend(dests.iter().map(|d| (i, *d)));
            }
        }
        if !out.is_empty() {
            sends.send(&socket, out.iter().map(|&(i, d)| (batch.data(i), d)));
        }
    }
}
