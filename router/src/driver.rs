//! The tokio drivers around the engine: the control-channel listener, one task
//! per connection, and the engine task that owns the [`Engine`].
//!
//! They are small and dumb: read, hand to the engine, write what it says.
//! Connection tasks never touch engine state; the engine task never blocks on
//! a socket (a connection whose outgoing queue is full is closed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use plugin_api::{SessionId, WallClock};
use proto::control::{self, ServerMessage};
use proto::framing::{Frame, LineFramer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::engine::{Engine, EngineStats, Input, MediaCommand, OpError, Output, Start};
use crate::events::{RoomEvent, RoomEventKind, RoomSnapshot};
use crate::media::stats::StatsRequest;
use crate::media::{self, MediaCounters, MediaStats};
use crate::registry::Registry;

/// Messages queued for one connection before it counts as a slow consumer.
pub const CONNECTION_QUEUE: usize = 1024;
/// Bulk messages (file chunks) queued for one connection; beyond this they
/// are dropped, and the transfer's acknowledgements repair the loss.
pub const BULK_QUEUE: usize = 64;
/// Bulk messages dropped because a connection's bulk queue was full.
pub static BULK_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Inputs queued for the engine before readers wait (backpressure).
pub const ENGINE_QUEUE: usize = 8192;
/// STUN requests queued for the engine; beyond this they are dropped and
/// counted (`stun_dropped`), and clients retransmit.
pub const STUN_QUEUE: usize = 256;
/// A write that takes longer than this closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for connections to flush SERVER_CLOSE.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// What the engine task receives.
pub enum EngineEvent {
    Input(Input),
    /// A control line, with when its connection read it (for
    /// [`CommandTimes`]).
    Line {
        input: Input,
        read_at: std::time::Instant,
    },
    /// A new connection's outgoing queue; sent before its `Connected`.
    Register {
        session: SessionId,
        conn: ConnHandle,
    },
    /// Runs on the engine task with exclusive access (admin calls, stats);
    /// outputs it causes are dispatched right after.
    Call(EngineCall),
    /// Subscribes to a room's events, answering with the room's state at the
    /// point where the subscription starts.
    Watch {
        room: String,
        reply: oneshot::Sender<Result<Subscription, WatchError>>,
    },
}

/// A room event as watchers receive it, stamped with wall-clock time.
#[derive(Debug)]
pub struct WatchItem {
    pub event: RoomEvent,
    /// Milliseconds since the Unix epoch when the router dispatched it.
    pub unix_ms: u64,
}

/// A new watcher: the room's state, then every event after it.
pub struct Subscription {
    pub snapshot: RoomSnapshot,
    pub events: broadcast::Receiver<Arc<WatchItem>>,
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("room `{room}` already has {max} watchers, the most it takes")]
    TooMany { room: String, max: usize },
}

/// Fans room events out to watchers: one bounded broadcast buffer per
/// watched room. Sending never waits, so a watcher that stops reading only
/// loses its own place (it sees `Lagged` and is ended), never stalls the
/// engine.
pub struct WatchHub {
    rooms: HashMap<String, broadcast::Sender<Arc<WatchItem>>>,
    max_per_room: usize,
    buffer: usize,
}

impl WatchHub {
    pub fn new(max_per_room: usize, buffer: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            max_per_room,
            buffer: buffer.max(1),
        }
    }

    fn subscribe(&mut self, room: &str) -> Result<broadcast::Receiver<Arc<WatchItem>>, WatchError> {
        let tx = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(self.buffer).0);
        if tx.receiver_count() >= self.max_per_room {
            return Err(WatchError::TooMany {
                room: room.to_owned(),
                max: self.max_per_room,
            });
        }
        Ok(tx.subscribe())
    }

    fn publish(&mut self, event: &RoomEvent) {
        let closed = matches!(event.kind, RoomEventKind::Closed { .. });
        if let Some(tx) = self.rooms.get(&event.room) {
            if tx.receiver_count() > 0 {
                let _ = tx.send(Arc::new(WatchItem {
                    event: event.clone(),
                    unix_ms: unix_ms_now(),
                }));
            } else {
                self.rooms.remove(&event.room);
            }
        }
        if closed {
            // Dropping the sender ends every stream once it has read this.
            self.rooms.remove(&event.room);
        }
    }
}

