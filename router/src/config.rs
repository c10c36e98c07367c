//! The router's TOML configuration file.
//!
//! Every field is optional; with no file at all the router listens on the
//! default ports and hosts one `ptt` room named `lobby`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use plugin_api::Options;
use serde::Deserialize;

use crate::engine::{EngineConfig, RoomSpec};

/// Most media workers a router runs.
pub const MAX_MEDIA_WORKERS: usize = 64;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// TCP address of the control channel.
    pub control: SocketAddr,
    /// UDP address of the first media worker's socket; worker `i` binds
    /// the port after it plus `i` (every worker binds port 0 when it is 0).
    pub media: SocketAddr,
    /// Media workers: threads, each with its own UDP socket and its share
    /// of the rooms (1 to [`MAX_MEDIA_WORKERS`]).
    pub media_workers: usize,
    /// TCP address of the gRPC admin API. Without `admin_token` it must be a
    /// loopback address.
    pub admin: SocketAddr,
    /// Bearer token required by the admin API; empty or absent means none.
    pub admin_token: Option<String>,
    /// A file holding the admin token (its first line), read at start:
    /// unlike a flag it does not show in `ps`, unlike the config file it
    /// may be readable by the router alone.
    pub admin_token_file: Option<std::path::PathBuf>,
    pub limits: Limits,
    /// Rooms created at start-up. Empty means the default `lobby`.
    pub rooms: Vec<RoomConfig>,
    /// Front-ends for the seed systems' own clients (`[[compat]]`), none by
    /// default: their protocols are plaintext.
    pub compat: Vec<CompatConfig>,
    /// Who may connect and what they may do (`[auth]`).
    pub auth: AuthConfig,
    /// Lets seed front-ends run beside `auth.mode = "token"`: their clients
    /// carry no token, so they join without one (docs/security.md).
    pub allow_plaintext_compat: bool,
    /// TLS on the control channel (`[tls]`).
    pub tls: TlsConfig,
    /// Make protection the rule: the control channel TLS only, token
    /// auth, signed STUN bindings only, and no seed front-ends unless
    /// `allow_plaintext_compat` ([`Config::secured`]).
    pub secure: bool,
    /// Where the router keeps what it makes itself (the self-signed
    /// certificate); default `$STATE_DIRECTORY`, else
    /// `$XDG_STATE_HOME/switchboard`, else `~/.local/state/switchboard`.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Whether the control port speaks TLS.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext only.
    Off,
    /// TLS and plaintext on the same port, told apart by the first byte.
    #[default]
    Offer,
    /// TLS only: a plaintext client is answered `ERROR TLS_REQUIRED`.
    Require,
}

/// `[tls]`: the control channel's certificate (docs/security.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// The certificate chain (PEM), leaf first; with `key`. Without both
    /// a self-signed certificate is made in the state directory.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Names and addresses a self-signed certificate is made for (default:
    /// localhost, 127.0.0.1, ::1 and the host name).
    pub names: Vec<String>,
    /// The gRPC admin API speaks TLS too (with the same certificate); by
    /// default it is plaintext, for `grpcurl -plaintext` on loopback.
    pub admin: bool,
}

impl Config {
    /// The configuration `secure = true` makes of this one: TLS required
    /// and token auth (a `[tls] mode = "off"` is refused by
    /// [`Config::validate`], as are missing keys). Unchanged when not
    /// secure.
    pub fn secured(mut self) -> Self {
        if self.secure {
            if self.tls.mode == TlsMode::Offer {
                self.tls.mode = TlsMode::Require;
            }
            self.auth.mode = AuthMode::Token;
        }
        self
    }

    /// The state directory: `state_dir`, or the environment's.
    pub fn resolved_state_dir(&self) -> Option<std::path::PathBuf> {
        if let Some(d) = &self.state_dir {
            return Some(d.clone());
        }
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(d) = env("STATE_DIRECTORY") {
            // systemd's StateDirectory= may list several, colon-separated.
            let first = d
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            return Some(first.into());
        }
        if let Some(d) = env("XDG_STATE_HOME") {
            return Some(std::path::PathBuf::from(d).join("switchboard"));
        }
        env("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state/switchboard"))
    }
}

/// How sessions are admitted.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone may connect and do anything (the trusted-LAN quick start); a
    /// token, when given and keys are configured, is checked all the same.
    #[default]
    Open,
    /// HELLO must carry a valid access token; the nickname and grants come
    /// from it.
    Token,
}

