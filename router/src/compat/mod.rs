//! Front-ends for the seed systems' own clients (docs/compat.md), one module
//! per seed. Each speaks its seed's control channel and media format and
//! nothing else: it parses the seed's messages into the engine's
//! [`Command`]s, renders what the engine [`Told`] its sessions back into the
//! seed's messages, and re-frames the seed's PCM into the room's RTP and
//! back through a [`gateway::Leg`] per session (never decoding). Rooms,
//! floors, lobbies, member lists and WatchRoom events are the ones native
//! clients have.
//!
//! - this module: binding the configured sockets at start, the [`Link`] a
//!   session task has to the engine, nicknames, the client port pool;
//! - [`gateway`]: a session's media leg to its room's media worker;
//! - [`ptt`]: seed 000, push-to-talk;
//! - [`voip`]: seed 001, VoIP calls (a room per call);
//! - [`meeting`]: seed 002, meetings (with [`jpeg`] for video);
//! - [`tip`]: seed 003, the voice communicator (mixing per receiver);
//! - [`chat`]: seed 004, chat with exclusive voice.

pub mod chat;
pub mod gateway;
pub mod jpeg;
pub mod meeting;
pub mod ptt;
pub mod tip;
pub mod voip;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use plugin_api::SessionId;
use proto::control::{ErrorCode, Ssrcs};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::config::{CompatConfig, Seed};
use crate::driver::engine_task::{EngineEvent, FRONT_QUEUE, FrontOut};
use crate::engine::{Command, Input, SessionCommand, SessionNotice, Told};

/// A configured front-end with its sockets bound.
pub struct Bound {
    pub config: CompatConfig,
    control: TcpListener,
    media: Option<Arc<UdpSocket>>,
}

/// Where a running front-end listens (the ports it bound, for port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontAddrs {
    pub seed: Seed,
    pub control: SocketAddr,
    pub media: Option<SocketAddr>,
}

impl Bound {
    pub fn addrs(&self) -> FrontAddrs {
        FrontAddrs {
            seed: self.config.seed,
            control: self.control.local_addr().unwrap_or(self.config.control),
            media: self
                .media
                .as_ref()
                .and_then(|m| m.local_addr().ok())
                .or(self.config.media),
        }
    }
}

/// Binds every front-end's sockets, so a port in use fails the start.
pub async fn bind(configs: &[CompatConfig]) -> anyhow::Result<Vec<Bound>> {
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        let seed = c.seed.name();
        let control = TcpListener::bind(c.control).await.with_context(|| {
            format!("binding the seed {seed} front-end's control {}", c.control)
        })?;
        let media = match c.media {
            Some(addr) => Some(Arc::new(gateway::seed_socket(addr).with_context(|| {
                format!("binding the seed {seed} front-end's media {addr}")
            })?)),
            None => None,
        };
        out.push(Bound {
            config: c.clone(),
            control,
            media,
        });
    }
    Ok(out)
}

/// What every front-end task needs of the router.
#[derive(Clone)]
pub struct Context {
    pub engine: mpsc::Sender<EngineEvent>,
    /// Each media worker's address, reachable from here (loopback for one
    /// bound to every address).
    pub workers: Arc<[SocketAddr]>,
    /// How long a seed-001 registration lives without a HEARTBEAT.
    pub voip_registration_timeout: Duration,
}

impl Context {
    /// The address of the media worker that listens on `port`.
    pub fn worker(&self, port: u16) -> Option<SocketAddr> {
        self.workers.iter().copied().find(|a| a.port() == port)
    }

    /// A media leg for the session `link` entered as `welcome`, bound at
    /// the worker on `udp_port` (its room's); `None` when it cannot be.
    pub async fn leg(
        &self,
        link: &Link,
        welcome: &Welcome,
        udp_port: u16,
        codec: &'static proto::codec::Codec,
    ) -> Option<gateway::Leg> {
        let worker = self.worker(udp_port)?;
        gateway::Leg::bind(
            worker,
            &welcome.media_token,
            welcome.ssrcs,
            codec,
            link.session,
        )
        .await
        .ok()
    }
}

/// Logs why a seed session ended.
pub(crate) fn ended(why: &str) {
    tracing::debug!(why, "seed session ended");
}

/// Starts every bound front-end; the tasks end when the router drops them.
pub fn spawn(bound: Vec<Bound>, ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    bound
        .into_iter()
        .map(|b| {
            let ctx = ctx.clone();
            match b.config.seed {
                Seed::Ptt => tokio::spawn(ptt::run(b, ctx)),
                Seed::Chat => tokio::spawn(chat::run(b, ctx)),
                Seed::Tip => tokio::spawn(tip::run(b, ctx)),
                Seed::Voip => tokio::spawn(voip::run(b, ctx)),
                Seed::Meeting => tokio::spawn(meeting::run(b, ctx)),
            }
        })
        .collect()
}