/// A closure run by the engine task.
pub type EngineCall = Box<dyn FnOnce(&mut Engine, std::time::Instant) + Send>;

/// Runs `f` on the engine task and returns its result; `None` if the engine
/// has stopped.
pub async fn call_engine<R: Send + 'static>(
    engine: &mpsc::Sender<EngineEvent>,
    f: impl FnOnce(&mut Engine, std::time::Instant) -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = oneshot::channel();
    let call: EngineCall = Box::new(move |e, now| {
        let _ = tx.send(f(e, now));
    });
    engine.send(EngineEvent::Call(call)).await.ok()?;
    rx.await.ok()
}

/// What a connection task receives.
#[derive(Debug)]
pub enum ConnCommand {
    /// One serialized line, newline included: a message for many (a member
    /// list, a floor grant) is serialized once and shared.
    Send(Arc<[u8]>),
    Close,
}

/// The engine task's end of one connection: its message queue, and its
/// bulk queue, which the connection drains only when the first is empty.
#[derive(Clone)]
pub struct ConnHandle {
    pub tx: mpsc::Sender<ConnCommand>,
    pub bulk: mpsc::Sender<Arc<ServerMessage>>,
}

/// A running router.
pub struct Router {
    control_addr: SocketAddr,
    media_addrs: Vec<SocketAddr>,
    admin_addr: SocketAddr,
    counters: Arc<MediaCounters>,
    stats: MediaStatsHandle,
    admin_task: tokio::task::JoinHandle<()>,
    engine_tx: mpsc::Sender<EngineEvent>,
    shutdown_tx: watch::Sender<bool>,
    engine_task: tokio::task::JoinHandle<()>,
    accept_task: tokio::task::JoinHandle<()>,
    media_stop: Arc<AtomicBool>,
    media_threads: Vec<std::thread::JoinHandle<()>>,
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

    /// Like [`Router::start`], with a chosen registry and RNG seed (tests).
    pub async fn start_with(
        config: Config,
        registry: Registry,
        seed: Option<u64>,
    ) -> anyhow::Result<Router> {
        crate::admin::check_exposure(config.admin, config.admin_token.as_deref())?;
        config.check_workers()?;
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

        let ecfg = config.engine_config(media_addrs.iter().map(|a| a.port()).collect());
        let start = Start {
            clock: wall_clock_now(),
            seed: seed.unwrap_or_else(rand::random),
        };
        let engine = Engine::new(ecfg, registry, config.room_specs(), start)?;

        let (engine_tx, engine_rx) = mpsc::channel(ENGINE_QUEUE);
        let (stun_tx, stun_rx) = mpsc::channel(STUN_QUEUE);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(MediaCounters::default());
        let media_stop = Arc::new(AtomicBool::new(false));

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
        let stats = MediaStatsHandle(stats_txs.into());
        let times = SharedCommandTimes::default();

        let engine_task = tokio::spawn(
            run_engine(
                engine,
                WatchHub::new(
                    config.limits.max_watchers_per_room,
                    config.limits.watch_buffer,
                ),
                engine_rx,
                stun_rx,
                media_txs,
                shutdown_rx,
                times.clone(),
            )
            .instrument(info_span!("engine")),
        );
        let accept_task = tokio::spawn(accept_loop(listener, engine_tx.clone()));
        let admin_task = tokio::spawn({
            let service = crate::admin::AdminService::new(
                engine_tx.clone(),
                stats.clone(),
                counters.clone(),
                times.clone(),
                config.limits.watch_buffer,
            );
            let token = config.admin_token.clone();
            let shutdown = shutdown_tx.subscribe();
            async move {
                if let Err(e) = crate::admin::serve(admin_listener, service, token, shutdown).await
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
        })
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
    }
}

/// How long each type of control command spent in the router: from its
/// line being read to everything it caused being queued for writing.
#[derive(Default)]
pub struct CommandTimes {
    by_command: HashMap<&'static str, hdrhistogram::Histogram<u64>>,
}

/// One command type's figures, µs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLatency {
    pub command: &'static str,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl CommandTimes {
    pub fn record(&mut self, command: &'static str, took: Duration) {
        let h = self.by_command.entry(command).or_insert_with(|| {
            // 1 µs to 60 s at 3 significant digits; bounds this wide
            // cannot fail.
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| unreachable!())
        });
        h.saturating_record((took.as_micros() as u64).max(1));
    }

    /// Forgets every figure.
    pub fn clear(&mut self) {
        self.by_command.clear();
    }

    /// Every command type seen, by name.
    pub fn summary(&self) -> Vec<CommandLatency> {
        let mut v: Vec<CommandLatency> = self
            .by_command
            .iter()
            .map(|(command, h)| CommandLatency {
                command,
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
            })
            .collect();
        v.sort_by_key(|c| c.command);
        v
    }
}