/// `[auth]`: access tokens (router/src/auth.rs, docs/security.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The issuers' public keys (`[[auth.keys]]`); a token names its key
    /// by `kid`. Several at once rotate a key: the old one with an
    /// `accept_until`, the new one without.
    pub keys: Vec<KeyConfig>,
    /// When set, a token's `iss` must be this.
    pub issuer: Option<String>,
    /// Token ids (`jti`) refused before they expire.
    pub revoked: Vec<String>,
    /// Identities (`sub`) refused whatever their token.
    pub revoked_subjects: Vec<String>,
    /// A file of revocations, one per line: a token id, or `sub:` and an
    /// identity; `#` starts a comment. Read at start and on SIGHUP.
    pub revoked_file: Option<std::path::PathBuf>,
    /// Clock skew forgiven on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Open,
            keys: Vec::new(),
            issuer: None,
            revoked: Vec::new(),
            revoked_subjects: Vec::new(),
            revoked_file: None,
            leeway_secs: 30,
        }
    }
}

/// One issuer key (`[[auth.keys]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with it carry.
    pub id: String,
    /// The Ed25519 public key, base64url (what `switchboard token keygen`
    /// prints).
    pub public_key: String,
    /// Tokens signed with it are refused after this Unix time (seconds):
    /// the overlap while an old key is rotated out.
    #[serde(default)]
    pub accept_until: Option<u64>,
}

impl KeyConfig {
    /// Key `id` with `public_key`, accepted with no end.
    pub fn new(id: impl Into<String>, public_key: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            public_key: public_key.into(),
            accept_until: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            control: SocketAddr::from(([0, 0, 0, 0], proto::DEFAULT_CONTROL_PORT)),
            media: SocketAddr::from(([0, 0, 0, 0], proto::DEFAULT_MEDIA_PORT)),
            media_workers: 1,
            admin: SocketAddr::from(([127, 0, 0, 1], proto::DEFAULT_ADMIN_PORT)),
            admin_token: None,
            admin_token_file: None,
            limits: Limits::default(),
            rooms: Vec::new(),
            compat: Vec::new(),
            auth: AuthConfig::default(),
            allow_plaintext_compat: false,
            tls: TlsConfig::default(),
            state_dir: None,
            secure: false,
        }
    }
}

/// Control-plane limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_sessions: usize,
    /// Rooms beyond this cannot be created (`RESOURCE_EXHAUSTED`).
    pub max_rooms: usize,
    /// `WatchRoom` streams per room beyond this are refused
    /// (`RESOURCE_EXHAUSTED`).
    pub max_watchers_per_room: usize,
    /// Events buffered for each `WatchRoom` stream; a stream that falls
    /// further behind is ended with `RESOURCE_EXHAUSTED`.
    pub watch_buffer: usize,
    pub heartbeat_interval_ms: u64,
    /// 0 means three heartbeat intervals.
    pub silence_timeout_ms: u64,
    /// Bad lines tolerated in a burst before a connection is closed.
    pub error_burst: u32,
    /// One bad line is forgiven per this many milliseconds.
    pub error_refill_ms: u64,
    /// `REQUEST_JOIN` attempts one IP address may make at once…
    pub join_attempts_burst: u32,
    /// …and one more per this many milliseconds (guessing a 6-digit code).
    pub join_attempt_refill_ms: u64,
    /// Capacity of each meeting made with `CREATE_MEETING`.
    pub meeting_max_participants: u32,
    /// Whether clients may create rooms with `CREATE_ROOM`.
    pub client_rooms: bool,
    /// Most participants of a room made with `CREATE_ROOM`.
    pub client_room_max_participants: u32,
    /// Per-session command rates (`[limits.rates]`).
    pub rates: CommandRates,
    /// A connection that has not said HELLO this long after connecting is
    /// closed.
    pub hello_timeout_ms: u64,
    /// Connections waiting for their HELLO at once; `max_sessions` counts
    /// welcomed sessions only.
    pub max_pending: usize,
    /// Connections one IP address may hold at once (welcomed or not).
    pub max_connections_per_address: usize,
    /// Strikes (a connection closed for errors, a malformed HELLO, no HELLO
    /// in time) within `ban_window_ms` that ban an address; 0: no bans.
    pub ban_strikes: u32,
    pub ban_window_ms: u64,
    /// How long a ban lasts.
    pub ban_ms: u64,
    /// How long a session whose connection dropped is kept for a new
    /// connection to resume (HELLO `resume`); 0: sessions end with their
    /// connection.
    pub resume_grace_ms: u64,
    /// A seed-001 registration without a HEARTBEAT for this long ends (the
    /// original's 120 s).
    pub voip_registration_timeout_ms: u64,
}

/// A token bucket: `burst` at once, then one more per `refill_ms`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub burst: u32,
    pub refill_ms: u64,
}

impl Rate {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.refill_ms)
    }
}