impl Bound {
    pub(crate) fn into_parts(self) -> (CompatConfig, TcpListener, Option<Arc<UdpSocket>>) {
        (self.config, self.control, self.media)
    }
}

/// A seed session's tie to the engine: it sends commands as the session,
/// and receives what the engine tells the session.
pub struct Link {
    pub session: SessionId,
    engine: mpsc::Sender<EngineEvent>,
    rx: mpsc::Receiver<FrontOut>,
    /// Told while a handshake waited for something else.
    held: VecDeque<Arc<Told>>,
    closed: bool,
}

/// What the session became after HELLO.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub nickname: String,
    pub media_token: String,
    pub ssrcs: Ssrcs,
    pub heartbeat_interval: Duration,
}

/// Why a handshake step failed, in words for the log (the seeds have no way
/// to say most of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<ErrorCode>,
    pub message: String,
}

/// Names a seed session takes when its own is taken: `ann`, `ann-2`, ...
const NAME_TRIES: u32 = 20;

impl Link {
    /// Registers a new session for a connection from `peer`; `None` when
    /// the router is stopping.
    pub async fn open(engine: &mpsc::Sender<EngineEvent>, peer: SocketAddr) -> Option<Link> {
        let session = crate::driver::connection::next_session();
        let (sink, rx) = mpsc::channel(FRONT_QUEUE);
        engine
            .send(EngineEvent::RegisterFront { session, sink })
            .await
            .ok()?;
        engine
            .send(EngineEvent::Input(Input::Connected { session, peer }))
            .await
            .ok()?;
        Some(Link {
            session,
            engine: engine.clone(),
            rx,
            held: VecDeque::new(),
            closed: false,
        })
    }

    /// Sends a command as this session; `name` is what the seed calls it.
    pub async fn send(&self, name: &'static str, command: Command) -> bool {
        self.engine
            .send(EngineEvent::Input(Input::Command {
                session: self.session,
                name,
                command,
            }))
            .await
            .is_ok()
    }

    /// The next thing the engine told the session; `None` once the router
    /// closed it (or stopped).
    pub async fn next(&mut self) -> Option<Arc<Told>> {
        if let Some(t) = self.held.pop_front() {
            return Some(t);
        }
        if self.closed {
            return None;
        }
        match self.rx.recv().await {
            Some(FrontOut::Told(t)) => Some(t),
            Some(FrontOut::Close) | None => {
                self.closed = true;
                None
            }
        }
    }

    /// Waits for the session notice `pick` accepts (holding everything else
    /// for [`Link::next`]), or for a refusal or a FULL.
    async fn expect<T>(
        &mut self,
        mut pick: impl FnMut(&SessionNotice) -> Option<T>,
    ) -> Result<T, Refusal> {
        self.wait_for(
            |t| match t {
                Told::Session(n) => pick(n),
                Told::Room { .. } => None,
            },
            false,
        )
        .await
    }

    /// Waits until `pick` accepts something told (which stays held for
    /// [`Link::next`], as everything before it), or for a refusal or a
    /// FULL (which does not).
    pub(crate) async fn expect_told(
        &mut self,
        mut pick: impl FnMut(&Told) -> bool,
    ) -> Result<(), Refusal> {
        self.wait_for(|t| pick(t).then_some(()), true).await
    }