/// Shared between the engine task, which records, and the admin API.
pub type SharedCommandTimes = Arc<std::sync::Mutex<CommandTimes>>;

/// Asks the media workers for their statistics.
#[derive(Clone)]
pub struct MediaStatsHandle(Arc<[std::sync::mpsc::Sender<StatsRequest>]>);

impl MediaStatsHandle {
    /// Every worker's statistics, merged (each answers between batches,
    /// within [`media::POLL_INTERVAL`]); `None` once a worker has stopped.
    pub async fn snapshot(&self) -> Option<media::stats::MediaSnapshot> {
        let mut waiting = Vec::with_capacity(self.0.len());
        for worker in self.0.iter() {
            let (tx, rx) = oneshot::channel();
            worker.send(tx).ok()?;
            waiting.push(rx);
        }
        let mut merged = media::stats::MediaSnapshot::default();
        for rx in waiting {
            let part = rx.await.ok()?;
            merged.streams.extend(part.streams);
            for (addr, d) in part.delivered {
                let t = merged.delivered.entry(addr).or_default();
                t.packets += d.packets;
                t.bytes += d.bytes;
            }
            merged.taken_at = merged.taken_at.max(part.taken_at);
        }
        Some(merged)
    }
}

/// Wall-clock milliseconds since the Unix epoch, for watchers.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn run_engine(
    mut engine: Engine,
    mut hub: WatchHub,
    mut rx: mpsc::Receiver<EngineEvent>,
    mut stun: mpsc::Receiver<Input>,
    media: Vec<std::sync::mpsc::Sender<MediaCommand>>,
    mut shutdown: watch::Receiver<bool>,
    times: SharedCommandTimes,
) {
    let mut conns: HashMap<SessionId, ConnHandle> = HashMap::new();
    // Connections told to close; at shutdown we wait for them to flush.
    let mut closing: Vec<mpsc::Sender<ConnCommand>> = Vec::new();
    loop {
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let mut timed = None;
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(EngineEvent::Input(input)) => engine.handle_input(now(), input),
                Some(EngineEvent::Line { input, read_at }) => {
                    engine.handle_input(now(), input);
                    timed = engine.last_command().map(|c| (c, read_at));
                }
                Some(EngineEvent::Register { session, conn }) => { conns.insert(session, conn); }
                Some(EngineEvent::Call(f)) => f(&mut engine, now()),
                Some(EngineEvent::Watch { room, reply }) => {
                    // Outputs are dispatched after every event, so the
                    // snapshot's seq is the last event watchers were sent.
                    let sub = engine
                        .snapshot(now(), &room)
                        .map_err(WatchError::from)
                        .and_then(|snapshot| {
                            Ok(Subscription { snapshot, events: hub.subscribe(&room)? })
                        });
                    let _ = reply.send(sub);
                }
                None => break,
            },
            Some(input) = stun.recv() => engine.handle_input(now(), input),
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                engine.handle_timeout(now());
            }
            _ = shutdown.changed() => {
                engine.shutdown("the router is shutting down");
                dispatch(&mut engine, &mut hub, &mut conns, &mut closing, &media);
                break;
            }
        }
        dispatch(&mut engine, &mut hub, &mut conns, &mut closing, &media);
        if let Some((command, read_at)) = timed
            && let Ok(mut t) = times.lock()
        {
            t.record(command, read_at.elapsed());
        }
        closing.retain(|tx| !tx.is_closed());
    }
    // Let connection tasks flush what they have (their receivers drop when
    // they finish), then return.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while tokio::time::Instant::now() < deadline {
        closing.retain(|tx| !tx.is_closed());
        if closing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn dispatch(
    engine: &mut Engine,
    hub: &mut WatchHub,
    conns: &mut HashMap<SessionId, ConnHandle>,
    closing: &mut Vec<mpsc::Sender<ConnCommand>>,
    media: &[std::sync::mpsc::Sender<MediaCommand>],
) {
    let mut overflowed = Vec::new();
    // The engine sends one Arc to every receiver of a message, one after
    // the other: serialize it once for all of them.
    let mut last: Option<(Arc<ServerMessage>, Arc<[u8]>)> = None;
    loop {
        while let Some(out) = engine.poll_output() {
            match out {
                Output::Send { session, msg } => {
                    let line = match &last {
                        Some((m, line)) if Arc::ptr_eq(m, &msg) => line.clone(),
                        _ => {
                            let line: Arc<[u8]> = control::to_line(&*msg).into();
                            last = Some((msg, line.clone()));
                            line
                        }
                    };
                    if let Some(c) = conns.get(&session)
                        && let Err(e) = c.tx.try_send(ConnCommand::Send(line))
                    {
                        // Full (slow reader) or gone: either way the session
                        // ends. Only a full queue is news: a closed one is a
                        // client that went away, whose disconnection the
                        // engine is about to hear of.
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            warn!(session, "outgoing queue full; dropping the session");
                        }
                        overflowed.push(session);
                    }
                }
                Output::SendLine { session, line } => {
                    if let Some(c) = conns.get(&session)
                        && let Err(e) = c.tx.try_send(ConnCommand::Send(line))
                    {
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            warn!(session, "outgoing queue full; dropping the session");
                        }
                        overflowed.push(session);
                    }
                }
                Output::SendBulk { session, msg } => {
                    if let Some(c) = conns.get(&session)
                        && c.bulk.try_send(msg).is_err()
                    {
                        BULK_DROPPED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Close { session } => {
                    if let Some(c) = conns.remove(&session) {
                        // If the queue is full the sender is dropped here, which
                        // ends the task once it drains the queue: a close either way.
                        if c.tx.try_send(ConnCommand::Close).is_ok() {
                            closing.push(c.tx);
                        }
                    }
                }
                Output::Media { worker, cmd } => {
                    if let Some(w) = media.get(worker) {
                        let _ = w.send(cmd);
                    }
                }
                Output::RoomEvent(ev) => hub.publish(&ev),
            }
        }
        if overflowed.is_empty() {
            return;
        }
        // Ending these sessions makes more output (LEFT events, floor
        // released, USERLIST): dispatched by the next turn of the loop.
        for session in overflowed.drain(..) {
            if conns.remove(&session).is_some() {
                engine.handle_input(now(), Input::Disconnected { session });
            }
        }
    }
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(listener: TcpListener, engine: mpsc::Sender<EngineEvent>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        let (bulk, bulk_rx) = mpsc::channel(BULK_QUEUE);
        if engine
            .send(EngineEvent::Register {
                session,
                conn: ConnHandle { tx, bulk },
            })
            .await
            .is_err()
            || engine
                .send(EngineEvent::Input(Input::Connected { session, peer }))
                .await
                .is_err()
        {
            return;
        }
        // Detached: connection tasks outlive the accept loop at shutdown, so
        // they can flush SERVER_CLOSE. Each ends when its queue closes.
        tokio::spawn(
            connection(stream, session, engine.clone(), rx, bulk_rx)
                .instrument(info_span!("session", id = session, %peer)),
        );
    }
}