/// How fast one session may send each kind of command. Beyond a rate the
/// command is answered `RATE_LIMITED` and dropped; the session stays.
/// Refusals of well-formed commands (`RATE_LIMITED`, `NOT_FLOOR_HOLDER`,
/// ...) do not spend the bad-line budget; only `refusals`, far above any
/// eager user, closes a session that keeps being refused.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CommandRates {
    /// JOIN, LEAVE, REQUEST_JOIN.
    pub membership: Rate,
    /// MIC_REQUEST, MIC_RELEASE.
    pub floor: Rate,
    /// CREATE_ROOM, CREATE_MEETING.
    pub create: Rate,
    /// Refused commands tolerated before the connection is closed
    /// (`TOO_MANY_ERRORS`).
    pub refusals: Rate,
}

impl Default for CommandRates {
    fn default() -> Self {
        Self {
            membership: Rate {
                burst: 10,
                refill_ms: 500,
            },
            floor: Rate {
                burst: 20,
                refill_ms: 100,
            },
            create: Rate {
                burst: 10,
                refill_ms: 6_000,
            },
            refusals: Rate {
                burst: 100,
                refill_ms: 100,
            },
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 1000,
            max_rooms: 1000,
            max_watchers_per_room: 256,
            watch_buffer: 1024,
            heartbeat_interval_ms: 5000,
            silence_timeout_ms: 0,
            error_burst: 10,
            error_refill_ms: 1000,
            join_attempts_burst: 5,
            join_attempt_refill_ms: 2000,
            meeting_max_participants: 25,
            client_rooms: true,
            client_room_max_participants: 50,
            rates: CommandRates::default(),
            hello_timeout_ms: 5000,
            max_pending: 256,
            max_connections_per_address: 64,
            ban_strikes: 10,
            ban_window_ms: 120_000,
            ban_ms: 300_000,
            resume_grace_ms: 10_000,
            voip_registration_timeout_ms: 120_000,
        }
    }
}

/// One room of the file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub max_participants: u32,
    #[serde(default)]
    pub options: Options,
}

/// The seed system a front-end speaks for (docs/compat.md).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Seed {
    /// 000: push-to-talk.
    Ptt,
    /// 001: VoIP calls.
    Voip,
    /// 002: meetings.
    Meeting,
    /// 003: voice communicator.
    Tip,
    /// 004: chat with exclusive voice.
    Chat,
}

impl Seed {
    pub const ALL: [Seed; 5] = [Seed::Ptt, Seed::Voip, Seed::Meeting, Seed::Tip, Seed::Chat];

    pub fn name(self) -> &'static str {
        match self {
            Seed::Ptt => "ptt",
            Seed::Voip => "voip",
            Seed::Meeting => "meeting",
            Seed::Tip => "tip",
            Seed::Chat => "chat",
        }
    }

    /// The room codec its clients' audio is (L16 at their rate).
    pub fn codec(self) -> &'static str {
        match self {
            Seed::Ptt | Seed::Voip | Seed::Chat => "l16-44k",
            Seed::Meeting => "l16-16k",
            Seed::Tip => "l16-20k",
        }
    }

    /// Whether its clients send media over UDP (all but 004, whose voice
    /// travels on its TCP connection).
    pub fn has_media(self) -> bool {
        !matches!(self, Seed::Chat)
    }

    /// Whether its clients cannot name a room, so the table names one
    /// (001 gets a room per call, 002 clients make and join meetings).
    pub fn needs_room(self) -> bool {
        matches!(self, Seed::Ptt | Seed::Tip | Seed::Chat)
    }

    /// The room kinds that can host its clients.
    pub fn room_kinds(self) -> &'static [&'static str] {
        match self {
            Seed::Ptt => &["ptt", "chat"],
            Seed::Chat => &["chat"],
            Seed::Tip => &["voice"],
            Seed::Voip => &["voice"],
            Seed::Meeting => &["meeting"],
        }
    }
}

/// One seed front-end (`[[compat]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompatConfig {
    pub seed: Seed,
    /// The seed's TCP port.
    pub control: SocketAddr,
    /// The seed's UDP port (every seed but `chat`).
    #[serde(default)]
    pub media: Option<SocketAddr>,
    /// The room its clients join (`ptt`, `tip`, `chat`).
    #[serde(default)]
    pub room: Option<String>,
}