    async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&Told) -> Option<T>,
        keep_picked: bool,
    ) -> Result<T, Refusal> {
        let mut held = VecDeque::new();
        let result = loop {
            let Some(t) = (match self.rx.recv().await {
                Some(FrontOut::Told(t)) => Some(t),
                _ => None,
            }) else {
                self.closed = true;
                break Err(Refusal {
                    code: None,
                    message: "the router closed the session".into(),
                });
            };
            if let Some(v) = pick(&t) {
                if keep_picked {
                    held.push_back(t);
                }
                break Ok(v);
            }
            if let Told::Session(n) = &*t {
                match n {
                    SessionNotice::Refused { code, message } => {
                        break Err(Refusal {
                            code: Some(*code),
                            message: message.clone(),
                        });
                    }
                    SessionNotice::Full { message, .. } => {
                        break Err(Refusal {
                            code: None,
                            message: message.clone(),
                        });
                    }
                    _ => {}
                }
            }
            held.push_back(t);
        };
        self.held.extend(held);
        result
    }

    /// Says HELLO as `nickname`.
    pub async fn hello(&mut self, nickname: &str) -> Result<Welcome, Refusal> {
        let hello = SessionCommand::Hello {
            version: proto::PROTOCOL_VERSION,
            nickname: nickname.into(),
            features: Vec::new(),
            resume: None,
            token: None,
            legacy: true,
        };
        if !self.send("HELLO", Command::Session(hello)).await {
            return Err(Refusal {
                code: None,
                message: "the router is stopping".into(),
            });
        }
        self.expect(|n| match n {
            SessionNotice::Welcome {
                nickname,
                media_token,
                ssrcs,
                heartbeat_interval,
                ..
            } => Some(Welcome {
                nickname: nickname.clone(),
                media_token: media_token.clone(),
                ssrcs: *ssrcs,
                heartbeat_interval: *heartbeat_interval,
            }),
            _ => None,
        })
        .await
    }

    /// Says HELLO as `wanted` (sanitised) and joins `room`; while the name
    /// is taken in the room, a new session tries `wanted-2`, `wanted-3`, ...
    /// (nicknames are unique per room, and a session keeps its name).
    /// Answers the session, who it is, and its room's media port.
    pub async fn enter(
        mut self,
        peer: SocketAddr,
        wanted: &str,
        room: &str,
    ) -> Result<(Link, Welcome, u16), Refusal> {
        let base = sanitize_nickname(wanted);
        let mut n = 1;
        loop {
            let welcome = match self.hello(&numbered(&base, n)).await {
                Ok(w) => w,
                Err(r) => {
                    self.close().await;
                    return Err(r);
                }
            };
            match self.join(room).await {
                Ok(port) => return Ok((self, welcome, port)),
                Err(r) if r.code == Some(ErrorCode::NicknameTaken) && n < NAME_TRIES => {
                    let engine = self.engine.clone();
                    self.close().await;
                    self = Link::open(&engine, peer).await.ok_or(r)?;
                    n += 1;
                }
                Err(r) => {
                    self.close().await;
                    return Err(r);
                }
            }
        }
    }

    /// Joins `room`; answers the port of the room's media worker.
    pub async fn join(&mut self, room: &str) -> Result<u16, Refusal> {
        let join = SessionCommand::Join { room: room.into() };
        if !self.send("JOIN", Command::Session(join)).await {
            return Err(Refusal {
                code: None,
                message: "the router is stopping".into(),
            });
        }
        self.expect(|n| match n {
            SessionNotice::Joined { udp_port, .. } => Some(*udp_port),
            _ => None,
        })
        .await
    }

    /// Ends the session (its seed connection closed, or the front-end
    /// closes it): at once, since seed clients cannot resume a session (a
    /// bare disconnect would keep it for the resume grace).
    pub async fn close(self) {
        if !self.closed {
            let _ = self
                .send("BYE", Command::Session(SessionCommand::Bye))
                .await;
        }
        let _ = self
            .engine
            .send(EngineEvent::Input(Input::Disconnected {
                session: self.session,
            }))
            .await;
    }
}

/// A seed's free-text name as a Switchboard nickname: characters nicknames
/// may not hold become `_`, spaces at the ends go, at most 32 characters;
/// nothing left is `user`.
pub fn sanitize_nickname(raw: &str) -> String {
    let max = proto::control::NICKNAME_MAX_CHARS;
    let cleaned: String = raw
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() {
        "user".into()
    } else if crate::engine::is_reserved_nickname(&cleaned) {
        // The seeds cannot be told; `server` becomes `server_`.
        let mut c: String = cleaned.chars().take(max - 1).collect();
        c.push('_');
        c
    } else {
        cleaned
    }
}

/// `base` for the first try, then `base-n`, cut so it stays a nickname.
fn numbered(base: &str, n: u32) -> String {
    if n == 1 {
        return base.to_owned();
    }
    let suffix = format!("-{n}");
    let keep = proto::control::NICKNAME_MAX_CHARS - suffix.len();
    let head: String = base.chars().take(keep).collect();
    format!("{}{suffix}", head.trim_end())
}

/// Ports handed to seed clients for their media (seed 000's `udp_port`):
/// the lowest free one from `first`, unique among live clients (the
/// original counted clients, and repeated a live port after a leave).
pub struct PortPool {
    first: u16,
    last: u16,
    used: Mutex<BTreeSet<u16>>,
}

impl PortPool {
    pub fn new(first: u16) -> Self {
        Self::range(first, u16::MAX)
    }

