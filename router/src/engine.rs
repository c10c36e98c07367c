//! The router's core: sessions, rooms and the forwarding table, with no I/O.
//!
//! The engine owns every piece of control state. Drivers feed it [`Input`]s
//! stamped with `now` and drain [`Output`]s; it reads no clock and touches no
//! socket, so tests run it on virtual time. The run loop is the str0m rule:
//! handle an input (or [`Engine::handle_timeout`]), then drain
//! [`Engine::poll_output`] until empty, then sleep until
//! [`Engine::poll_timeout`] or the next input.
//!
//! Media never passes through here. The engine computes, on events, the
//! forwarding entries `SSRC → (source address, receiver addresses)` and emits
//! the changes as [`MediaCommand`]s; the UDP worker applies them to its own
//! table and reads that table for every packet.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_api::{
    Audience, Effect, JoinPolicy, Member, Notice, Options, Outbox, Receivers, RoomCommand,
    SessionId, TimerKey, WallClock,
};
use proto::control::{
    self, ErrorCode, FullScope, LeaveReason, RejectReason, RequestId, RoomInfo, UserInfo,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::events::RoomEvent;
use crate::registry::{Registry, RoomError};

mod bans;
mod ops;
mod rooms;
pub mod roster;
pub mod routes;
mod sessions;
mod told;
pub use bans::BanPolicy;
pub use ops::{OpError, Who};
use rooms::Rooms;
use sessions::{MemberLists, Session, Sessions};
pub use told::{Command, SenderKey, SessionCommand, SessionNotice, SrtpKey, Told};

/// Limits and timings of the control plane. Built from the configuration's
/// [`crate::config::Limits`] (`Config::engine_config`); its `Default` is the
/// default configuration's, so the defaults live in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How often clients should send HEARTBEAT (told in WELCOME).
    pub heartbeat_interval: Duration,
    /// A session that sends nothing for this long is dropped.
    pub silence_timeout: Duration,
    /// Sessions beyond this are answered FULL and closed.
    pub max_sessions: usize,
    /// Rooms beyond this cannot be created.
    pub max_rooms: usize,
    /// Bad lines a session may send in a burst before it is closed.
    pub error_burst: u32,
    /// One bad line is forgiven per this interval.
    pub error_refill: Duration,
    /// UDP port of each media worker, by [`WorkerId`]; WELCOME tells the
    /// first, JOINED the one of the joined room's worker.
    pub media_ports: Vec<u16>,
    /// `REQUEST_JOIN` attempts one IP address may make at once…
    pub join_attempts_burst: u32,
    /// …and one more per this interval.
    pub join_attempt_refill: Duration,
    /// Capacity of meetings made with `CREATE_MEETING`.
    pub meeting_max_participants: u32,
    /// Whether clients may create rooms with `CREATE_ROOM`.
    pub client_rooms: bool,
    /// Most participants of a room made with `CREATE_ROOM`.
    pub client_room_max_participants: u32,
    /// Per-session command rates.
    pub rates: crate::config::CommandRates,
    /// A connection must say HELLO within this.
    pub hello_timeout: Duration,
    /// Connections waiting for HELLO at once.
    pub max_pending: usize,
    /// Connections per IP address at once.
    pub max_per_address: usize,
    /// When abuse from one address bans it.
    pub bans: BanPolicy,
    /// How long a session whose connection dropped may be resumed; zero:
    /// never.
    pub resume_grace: Duration,
    /// Only signed STUN bindings (`stun_integrity`): `secure = true`.
    pub require_stun_integrity: bool,
    /// Every room is secure unless its options say `secure = false`, which
    /// only `allow_plain_rooms` permits: `secure = true`.
    pub secure_rooms: bool,
    /// A secure router may host plain rooms (`allow_plaintext_compat`, for
    /// the seed front-ends' clients).
    pub allow_plain_rooms: bool,
}

/// What the engine starts from that it may not take from the machine: the
/// time (its `Instant` origin and the Unix time then) and the seed of every
/// random choice (SSRCs, media tokens, meeting codes). The driver reads the
/// clock and 256 bits of the OS's entropy (the tokens are credentials: a
/// shorter seed would bound what guessing them costs); tests give fixed
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub clock: WallClock,
    pub seed: [u8; 32],
}

/// What a room is made from (config file or, later, gRPC).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSpec {
    pub name: String,
    pub kind: String,
    /// 0 means unlimited.
    pub max_participants: u32,
    pub options: Options,
}

/// Something that happened outside the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A control connection was accepted; the driver chose its id.
    Connected {
        session: SessionId,
        peer: SocketAddr,
    },
    /// The connection finished a TLS handshake (before any of its lines):
    /// keys may be given to it.
    Encrypted { session: SessionId },
    /// A complete control line.
    Line { session: SessionId, line: Vec<u8> },
    /// A command from a front-end that parsed its own wire format; `name`
    /// is what that front-end calls it (for error texts and timing).
    Command {
        session: SessionId,
        name: &'static str,
        command: Command,
    },
    /// A control line exceeded the limit and was discarded.
    LineTooLong { session: SessionId },
    /// The control connection closed (or the driver closed it).
    Disconnected { session: SessionId },
    /// Media worker: RTP of `ssrc` came in another payload type than its
    /// route allows (told once per route).
    WrongCodec {
        worker: WorkerId,
        from: SocketAddr,
        payload_type: u8,
    },
    /// A STUN Binding Request reached the socket of media worker `worker`.
    StunBinding {
        worker: WorkerId,
        from: SocketAddr,
        username: Option<String>,
        request: Vec<u8>,
    },
}

/// Index of a media worker: one thread with its own UDP socket and the
/// forwarding entries of the rooms placed on it.
pub type WorkerId = usize;

/// A room's set of bound member addresses at its media worker, which
/// routes name instead of listing every receiver: a join changes the group
/// by one address, not every member's route by one.
pub type GroupId = u64;

/// Where a stream's packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fanout {
    /// Dropped (policy: not the floor holder, muted).
    Nobody,
    /// Every address of the group but the sender's own.
    Group(GroupId),
    /// Exactly these addresses.
    List(Arc<[SocketAddr]>),
}

/// One forwarding entry, as the media worker stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The only address this SSRC may come from.
    pub source: SocketAddr,
    /// Where RTP with this SSRC goes.
    pub media: Fanout,
    /// Where RTCP with this sender SSRC goes.
    pub rtcp: Fanout,
    /// RTP clock rate of the stream, for jitter statistics.
    pub clock_rate: u32,
    /// RTP of another payload type is dropped, and its sender told once
    /// ([`Input::WrongCodec`]): audio in a room that seed clients share.
    pub payload_type: Option<u8>,
}

/// A change for the media worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// `addr` belongs to a session now.
    Bind {
        addr: SocketAddr,
        session: SessionId,
    },
    /// `addr` belongs to nobody.
    Unbind {
        addr: SocketAddr,
    },
    SetRoute {
        ssrc: u32,
        route: Route,
    },
    RemoveRoute {
        ssrc: u32,
    },
    /// `addr` is in group `group` now.
    GroupAdd {
        group: GroupId,
        addr: SocketAddr,
    },
    /// `addr` is no longer in group `group`.
    GroupRemove {
        group: GroupId,
        addr: SocketAddr,
    },
    /// Send a STUN response.
    Reply {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
}

/// Something the drivers must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Tell one session something (the front-end of its connection
    /// renders it).
    Send { session: SessionId, told: Arc<Told> },
    /// Tell each of these sessions the same thing, in this order (one
    /// output for a room's worth of receivers).
    SendAll {
        sessions: Vec<SessionId>,
        told: Arc<Told>,
    },
    /// Tell after everything else queued for the session, or drop when the
    /// session's bulk queue is full (file chunks).
    SendBulk { session: SessionId, told: Arc<Told> },
    /// What [`Output::Send`] tells, as an answer to the command with this
    /// request id (the front-end echoes the id).
    Answer {
        session: SessionId,
        told: Arc<Told>,
        request: RequestId,
    },
    /// Close the connection once what was sent before is written.
    Close { session: SessionId },
    /// A change for media worker `worker`.
    Media { worker: WorkerId, cmd: MediaCommand },
    /// Something happened in a room (for `WatchRoom`).
    RoomEvent(Arc<RoomEvent>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Silence(SessionId),
    /// A connection's HELLO deadline.
    Hello(SessionId),
    /// A ban ends (expired bans and strikes are forgotten).
    BanEnds,
    Room(String, TimerKey),
    /// A room's coalesced member-list changes are due.
    Roster(String),
    /// A detached session's grace period ends.
    Resume(SessionId),
}

/// Counters the engine keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub sessions: usize,
    pub rooms: usize,
    pub stun_bound: u64,
    pub stun_refused: u64,
    pub protocol_errors: u64,
    pub closed_for_errors: u64,
    pub timed_out: u64,
    pub refused_full: u64,
    pub join_attempts_limited: u64,
    /// Well-formed commands refused (every ERROR but malformed input).
    pub refusals: u64,
    /// Commands dropped for coming faster than `limits.rates` allows.
    pub rate_limited: u64,
    /// Addresses banned since start, and banned now.
    pub bans: u64,
    pub banned_addresses: usize,
    /// Connections refused: from a banned address, beyond the per-address
    /// limit, or beyond the connections waiting for HELLO.
    pub refused_banned: u64,
    pub refused_per_address: u64,
    pub refused_pending: u64,
    /// Connections closed for saying no HELLO in time.
    pub hello_timeouts: u64,
    /// Sessions kept after their connection dropped, resumed by a new
    /// connection, and ended when their grace period passed.
    pub detached: u64,
    pub resumed: u64,
    pub resume_expired: u64,
    /// Signed Binding Requests refused as replays (a transaction seen from
    /// another address).
    pub stun_replayed: u64,
    /// HELLOs refused for their token, sessions ended by a revocation, and
    /// commands refused by a token's grants (`FORBIDDEN`).
    pub auth_refused: u64,
    pub auth_revoked: u64,
    pub forbidden: u64,
}

/// The sans-IO router core.
pub struct Engine {
    cfg: EngineConfig,
    registry: Registry,
    sessions: Sessions,
    rooms: Rooms,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    outputs: VecDeque<Output>,
    rng: StdRng,
    stats: EngineStats,
    /// Addresses banned for abuse, and the strikes against others.
    bans: bans::Bans,
    clock: WallClock,
    /// The type of the last control line handled, for the drivers' timing.
    last_command: Option<&'static str>,
    /// Structural effects of plugins, carried out once the step that
    /// caused them is done ([`Engine::drain_pending`]).
    pending: VecDeque<(String, Effect)>,
    /// The session whose command is being handled: a notice to the whole
    /// room reaches it first (the one who asked for the floor hears the
    /// grant before the thousands who only listen).
    actor: Option<SessionId>,
    /// The request id of the line being handled: everything told to the
    /// actor meanwhile answers it.
    request: Option<RequestId>,
    /// Checks access tokens ([`Engine::set_auth`]).
    auth: Arc<crate::auth::Verifier>,
    /// What a session without a token may do on an open router.
    open_grants: Arc<crate::auth::Grants>,
}

/// Who HELLO claims to be.
struct Claimant {
    nickname: String,
    token: Option<String>,
    /// A seed front-end's session: its clients carry no token.
    legacy: bool,
}