/// Whether two listeners on one protocol would want the same port: the same
/// address, or the same port where one binds every address. Port 0 (any
/// free port) never clashes.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every rule a configuration must keep, whether it came from a file,
    /// was changed by flags, or was built in code (tests, the load harness):
    /// `Router::start` refuses what this refuses.
    /// The admin token: from `admin_token_file` (its first line) or
    /// `admin_token`, not both.
    pub fn resolved_admin_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.admin_token_file else {
            return Ok(self.admin_token.clone().filter(|t| !t.is_empty()));
        };
        if self.admin_token.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(ConfigError::Invalid(
                "set admin_token or admin_token_file, not both".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let token = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r');
        if token.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{}: the admin token file's first line is empty",
                path.display()
            )));
        }
        Ok(Some(token.to_owned()))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if l.watch_buffer == 0 || l.watch_buffer > 1 << 20 {
            return invalid("limits.watch_buffer must be from 1 to 1048576");
        }
        if l.heartbeat_interval_ms == 0 {
            return invalid("limits.heartbeat_interval_ms must be above 0");
        }
        if l.max_sessions == 0 {
            return invalid("limits.max_sessions must be above 0");
        }
        if l.max_watchers_per_room == 0 {
            return invalid("limits.max_watchers_per_room must be above 0");
        }
        if l.error_burst == 0 {
            return invalid("limits.error_burst must be above 0");
        }
        if l.voip_registration_timeout_ms == 0 {
            return invalid("limits.voip_registration_timeout_ms must be above 0");
        }
        if l.hello_timeout_ms == 0 || l.max_pending == 0 || l.max_connections_per_address == 0 {
            return invalid(
                "limits.hello_timeout_ms, max_pending and max_connections_per_address must be above 0",
            );
        }
        let r = &l.rates;
        for (name, rate) in [
            ("membership", r.membership),
            ("floor", r.floor),
            ("create", r.create),
            ("refusals", r.refusals),
        ] {
            if rate.burst == 0 || rate.refill_ms == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.rates.{name}: burst and refill_ms must be above 0"
                )));
            }
        }
        self.check_workers()?;
        self.check_auth()?;
        self.check_compat()
    }

    /// `[auth]` can admit someone, its keys parse, and seed front-ends
    /// (whose clients carry no token) are not beside token mode unless
    /// said so.
    pub fn check_auth(&self) -> Result<(), ConfigError> {
        if self.secure {
            let s = self.clone().secured();
            if s.tls.mode == TlsMode::Off {
                return Err(ConfigError::Invalid(
                    "secure = true needs TLS: remove [tls] mode = \"off\"".into(),
                ));
            }
            if s.auth.keys.is_empty() {
                return Err(ConfigError::Invalid(
                    "secure = true takes only access tokens: add [[auth.keys]] (make one with `switchboard token keygen`)".into(),
                ));
            }
            if !s.compat.is_empty() && !s.allow_plaintext_compat {
                return Err(ConfigError::Invalid(
                    "secure = true refuses seed front-ends ([[compat]]), whose protocols are plaintext; set allow_plaintext_compat = true to run them anyway".into(),
                ));
            }
        }
        let a = &self.auth;
        if a.mode == AuthMode::Token && a.keys.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.mode = \"token\" needs at least one [[auth.keys]] (make one with `switchboard token keygen`)".into(),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for k in &a.keys {
            if k.id.is_empty() || !ids.insert(k.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "auth.keys: every key needs an id of its own (`{}`)",
                    k.id
                )));
            }
        }
        crate::auth::Verifier::from_config(a)?;
        if self.tls.admin && self.tls.mode == TlsMode::Off {
            return Err(ConfigError::Invalid(
                "[tls] admin = true needs TLS ([tls] mode \"offer\" or \"require\")".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "[tls] cert and key go together (or neither, for a self-signed certificate)".into(),
            ));
        }
        if a.mode == AuthMode::Token && !self.compat.is_empty() && !self.allow_plaintext_compat {
            return Err(ConfigError::Invalid(
                "seed front-ends ([[compat]]) admit clients without tokens: with auth.mode = \"token\" set allow_plaintext_compat = true to run them anyway".into(),
            ));
        }
        Ok(())
    }

    /// Each `[[compat]]` table is complete for its seed, names a room that
    /// can host its clients, and listens where nothing else does.
    pub fn check_compat(&self) -> Result<(), ConfigError> {
        let rooms = self.room_specs();
        // (protocol, address, who) of every listener so far.
        let mut taken: Vec<(&str, SocketAddr, String)> = vec![
            ("TCP", self.control, "the control channel (control)".into()),
            ("TCP", self.admin, "the admin API (admin)".into()),
        ];
        for i in 0..self.media_workers {
            taken.push((
                "UDP",
                self.media_addr(i),
                format!("media worker {i} (media)"),
            ));
        }
        for (i, c) in self.compat.iter().enumerate() {
            let seed = c.seed.name();
            let at = format!("compat[{i}] (seed \"{seed}\")");
            let invalid = |m: String| Err(ConfigError::Invalid(format!("{at}: {m}")));
            match (c.seed.has_media(), c.media) {
                (true, None) => return invalid("needs `media`, the seed's UDP address".into()),
                (false, Some(_)) => {
                    return invalid(
                        "takes no `media`: its clients send voice on their TCP connection".into(),
                    );
                }
                _ => {}
            }
            match (c.seed.needs_room(), &c.room) {
                (true, None) => {
                    return invalid("needs `room`, the room its clients join".into());
                }
                (false, Some(_)) => {
                    let why = if c.seed == Seed::Voip {
                        "each call gets a two-person room of its own"
                    } else {
                        "its clients make and join meetings themselves"
                    };
                    return invalid(format!("takes no `room`: {why}"));
                }
                (true, Some(name)) => {
                    let kinds = c.seed.room_kinds();
                    let codec = c.seed.codec();
                    let wanted = format!(
                        "[[rooms]] name = \"{name}\", kind = \"{}\", options = {{ codec = \"{codec}\" }}",
                        kinds[0]
                    );
                    let Some(room) = rooms.iter().find(|r| &r.name == name) else {
                        return invalid(format!("no room `{name}` is configured; add {wanted}"));
                    };
                    if !kinds.contains(&room.kind.as_str()) {
                        return invalid(format!(
                            "room `{name}` is a `{}` room; seed {seed} clients need one of kind {}",
                            room.kind,
                            kinds.join(" or ")
                        ));
                    }
                    let has = room
                        .options
                        .get("codec")
                        .and_then(|v| v.as_str())
                        .unwrap_or(proto::codec::DEFAULT);
                    if has != codec {
                        return invalid(format!(
                            "room `{name}` speaks `{has}`; seed {seed} clients send {codec}: set its options.codec = \"{codec}\""
                        ));
                    }
                }
                (false, None) => {}
            }
            let mine = [Some(("TCP", c.control)), c.media.map(|m| ("UDP", m))];
            for (proto_name, addr) in mine.into_iter().flatten() {
                if let Some((_, _, who)) = taken
                    .iter()
                    .find(|(p, a, _)| *p == proto_name && clash(*a, addr))
                {
                    return invalid(format!("{proto_name} {addr} is already taken by {who}"));
                }
                let what = if proto_name == "TCP" {
                    "control"
                } else {
                    "media"
                };
                taken.push((proto_name, addr, format!("{at} ({what})")));
            }
        }
        Ok(())
    }

    /// `media_workers` is in range and their ports fit below 65536.
    pub fn check_workers(&self) -> Result<(), ConfigError> {
        let n = self.media_workers;
        if n == 0 || n > MAX_MEDIA_WORKERS {
            return Err(ConfigError::Invalid(format!(
                "media_workers must be from 1 to {MAX_MEDIA_WORKERS}, not {n}"
            )));
        }
        let port = usize::from(self.media.port());
        if port != 0 && port + n - 1 > usize::from(u16::MAX) {
            return Err(ConfigError::Invalid(format!(
                "{n} media workers from port {port} go beyond port 65535"
            )));
        }
        Ok(())
    }

    /// The address media worker `i` binds.
    pub fn media_addr(&self, i: usize) -> SocketAddr {
        let mut a = self.media;
        if a.port() != 0 {
            a.set_port(a.port().saturating_add(i as u16));
        }
        a
    }

    /// The rooms to create: the configured ones, or the default `lobby`.
    pub fn room_specs(&self) -> Vec<RoomSpec> {
        if self.rooms.is_empty() {
            return vec![RoomSpec {
                name: "lobby".into(),
                kind: "ptt".into(),
                max_participants: 0,
                options: Options::new(),
            }];
        }
        self.rooms
            .iter()
            .map(|r| RoomSpec {
                name: r.name.clone(),
                kind: r.kind.clone(),
                max_participants: r.max_participants,
                options: r.options.clone(),
            })
            .collect()
    }

    /// Engine settings; `media_ports` are the ports the workers bound.
    pub fn engine_config(&self, media_ports: Vec<u16>) -> EngineConfig {
        let hb = Duration::from_millis(self.limits.heartbeat_interval_ms);
        let silence = match self.limits.silence_timeout_ms {
            0 => hb * 3,
            ms => Duration::from_millis(ms),
        };
        EngineConfig {
            heartbeat_interval: hb,
            silence_timeout: silence,
            max_sessions: self.limits.max_sessions,
            max_rooms: self.limits.max_rooms,
            error_burst: self.limits.error_burst,
            error_refill: Duration::from_millis(self.limits.error_refill_ms.max(1)),
            media_ports,
            join_attempts_burst: self.limits.join_attempts_burst.max(1),
            join_attempt_refill: Duration::from_millis(self.limits.join_attempt_refill_ms),
            meeting_max_participants: self.limits.meeting_max_participants,
            client_rooms: self.limits.client_rooms,
            client_room_max_participants: self.limits.client_room_max_participants,
            rates: self.limits.rates,
            hello_timeout: Duration::from_millis(self.limits.hello_timeout_ms),
            max_pending: self.limits.max_pending,
            max_per_address: self.limits.max_connections_per_address,
            bans: crate::engine::BanPolicy {
                strikes: self.limits.ban_strikes,
                window: Duration::from_millis(self.limits.ban_window_ms),
                duration: Duration::from_millis(self.limits.ban_ms),
            },
            resume_grace: Duration::from_millis(self.limits.resume_grace_ms),
            require_stun_integrity: self.secure,
            secure_rooms: self.secure,
            allow_plain_rooms: !self.secure || self.allow_plaintext_compat,
        }
    }
}