    /// Numbers from `first` to `last` (seed 003's session numbers, 0-999).
    pub fn range(first: u16, last: u16) -> Self {
        Self {
            first,
            last,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// A number no live client has; `None` when all are.
    pub fn take(&self) -> Option<u16> {
        let mut used = self.used.lock().ok()?;
        let port = (self.first..=self.last).find(|p| !used.contains(p))?;
        used.insert(port);
        Some(port)
    }

    pub fn give_back(&self, port: u16) {
        if let Ok(mut used) = self.used.lock() {
            used.remove(&port);
        }
    }
}

/// Gap between two messages to one client, after the first was
/// acknowledged: the seed client compares each `recv()` with one message,
/// so two must never arrive together.
const PACE: Duration = Duration::from_millis(5);

/// How long a write to a seed client may take before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages to one client of a seed that reads each `recv()` as one message
/// (000, 003), each written alone: after a write, the next waits until the
/// client acknowledged it and [`PACE`] passed.
pub struct Paced {
    queue: VecDeque<String>,
    next_at: tokio::time::Instant,
}

/// Messages a client may have waiting; beyond, it is too slow and closed.
pub const MAX_QUEUED: usize = 256;

impl Default for Paced {
    fn default() -> Self {
        Self::new()
    }
}

impl Paced {
    pub fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            next_at: tokio::time::Instant::now(),
        }
    }

    pub fn push(&mut self, m: String) {
        self.queue.push_back(m);
    }

    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    pub async fn ready(&self) -> Option<()> {
        tokio::time::sleep_until(self.next_at).await;
        Some(())
    }

    /// Writes everything queued (a last message before a close), within
    /// [`WRITE_TIMEOUT`].
    pub async fn flush(&mut self, wr: &mut tokio::net::tcp::OwnedWriteHalf) {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        while self.pending() && tokio::time::Instant::now() < deadline {
            self.ready().await;
            if !self.write_next(wr).await {
                return;
            }
        }
    }

    /// Writes the next message; false when the client cannot take it.
    pub async fn write_next(&mut self, wr: &mut tokio::net::tcp::OwnedWriteHalf) -> bool {
        if self.queue.len() > MAX_QUEUED {
            return false;
        }
        let Some(m) = self.queue.pop_front() else {
            return true;
        };
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(m.as_bytes())).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
        // Wait (a little) for the acknowledgement, so the next message is
        // a segment of its own even when Nagle would not hold it.
        let stream: &TcpStream = wr.as_ref();
        for _ in 0..50 {
            if crate::driver::stream::unacknowledged(stream) == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.next_at = tokio::time::Instant::now() + PACE;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names_become_nicknames() {
        assert_eq!(sanitize_nickname("ann\n"), "ann");
        assert_eq!(sanitize_nickname("  bob smith "), "bob smith");
        assert_eq!(sanitize_nickname("a<b>c;d"), "a_b_c_d");
        assert_eq!(sanitize_nickname(""), "user");
        assert_eq!(sanitize_nickname("\0\0"), "user");
        let long = "x".repeat(100);
        assert_eq!(sanitize_nickname(&long).chars().count(), 32);
        for raw in ["ann", "a<b>", "", &long, "ünïcødé", "日本語の名前"] {
            let n = sanitize_nickname(raw);
            assert!(
                proto::control::validate_nickname(&n).is_ok(),
                "{raw:?}: {n:?}"
            );
            for i in [2, 19] {
                let m = numbered(&n, i);
                assert!(proto::control::validate_nickname(&m).is_ok(), "{m:?}");
            }
        }
        assert_eq!(numbered("ann", 2), "ann-2");
        // Reserved names, and look-alikes of them, get a mark.
        assert_eq!(sanitize_nickname("server"), "server_");
        assert_eq!(sanitize_nickname("Ѕerver"), "Ѕerver_");
        assert!(!crate::engine::is_reserved_nickname(&sanitize_nickname(
            "Admin"
        )));
    }

    #[test]
    fn client_ports_are_unique_among_live_clients() {
        let pool = PortPool::new(10_000);
        let a = pool.take();
        let b = pool.take();
        assert_eq!((a, b), (Some(10_000), Some(10_001)));
        pool.give_back(10_000);
        // The original gave 10000 + count = 10001 here, which b holds.
        assert_eq!(pool.take(), Some(10_000));
        assert_eq!(pool.take(), Some(10_002));
        let full = PortPool::new(u16::MAX);
        assert_eq!(full.take(), Some(u16::MAX));
        assert_eq!(full.take(), None);
    }
}
