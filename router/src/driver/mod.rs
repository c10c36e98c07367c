//! The tokio drivers around the engine, one module per job:
//!
//! - this module: wiring — binds the sockets, starts the engine task, the
//!   media workers, the accept loop and the admin API ([`Router`]);
//! - [`engine_task`]: the task that owns the [`Engine`], feeds it inputs and
//!   dispatches its outputs;
//! - [`connection`]: the control listener and one task per connection;
//! - [`accept`]: accepting with back-off when file descriptors run out;
//! - [`outbox`]: each connection's outgoing bytes, written by a few writer
//!   tasks (a message for a room of N is one job per writer, not N wake-ups);
//! - [`watch`]: the hub that fans room events out to `WatchRoom` streams.
//!
//! They are small and dumb: read, hand to the engine, write what it says.
//! Connection tasks never touch engine state; the engine task never blocks on
//! a socket (a connection whose outgoing queue is full is closed). The admin
//! API uses `engine_task` and `watch`; only the wiring here knows the admin
//! API, so the two do not depend on each other both ways.

pub mod accept;
pub mod connection;
pub mod engine_task;
pub mod outbox;
pub mod stream;
pub mod tls;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use plugin_api::WallClock;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch as watch_channel};
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::engine::{Engine, EngineStats, Start};
use crate::media::stats::MediaStatsHandle;
use crate::media::{self, MediaCounters, MediaStats};
use crate::registry::Registry;

pub use engine_task::{
    CommandLatency, CommandTimes, EngineCall, EngineEvent, SharedCommandTimes, call_engine,
    unix_ms_now,
};
pub use outbox::{BULK_DROPPED, BULK_QUEUE, CONNECTION_QUEUE, WRITE_TIMEOUT};
pub use watch::{Subscription, WatchError, WatchHub, WatchItem};

/// Inputs queued for the engine before readers wait (backpressure).
pub const ENGINE_QUEUE: usize = 8192;
/// STUN requests queued for the engine; beyond this they are dropped and
/// counted (`stun_dropped`), and clients retransmit.
pub const STUN_QUEUE: usize = 256;
/// How long shutdown waits for connections to flush SERVER_CLOSE.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// A running router.
pub struct Router {
    control_addr: SocketAddr,
    media_addrs: Vec<SocketAddr>,
    admin_addr: SocketAddr,
    counters: Arc<MediaCounters>,
    stats: MediaStatsHandle,
    admin_task: tokio::task::JoinHandle<()>,
    engine_tx: mpsc::Sender<EngineEvent>,
    shutdown_tx: watch_channel::Sender<bool>,
    engine_task: tokio::task::JoinHandle<()>,
    accept_task: tokio::task::JoinHandle<()>,
    media_stop: Arc<AtomicBool>,
    media_threads: Vec<std::thread::JoinHandle<()>>,
    /// The seed front-ends' addresses and tasks.
    fronts: Vec<crate::compat::FrontAddrs>,
    front_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The token verifier in force (engine and admin API).
    auth: crate::auth::SharedVerifier,
    /// TLS on the control channel, unless `[tls] mode = "off"`.
    tls: Option<Arc<tls::TlsShared>>,
}

/// Scheduler ticks between two polls of the runtime's I/O driver.
/// Tokio's default (61) lets a busy runtime (writer tasks telling
/// thousands of members) notice a socket's readiness only after 61 task
/// turns; the router's tasks are short, so it looks far more often.
pub const EVENT_INTERVAL: u32 = 7;

/// The tokio runtime a router runs on: multi-threaded, I/O and time
/// enabled, and [`EVENT_INTERVAL`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
}

/// Descriptors a router needs beyond one per session: listeners, media
/// sockets and their clones, the admin API, the runtime's own.
pub const FD_HEADROOM: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and says once,
/// clearly, when it is still below what `max_sessions` needs (each session
/// holds one socket): beyond it, connections would fail to be accepted.
/// Returns the soft limit now.
pub fn raise_fd_limit(max_sessions: usize) -> u64 {
    let need = max_sessions as u64 + FD_HEADROOM;
    let now = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-file limit");
            return 0;
        }
    };
    if now < need {
        warn!(
            open_files = now,
            needed = need,
            "the open-file limit is below what limits.max_sessions needs: raise the hard \
             limit (LimitNOFILE= in a systemd unit, ulimit -Hn) or lower max_sessions; \
             connections beyond it will be refused"
        );
    }
    now
}