impl Default for EngineConfig {
    /// The default configuration's engine settings (one source of defaults:
    /// [`Limits::default`]).
    fn default() -> Self {
        Config::default().engine_config(vec![proto::DEFAULT_MEDIA_PORT])
    }
}

#[cfg(test)]
mod tests {
    /// The example in docs/operations.md is a file the router takes, with
    /// the values it says.
    #[test]
    fn the_documented_example_parses_as_documented() {
        let doc = include_str!("../../docs/operations.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_default();
        assert!(example.contains("[limits.rates]"), "the example moved");
        let c = match Config::parse(example) {
            Ok(c) => c,
            Err(e) => panic!("docs/operations.md's example: {e}"),
        };
        assert_eq!(
            c.limits.rates,
            CommandRates::default(),
            "the rates shown are the defaults"
        );
        assert_eq!(
            (
                c.limits.hello_timeout_ms,
                c.limits.max_connections_per_address,
                c.limits.ban_strikes
            ),
            (5000, 64, 10)
        );
        assert_eq!(c.rooms.len(), 1);
    }

    #[test]
    fn the_admin_token_comes_from_its_file_or_the_setting_not_both() {
        let dir = std::env::temp_dir().join(format!("sb-token-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("token");
        let ok = std::fs::write(&file, "0123456789abcdef0123\nignored\n");
        assert!(ok.is_ok());
        let mut c = Config {
            admin_token_file: Some(file.clone()),
            ..Config::default()
        };
        assert_eq!(
            c.resolved_admin_token().ok().flatten().as_deref(),
            Some("0123456789abcdef0123")
        );
        c.admin_token = Some("other".into());
        assert!(c.resolved_admin_token().is_err(), "both");
        c.admin_token = None;
        let _ = std::fs::write(&file, "\n");
        assert!(c.resolved_admin_token().is_err(), "an empty first line");
        c.admin_token_file = Some(dir.join("missing"));
        assert!(c.resolved_admin_token().is_err(), "a missing file");
        let _ = std::fs::remove_dir_all(&dir);
        let c = Config {
            admin_token: Some("s".into()),
            ..Config::default()
        };
        assert_eq!(
            c.resolved_admin_token().ok().flatten().as_deref(),
            Some("s")
        );
    }

    use super::*;

    #[test]
    fn engine_defaults_are_the_default_configuration() {
        let e = EngineConfig::default();
        assert_eq!(e.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(e.silence_timeout, Duration::from_secs(15));
        assert_eq!(e.max_sessions, Limits::default().max_sessions);
        assert_eq!(
            e,
            Config::default().engine_config(vec![proto::DEFAULT_MEDIA_PORT])
        );
    }

    #[test]
    fn configs_built_in_code_are_checked_like_files() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.limits.heartbeat_interval_ms = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.limits.max_sessions = 0;
        assert!(c.validate().is_err());
        let c = Config {
            media_workers: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        assert!(Config::parse("[limits]\nerror_burst = 0").is_err());
    }

    #[test]
    fn empty_file_gives_the_default_lobby() {
        // A parse failure must fail here, not turn into the default.
        let c = match Config::parse("") {
            Ok(c) => c,
            Err(e) => panic!("an empty file: {e}"),
        };
        assert_eq!(c, Config::default());
        let rooms = c.room_specs();
        assert_eq!(rooms.len(), 1);
        assert_eq!(
            (rooms[0].name.as_str(), rooms[0].kind.as_str()),
            ("lobby", "ptt")
        );
        assert_eq!(
            c.engine_config(vec![1]).silence_timeout,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn rooms_and_limits_parse() {
        let text = r#"
            control = "127.0.0.1:9000"
            [limits]
            max_sessions = 5
            silence_timeout_ms = 2000
            [[rooms]]
            name = "ops"
            kind = "ptt"
            max_participants = 8
            options = { burst_limit_secs = 30, queue = false }
        "#;
        let c = match Config::parse(text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.control.port(), 9000);
        assert_eq!(c.limits.max_sessions, 5);
        let r = &c.room_specs()[0];
        assert_eq!(r.max_participants, 8);
        assert_eq!(r.options.get("queue"), Some(&serde_json::json!(false)));
    }

    #[test]
    fn media_workers_take_consecutive_ports() {
        let c = Config::parse("media = \"127.0.0.1:7100\"\nmedia_workers = 3");
        let Ok(c) = c else { panic!("{c:?}") };
        let ports: Vec<u16> = (0..3).map(|i| c.media_addr(i).port()).collect();
        assert_eq!(ports, [7100, 7101, 7102]);
        let c = Config::parse("media = \"127.0.0.1:0\"\nmedia_workers = 2");
        assert!(c.is_ok_and(|c| c.media_addr(1).port() == 0));
        assert_eq!(Config::default().media_workers, 1);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::parse("contrl = \"1.2.3.4:5\"").is_err());
        assert!(Config::parse("[[rooms]]\nname=\"a\"\nkind=\"ptt\"\ncolour=1").is_err());
        assert!(Config::parse("[limits]\nheartbeat_interval_ms = 0").is_err());
        assert!(Config::parse("[limits]\nwatch_buffer = 0").is_err());
        assert!(Config::parse("[limits]\nwatch_buffer = 2000000").is_err());
        assert!(Config::parse("media_workers = 0").is_err());
        assert!(Config::parse("media_workers = 65").is_err());
        assert!(Config::parse("media = \"0.0.0.0:65535\"\nmedia_workers = 2").is_err());
        let c =
            Config::parse("[limits]\nmax_rooms = 3\nmax_watchers_per_room = 4\nwatch_buffer = 5");
        assert!(c.is_ok_and(|c| (
            c.limits.max_rooms,
            c.limits.max_watchers_per_room,
            c.limits.watch_buffer
        ) == (3, 4, 5)
            && c.engine_config(vec![1]).max_rooms == 3));
    }

    #[test]
    fn auth_tables_are_checked_at_start() {
        let key = crate::auth::SigningKey::generate().public_key();
        let keys = format!("[[auth.keys]]\nid = \"k1\"\npublic_key = \"{key}\"\n");
        let c = Config::parse(&format!("[auth]\nmode = \"token\"\n{keys}"));
        assert!(
            c.as_ref()
                .is_ok_and(|c| c.auth.mode == AuthMode::Token && c.auth.leeway_secs == 30),
            "{c:?}"
        );
        assert_eq!(Config::default().auth.mode, AuthMode::Open);
        let cases = [
            ("[auth]\nmode = \"token\"".to_owned(), "needs at least one"),
            ("[auth]\nmode = \"closed\"".to_owned(), "unknown variant"),
            (
                "[[auth.keys]]\nid = \"k1\"\npublic_key = \"!!\"".to_owned(),
                "public_key",
            ),
            (format!("{keys}{keys}"), "id of its own"),
            (
                format!(
                    "[auth]\nmode = \"token\"\n{keys}[[rooms]]\nname = \"w\"\nkind = \"chat\"\noptions = {{ codec = \"l16-44k\" }}\n\
                     [[compat]]\nseed = \"chat\"\ncontrol = \"127.0.0.1:5050\"\nroom = \"w\""
                ),
                "allow_plaintext_compat",
            ),
            (
                "[auth]\nrevoked_file = \"/nonexistent/revoked\"".to_owned(),
                "cannot read",
            ),
        ];
        for (text, want) in cases {
            let e = compat_error(&text);
            assert!(e.contains(want), "{text}: {e:?} lacks {want:?}");
        }
        let allowed = format!(
            "allow_plaintext_compat = true\n[auth]\nmode = \"token\"\n{keys}[[rooms]]\nname = \"w\"\nkind = \"chat\"\noptions = {{ codec = \"l16-44k\" }}\n\
             [[compat]]\nseed = \"chat\"\ncontrol = \"127.0.0.1:5050\"\nroom = \"w\""
        );
        assert!(Config::parse(&allowed).is_ok());
    }

    #[test]
    fn secure_makes_tls_tokens_and_no_seed_front_ends_the_rule() {
        let key = crate::auth::SigningKey::generate().public_key();
        let keys = format!("[[auth.keys]]\nid = \"k1\"\npublic_key = \"{key}\"\n");
        let c = Config::parse(&format!("secure = true\n{keys}"));
        let Ok(c) = c else { panic!("{c:?}") };
        let s = c.clone().secured();
        assert_eq!(
            (s.tls.mode, s.auth.mode),
            (TlsMode::Require, AuthMode::Token)
        );
        assert!(s.engine_config(vec![1]).require_stun_integrity);
        assert!(
            !Config::default()
                .engine_config(vec![1])
                .require_stun_integrity
        );
        assert_eq!(
            Config::default().secured(),
            Config::default(),
            "not secure: unchanged"
        );
        let cases = [
            ("secure = true".to_owned(), "add [[auth.keys]]"),
            (
                format!("secure = true\n[tls]\nmode = \"off\"\n{keys}"),
                "needs TLS",
            ),
            (
                format!(
                    "secure = true\n{keys}[[rooms]]\nname = \"w\"\nkind = \"chat\"\noptions = {{ codec = \"l16-44k\" }}\n\
                     [[compat]]\nseed = \"chat\"\ncontrol = \"127.0.0.1:5050\"\nroom = \"w\""
                ),
                "refuses seed front-ends",
            ),
        ];
        for (text, want) in cases {
            let e = compat_error(&text);
            assert!(e.contains(want), "{text}: {e:?} lacks {want:?}");
        }
    }

    fn compat_error(text: &str) -> String {
        match Config::parse(text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn compat_tables_are_off_by_default_and_checked_at_start() {
        assert!(Config::default().compat.is_empty());
        let rooms = r#"
            control = "127.0.0.1:7070"
            media = "127.0.0.1:7071"
            [[rooms]]
            name = "walkie"
            kind = "ptt"
            options = { codec = "l16-44k" }
            [[rooms]]
            name = "talk"
            kind = "chat"
            options = { codec = "l16-44k" }
            [[rooms]]
            name = "tip"
            kind = "voice"
            options = { codec = "l16-20k" }
        "#;
        let good = format!(
            r#"{rooms}
            [[compat]]
            seed = "ptt"
            control = "127.0.0.1:9999"
            media = "127.0.0.1:9999"
            room = "walkie"
        "#
        );
        let c = Config::parse(&good);
        assert!(c.as_ref().is_ok_and(|c| c.compat.len() == 1), "{c:?}");
        let one = |table: &str| compat_error(&format!("{rooms}\n[[compat]]\n{table}"));
        let cases = [
            (
                "seed = \"pt\"\ncontrol = \"127.0.0.1:1\"",
                "unknown variant",
            ),
            (
                "seed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nroom = \"walkie\"",
                "needs `media`",
            ),
            (
                "seed = \"chat\"\ncontrol = \"127.0.0.1:5050\"\nmedia = \"127.0.0.1:5050\"\nroom = \"talk\"",
                "takes no `media`",
            ),
            (
                "seed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"127.0.0.1:9999\"",
                "needs `room`",
            ),
            (
                "seed = \"voip\"\ncontrol = \"127.0.0.1:8888\"\nmedia = \"127.0.0.1:9999\"\nroom = \"walkie\"",
                "two-person room",
            ),
            (
                "seed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"127.0.0.1:9999\"\nroom = \"nowhere\"",
                "no room `nowhere`",
            ),
            (
                "seed = \"chat\"\ncontrol = \"127.0.0.1:5050\"\nroom = \"walkie\"",
                "is a `ptt` room",
            ),
            (
                "seed = \"tip\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"127.0.0.1:9999\"\nroom = \"talk\"",
                "is a `chat` room",
            ),
            (
                "seed = \"ptt\"\ncontrol = \"127.0.0.1:7070\"\nmedia = \"127.0.0.1:9999\"\nroom = \"walkie\"",
                "already taken by the control channel",
            ),
            (
                "seed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"0.0.0.0:7071\"\nroom = \"walkie\"",
                "already taken by media worker 0",
            ),
            (
                "seed = \"meeting\"\ncontrol = \"127.0.0.1:5000\"",
                "needs `media`",
            ),
            (
                "seed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"127.0.0.1:9999\"\nroom = \"walkie\"\ncolour = 1",
                "unknown field",
            ),
        ];
        for (table, want) in cases {
            let e = one(table);
            assert!(e.contains(want), "{table}: {e:?} lacks {want:?}");
        }
        // Two front-ends on one port clash; a room of the wrong codec is named.
        let twice = compat_error(&format!(
            "{rooms}\n[[compat]]\nseed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"127.0.0.1:9999\"\nroom = \"walkie\"\n\
             [[compat]]\nseed = \"ptt\"\ncontrol = \"0.0.0.0:9999\"\nmedia = \"127.0.0.9:9998\"\nroom = \"walkie\""
        ));
        assert!(
            twice.contains("compat[1]") && twice.contains("taken by compat[0]"),
            "{twice}"
        );
        let opus = compat_error(
            "[[rooms]]\nname = \"w\"\nkind = \"ptt\"\n[[compat]]\nseed = \"ptt\"\ncontrol = \"127.0.0.1:9999\"\nmedia = \"127.0.0.1:9999\"\nroom = \"w\"",
        );
        assert!(
            opus.contains("speaks `opus`") && opus.contains("codec = \"l16-44k\""),
            "{opus}"
        );
    }
}