thread_local! {
    /// Where connection tasks running on this thread read their sockets.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

/// Bytes read from a control connection at once.
const READ_CHUNK: usize = 16 * 1024;

async fn connection(
    stream: TcpStream,
    session: SessionId,
    engine: mpsc::Sender<EngineEvent>,
    mut rx: mpsc::Receiver<ConnCommand>,
    mut bulk: mpsc::Receiver<Arc<ServerMessage>>,
) {
    debug!("connected");
    let (reader, mut writer) = stream.into_split();
    let mut framer = LineFramer::new(control::MAX_LINE_BYTES);
    let mut reading = true;
    loop {
        tokio::select! {
            // Outgoing messages first, bulk last: a file transfer never
            // delays another message to the same client.
            biased;
            cmd = rx.recv() => match cmd {
                Some(ConnCommand::Send(line)) => {
                    let mut out = line.to_vec();
                    // Coalesce whatever else is queued into one write.
                    let mut close = false;
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            ConnCommand::Send(m) => out.extend_from_slice(&m),
                            ConnCommand::Close => { close = true; break; }
                        }
                    }
                    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                    if close {
                        break;
                    }
                }
                Some(ConnCommand::Close) | None => break,
            },
            r = reader.readable(), if reading => {
                // Read into the thread's buffer, not one per connection:
                // an idle session then holds no read buffer at all.
                let read = match r {
                    Ok(()) => READ_BUF.with_borrow_mut(|buf| {
                        reader.try_read(buf).inspect(|&n| framer.push(&buf[..n]))
                    }),
                    Err(e) => Err(e),
                };
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(0) | Err(_) => {
                        reading = false;
                        let _ = engine.send(EngineEvent::Input(Input::Disconnected { session })).await;
                    }
                    Ok(_) => {
                        let read_at = std::time::Instant::now();
                        while let Some(frame) = framer.next_frame() {
                            let ev = match frame {
                                Frame::Line(line) => EngineEvent::Line {
                                    input: Input::Line { session, line },
                                    read_at,
                                },
                                Frame::TooLong => EngineEvent::Input(Input::LineTooLong { session }),
                            };
                            if engine.send(ev).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            },
            Some(msg) = bulk.recv() => {
                let out = control::to_line(&*msg);
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), writer.shutdown()).await;
    if reading {
        // Closed by the router: make sure the engine has forgotten it.
        let _ = engine
            .send(EngineEvent::Input(Input::Disconnected { session }))
            .await;
    }
    debug!("closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, RoomSpec};

    fn line(engine: &mut Engine, session: SessionId, json: &str) {
        engine.handle_input(
            now(),
            Input::Line {
                session,
                line: json.as_bytes().to_vec(),
            },
        );
    }

    /// A session whose connection task is gone is dropped inside `dispatch`;
    /// everything that causes (its LEFT event, the others' USERLIST) must
    /// still go out, none of it swallowed.
    #[tokio::test]
    async fn outputs_caused_by_a_dead_connection_are_all_dispatched() {
        let lobby = RoomSpec {
            name: "lobby".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: Default::default(),
        };
        let start = Start {
            clock: wall_clock_now(),
            seed: 1,
        };
        let Ok(mut engine) = Engine::new(
            EngineConfig::default(),
            Registry::builtin(),
            vec![lobby],
            start,
        ) else {
            panic!("engine")
        };
        let mut hub = WatchHub::new(4, 64);
        let mut conns = HashMap::new();
        let mut closing = Vec::new();
        let (media_tx, _media_rx) = std::sync::mpsc::channel();
        let media = [media_tx];
        let mut inbox = HashMap::new();
        for (id, nick) in [(1, "ann"), (2, "bob")] {
            let (tx, rx) = mpsc::channel(64);
            let (bulk, _) = mpsc::channel(1);
            conns.insert(id, ConnHandle { tx, bulk });
            inbox.insert(id, rx);
            let peer = SocketAddr::from(([127, 0, 0, 1], 1));
            engine.handle_input(now(), Input::Connected { session: id, peer });
            line(
                &mut engine,
                id,
                &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
            );
            line(&mut engine, id, r#"{"type":"JOIN","room":"lobby"}"#);
        }
        dispatch(&mut engine, &mut hub, &mut conns, &mut closing, &media);
        let Ok(mut watcher) = hub.subscribe("lobby") else {
            panic!("subscribe")
        };
        // bob's connection task ends without the engine hearing of it yet.
        drop(inbox.remove(&2));
        // ann takes the floor: MIC_GRANTED to bob fails, so bob is dropped.
        line(&mut engine, 1, r#"{"type":"MIC_REQUEST"}"#);
        dispatch(&mut engine, &mut hub, &mut conns, &mut closing, &media);

        let mut seqs = Vec::new();
        let mut left = false;
        while let Ok(item) = watcher.try_recv() {
            seqs.push(item.event.seq);
            left |= matches!(item.event.kind, RoomEventKind::Left { session: 2, .. });
        }
        assert!(left, "bob's LEFT event was lost: {seqs:?}");
        assert_eq!(seqs, (3..3 + seqs.len() as u64).collect::<Vec<_>>());
        let Some(ann) = inbox.get_mut(&1) else {
            panic!()
        };
        let mut last_userlist = None;
        while let Ok(ConnCommand::Send(line)) = ann.try_recv() {
            if let Ok(ServerMessage::Userlist { users, .. }) = serde_json::from_slice(&line) {
                last_userlist = Some(users.len());
            }
        }
        assert_eq!(last_userlist, Some(1), "ann was not told bob left");
    }
}