impl Engine {
    /// An engine with the given rooms, started at `start`.
    pub fn new(
        cfg: EngineConfig,
        registry: Registry,
        rooms: Vec<RoomSpec>,
        start: Start,
    ) -> Result<Self, RoomError> {
        let rng = StdRng::from_seed(start.seed);
        let mut engine = Self {
            cfg,
            registry,
            sessions: Sessions::default(),
            rooms: Rooms::default(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            rng,
            stats: EngineStats::default(),
            bans: bans::Bans::default(),
            clock: start.clock,
            last_command: None,
            pending: VecDeque::new(),
            actor: None,
            request: None,
            auth: Arc::new(crate::auth::Verifier::default()),
            open_grants: Arc::new(crate::auth::Grants::open()),
        };
        for spec in rooms {
            engine.create_room(spec)?;
        }
        Ok(engine)
    }

    /// Checks tokens with `auth` from now on (at start, and on SIGHUP).
    /// Sessions whose token or identity it revokes are ended with
    /// `TOKEN_REVOKED`.
    pub fn set_auth(&mut self, now: Instant, auth: Arc<crate::auth::Verifier>) {
        self.auth = auth;
        let revoked: Vec<SessionId> = self
            .sessions
            .ids()
            .into_iter()
            .filter(|id| {
                self.sessions
                    .identity(*id)
                    .and_then(|i| i.access.token.as_ref())
                    .is_some_and(|(sub, jti)| self.auth.is_revoked(sub, jti.as_deref()))
            })
            .collect();
        for id in revoked {
            tracing::info!(session = id, "session ended: its token was revoked");
            self.stats.auth_revoked += 1;
            self.close_with_error(
                now,
                id,
                ErrorCode::TokenRevoked,
                "your access token has been revoked".into(),
                LeaveReason::Kicked,
            );
        }
    }

    /// What session `id` may do (nothing before HELLO).
    fn grants(&self, id: SessionId) -> Option<&crate::auth::Grants> {
        Some(&self.sessions.identity(id)?.access.grants)
    }

    /// Refuses with `FORBIDDEN` unless `allowed` says the session's grants
    /// let it; `true` when they do.
    fn permitted(
        &mut self,
        now: Instant,
        id: SessionId,
        allowed: impl Fn(&crate::auth::Grants) -> bool,
        why: impl FnOnce() -> String,
    ) -> bool {
        if self.grants(id).is_some_and(allowed) {
            return true;
        }
        self.stats.forbidden += 1;
        self.refuse(now, id, ErrorCode::Forbidden, why());
        false
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            sessions: self.sessions.len(),
            rooms: self.rooms.len(),
            bans: self.bans.total,
            banned_addresses: self.bans.banned_now(),
            ..self.stats
        }
    }

    /// Adds a room; its kind must be registered and its options valid.
    pub fn create_room(&mut self, spec: RoomSpec) -> Result<(), RoomError> {
        self.create_room_with(spec, None, false)
    }

    /// A room made for a purpose (a seed-001 call) rather than configured:
    /// like a client's CREATE_ROOM, it closes when its last member leaves.
    pub fn create_transient_room(&mut self, spec: RoomSpec) -> Result<(), RoomError> {
        self.create_room_with(spec, None, true)
    }

    fn create_room_with(
        &mut self,
        mut spec: RoomSpec,
        code: Option<String>,
        ephemeral: bool,
    ) -> Result<(), RoomError> {
        control::validate_room_name(&spec.name).map_err(RoomError::BadName)?;
        // A secure router's rooms are secure unless said otherwise, which
        // only allow_plaintext_compat permits.
        if self.cfg.secure_rooms {
            match crate::registry::room_secure(&spec.options)? {
                true => {}
                false if spec.options.contains_key("secure") && self.cfg.allow_plain_rooms => {}
                false if spec.options.contains_key("secure") => {
                    return Err(RoomError::Option(plugin_api::OptionError {
                        name: "secure".into(),
                        message: "this router has secure = true: a plain room needs allow_plaintext_compat = true".into(),
                    }));
                }
                false => {
                    spec.options.insert("secure".into(), true.into());
                }
            }
        }
        if self.rooms.contains_key(&spec.name) {
            return Err(RoomError::Exists(spec.name));
        }
        if self.rooms.len() >= self.cfg.max_rooms {
            return Err(RoomError::TooMany(self.cfg.max_rooms));
        }
        let plugin = self.registry.create(
            &spec.kind,
            &plugin_api::RoomInfo {
                name: &spec.name,
                max_participants: spec.max_participants,
                clock: self.clock,
            },
            &spec.options,
        )?;
        let worker = self.rooms.place(self.cfg.media_ports.len());
        let settings = self.registry.settings(&spec.kind, &spec.options);
        self.rooms
            .insert(spec, plugin, worker, code, ephemeral, settings);
        Ok(())
    }

    /// The rooms, as listed to clients.
    pub fn room_infos(&self) -> Vec<RoomInfo> {
        self.rooms
            .names()
            .filter_map(|name| self.room_info(name))
            .collect()
    }

    /// The rooms LIST_ROOMS shows session `id`: meetings only to their
    /// own members (a meeting's code is its only secret, and its name
    /// carries it).
    fn rooms_listed_to(&self, id: SessionId) -> Vec<RoomInfo> {
        let own = self.sessions.get(&id).and_then(|s| s.room.as_deref());
        self.rooms
            .names()
            .filter(|name| {
                Some(name.as_str()) == own || self.rooms.get(name).is_some_and(|r| r.code.is_none())
            })
            .filter(|name| {
                Some(name.as_str()) == own || self.grants(id).is_some_and(|g| g.may_join(name))
            })
            .filter_map(|name| self.room_info(name))
            .collect()
    }