/// Reads both clocks once: the engine's time origin and the Unix time then.
pub fn wall_clock_now() -> WallClock {
    let origin_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    WallClock {
        origin: Instant::now(),
        origin_unix_ms,
    }
}

impl Router {
    /// Binds the sockets and starts every task. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> anyhow::Result<Router> {
        Self::start_with(config, Registry::builtin(), None).await
    }

    /// Like [`Router::start`], with a chosen registry and RNG seed (tests:
    /// the engine's 256-bit seed is then expanded from it; without one it
    /// comes from the OS).
    pub async fn start_with(
        config: Config,
        registry: Registry,
        seed: Option<u64>,
    ) -> anyhow::Result<Router> {
        config.validate()?;
        let config = config.secured();
        let admin_token = config.resolved_admin_token()?;
        let by_grants = config.auth.mode == crate::config::AuthMode::Token;
        crate::admin::check_exposure(config.admin, admin_token.as_deref(), by_grants)?;
        let verifier = Arc::new(crate::auth::Verifier::from_config(&config.auth)?);
        let auth: crate::auth::SharedVerifier = Arc::new(std::sync::RwLock::new(verifier.clone()));
        let tls = tls::TlsShared::start(&config.tls, config.resolved_state_dir().as_deref())?;
        warn_exposure(&config);
        raise_fd_limit(config.limits.max_sessions);
        let mut media_sockets = Vec::with_capacity(config.media_workers);
        for i in 0..config.media_workers {
            let addr = config.media_addr(i);
            let socket = media::mmsg::media_socket(addr, media::POLL_INTERVAL)
                .with_context(|| format!("binding media socket {addr} (worker {i})"))?;
            media_sockets.push(socket);
        }
        let media_addrs = media_sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let listener = TcpListener::bind(config.control)
            .await
            .with_context(|| format!("binding control listener {}", config.control))?;
        let control_addr = listener.local_addr()?;
        let admin_listener = TcpListener::bind(config.admin)
            .await
            .with_context(|| format!("binding admin listener {}", config.admin))?;
        let admin_addr = admin_listener.local_addr()?;
        let compat = crate::compat::bind(&config.compat).await?;
        let fronts: Vec<_> = compat.iter().map(|b| b.addrs()).collect();

        let ecfg = config.engine_config(media_addrs.iter().map(|a| a.port()).collect());
        let start = Start {
            clock: wall_clock_now(),
            seed: match seed {
                Some(s) => {
                    use rand::{Rng, SeedableRng};
                    rand::rngs::StdRng::seed_from_u64(s).random()
                }
                None => rand::random(),
            },
        };
        let mut engine = Engine::new(ecfg, registry, config.room_specs(), start)?;
        engine.set_auth(Instant::now(), verifier);

        let (engine_tx, engine_rx) = mpsc::channel(ENGINE_QUEUE);
        let (stun_tx, stun_rx) = mpsc::channel(STUN_QUEUE);
        let (shutdown_tx, shutdown_rx) = watch_channel::channel(false);
        let counters = Arc::new(MediaCounters::default());
        let media_stop = Arc::new(AtomicBool::new(false));

        // The engine answers STUN on each worker's socket itself: the
        // worker may be blocked in recvmmsg for up to its poll interval.
        let replies = media_sockets
            .iter()
            .map(|s| s.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .context("cloning the media sockets for STUN answers")?;
        let mut media_txs = Vec::new();
        let mut stats_txs = Vec::new();
        let mut media_threads = Vec::new();
        for (i, socket) in media_sockets.into_iter().enumerate() {
            let (media_tx, media_rx) = std::sync::mpsc::channel();
            let (stats_tx, stats_rx) = std::sync::mpsc::channel();
            let worker = media::Worker::new(
                i,
                socket,
                media_rx,
                stats_rx,
                stun_tx.clone(),
                counters.clone(),
                media_stop.clone(),
            );
            media_threads.push(
                std::thread::Builder::new()
                    .name(format!("media-{i}"))
                    .spawn(move || worker.run())?,
            );
            media_txs.push(media_tx);
            stats_txs.push(stats_tx);
        }
        drop(stun_tx);
        let stats = MediaStatsHandle::new(stats_txs.into());
        let times = SharedCommandTimes::default();

        let engine_task = tokio::spawn(
            engine_task::run_engine(
                engine,
                WatchHub::new(
                    config.limits.max_watchers_per_room,
                    config.limits.watch_buffer,
                ),
                engine_rx,
                stun_rx,
                engine_task::MediaOut {
                    commands: media_txs,
                    replies,
                },
                shutdown_rx,
                times.clone(),
            )
            .instrument(info_span!("engine")),
        );
        let accept_task = tokio::spawn(connection::accept_loop(
            listener,
            engine_tx.clone(),
            tls.clone(),
        ));
        let front_tasks = crate::compat::spawn(
            compat,
            &crate::compat::Context {
                engine: engine_tx.clone(),
                workers: media_addrs.iter().map(|a| reachable(*a)).collect(),
                voip_registration_timeout: Duration::from_millis(
                    config.limits.voip_registration_timeout_ms,
                ),
            },
        );
        for f in &fronts {
            info!(seed = f.seed.name(), control = %f.control, media = ?f.media, "seed front-end started (plaintext)");
        }
        let admin_task = tokio::spawn({
            let service = crate::admin::AdminService::new(
                engine_tx.clone(),
                stats.clone(),
                counters.clone(),
                times.clone(),
                config.limits.watch_buffer,
            );
            let token = admin_token;
            let shutdown = shutdown_tx.subscribe();
            let auth = auth.clone();
            let admin_tls = tls.clone().filter(|_| config.tls.admin);
            async move {
                if let Err(e) =
                    crate::admin::serve(admin_listener, service, token, auth, admin_tls, shutdown)
                        .await
                {
                    warn!(error = %e, "admin API stopped");
                }
            }
        });
        let media_ports: Vec<u16> = media_addrs.iter().map(|a| a.port()).collect();
        info!(%control_addr, media_addr = %media_addrs[0], ?media_ports, %admin_addr, "router started");
        Ok(Router {
            control_addr,
            media_addrs,
            admin_addr,
            counters,
            stats,
            admin_task,
            engine_tx,
            shutdown_tx,
            engine_task,
            accept_task,
            media_stop,
            media_threads,
            fronts,
            front_tasks,
            auth,
            tls,
        })
    }

    /// Takes the parts of `config` that change without a restart (SIGHUP):
    /// `[auth]` (keys, revocations, mode) and the TLS certificate (read
    /// again from the files the router started with). The rest needs a
    /// restart and is left as it was. Sessions whose token is now revoked
    /// are ended.
    pub async fn reload(&self, config: &Config) -> anyhow::Result<()> {
        config.check_auth()?;
        let config = &config.clone().secured();
        if let Some(tls) = &self.tls {
            tls.reload()?;
        }
        let verifier = Arc::new(crate::auth::Verifier::from_config(&config.auth)?);
        match self.auth.write() {
            Ok(mut v) => *v = verifier.clone(),
            Err(poisoned) => *poisoned.into_inner() = verifier.clone(),
        }
        call_engine(&self.engine_tx, move |e, now| e.set_auth(now, verifier))
            .await
            .context("the engine has stopped")?;
        info!("configuration reloaded ([auth])");
        Ok(())
    }

    /// Where each seed front-end listens, in the order configured.
    pub fn front_addrs(&self) -> &[crate::compat::FrontAddrs] {
        &self.fronts
    }

    /// The SHA-256 fingerprint of the control channel's TLS certificate
    /// (`None` when TLS is off).
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.fingerprint())
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The first media worker's address (the port WELCOME tells).
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addrs[0]
    }

    /// Every media worker's address, by worker index.
    pub fn media_addrs(&self) -> &[SocketAddr] {
        &self.media_addrs
    }

    /// Where the gRPC admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn media_stats(&self) -> MediaStats {
        self.counters.snapshot()
    }

    /// The engine task's queue, for [`call_engine`].
    pub fn engine_handle(&self) -> mpsc::Sender<EngineEvent> {
        self.engine_tx.clone()
    }

    /// Per-stream media statistics, from every media worker.
    pub async fn media_snapshot(&self) -> Option<media::stats::MediaSnapshot> {
        self.stats.snapshot().await
    }

    /// The engine's own counters.
    pub async fn engine_stats(&self) -> Option<EngineStats> {
        call_engine(&self.engine_tx, |e, _| e.stats()).await
    }

    /// Sends SERVER_CLOSE to every client, waits for the connections to flush
    /// (at most [`SHUTDOWN_GRACE`]) and stops the media worker.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        self.accept_task.abort();
        for t in &self.front_tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_millis(300), &mut self.admin_task).await;
        let _ = tokio::time::timeout(
            SHUTDOWN_GRACE + Duration::from_millis(200),
            &mut self.engine_task,
        )
        .await;
        self.engine_task.abort();
        self.media_stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.media_threads) {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        info!("router stopped");
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.media_stop.store(true, Ordering::Relaxed);
        self.accept_task.abort();
        self.admin_task.abort();
        self.engine_task.abort();
        for t in &self.front_tasks {
            t.abort();
        }
    }
}

/// Says clearly at start what a router reachable beyond loopback lets
/// anyone do: without token auth, anyone who reaches it may join any room.
fn warn_exposure(config: &Config) {
    let beyond = |a: SocketAddr| !a.ip().is_loopback();
    if beyond(config.control) {
        match config.tls.mode {
            crate::config::TlsMode::Off => warn!(
                control = %config.control,
                "the control channel is reachable beyond loopback without TLS ([tls] mode = \"off\"): \
                 nicknames, chat, tokens and media keys travel in clear"
            ),
            crate::config::TlsMode::Offer => info!(
                control = %config.control,
                "the control channel takes TLS and plaintext; [tls] mode = \"require\" refuses plaintext"
            ),
            crate::config::TlsMode::Require => {}
        }
    }
    if beyond(config.admin) && !config.tls.admin {
        warn!(
            admin = %config.admin,
            "the admin API is reachable beyond loopback without TLS: its bearer token travels \
             in clear; set [tls] admin = true"
        );
    }
    if beyond(config.control) && config.auth.mode == crate::config::AuthMode::Open {
        warn!(
            control = %config.control,
            "the control channel is reachable beyond loopback with auth.mode = \"open\": \
             anyone who reaches it may join any room, talk and create rooms; set \
             [auth] mode = \"token\" (docs/security.md)"
        );
    }
}

/// `addr` as a peer on this machine reaches it: loopback for a socket bound
/// to every address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_and_a_short_one_is_told() {
        let now = raise_fd_limit(10);
        let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
            panic!("getrlimit")
        };
        assert_eq!(
            (now, soft),
            (hard, hard),
            "soft limit raised to the hard one"
        );
        let told = crate::logging::capture(None, || {
            raise_fd_limit(usize::MAX / 2);
        });
        assert!(told.contains("open-file limit is below"), "{told}");
        let quiet = crate::logging::capture(None, || {
            raise_fd_limit(10);
        });
        assert!(!quiet.contains("open-file"), "{quiet}");
    }

    #[tokio::test]
    async fn start_refuses_a_config_built_in_code_as_it_would_a_file() {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = Config {
            control: lo,
            media: lo,
            admin: lo,
            ..Config::default()
        };
        config.limits.heartbeat_interval_ms = 0;
        let e = Router::start(config.clone())
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("heartbeat_interval_ms")),
            "{e:?}"
        );
        config.limits.heartbeat_interval_ms = 5000;
        let r = Router::start(config).await;
        assert!(r.is_ok());
        if let Ok(r) = r {
            r.shutdown().await;
        }
    }
}