    /// Checks what must hold between inputs, for tests and fuzzing: each
    /// room's members are sessions that know they are in it, once each;
    /// routes go from members to other members only; and in rooms with a
    /// floor (`ptt`, `chat`) at most one member talks, and only a talker's
    /// media is routed anywhere. `Err` says what broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        for name in self.rooms.names() {
            let Some(room) = self.rooms.get(name) else {
                return Err(format!("room `{name}` is listed but missing"));
            };
            let mut seen = std::collections::HashSet::new();
            for m in &room.members {
                if !seen.insert(*m) {
                    return Err(format!("session {m} is twice in `{name}`"));
                }
                match self.sessions.get(m) {
                    Some(s) if s.room.as_deref() == Some(name.as_str()) => {}
                    Some(s) => {
                        return Err(format!(
                            "session {m} is a member of `{name}` but thinks it is in {:?}",
                            s.room
                        ));
                    }
                    None => return Err(format!("`{name}` has member {m}, no such session")),
                }
            }
            for (from, to) in &room.routes {
                if !seen.contains(from) {
                    return Err(format!("`{name}` routes {from}, not a member"));
                }
                if let Receivers::Only(v) = to
                    && let Some(bad) = v.iter().find(|r| **r == *from || !seen.contains(r))
                {
                    return Err(format!("`{name}` routes {from} to {bad}"));
                }
            }
            if matches!(room.spec.kind.as_str(), "ptt" | "chat") {
                let talkers: Vec<SessionId> = room
                    .members
                    .iter()
                    .copied()
                    .filter(|m| room.plugin.is_talking(*m))
                    .collect();
                if talkers.len() > 1 {
                    return Err(format!(
                        "`{name}` has {} floor holders: {talkers:?}",
                        talkers.len()
                    ));
                }
                if let Some((from, _)) = room
                    .routes
                    .iter()
                    .find(|(m, r)| **r != Receivers::Nobody && !talkers.contains(m))
                {
                    return Err(format!(
                        "`{name}` routes {from}, who does not hold the floor"
                    ));
                }
            }
        }
        for id in self.sessions.ids() {
            if let Some(room) = self.sessions.get(&id).and_then(|s| s.room.as_deref())
                && !self
                    .rooms
                    .get(room)
                    .is_some_and(|r| r.members.contains(&id))
            {
                return Err(format!(
                    "session {id} thinks it is in `{room}`, which lacks it"
                ));
            }
        }
        Ok(())
    }

    /// One room, as listed to clients.
    pub fn room_info(&self, name: &str) -> Option<RoomInfo> {
        self.rooms.get(name).map(|r| RoomInfo {
            name: r.spec.name.clone(),
            kind: r.spec.kind.clone(),
            participants: r.members.len() as u32,
            max_participants: r.spec.max_participants,
            secure: r.secure,
        })
    }

    /// The type of the control line the last [`Engine::handle_input`]
    /// handled (`None` for other inputs and unparseable lines).
    pub fn last_command(&self) -> Option<&'static str> {
        self.last_command
    }

    /// The next output for the drivers.
    pub fn poll_output(&mut self) -> Option<Output> {
        let Some(out) = self.outputs.pop_front() else {
            self.sessions.forget_stale();
            return None;
        };
        Some(self.as_connection_output(out))
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Handles one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.last_command = None;
        self.request = None;
        let from = self.outputs.len();
        let input = self.as_session_input(input);
        self.actor = match &input {
            Input::Line { session, .. } | Input::Command { session, .. } => Some(*session),
            _ => None,
        };
        match input {
            Input::Connected { session, peer } => self.on_connected(now, session, peer),
            Input::Encrypted { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.encrypted = true;
                }
            }
            Input::Line { session, line } => self.on_line(now, session, &line),
            Input::Command {
                session,
                name,
                command,
            } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.last_seen = now;
                }
                self.last_command = Some(name);
                self.on_command(now, session, name, command);
            }
            Input::LineTooLong { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.last_seen = now;
                }
                let max = control::MAX_LINE_BYTES;
                self.protocol_error(
                    now,
                    session,
                    ErrorCode::LineTooLong,
                    format!("line longer than {max} bytes discarded"),
                );
            }
            Input::Disconnected { session } => self.on_disconnected(now, session),
            Input::StunBinding {
                worker,
                from,
                username,
                request,
            } => self.on_stun(now, worker, from, username, &request),
            Input::WrongCodec {
                worker,
                from,
                payload_type,
            } => self.on_wrong_codec(worker, from, payload_type),
        }
        self.drain_pending(now);
        self.release_detached_floors(now);
        if let (Some(actor), Some(request)) = (self.actor, self.request.take()) {
            self.mark_answers(from, actor, &request);
        }
    }

    /// An input about a connection, as about the session it speaks for
    /// (another one once it resumed a session).
    fn as_session_input(&self, input: Input) -> Input {
        if !self.sessions.any_resumed() {
            return input;
        }
        let of = |c| self.sessions.session_of(c);
        match input {
            Input::Line { session, line } => Input::Line {
                session: of(session),
                line,
            },
            Input::Command {
                session,
                name,
                command,
            } => Input::Command {
                session: of(session),
                name,
                command,
            },
            Input::LineTooLong { session } => Input::LineTooLong {
                session: of(session),
            },
            Input::Disconnected { session } => Input::Disconnected {
                session: of(session),
            },
            other => other,
        }
    }

    /// An output for a session, as for the connection it is spoken to
    /// through.
    fn as_connection_output(&self, out: Output) -> Output {
        if !self.sessions.any_resumed() {
            return out;
        }
        let to = |s| self.sessions.connection_of(s);
        match out {
            Output::Send { session, told } => Output::Send {
                session: to(session),
                told,
            },
            Output::SendBulk { session, told } => Output::SendBulk {
                session: to(session),
                told,
            },
            Output::Answer {
                session,
                told,
                request,
            } => Output::Answer {
                session: to(session),
                told,
                request,
            },
            Output::SendAll { sessions, told } => Output::SendAll {
                sessions: sessions.into_iter().map(to).collect(),
                told,
            },
            Output::Close { session } => Output::Close {
                session: to(session),
            },
            other => other,
        }
    }

    /// A connection ended. Its session, once welcomed, is kept for
    /// `resume_grace` (detached: no connection, nothing sent to it) in its
    /// room and floor queue; but a floor it holds is released at once:
    /// nobody may hold a floor who cannot hear or be heard. Otherwise the
    /// session ends.
    fn on_disconnected(&mut self, now: Instant, id: SessionId) {
        let grace = self.cfg.resume_grace;
        let keep = !grace.is_zero()
            && self
                .sessions
                .get(&id)
                .is_some_and(|s| s.identity.is_some() && s.detached.is_none());
        if !keep {
            return self.remove_session(now, id, LeaveReason::Disconnected);
        }
        // A guest waiting in a lobby is withdrawn: a host must not admit
        // someone who is not there.
        self.withdraw(now, id);
        // The connection itself is done: the driver closes it (and frees
        // its descriptor) as for any session that ends.
        let conn = self.sessions.connection_of(id);
        self.outputs.push_back(Output::Close { session: conn });
        self.sessions.detach(id, now + grace);
        self.timers
            .push(Reverse((now + grace, TimerRef::Resume(id))));
        self.stats.detached += 1;
        self.release_detached_floors(now);
    }

    /// Releases every floor a detached session holds (one it held when its
    /// connection dropped, or was granted from the queue since).
    fn release_detached_floors(&mut self, now: Instant) {
        // Each release may grant the floor to the next in the queue, who
        // may be detached too: again until none holds one (each detached
        // session is released at most once per call).
        let mut released = Vec::new();
        loop {
            let holder = self.sessions.detached().find(|id| {
                !released.contains(id)
                    && self.sessions.get(id).is_some_and(|s| {
                        s.room
                            .as_ref()
                            .and_then(|r| self.rooms.get(r))
                            .is_some_and(|r| r.plugin.is_talking(*id))
                    })
            });
            let Some(id) = holder else {
                return;
            };
            released.push(id);
            self.room_command(now, id, "MIC_RELEASE", RoomCommand::FloorLost);
            self.drain_pending(now);
        }
    }

    /// Turns what the outputs from index `from` on tell `session` into
    /// answers to its request: one to it alone becomes an
    /// [`Output::Answer`]; one to many is split around it, order kept.
    fn mark_answers(&mut self, from: usize, session: SessionId, request: &RequestId) {
        if self.outputs.len() <= from {
            return;
        }
        let tail: Vec<Output> = self.outputs.drain(from..).collect();
        for out in tail {
            match out {
                Output::Send { session: s, told } if s == session => {
                    self.outputs.push_back(Output::Answer {
                        session,
                        told,
                        request: request.clone(),
                    })
                }
                Output::SendAll { mut sessions, told } if sessions.contains(&session) => {
                    let i = sessions.iter().position(|s| *s == session).unwrap_or(0);
                    let after = sessions.split_off(i + 1);
                    sessions.pop();
                    if !sessions.is_empty() {
                        self.outputs.push_back(Output::SendAll {
                            sessions,
                            told: told.clone(),
                        });
                    }
                    self.outputs.push_back(Output::Answer {
                        session,
                        told: told.clone(),
                        request: request.clone(),
                    });
                    if !after.is_empty() {
                        self.outputs.push_back(Output::SendAll {
                            sessions: after,
                            told,
                        });
                    }
                }
                other => self.outputs.push_back(other),
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, what))) = self.timers.pop() else {
                break;
            };
            match what {
                TimerRef::Silence(id) => {
                    let Some(s) = self.sessions.get(&id) else {
                        continue;
                    };
                    // A detached session has no connection to be silent on.
                    let deadline = match s.detached {
                        Some(until) => until.max(now) + self.cfg.silence_timeout,
                        None => s.last_seen + self.cfg.silence_timeout,
                    };
                    if deadline > now {
                        self.timers.push(Reverse((deadline, TimerRef::Silence(id))));
                        continue;
                    }
                    self.stats.timed_out += 1;
                    let secs = self.cfg.silence_timeout.as_secs_f32();
                    self.close_with_error(
                        now,
                        id,
                        ErrorCode::TimedOut,
                        format!("nothing received for {secs:.1} s"),
                        LeaveReason::TimedOut,
                    );
                    // What its leaving did to its room (a meeting that ends
                    // with its host) is applied now, not at the next input.
                    self.drain_pending(now);
                }
                TimerRef::Hello(id) => {
                    let Some(s) = self.sessions.get(&id).filter(|s| s.identity.is_none()) else {
                        continue;
                    };
                    let ip = s.peer.ip();
                    self.stats.hello_timeouts += 1;
                    let secs = self.cfg.hello_timeout.as_secs_f32();
                    self.close_with_error(
                        now,
                        id,
                        ErrorCode::HelloRequired,
                        format!("no HELLO within {secs:.1} s of connecting"),
                        LeaveReason::Disconnected,
                    );
                    self.strike(now, ip);
                }
                TimerRef::BanEnds => {
                    self.bans.sweep(&self.cfg.bans, now);
                }
                TimerRef::Resume(id) => {
                    let expired = self
                        .sessions
                        .get(&id)
                        .and_then(|s| s.detached)
                        .is_some_and(|until| until <= now);
                    if expired {
                        self.stats.resume_expired += 1;
                        self.remove_session(now, id, LeaveReason::Disconnected);
                        self.drain_pending(now);
                    }
                }
                TimerRef::Roster(name) => {
                    let Some(room) = self.rooms.get_mut(&name) else {
                        continue;
                    };
                    if room.roster.armed != Some(at) {
                        continue;
                    }
                    room.roster.armed = None;
                    self.flush_roster_at(now, &name, &[], true);
                }
                TimerRef::Room(name, key) => {
                    let Some(room) = self.rooms.get_mut(&name) else {
                        continue;
                    };
                    if room.timers.get(&key) != Some(&at) {
                        continue; // re-armed or cancelled since
                    }
                    room.timers.remove(&key);
                    let mut out = Outbox::new();
                    room.plugin.on_timer(now, key, &mut out);
                    self.apply(now, &name, out);
                    self.drain_pending(now);
                }
            }
        }
        // A queued member whose connection dropped may have been granted
        // the floor meanwhile.
        self.release_detached_floors(now);
    }

    /// Tells every client the router is going away and closes every session.
    pub fn shutdown(&mut self, reason: &str) {
        let ids: Vec<SessionId> = self.sessions.ids();
        let told = Arc::new(Told::Session(SessionNotice::ServerClose {
            reason: reason.to_owned(),
        }));
        for id in ids {
            self.outputs.push_back(Output::Send {
                session: id,
                told: told.clone(),
            });
            self.outputs.push_back(Output::Close { session: id });
        }
    }

    // ----- sessions -------------------------------------------------------

    /// A new connection: refused (and closed) when its address is banned,
    /// holds `max_per_address` connections already, or `max_pending`
    /// connections wait for their HELLO; otherwise it has
    /// `hello_timeout` to say HELLO. `max_sessions` is checked at HELLO.
    fn on_connected(&mut self, now: Instant, id: SessionId, peer: SocketAddr) {
        // A driver gives each connection its own id; a second `Connected`
        // for one is a driver's bug, and must not replace (and so lose
        // count of) the session that has it (a fuzz target found it).
        if self.sessions.contains_key(&id) {
            tracing::warn!(session = id, "a connection id was reused; ignored");
            return;
        }
        let ip = peer.ip();
        let refusal = if let Some(left) = self.bans.banned(ip, now) {
            self.stats.refused_banned += 1;
            Some(SessionNotice::Refused {
                code: ErrorCode::RateLimited,
                message: format!(
                    "this address is banned for {} s more after repeated protocol abuse",
                    left.as_secs().max(1)
                ),
            })
        } else if self.sessions.connections_from(ip) >= self.cfg.max_per_address {
            self.stats.refused_per_address += 1;
            Some(SessionNotice::Full {
                scope: FullScope::Server,
                message: format!(
                    "at most {} connections from one address",
                    self.cfg.max_per_address
                ),
            })
        } else if self.sessions.pending() >= self.cfg.max_pending {
            self.stats.refused_pending += 1;
            Some(SessionNotice::Full {
                scope: FullScope::Server,
                message: format!(
                    "{} connections are waiting to say HELLO; try again",
                    self.cfg.max_pending
                ),
            })
        } else {
            None
        };
        if let Some(n) = refusal {
            self.send(id, n);
            self.outputs.push_back(Output::Close { session: id });
            return;
        }
        self.sessions.insert(id, Session::new(peer, now, &self.cfg));
        self.timers.push(Reverse((
            now + self.cfg.silence_timeout,
            TimerRef::Silence(id),
        )));
        self.timers
            .push(Reverse((now + self.cfg.hello_timeout, TimerRef::Hello(id))));
    }

    /// Counts a strike of abuse against `ip`, which may ban it.
    fn strike(&mut self, now: Instant, ip: std::net::IpAddr) {
        if self.bans.strike(&self.cfg.bans, ip, now) {
            let secs = self.cfg.bans.duration.as_secs();
            tracing::info!(%ip, secs, "address banned after repeated protocol abuse");
            if let Some(at) = self.bans.ends(ip) {
                self.timers.push(Reverse((at, TimerRef::BanEnds)));
            }
        }
    }

    fn send(&mut self, session: SessionId, n: SessionNotice) {
        self.outputs.push_back(Output::Send {
            session,
            told: Arc::new(Told::Session(n)),
        });
    }

    /// Sends a last ERROR, then ends the session.
    fn close_with_error(
        &mut self,
        now: Instant,
        id: SessionId,
        code: ErrorCode,
        message: String,
        reason: LeaveReason,
    ) {
        self.send(id, SessionNotice::Refused { code, message });
        self.remove_session(now, id, reason);
    }

    /// Answers a bad input with ERROR, closing the session when it has used up
    /// its error budget.
    /// Answers session `id` with an error. Malformed input spends the
    /// bad-line budget ([`EngineConfig::error_burst`]); a well-formed
    /// command refused (`NOT_FLOOR_HOLDER`, `RATE_LIMITED`, ...) spends
    /// only the far larger refusal budget (`rates.refusals`), so an eager
    /// user is never disconnected for being refused.
    fn protocol_error(
        &mut self,
        now: Instant,
        id: SessionId,
        code: ErrorCode,
        message: impl Into<String>,
    ) {
        let message = message.into();
        if !malformed(code) {
            return self.refuse(now, id, code, message);
        }
        // Malformed input before HELLO, which no client of ours sends: one
        // strike per connection (a second if it is closed for errors).
        if let Some(s) = self.sessions.get_mut(&id)
            && s.identity.is_none()
            && !s.struck
        {
            s.struck = true;
            let ip = s.peer.ip();
            self.strike(now, ip);
        }
        let (burst, refill) = (self.cfg.error_burst, self.cfg.error_refill);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        self.stats.protocol_errors += 1;
        if !s.spend_error(now, burst, refill) {
            self.stats.closed_for_errors += 1;
            let ip = s.peer.ip();
            self.strike(now, ip);
            self.close_with_error(
                now,
                id,
                ErrorCode::TooManyErrors,
                format!("too many bad messages; last one: {message}"),
                LeaveReason::Disconnected,
            );
            return;
        }
        self.send(id, SessionNotice::Refused { code, message });
    }

    /// Refuses a well-formed command; the connection stays unless the
    /// session has been refused far beyond any user's pace.
    fn refuse(&mut self, now: Instant, id: SessionId, code: ErrorCode, message: String) {
        let rate = self.cfg.rates.refusals;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        self.stats.refusals += 1;
        if s.refusals.take(now, rate.burst, rate.interval()).is_err() {
            self.stats.closed_for_errors += 1;
            let ip = s.peer.ip();
            self.strike(now, ip);
            return self.close_with_error(
                now,
                id,
                ErrorCode::TooManyErrors,
                format!(
                    "more than {} refused commands at once, then one per {} ms; last one: {message}",
                    rate.burst, rate.refill_ms
                ),
                LeaveReason::Disconnected,
            );
        }
        self.send(id, SessionNotice::Refused { code, message });
    }

    /// Spends one of session `id`'s tokens for `command`'s kind; `false`
    /// (and `RATE_LIMITED`, the command dropped) when it has none left.
    fn within_rate(&mut self, now: Instant, id: SessionId, name: &str, command: &Command) -> bool {
        let Some(kind) = rate_kind(command) else {
            return true;
        };
        let rate = match kind {
            RateKind::Membership => self.cfg.rates.membership,
            RateKind::Floor => self.cfg.rates.floor,
            RateKind::Create => self.cfg.rates.create,
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        match s.rates[kind as usize].take(now, rate.burst, rate.interval()) {
            Ok(()) => true,
            Err(wait) => {
                self.stats.rate_limited += 1;
                let msg = format!(
                    "{name}: at most {} at once, then one per {} ms; retry in {} ms",
                    rate.burst,
                    rate.refill_ms,
                    wait.as_millis().max(1)
                );
                self.protocol_error(now, id, ErrorCode::RateLimited, msg);
                false
            }
        }
    }

    /// A native control line: the native front-end parses it.
    fn on_line(&mut self, now: Instant, id: SessionId, line: &[u8]) {
        // A detached session has no connection: nothing comes from it.
        let Some(s) = self.sessions.get_mut(&id).filter(|s| s.detached.is_none()) else {
            return;
        };
        s.last_seen = now;
        let (parsed, request) = crate::native::parse_request(line);
        self.request = request;
        let (name, command) = match parsed {
            Ok(c) => c,
            Err(e) => return self.protocol_error(now, id, e.code, e.message),
        };
        self.last_command = Some(name);
        self.on_command(now, id, name, command);
    }

    fn on_command(&mut self, now: Instant, id: SessionId, name: &'static str, command: Command) {
        let welcomed = self.sessions.get(&id).is_some_and(|s| s.identity.is_some());
        if welcomed && !self.within_rate(now, id, name, &command) {
            return;
        }
        match command {
            Command::Session(SessionCommand::Hello {
                version,
                resume: Some(token),
                ..
            }) if self.resumable(id, version, &token) => self.on_resume(now, id, &token),
            Command::Session(SessionCommand::Hello {
                version,
                nickname,
                features,
                legacy,
                token,
                ..
            }) => {
                let who = Claimant {
                    nickname,
                    token,
                    legacy,
                };
                self.on_hello(now, id, version, who, &features);
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.legacy = legacy;
                }
            }
            _ if !welcomed => self.protocol_error(
                now,
                id,
                ErrorCode::HelloRequired,
                format!("send HELLO before {name}"),
            ),
            Command::Session(SessionCommand::Heartbeat) => {
                self.send(id, SessionNotice::HeartbeatAck)
            }
            Command::Session(SessionCommand::ListRooms) => {
                let rooms = self.rooms_listed_to(id);
                self.send(id, SessionNotice::Rooms { rooms });
            }
            Command::Session(SessionCommand::ListMembers { offset, limit }) => {
                let Some(room) = self.sessions.get(&id).and_then(|s| s.room.clone()) else {
                    return self.protocol_error(
                        now,
                        id,
                        ErrorCode::NotInRoom,
                        format!("{name}: you are not in a room"),
                    );
                };
                let page = self.member_page(&room, offset, limit);
                self.send(id, page);
            }
            Command::Session(SessionCommand::Join { room }) => self.on_join(now, id, room),
            Command::Session(SessionCommand::RequestJoin { code }) => {
                self.on_request_join(now, id, &code)
            }
            Command::Session(SessionCommand::CreateMeeting {
                end_with_host,
                codec,
            }) => self.on_create_meeting(now, id, end_with_host, codec),
            Command::Session(SessionCommand::CreateRoom(spec)) => {
                self.on_create_room(now, id, spec)
            }
            Command::Session(SessionCommand::Leave) => {
                if self.sessions.get(&id).is_some_and(|s| s.room.is_some()) {
                    self.leave_room(now, id, LeaveReason::Left);
                } else if let Some(room) = self.sessions.get(&id).and_then(|s| s.waiting.clone()) {
                    self.withdraw(now, id);
                    self.send(
                        id,
                        SessionNotice::Left {
                            room,
                            reason: LeaveReason::Left,
                            message: Some("join request withdrawn".into()),
                        },
                    );
                } else {
                    self.protocol_error(
                        now,
                        id,
                        ErrorCode::NotInRoom,
                        format!("{name}: you are not in a room"),
                    );
                }
            }
            Command::Session(SessionCommand::Bye) => {
                self.send(id, SessionNotice::Goodbye);
                self.remove_session(now, id, LeaveReason::Left);
            }
            Command::Room(cmd) => self.room_command(now, id, name, cmd),
        }
    }

    fn on_hello(
        &mut self,
        now: Instant,
        id: SessionId,
        version: u32,
        who: Claimant,
        features: &[String],
    ) {
        if self.sessions.get(&id).is_some_and(|s| s.identity.is_some()) {
            return self.protocol_error(
                now,
                id,
                ErrorCode::AlreadyWelcomed,
                "HELLO was already accepted",
            );
        }
        if version != proto::PROTOCOL_VERSION {
            return self.protocol_error(
                now,
                id,
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported; this router speaks {}",
                    proto::PROTOCOL_VERSION
                ),
            );
        }
        let Some((nickname, access)) = self.authenticate(now, id, who) else {
            return;
        };
        if let Err(why) = control::validate_nickname(&nickname) {
            return self.protocol_error(now, id, ErrorCode::BadNickname, why);
        }
        if is_reserved_nickname(&nickname) {
            return self.protocol_error(
                now,
                id,
                ErrorCode::BadNickname,
                format!("nickname `{nickname}` is reserved: it reads as the router or an operator"),
            );
        }
        if self.sessions.welcomed() >= self.cfg.max_sessions {
            self.stats.refused_full += 1;
            let max = self.cfg.max_sessions;
            self.send(
                id,
                SessionNotice::Full {
                    scope: FullScope::Server,
                    message: format!("the router serves at most {max} sessions"),
                },
            );
            return self.remove_session(now, id, LeaveReason::Disconnected);
        }
        // Granted: every known feature asked for, once, in the router's order.
        let granted: Vec<String> = control::FEATURES
            .iter()
            .filter(|f| features.iter().any(|a| a == *f))
            .map(|f| (*f).to_owned())
            .collect();
        // Keys travel only over TLS: `srtp` is not granted on plaintext.
        let encrypted = self.sessions.get(&id).is_some_and(|s| s.encrypted);
        let granted: Vec<String> = granted
            .into_iter()
            .filter(|f| encrypted || f != control::FEATURE_SRTP)
            .collect();
        let Some(ident) =
            self.sessions
                .welcome(id, nickname.clone(), &granted, access, &mut self.rng)
        else {
            return;
        };
        let (ssrcs, token) = (ident.ssrcs, ident.token.clone());
        let media_id = ident.media_id.clone();
        self.send(
            id,
            SessionNotice::Welcome {
                media_id,
                session: id,
                nickname,
                udp_port: self.media_port(0),
                media_token: token,
                ssrcs,
                heartbeat_interval: self.cfg.heartbeat_interval,
                silence_timeout: self.cfg.silence_timeout,
                features: granted,
                limits: self.limits(),
                resume: self.resume_offer(id),
                resumed: false,
            },
        );
    }

    /// Who HELLO's claimant is: its nickname (its token's name when it
    /// has one) and what it may do. A token is checked when the router
    /// takes only tokens, or when one is given and keys are configured;
    /// a refusal (`TOKEN_*`) counts a strike against the address, and the
    /// connection stays for another HELLO until its deadline.
    fn authenticate(
        &mut self,
        now: Instant,
        id: SessionId,
        who: Claimant,
    ) -> Option<(String, sessions::Access)> {
        use crate::auth::AuthError;
        let open = sessions::Access {
            grants: self.open_grants.clone(),
            token: None,
        };
        if who.legacy {
            return Some((who.nickname, open));
        }
        let checked = match who.token {
            Some(t) if self.auth.has_keys() => {
                Some(self.auth.verify(&t, self.clock.unix_ms(now) / 1000))
            }
            None if self.auth.mode() == crate::config::AuthMode::Token => {
                Some(Err(AuthError::Required))
            }
            _ => None,
        };
        match checked {
            None => Some((who.nickname, open)),
            Some(Ok(ident)) => Some((
                ident.name,
                sessions::Access {
                    grants: Arc::new(ident.grants),
                    token: Some((ident.subject, ident.token_id)),
                },
            )),
            Some(Err(e)) => {
                self.stats.auth_refused += 1;
                if let Some(ip) = self.sessions.get(&id).map(|s| s.peer.ip()) {
                    self.strike(now, ip);
                }
                self.refuse(now, id, e.code(), format!("HELLO: {e}"));
                None
            }
        }
    }

    /// Whether HELLO on connection `conn` resumes a session: the connection
    /// has said no HELLO yet, speaks this version, and the token names a
    /// session waiting to be resumed. Otherwise the HELLO is an ordinary
    /// one (a new session; WELCOME without `resumed` tells the client).
    fn resumable(&self, conn: SessionId, version: u32, token: &str) -> bool {
        version == proto::PROTOCOL_VERSION
            && self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.identity.is_none())
            && self.sessions.by_resume(token).is_some()
    }

    /// The resume token and grace WELCOME offers session `id`, if any.
    fn resume_offer(&self, id: SessionId) -> Option<(String, Duration)> {
        let grace = self.cfg.resume_grace;
        if grace.is_zero() {
            return None;
        }
        let token = self.sessions.identity(id)?.resume.clone();
        Some((token, grace))
    }

    /// HELLO with the resume token of a detached session: connection `conn`
    /// continues it. It is told WELCOME again (`resumed`, the same id,
    /// nickname, SSRCs and media token, a new resume token), then its room
    /// as on joining (JOINED and the member list): it binds its media with
    /// STUN again, from wherever it is now.
    fn on_resume(&mut self, now: Instant, conn: SessionId, token: &str) {
        let Some(id) = self.sessions.by_resume(token) else {
            return;
        };
        if self.sessions.adopt(conn, id, &mut self.rng).is_none() {
            return;
        }
        self.stats.resumed += 1;
        if let Some(s) = self.sessions.get_mut(&id) {
            s.last_seen = now;
        }
        // What the connection's own timers (its HELLO deadline) would do is
        // moot: that session is gone. The resumed one is watched again.
        self.timers.push(Reverse((
            now + self.cfg.silence_timeout,
            TimerRef::Silence(id),
        )));
        self.actor = Some(id);
        let Some(ident) = self.sessions.identity(id) else {
            return;
        };
        let mut features = match ident.lists {
            MemberLists::Whole => vec![],
            MemberLists::Deltas => vec![control::FEATURE_MEMBER_DELTAS.to_owned()],
            MemberLists::Pages => vec![control::FEATURE_MEMBER_PAGES.to_owned()],
        };
        if ident.media_id.is_some() {
            features.push(control::FEATURE_STUN_INTEGRITY.to_owned());
        }
        if ident.srtp {
            features.push(control::FEATURE_SRTP.to_owned());
        }
        let welcome = SessionNotice::Welcome {
            media_id: ident.media_id.clone(),
            session: id,
            nickname: ident.nickname.clone(),
            udp_port: self.media_port(0),
            media_token: ident.token.clone(),
            ssrcs: ident.ssrcs,
            heartbeat_interval: self.cfg.heartbeat_interval,
            silence_timeout: self.cfg.silence_timeout,
            features,
            limits: self.limits(),
            resume: self.resume_offer(id),
            resumed: true,
        };
        self.send(id, welcome);
        let Some(room) = self.sessions.get(&id).and_then(|s| s.room.clone()) else {
            return;
        };
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let (kind, udp_port, settings) = (
            r.spec.kind.clone(),
            self.media_port(r.worker),
            r.settings.clone(),
        );
        let large = r.large;
        let secure = r.secure;
        // Keys go only where they may: a secure room's member back on a
        // connection that cannot have them leaves it.
        if let Some(why) = self.secure_refusal(id, &room, secure) {
            self.protocol_error(now, id, ErrorCode::SecureRoom, format!("resumed: {why}"));
            return self.leave_room(now, id, LeaveReason::Left);
        }
        let joined = SessionNotice::Joined {
            room: room.clone(),
            kind,
            udp_port,
            settings,
            media_nonce: self.media_nonce(id),
            secure,
            srtp_key: self.sessions.get(&id).and_then(|s| s.srtp_key),
        };
        self.send(id, joined);
        if secure {
            self.share_keys(id, &room, false);
        }
        let told = if large && self.lists_of(id) == Some(MemberLists::Pages) {
            self.member_count(&room)
        } else {
            self.member_list(&room)
        };
        self.outputs.push_back(Output::Send { session: id, told });
    }

    /// The limits WELCOME announces: every one the router holds a session
    /// to before it is in a room.
    fn limits(&self) -> control::Limits {
        let wire = |r: crate::config::Rate| control::Rate {
            burst: r.burst,
            refill_ms: r.refill_ms,
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let rates = &self.cfg.rates;
        control::Limits {
            line_bytes: n(control::MAX_LINE_BYTES),
            nickname_chars: n(control::NICKNAME_MAX_CHARS),
            room_name_chars: n(control::ROOM_NAME_MAX_CHARS),
            chat_chars: n(control::CHAT_MAX_CHARS),
            request_id_chars: n(control::REQUEST_ID_MAX_CHARS),
            bad_lines: control::Rate {
                burst: self.cfg.error_burst,
                refill_ms: ms(self.cfg.error_refill),
            },
            refusals: wire(rates.refusals),
            membership: wire(rates.membership),
            floor: wire(rates.floor),
            create: wire(rates.create),
            join_attempts: control::Rate {
                burst: self.cfg.join_attempts_burst,
                refill_ms: ms(self.cfg.join_attempt_refill),
            },
        }
    }

    /// Why a session may not ask to enter a room now, if it may not.
    fn busy_elsewhere(&self, id: SessionId, verb: &str) -> Option<String> {
        let s = self.sessions.get(&id)?;
        if let Some(current) = &s.room {
            return Some(format!("{verb}: you are in room `{current}`; LEAVE first"));
        }
        if let Some(waiting) = &s.waiting {
            return Some(format!(
                "{verb}: you are waiting to join room `{waiting}`; LEAVE to withdraw"
            ));
        }
        None
    }

    fn on_join(&mut self, now: Instant, id: SessionId, name: String) {
        if let Some(msg) = self.busy_elsewhere(id, "JOIN") {
            return self.protocol_error(now, id, ErrorCode::AlreadyInRoom, msg);
        }
        // Before the room is looked up: a refusal tells nothing of it.
        if !self.permitted(
            now,
            id,
            |g| g.may_join(&name),
            || {
                let shown: String = name.chars().take(64).collect();
                format!("JOIN: your token does not let you join `{shown}`")
            },
        ) {
            return;
        }
        if !self.rooms.contains_key(&name) {
            let shown: String = name.chars().take(64).collect();
            return self.protocol_error(
                now,
                id,
                ErrorCode::UnknownRoom,
                format!("no room named `{shown}`"),
            );
        }
        self.ask_to_join(now, id, &name);
    }

    /// `REQUEST_JOIN`: rate-limited per IP address, then as JOIN.
    fn on_request_join(&mut self, now: Instant, id: SessionId, code: &str) {
        if let Some(msg) = self.busy_elsewhere(id, "REQUEST_JOIN") {
            return self.protocol_error(now, id, ErrorCode::AlreadyInRoom, msg);
        }
        // Meetings are named by their code, so a token that lets no such
        // meeting in is refused before the code is looked up.
        let name = format!("meeting-{code}");
        if !self.permitted(
            now,
            id,
            |g| g.may_join(&name),
            || "REQUEST_JOIN: your token does not let you join meetings".to_owned(),
        ) {
            return;
        }
        if !self.spend_join_attempt(now, id, "REQUEST_JOIN") {
            return;
        }
        // Only well-formed codes are ever in the table.
        match self.rooms.by_code(code) {
            Some(name) => self.ask_to_join(now, id, &name),
            None => {
                let shown: String = code.chars().take(12).collect();
                self.protocol_error(
                    now,
                    id,
                    ErrorCode::UnknownMeeting,
                    format!("REQUEST_JOIN: no meeting has the code `{shown}`"),
                )
            }
        }
    }

    /// Spends one join attempt of the session's address for `verb`; when
    /// none is left, answers `RATE_LIMITED` (with when to retry) and
    /// returns false.
    fn spend_join_attempt(&mut self, now: Instant, id: SessionId, verb: &str) -> bool {
        let Some(ip) = self.sessions.get(&id).map(|s| s.peer.ip()) else {
            return false;
        };
        let (burst, refill) = (self.cfg.join_attempts_burst, self.cfg.join_attempt_refill);
        let Err(wait) = self.sessions.take_join_attempt(now, ip, burst, refill) else {
            return true;
        };
        self.stats.join_attempts_limited += 1;
        let burst = self.cfg.join_attempts_burst;
        let every = self.cfg.join_attempt_refill.as_secs_f32();
        self.send(
            id,
            SessionNotice::Refused {
                code: ErrorCode::RateLimited,
                message: format!(
                    "{verb}: at most {burst} attempts at once and one per {every:.1} s from {ip}; retry in {:.1} s",
                    wait.as_secs_f32()
                ),
            },
        );
        false
    }

    /// `CREATE_MEETING`: a new meeting room with a fresh code, its creator
    /// inside as host.
    fn on_create_meeting(
        &mut self,
        now: Instant,
        id: SessionId,
        end_with_host: bool,
        codec: Option<String>,
    ) {
        if let Some(msg) = self.busy_elsewhere(id, "CREATE_MEETING") {
            return self.protocol_error(now, id, ErrorCode::AlreadyInRoom, msg);
        }
        let code = loop {
            let c = format!("{:06}", self.rng.random_range(0..1_000_000u32));
            if !self.rooms.code_taken(&c) {
                break c;
            }
        };
        let name = format!("meeting-{code}");
        if !self.permitted(
            now,
            id,
            |g| g.may_create(&name),
            || format!("CREATE_MEETING: your token does not let you create meetings (`{name}`)"),
        ) {
            return;
        }
        let mut options = Options::new();
        options.insert("end_with_host".into(), end_with_host.into());
        if let Some(c) = codec {
            options.insert("codec".into(), c.into());
        }
        let spec = RoomSpec {
            name: name.clone(),
            kind: "meeting".into(),
            max_participants: self.cfg.meeting_max_participants,
            options,
        };
        if self.refuse_insecure_creator(now, id, &spec, "CREATE_MEETING") {
            return;
        }
        match self.create_room_with(spec, Some(code.clone()), true) {
            Ok(()) => {}
            // As CREATE_ROOM: the router is full of rooms; the session stays.
            Err(RoomError::TooMany(max)) => {
                return self.send(
                    id,
                    SessionNotice::Full {
                        scope: FullScope::Server,
                        message: format!("the router hosts at most {max} rooms"),
                    },
                );
            }
            // A codec this router does not know.
            Err(e @ RoomError::Option(_)) => {
                return self.protocol_error(
                    now,
                    id,
                    ErrorCode::BadField,
                    format!("CREATE_MEETING: {e}"),
                );
            }
            Err(e) => {
                let msg = format!("CREATE_MEETING: {e}");
                return self.send(
                    id,
                    SessionNotice::Refused {
                        code: ErrorCode::Internal,
                        message: msg,
                    },
                );
            }
        }
        self.send(
            id,
            SessionNotice::MeetingCreated {
                room: name.clone(),
                code,
                end_with_host,
            },
        );
        self.enter_room(now, id, &name);
    }

    /// `CREATE_ROOM`: a room a client made, closed when it empties; costs
    /// one of the address's join attempts.
    fn on_create_room(&mut self, now: Instant, id: SessionId, mut spec: RoomSpec) {
        if !self.cfg.client_rooms {
            return self.protocol_error(
                now,
                id,
                ErrorCode::NotSupported,
                "CREATE_ROOM: this router does not let clients create rooms",
            );
        }
        if let Some(msg) = self.busy_elsewhere(id, "CREATE_ROOM") {
            return self.protocol_error(now, id, ErrorCode::AlreadyInRoom, msg);
        }
        if !self.permitted(
            now,
            id,
            |g| g.may_create(&spec.name),
            || {
                let shown: String = spec.name.chars().take(64).collect();
                format!("CREATE_ROOM: your token does not let you create `{shown}`")
            },
        ) {
            return;
        }
        if spec.kind == "meeting" {
            return self.protocol_error(
                now,
                id,
                ErrorCode::BadField,
                "CREATE_ROOM: meetings are made with CREATE_MEETING",
            );
        }
        let limit = self.cfg.client_room_max_participants;
        if spec.max_participants > limit {
            return self.protocol_error(
                now,
                id,
                ErrorCode::BadField,
                format!("CREATE_ROOM: max_participants is at most {limit}"),
            );
        }
        if spec.max_participants == 0 {
            spec.max_participants = limit;
        }
        if !self.spend_join_attempt(now, id, "CREATE_ROOM") {
            return;
        }
        let name = spec.name.clone();
        if self.refuse_insecure_creator(now, id, &spec, "CREATE_ROOM") {
            return;
        }
        match self.create_room_with(spec, None, true) {
            Ok(()) => self.enter_room(now, id, &name),
            Err(RoomError::TooMany(max)) => self.send(
                id,
                SessionNotice::Full {
                    scope: FullScope::Server,
                    message: format!("the router hosts at most {max} rooms"),
                },
            ),
            Err(e @ RoomError::Exists(_)) => {
                self.protocol_error(now, id, ErrorCode::RoomExists, format!("CREATE_ROOM: {e}"))
            }
            Err(e) => {
                self.protocol_error(now, id, ErrorCode::BadField, format!("CREATE_ROOM: {e}"))
            }
        }
    }

    /// Whether a room made from `spec` would be secure (its option, read
    /// as the room will read it, or the router's `secure = true`); a
    /// malformed option counts as secure (the creation fails on it anyway).
    fn would_be_secure(&self, spec: &RoomSpec) -> bool {
        match spec.options.get("secure") {
            Some(_) => crate::registry::room_secure(&spec.options).unwrap_or(true),
            None => self.cfg.secure_rooms,
        }
    }

    /// Why session `id` may not be in room `name`, secure or not: only a
    /// native session on TLS with the `srtp` and `stun_integrity` features
    /// is given keys.
    fn secure_refusal(&self, id: SessionId, name: &str, secure: bool) -> Option<String> {
        if !secure {
            return None;
        }
        let s = self.sessions.get(&id)?;
        let ident = s.identity.as_ref()?;
        let why = if s.legacy {
            "its media is SRTP, which seed clients do not speak"
        } else if !s.encrypted {
            "connect with TLS (its keys are given only there)"
        } else if !ident.srtp {
            "ask for the `srtp` feature in HELLO"
        } else if ident.media_id.is_none() {
            "ask for the `stun_integrity` feature in HELLO"
        } else {
            return None;
        };
        let shown: String = name.chars().take(64).collect();
        Some(format!("room `{shown}` is secure (SRTP media): {why}"))
    }

    /// Refuses (`SECURE_ROOM`, the session stays) a `what` that would make
    /// a secure room its creator could not key; true if it did.
    fn refuse_insecure_creator(
        &mut self,
        now: Instant,
        id: SessionId,
        spec: &RoomSpec,
        what: &str,
    ) -> bool {
        let Some(why) = self.secure_refusal(id, &spec.name, self.would_be_secure(spec)) else {
            return false;
        };
        self.protocol_error(now, id, ErrorCode::SecureRoom, format!("{what}: {why}"));
        true
    }

    /// Checks capacity and nickname, then lets the room's plugin admit the
    /// session now or keep it waiting.
    fn ask_to_join(&mut self, now: Instant, id: SessionId, name: &str) {
        let secure = self.rooms.get(name).is_some_and(|r| r.secure);
        if let Some(why) = self.secure_refusal(id, name, secure) {
            return self.protocol_error(now, id, ErrorCode::SecureRoom, why);
        }
        let Some(ident) = self.sessions.get(&id).and_then(|s| s.identity.as_ref()) else {
            return;
        };
        let member = Member {
            session: id,
            nickname: ident.nickname.clone(),
            ssrcs: ident.ssrcs,
        };
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let max = room.spec.max_participants as usize;
        if max > 0 && room.members.len() >= max {
            return self.send(
                id,
                SessionNotice::Full {
                    scope: FullScope::Room,
                    message: format!("room `{name}` is limited to {max} participants"),
                },
            );
        }
        if room.nickname_taken(&member.nickname) {
            return self.protocol_error(
                now,
                id,
                ErrorCode::NicknameTaken,
                format!(
                    "nickname `{}` is already used in room `{name}`",
                    member.nickname
                ),
            );
        }
        // Waiting first, so the plugin may already write to the session.
        if let Some(room) = self.rooms.get_mut(name) {
            room.waiting.push(id);
            room.claim_nickname(id, &member.nickname);
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            s.waiting = Some(name.to_owned());
        }
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let mut out = Outbox::new();
        let policy = room.plugin.on_join_request(now, &member, &mut out);
        if policy == JoinPolicy::Admit {
            room.waiting.retain(|w| *w != id);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.waiting = None;
            }
        }
        self.apply(now, name, out);
        if policy == JoinPolicy::Admit {
            self.enter_room(now, id, name);
        }
    }

    /// A waiting session gives up (LEAVE, disconnect, session end).
    fn withdraw(&mut self, now: Instant, id: SessionId) {
        let Some(name) = self.sessions.get_mut(&id).and_then(|s| s.waiting.take()) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        room.waiting.retain(|w| *w != id);
        room.release_nickname(id);
        let mut out = Outbox::new();
        room.plugin.on_join_withdrawn(now, id, &mut out);
        self.apply(now, &name, out);
        self.close_if_abandoned(now, &name);
    }

    /// Ends a waiting session's wait: admitted (enters) or rejected.
    fn decide(
        &mut self,
        now: Instant,
        name: &str,
        id: SessionId,
        verdict: Option<(RejectReason, String)>,
    ) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if !room.waiting.contains(&id) {
            return;
        }
        room.waiting.retain(|w| *w != id);
        if verdict.is_some() {
            room.release_nickname(id);
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            s.waiting = None;
        }
        match verdict {
            None => {
                self.send(
                    id,
                    SessionNotice::JoinAccepted {
                        room: name.to_owned(),
                    },
                );
                self.enter_room(now, id, name);
            }
            Some((reason, message)) => self.send(
                id,
                SessionNotice::JoinRejected {
                    room: name.to_owned(),
                    reason,
                    message,
                },
            ),
        }
    }

    /// Puts a session in a room (checks done): JOINED, the room event, the
    /// plugin's `on_join`, USERLIST.
    fn enter_room(&mut self, now: Instant, id: SessionId, name: &str) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let Some(ident) = &s.identity else { return };
        let nickname = ident.nickname.clone();
        let ssrcs = ident.ssrcs;
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let kind = room.spec.kind.clone();
        let settings = room.settings.clone();
        let room_worker = room.worker;
        let secure = room.secure;
        if let Some(s) = self.sessions.get_mut(&id) {
            s.room = Some(name.to_owned());
            s.joined_at = now;
        }
        let udp_port = self.media_port(room_worker);
        let media_nonce = self.media_nonce(id);
        // A fresh key for each stay, from the OS's entropy (never the
        // engine's seeded generator): a member that leaves keeps no key
        // its next stay uses.
        let srtp_key = secure.then(|| {
            let mut key: SrtpKey = [0; control::SRTP_KEY_BYTES];
            rand::rng().fill(&mut key[..]);
            key
        });
        if let Some(s) = self.sessions.get_mut(&id) {
            s.srtp_key = srtp_key;
        }
        self.send(
            id,
            SessionNotice::Joined {
                room: name.to_owned(),
                kind,
                udp_port,
                settings,
                media_nonce,
                secure,
                srtp_key,
            },
        );
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        room.members.push(id);
        if self.sessions.get(&id).is_some_and(|s| s.legacy) {
            room.seed_members += 1;
        }
        room.claim_nickname(id, &nickname);
        room.routes.insert(id, Receivers::Nobody);
        let member = Member {
            session: id,
            nickname,
            ssrcs,
        };
        let mut out = Outbox::new();
        out.notify_all(Notice::MemberJoined {
            member: member.clone(),
        });
        room.plugin.on_join(now, &member, &mut out);
        self.apply(now, name, out);
        self.enforce_room_codec(name);
        if secure {
            self.share_keys(id, name, true);
        }
    }

    /// In secure room `name`: tells `id` every other member's key (in
    /// messages of at most `SRTP_KEYS_PER_MESSAGE`) and, when it has just
    /// joined (`announce`), tells the others its key: one small message
    /// each, however large the room.
    fn share_keys(&mut self, id: SessionId, name: &str, announce: bool) {
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let key_of = |m: SessionId| {
            let s = self.sessions.get(&m)?;
            Some(SenderKey {
                session: m,
                ssrcs: s.identity.as_ref()?.ssrcs,
                key: s.srtp_key?,
            })
        };
        let others: Vec<SessionId> = room.members.iter().copied().filter(|m| *m != id).collect();
        let keys: Vec<SenderKey> = others.iter().filter_map(|m| key_of(*m)).collect();
        let own = key_of(id);
        for chunk in keys.chunks(control::SRTP_KEYS_PER_MESSAGE) {
            self.send(
                id,
                SessionNotice::SrtpKeys {
                    room: name.to_owned(),
                    keys: chunk.to_vec(),
                },
            );
        }
        if let (true, Some(own), false) = (announce, own, others.is_empty()) {
            self.outputs.push_back(Output::SendAll {
                sessions: others,
                told: Arc::new(Told::Session(SessionNotice::SrtpKeys {
                    room: name.to_owned(),
                    keys: vec![own],
                })),
            });
        }
    }

    fn room_command(&mut self, now: Instant, id: SessionId, verb: &str, command: RoomCommand) {
        let Some(name) = self.sessions.get(&id).and_then(|s| s.room.clone()) else {
            let msg = match self.sessions.get(&id).and_then(|s| s.waiting.as_ref()) {
                Some(w) => format!("{verb}: you are still waiting to join room `{w}`"),
                None => format!("{verb}: join a room first"),
            };
            return self.protocol_error(now, id, ErrorCode::NotInRoom, msg);
        };
        if let RoomCommand::FloorRequest { priority } = command {
            if !self.permitted(
                now,
                id,
                |g| g.may_talk(&name),
                || format!("{verb}: your token does not let you talk in `{name}`"),
            ) {
                return;
            }
            let max = self.grants(id).map_or(0, |g| g.max_priority);
            if !self.permitted(
                now,
                id,
                |_| priority <= max,
                || format!("{verb}: priority {priority} is above your token's highest, {max}"),
            ) {
                return;
            }
        }
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        let mut out = Outbox::new();
        let result = room.plugin.on_command(now, id, &command, &mut out);
        self.apply(now, &name, out);
        // The room says why; the command is named in the front-end's terms.
        if let Err(e) = result {
            self.protocol_error(now, id, e.code, format!("{verb}: {}", e.message));
        }
    }

    /// Takes a session out of its room, telling it and the others.
    fn leave_room(&mut self, now: Instant, id: SessionId, reason: LeaveReason) {
        self.leave_room_with(now, id, reason, None);
    }

    /// [`Engine::leave_room`] with words for the leaver (kick, room closed).
    fn leave_room_with(
        &mut self,
        now: Instant,
        id: SessionId,
        reason: LeaveReason,
        message: Option<String>,
    ) {
        let Some(name) = self.sessions.get_mut(&id).and_then(|s| {
            s.srtp_key = None;
            s.room.take()
        }) else {
            return;
        };
        let nickname = self.nickname(id);
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        room.members.retain(|m| *m != id);
        if self.sessions.get(&id).is_some_and(|s| s.legacy) {
            room.seed_members = room.seed_members.saturating_sub(1);
        }
        room.release_nickname(id);
        room.routes.remove(&id);
        room.muted.remove(&id);
        let mut out = Outbox::new();
        out.notify_all(Notice::MemberLeft {
            session: id,
            nickname,
            reason,
            message: message.clone(),
        });
        room.plugin.on_leave(now, id, reason, &mut out);
        self.apply(now, &name, out);
        self.enforce_room_codec(&name);
        self.send(
            id,
            SessionNotice::Left {
                room: name.clone(),
                reason,
                message,
            },
        );
        self.close_if_abandoned(now, &name);
    }

    /// Tells the sender of audio in another codec than its room's (where
    /// seed clients are) why nobody hears it. A refusal, not an error: it
    /// costs no budget.
    fn on_wrong_codec(&mut self, worker: WorkerId, from: SocketAddr, payload_type: u8) {
        let Some(id) = self.sessions.owner(worker, from) else {
            return;
        };
        let Some(room) = self.sessions.get(&id).and_then(|s| s.room.clone()) else {
            return;
        };
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let Ok(codec) = crate::registry::room_codec(&r.spec.options) else {
            return;
        };
        self.stats.refusals += 1;
        self.send(
            id,
            SessionNotice::Refused {
                code: ErrorCode::WrongCodec,
                message: format!(
                    "room `{room}` is shared with seed clients, who hear only its codec `{}` ({}/{}, payload type {}); your audio (payload type {payload_type}) is dropped: send `{}`",
                    codec.name, codec.encoding, codec.clock_rate, codec.payload_type, codec.name
                ),
            },
        );
    }

    /// Makes the media worker drop audio in other codecs than the room's
    /// while seed clients are members (and not otherwise), resyncing every
    /// member's routes when that changes.
    fn enforce_room_codec(&mut self, name: &str) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let on = room.seed_members > 0;
        if !room.media.enforce_codec(on) {
            return;
        }
        for m in room.members.clone() {
            self.resync_member(name, m);
        }
    }

    /// Closes a client-made meeting once nobody is in it.
    fn close_if_abandoned(&mut self, now: Instant, name: &str) {
        if self
            .rooms
            .get(name)
            .is_some_and(|r| r.ephemeral && r.members.is_empty())
        {
            self.drop_room(now, name, "everyone left".into());
        }
    }

    /// Forgets a room whose members are gone: waiting sessions are
    /// rejected, its code freed, its routes removed, and watchers get its
    /// last event.
    fn drop_room(&mut self, _now: Instant, name: &str, reason: String) {
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        for id in room.waiting.clone() {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.waiting = None;
            }
            self.send(
                id,
                SessionNotice::JoinRejected {
                    room: name.to_owned(),
                    reason: RejectReason::MeetingEnded,
                    message: reason.clone(),
                },
            );
        }
        self.emit(name, &Notice::RoomClosed { reason });
        if let Some(r) = self.rooms.remove(name) {
            let mut commands = Vec::new();
            r.media.clear(&mut commands);
            for cmd in commands {
                self.media_out(r.worker, cmd);
            }
        }
    }

    fn nickname(&self, id: SessionId) -> String {
        self.sessions.nickname(id)
    }

    /// Records a room notice for watchers, when it is one they see.
    fn emit(&mut self, name: &str, notice: &Notice) {
        let Some(kind) = crate::events::watched(notice) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        room.seq += 1;
        self.outputs
            .push_back(Output::RoomEvent(Arc::new(RoomEvent {
                room: name.to_owned(),
                seq: room.seq,
                kind,
            })));
    }

    /// Forgets a session entirely and asks the driver to close its connection.
    fn remove_session(&mut self, now: Instant, id: SessionId, reason: LeaveReason) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        self.withdraw(now, id);
        self.leave_room(now, id, reason);
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        if let Some((worker, addr)) = s.media {
            self.media_out(worker, MediaCommand::Unbind { addr });
        }
        self.outputs.push_back(Output::Close { session: id });
    }

    // ----- media ----------------------------------------------------------

    /// The UDP port of `worker`.
    fn media_port(&self, worker: WorkerId) -> u16 {
        self.cfg
            .media_ports
            .get(worker)
            .copied()
            .unwrap_or(proto::DEFAULT_MEDIA_PORT)
    }

    fn media_out(&mut self, worker: WorkerId, cmd: MediaCommand) {
        self.outputs.push_back(Output::Media { worker, cmd });
    }

    /// Answers a Binding Request with an error (counted as refused).
    fn stun_refuse(
        &mut self,
        worker: WorkerId,
        from: SocketAddr,
        request: &[u8],
        code: u16,
        why: &str,
    ) {
        self.stats.stun_refused += 1;
        if let Some(bytes) = proto::media::binding_error(request, code, why) {
            self.media_out(worker, MediaCommand::Reply { to: from, bytes });
        }
    }

    /// A fresh single-use nonce for session `id`'s next move of its media,
    /// when it binds with integrity (told in JOINED, where clients bind).
    fn media_nonce(&mut self, id: SessionId) -> Option<String> {
        self.sessions.identity(id)?.media_id.as_ref()?;
        let nonce = format!("{:032x}", self.rng.random::<u128>());
        self.sessions.get_mut(&id)?.nonce = Some(nonce.clone());
        Some(nonce)
    }

    /// A signed Binding Request (`stun_integrity`) of session `id`: checks
    /// its MESSAGE-INTEGRITY, refuses a transaction seen from another
    /// address (a replay), and lets it move a bound session only with the
    /// nonce told over the control channel. `true`: bind it.
    fn check_signed_stun(
        &mut self,
        id: SessionId,
        worker: WorkerId,
        from: SocketAddr,
        request: &[u8],
    ) -> bool {
        let Some(key) = self.sessions.identity(id).map(|i| i.token.clone()) else {
            return false;
        };
        if !proto::media::integrity_ok(request, &key) {
            self.stun_refuse(worker, from, request, 401, "Bad MESSAGE-INTEGRITY");
            return false;
        }
        let Some(tid) = proto::media::transaction_bytes(request) else {
            return false;
        };
        let nonce = proto::media::request_nonce(request);
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        match s.stun_seen.iter().find(|(t, _)| *t == tid) {
            // A retransmission: the same answer.
            Some((_, at)) if *at == from => return true,
            Some(_) => {
                self.stats.stun_replayed += 1;
                self.stun_refuse(worker, from, request, 400, "Replayed transaction");
                return false;
            }
            None => {}
        }
        if s.stun_seen.len() >= sessions::STUN_SEEN {
            s.stun_seen.pop_front();
        }
        s.stun_seen.push_back((tid, from));
        // The nonce told, used once whether or not the binding moves.
        if nonce.is_some() && nonce == s.nonce {
            s.nonce = None;
            return true;
        }
        let moves = s.media.is_some_and(|(_, addr)| addr != from);
        if !moves {
            return true;
        }
        // A new nonce for the session's own client, over the control
        // channel; the request is answered Stale Nonce.
        let fresh = format!("{:032x}", self.rng.random::<u128>());
        s.nonce = Some(fresh.clone());
        self.send(id, SessionNotice::MediaNonce { nonce: fresh });
        self.stun_refuse(
            worker,
            from,
            request,
            438,
            "Stale Nonce: moving the media needs the nonce of MEDIA_NONCE",
        );
        false
    }

    fn on_stun(
        &mut self,
        _now: Instant,
        worker: WorkerId,
        from: SocketAddr,
        username: Option<String>,
        request: &[u8],
    ) {
        let signed = username
            .as_deref()
            .and_then(|u| self.sessions.by_media_id(u));
        let id = match signed {
            Some(id) => {
                if !self.check_signed_stun(id, worker, from, request) {
                    return;
                }
                id
            }
            None => {
                let Some(id) = username.as_deref().and_then(|u| self.sessions.by_token(u)) else {
                    return self.stun_refuse(worker, from, request, 401, "Unknown media token");
                };
                // A session that binds with integrity never binds by its
                // token in clear (which would make the token a password
                // anyone who saw it could use); a secure router takes
                // signed bindings only.
                if self.cfg.require_stun_integrity {
                    return self.stun_refuse(
                        worker,
                        from,
                        request,
                        401,
                        "This router takes signed bindings only (HELLO feature stun_integrity)",
                    );
                }
                if self
                    .sessions
                    .identity(id)
                    .is_some_and(|i| i.media_id.is_some())
                {
                    return self.stun_refuse(
                        worker,
                        from,
                        request,
                        401,
                        "This session binds with MESSAGE-INTEGRITY (stun_integrity)",
                    );
                }
                id
            }
        };
        self.stats.stun_bound += 1;
        if let Some(change) = self.sessions.bind(id, worker, from) {
            // A client that restarted on the same port takes the address
            // over from its stale session.
            if let Some(prev) = change.displaced
                && let Some(room) = self.sessions.get(&prev).and_then(|p| p.room.clone())
            {
                self.resync_member(&room, prev);
                self.resync_listed(&room);
            }
            // Binding at another worker (after joining a room placed there)
            // or from another address moves the binding.
            if let Some((w, addr)) = change.previous {
                self.media_out(w, MediaCommand::Unbind { addr });
            }
            self.media_out(
                worker,
                MediaCommand::Bind {
                    addr: from,
                    session: id,
                },
            );
            if let Some(room) = self.sessions.get(&id).and_then(|s| s.room.clone()) {
                self.resync_member(&room, id);
                self.resync_listed(&room);
            }
        }
        if let Some(bytes) = proto::media::binding_success(request, from) {
            self.media_out(worker, MediaCommand::Reply { to: from, bytes });
        }
    }

    /// Brings the media worker's group membership and routes of one member
    /// of `name` (or one that just left it) in line with its binding, its
    /// mute and the plugin's route for it ([`routes::RoomRoutes`]).
    fn resync_member(&mut self, name: &str, m: SessionId) {
        let sessions = &self.sessions;
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let worker = room.worker;
        // Bound at the room's worker, and in the room.
        let addr_of = |id: SessionId| {
            sessions
                .get(&id)
                .filter(|s| s.room.as_deref() == Some(name))
                .and_then(|s| s.media)
                .and_then(|(w, a)| (w == worker).then_some(a))
        };
        let member = routes::MemberMedia {
            session: m,
            addr: addr_of(m),
            ssrcs: sessions
                .get(&m)
                .and_then(|s| s.identity.as_ref())
                .map(|i| i.ssrcs),
            muted: room.muted.contains(&m),
            receivers: room.routes.get(&m).unwrap_or(&Receivers::Nobody),
        };
        let mut commands = Vec::new();
        room.media.resync(member, addr_of, &mut commands);
        for cmd in commands {
            self.media_out(worker, cmd);
        }
    }

    /// Resyncs the members whose routes list receivers one by one: they
    /// depend on other members' bindings.
    fn resync_listed(&mut self, name: &str) {
        let listed: Vec<SessionId> = self
            .rooms
            .get(name)
            .map(|r| r.media.listed())
            .unwrap_or_default();
        for m in listed {
            self.resync_member(name, m);
        }
    }

    // ----- plugin effects -------------------------------------------------

    /// Carries out a plugin's effects: routes first (so media flows by the
    /// time a client reads the message that allows it), then notices (each
    /// one event for watchers, rendered once by the native front-end for all
    /// its receivers), then USERLIST.
    fn apply(&mut self, now: Instant, name: &str, mut out: Outbox) {
        let mut notices: Vec<(Audience, Notice)> = Vec::new();
        let mut bulk: Vec<(SessionId, Notice)> = Vec::new();
        let mut structural: Vec<Effect> = Vec::new();
        let mut joiners: Vec<SessionId> = Vec::new();
        // Members whose routes or group membership may have changed.
        let mut moved: Vec<SessionId> = Vec::new();
        let mut membership = false;
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        for effect in out.drain() {
            match effect {
                Effect::Notify { to, notice } => {
                    match &notice {
                        Notice::MemberJoined { member } => {
                            joiners.push(member.session);
                            moved.push(member.session);
                            membership = true;
                            room.roster.touch(member.session, None);
                            if room.large {
                                room.roster.touch_count();
                            }
                        }
                        Notice::MemberLeft {
                            session, nickname, ..
                        } => {
                            moved.push(*session);
                            membership = true;
                            room.entries.remove(session);
                            room.roster.touch(*session, Some(nickname.clone()));
                            if room.large {
                                room.roster.touch_count();
                            }
                        }
                        Notice::Muted { session, .. } => {
                            moved.push(*session);
                            room.roster.touch(*session, None);
                        }
                        _ => {}
                    }
                    notices.push((to, notice));
                }
                Effect::SetRoute { sender, receivers } => {
                    // A member without the talk grant is heard by nobody,
                    // whatever its room would route.
                    let may_talk = self
                        .sessions
                        .identity(sender)
                        .is_some_and(|i| i.access.grants.may_talk(name));
                    if let Some(r) = room.routes.get_mut(&sender) {
                        *r = if may_talk {
                            receivers
                        } else {
                            Receivers::Nobody
                        };
                        moved.push(sender);
                    }
                }
                Effect::SetTimer { key, at } => {
                    room.timers.insert(key, at);
                    self.timers
                        .push(Reverse((at, TimerRef::Room(name.to_owned(), key))));
                }
                Effect::CancelTimer { key } => {
                    room.timers.remove(&key);
                }
                Effect::MemberChanged { session } => room.roster.touch(session, None),
                Effect::NotifyBulk { to, notice } => bulk.push((to, notice)),
                e @ (Effect::Admit { .. }
                | Effect::Reject { .. }
                | Effect::Remove { .. }
                | Effect::Mute { .. }
                | Effect::CloseRoom { .. }) => structural.push(e),
            }
        }
        // Routes before messages: media flows by the time a client reads
        // the message that allows it.
        moved.sort_unstable();
        moved.dedup();
        for m in moved {
            self.resync_member(name, m);
        }
        if membership {
            self.resync_listed(name);
        }
        for (_, notice) in &notices {
            self.emit(name, notice);
        }
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let members = room.members.clone();
        let waiting = room.waiting.clone();
        let actor = self.actor.filter(|a| self.in_room(*a, name));
        for (to, notice) in notices {
            // Membership reaches members through their member lists, and
            // a room's end through LEFT.
            if matches!(
                notice,
                Notice::MemberJoined { .. } | Notice::MemberLeft { .. } | Notice::RoomClosed { .. }
            ) {
                continue;
            }
            let msg = Arc::new(Told::Room {
                room: name.to_owned(),
                notice,
            });
            let sessions: Vec<SessionId> = match to {
                Audience::One(s) => vec![s],
                Audience::Some(v) => v,
                Audience::All => {
                    let mut v = Vec::with_capacity(members.len());
                    v.extend(actor);
                    v.extend(members.iter().copied().filter(|m| Some(*m) != actor));
                    self.outputs.push_back(Output::SendAll {
                        sessions: v,
                        told: msg,
                    });
                    continue;
                }
            };
            // To members, or sessions waiting to join.
            for r in sessions {
                if self.in_room(r, name) || waiting.contains(&r) {
                    self.outputs.push_back(Output::Send {
                        session: r,
                        told: msg.clone(),
                    });
                }
            }
        }
        for (to, notice) in bulk {
            if self.in_room(to, name) {
                self.outputs.push_back(Output::SendBulk {
                    session: to,
                    told: Arc::new(Told::Room {
                        room: name.to_owned(),
                        notice,
                    }),
                });
            }
        }
        // The member list: whole to joiners at once (a count in a large
        // room, to those that page), by delta to the rest.
        joiners.retain(|j| members.contains(j));
        let became = self.update_large(name);
        if !joiners.is_empty() {
            let large = self.rooms.get(name).is_some_and(|r| r.large);
            let mut list = None;
            let mut count = None;
            for &j in &joiners {
                let told = if large && self.lists_of(j) == Some(MemberLists::Pages) {
                    count.get_or_insert_with(|| self.member_count(name)).clone()
                } else {
                    list.get_or_insert_with(|| self.member_list(name)).clone()
                };
                self.outputs.push_back(Output::Send { session: j, told });
            }
        }
        if let Some(large) = became {
            // Those that page hear that the list is no longer kept up (a
            // count), or get it whole again.
            let pagers: Vec<SessionId> = members
                .iter()
                .copied()
                .filter(|m| !joiners.contains(m) && self.lists_of(*m) == Some(MemberLists::Pages))
                .collect();
            if !pagers.is_empty() {
                let told = if large {
                    self.member_count(name)
                } else {
                    self.member_list(name)
                };
                self.outputs.push_back(Output::SendAll {
                    sessions: pagers,
                    told,
                });
            }
            if let Some(room) = self.rooms.get_mut(name) {
                let n = room.members.len();
                room.roster.count_sent(now, n);
            }
        }
        self.flush_roster(now, name, &joiners);
        // Admissions, removals and closing last, and not from here: they
        // call back into plugins, which must see their own messages
        // delivered first and are never re-entered while applying effects.
        // The step that caused them drains the queue when it is done.
        for e in structural {
            self.pending.push_back((name.to_owned(), e));
        }
    }

    /// Carries out queued admissions, rejections, removals, mutes and
    /// closes, in order, each after the one before has been applied
    /// (including what it queued in turn).
    fn drain_pending(&mut self, now: Instant) {
        while let Some((name, e)) = self.pending.pop_front() {
            let name = name.as_str();
            match e {
                Effect::Admit { session } => self.decide(now, name, session, None),
                Effect::Reject {
                    session,
                    reason,
                    message,
                } => self.decide(now, name, session, Some((reason, message))),
                Effect::Remove { session, message }
                    if self
                        .rooms
                        .get(name)
                        .is_some_and(|r| r.members.contains(&session)) =>
                {
                    self.leave_room_with(now, session, LeaveReason::Kicked, Some(message));
                }
                Effect::Mute { session, muted } => {
                    let _ = self.set_muted(now, name, session, muted, false);
                }
                Effect::CloseRoom { message } => {
                    let _ = self.close_room_now(now, name, &message, true);
                }
                _ => {}
            }
        }
    }

    /// Tells the members of `name` (but `skip`, who just got the whole list)
    /// how the list changed, as far as the room's coalescing allows now, and
    /// arms the timer for the rest. A large room is only ever told from its
    /// timer: the command that changed it (a floor grant to thousands) is
    /// not held up by the member list, which repeats what its own notice
    /// said.
    fn flush_roster(&mut self, now: Instant, name: &str, skip: &[SessionId]) {
        self.flush_roster_at(now, name, skip, false);
    }

    fn flush_roster_at(&mut self, now: Instant, name: &str, skip: &[SessionId], timer: bool) {
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        if !room.roster.is_dirty() {
            return;
        }
        let n = room.members.len();
        let deferred = n > roster::SMALL_ROOM && !timer;
        let delta_at = room.roster.delta_due(now, n);
        let legacy_at = room.roster.legacy_due(now, n);
        if deferred {
            if let Some(at) = room.roster.next_due(now, n) {
                self.arm_roster(name, at);
            }
            return;
        }
        let count_at = room.roster.count_due(now, n);
        let large = room.large;
        let (mut deltas, mut legacy, mut pagers) = (Vec::new(), Vec::new(), Vec::new());
        for m in &room.members {
            if skip.contains(m) {
                continue;
            }
            match self.lists_of(*m) {
                Some(MemberLists::Pages) if large => pagers.push(*m),
                Some(MemberLists::Deltas | MemberLists::Pages) => deltas.push(*m),
                Some(MemberLists::Whole) => legacy.push(*m),
                None => {}
            }
        }
        if count_at <= now && room.roster.count_dirty() {
            let told_count = room.roster.told_count;
            if large && n != told_count && !pagers.is_empty() {
                let told = self.member_count(name);
                self.outputs.push_back(Output::SendAll {
                    sessions: pagers,
                    told,
                });
            }
            if let Some(room) = self.rooms.get_mut(name) {
                room.roster.count_sent(now, n);
            }
        }
        if delta_at <= now {
            let sessions = &self.sessions;
            let Some(room) = self.rooms.get_mut(name) else {
                return;
            };
            let (plugin, muted) = (&room.plugin, &room.muted);
            let delta = room.roster.take_delta(now, |s| {
                sessions
                    .get(&s)
                    .is_some_and(|x| x.room.as_deref() == Some(name))
                    .then(|| roster::Shown {
                        talking: plugin.is_talking(s),
                        muted: muted.contains(&s),
                    })
            });
            if !delta.is_empty() && !deltas.is_empty() {
                let joined = self.user_infos(name, &delta.joined);
                let changed = self.user_infos(name, &delta.changed);
                let told = Arc::new(Told::Session(SessionNotice::MembersChanged {
                    room: name.to_owned(),
                    joined,
                    changed,
                    left: delta.left,
                }));
                self.outputs.push_back(Output::SendAll {
                    sessions: deltas,
                    told,
                });
            }
        }
        let legacy_dirty = self.rooms.get(name).is_some_and(|r| r.roster.is_dirty());
        if legacy_at <= now && legacy_dirty {
            if !legacy.is_empty() {
                let told = self.member_list(name);
                self.outputs.push_back(Output::SendAll {
                    sessions: legacy,
                    told,
                });
            }
            if let Some(room) = self.rooms.get_mut(name) {
                room.roster.legacy_sent(now);
            }
        }
        // What is left waits for its time.
        if let Some(at) = self
            .rooms
            .get(name)
            .and_then(|r| r.roster.next_due(now, r.members.len()))
        {
            self.arm_roster(name, at);
        }
    }

    /// Arms the room's member-list timer for `at`, unless it fires sooner.
    fn arm_roster(&mut self, name: &str, at: Instant) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if room.roster.armed.is_none_or(|a| a > at) {
            room.roster.armed = Some(at);
            self.timers
                .push(Reverse((at, TimerRef::Roster(name.to_owned()))));
        }
    }

    /// Whether `id` is a member of room `name` (O(1)).
    fn in_room(&self, id: SessionId, name: &str) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|s| s.room.as_deref() == Some(name))
    }

    /// These members as the member list shows them (shared entries, one
    /// per member state): the entry kept for each member's current state,
    /// made anew only when that changed. One room lookup for all of them.
    fn user_infos(&mut self, name: &str, ids: &[SessionId]) -> Vec<Arc<UserInfo>> {
        let sessions = &self.sessions;
        let Some(room) = self.rooms.get_mut(name) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(ident) = sessions.get(&id).and_then(|s| s.identity.as_ref()) else {
                continue;
            };
            let talking = room.plugin.is_talking(id);
            let muted = room.muted.contains(&id);
            match room.entries.get(&id) {
                Some(u) if u.talking == talking && u.muted == muted => out.push(u.clone()),
                _ => {
                    let u = Arc::new(UserInfo {
                        session_id: id,
                        nickname: ident.nickname.clone(),
                        ssrcs: ident.ssrcs,
                        talking,
                        muted,
                    });
                    room.entries.insert(id, u.clone());
                    out.push(u);
                }
            }
        }
        out
    }

    /// The room's whole member list, in joining order.
    /// How session `id` hears of its room's members, once welcomed.
    fn lists_of(&self, id: SessionId) -> Option<MemberLists> {
        self.sessions
            .get(&id)
            .and_then(|s| s.identity.as_ref())
            .map(|i| i.lists)
    }

    /// Whether room `name` just became large (`Some(true)`) or listed again
    /// (`Some(false)`), with hysteresis: large above `LARGE_ROOM` members,
    /// listed again at `LARGE_ROOM_UNTIL`.
    fn update_large(&mut self, name: &str) -> Option<bool> {
        let room = self.rooms.get_mut(name)?;
        let n = room.members.len();
        let now_large = if room.large {
            n > control::LARGE_ROOM_UNTIL
        } else {
            n > control::LARGE_ROOM
        };
        (now_large != room.large).then(|| {
            room.large = now_large;
            now_large
        })
    }

    fn member_count(&self, name: &str) -> Arc<Told> {
        Arc::new(Told::Session(SessionNotice::MemberCount {
            room: name.to_owned(),
            count: self.rooms.get(name).map_or(0, |r| r.members.len()),
        }))
    }

    /// `limit` members of room `name` from `offset`, in joining order.
    fn member_page(&mut self, name: &str, offset: usize, limit: usize) -> SessionNotice {
        let (count, members) = self
            .rooms
            .get(name)
            .map(|r| {
                let from = offset.min(r.members.len());
                let to = from.saturating_add(limit).min(r.members.len());
                (r.members.len(), r.members[from..to].to_vec())
            })
            .unwrap_or_default();
        SessionNotice::MemberPage {
            room: name.to_owned(),
            count,
            offset,
            users: self.user_infos(name, &members),
        }
    }

    fn member_list(&mut self, name: &str) -> Arc<Told> {
        let members = self
            .rooms
            .get(name)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        let users = self.user_infos(name, &members);
        Arc::new(Told::Session(SessionNotice::Members {
            room: name.to_owned(),
            users,
        }))
    }
}

/// Whether `code` answers malformed input (what the bad-line budget is
/// for), rather than a well-formed command refused.
fn malformed(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadJson
            | ErrorCode::BadMessage
            | ErrorCode::UnknownType
            | ErrorCode::BadField
            | ErrorCode::LineTooLong
            | ErrorCode::HelloRequired
            | ErrorCode::AlreadyWelcomed
            | ErrorCode::UnsupportedVersion
            | ErrorCode::BadNickname
    )
}

/// The per-session rates commands are held to (`limits.rates`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RateKind {
    Membership = 0,
    Floor = 1,
    Create = 2,
}

fn rate_kind(command: &Command) -> Option<RateKind> {
    match command {
        Command::Session(
            SessionCommand::Join { .. }
            | SessionCommand::Leave
            | SessionCommand::RequestJoin { .. },
        ) => Some(RateKind::Membership),
        Command::Session(SessionCommand::CreateRoom(_) | SessionCommand::CreateMeeting { .. }) => {
            Some(RateKind::Create)
        }
        Command::Room(RoomCommand::FloorRequest { .. } | RoomCommand::FloorRelease) => {
            Some(RateKind::Floor)
        }
        _ => None,
    }
}

/// Nicknames are unique within a room regardless of case.
fn same_nickname(a: &str, b: &str) -> bool {
    nickname_key(a) == nickname_key(b)
}

/// What makes two nicknames the same: case is ignored, and so are
/// look-alike characters (the UTS #39 skeleton: Cyrillic `а` is Latin `a`,
/// `ℓ` is `l`), so nobody joins a room under a name that reads as a
/// member's.
fn nickname_key(nickname: &str) -> String {
    unicode_security::skeleton(&nickname.to_lowercase())
        .collect::<String>()
        .to_lowercase()
}

/// Whether `nickname` is, or looks like, one of
/// [`control::RESERVED_NICKNAMES`].
pub fn is_reserved_nickname(nickname: &str) -> bool {
    let key = nickname_key(nickname);
    control::RESERVED_NICKNAMES
        .iter()
        .any(|r| nickname_key(r) == key)
}

#[cfg(test)]
mod tests;
