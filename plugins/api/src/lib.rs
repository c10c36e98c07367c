//! The relay-plugin contract.
//!
//! A plugin owns the rules of one room kind (who may talk, who hears whom). Like
//! the engine around it, it is sans-IO: it receives events stamped with `now`
//! and answers only by pushing [`Effect`]s into an [`Outbox`]. It never reads a
//! clock, never touches a socket, and never sees a packet: it changes the
//! forwarding table on events ([`Outbox::set_route`]), and the media path
//! applies the table to every packet without asking the plugin.
//!
//! Rooms speak the room's language ([`room`]): they take [`RoomCommand`]s and
//! emit [`Notice`]s. No wire format appears here; front-ends translate.

pub mod room;
pub mod sim;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use proto::control::{CHAT_MAX_CHARS, ErrorCode, REASON_MAX_CHARS, SERVER_NICKNAME, Ssrcs};
pub use room::{
    Audience, ChatLine, DenyReason, FileOffer, LeaveReason, LobbyEntry, Notice, ReceiverReport,
    RejectReason, ReleaseReason, RevokeReason, RoomCommand,
};

/// A session's identity inside the router.
pub type SessionId = u64;

/// A plugin-chosen timer name, unique within its room.
pub type TimerKey = u64;

/// A member of the room, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub session: SessionId,
    pub nickname: String,
    pub ssrcs: Ssrcs,
}

/// Whose media a sender's packets are forwarded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receivers {
    /// Dropped at the router (the default for every new member).
    Nobody,
    /// Every other member of the room, including those who join later.
    AllOthers,
    /// Exactly these members (the sender itself is never included).
    Only(Vec<SessionId>),
}

/// One thing a plugin wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Tell `to` something.
    Notify { to: Audience, notice: Notice },
    /// Change where a member's media goes.
    SetRoute {
        sender: SessionId,
        receivers: Receivers,
    },
    /// Fire [`RelayPlugin::on_timer`] with `key` at `at` (replaces an armed timer
    /// with the same key).
    SetTimer { key: TimerKey, at: Instant },
    /// Disarm a timer; a no-op if it is not armed.
    CancelTimer { key: TimerKey },
    /// What the member list shows of this member (whether it talks)
    /// changed; the engine asks [`RelayPlugin::is_talking`].
    MemberChanged { session: SessionId },
    /// Tell one member something in bulk (a file chunk). Bulk notices wait
    /// behind every other message to that member, and are dropped, not
    /// queued without bound, when the member's bulk queue is full: like a
    /// router's full queue, the loss is for the transfer's protocol to
    /// detect and repair.
    NotifyBulk { to: SessionId, notice: Notice },
    /// Let a waiting session in (one for which
    /// [`RelayPlugin::on_join_request`] answered [`JoinPolicy::Wait`]).
    Admit { session: SessionId },
    /// Refuse a waiting session.
    Reject {
        session: SessionId,
        reason: RejectReason,
        message: String,
    },
    /// Take a member out of the room (`LEFT` with reason `KICKED`); its
    /// session stays connected.
    Remove { session: SessionId, message: String },
    /// Mute or unmute a member as an operator would (its media is dropped at
    /// the router; it gets `MUTED`). The plugin's own `on_admin` is not called.
    Mute { session: SessionId, muted: bool },
    /// Close the room: every member gets `LEFT` with reason `ROOM_CLOSED` and
    /// the message, and stays connected; waiting sessions are rejected.
    CloseRoom { message: String },
}

/// Where a plugin puts its effects; the engine drains it after every call.
#[derive(Debug, Default)]
pub struct Outbox {
    effects: Vec<Effect>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }
    /// Tells one member (or waiting session).
    pub fn notify(&mut self, to: SessionId, notice: Notice) {
        self.effects.push(Effect::Notify {
            to: Audience::One(to),
            notice,
        });
    }
    /// Tells every member.
    pub fn notify_all(&mut self, notice: Notice) {
        self.effects.push(Effect::Notify {
            to: Audience::All,
            notice,
        });
    }
    /// Tells these members, once (one notice, one event for watchers).
    pub fn notify_some(&mut self, to: Vec<SessionId>, notice: Notice) {
        self.effects.push(Effect::Notify {
            to: Audience::Some(to),
            notice,
        });
    }
    pub fn set_route(&mut self, sender: SessionId, receivers: Receivers) {
        self.effects.push(Effect::SetRoute { sender, receivers });
    }
    pub fn set_timer(&mut self, key: TimerKey, at: Instant) {
        self.effects.push(Effect::SetTimer { key, at });
    }
    pub fn cancel_timer(&mut self, key: TimerKey) {
        self.effects.push(Effect::CancelTimer { key });
    }
    pub fn member_changed(&mut self, session: SessionId) {
        self.effects.push(Effect::MemberChanged { session });
    }
    pub fn notify_bulk(&mut self, to: SessionId, notice: Notice) {
        self.effects.push(Effect::NotifyBulk { to, notice });
    }
    pub fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }
    /// Takes every effect pushed so far, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }
}

/// Why a plugin refused a command. The message says why in words, without
/// naming the command: the front-end that parsed it names it in its own terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// The room's kind does not take this command.
    pub fn not_supported(kind: &str) -> Self {
        Self::new(
            ErrorCode::NotSupported,
            format!("rooms of kind `{kind}` do not take this command"),
        )
    }
}

/// An operator's command for a room, from the admin API. The engine has
/// already checked that the room and the participant exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// Let a waiting session in, or refuse it with `reason` in words.
    Lobby {
        session: SessionId,
        approve: bool,
        reason: String,
    },
    /// A chat message from the operator (checked for length already): rooms
    /// with a chat log number and keep it; other kinds answer
    /// `NotSupported` and the engine delivers it unlogged.
    Chat { to: Option<SessionId>, text: String },
    /// Give the floor to this member, overriding the queue and any holder.
    GrantFloor { session: SessionId },
    /// Take the floor from whoever holds it.
    RevokeFloor,
    /// The engine drops a muted member's media whatever its route; the plugin
    /// is told so it can free the floor and refuse requests.
    Mute { session: SessionId, muted: bool },
}

/// Why a plugin refused an [`AdminCommand`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The room's kind has nothing this command applies to (no floor, …).
    #[error("{0}")]
    NotSupported(String),
    /// The command cannot apply in the room's current state.
    #[error("{0}")]
    Precondition(String),
}

/// The relay logic of one room.
pub trait RelayPlugin: Send {
    /// The kind's registry name.
    fn kind(&self) -> &'static str;
    /// A member entered the room (the engine already sent JOINED and USERLIST).
    fn on_join(&mut self, now: Instant, member: &Member, out: &mut Outbox);
    /// A member left the room, for `reason`; its routes are already removed.
    fn on_leave(&mut self, now: Instant, session: SessionId, reason: LeaveReason, out: &mut Outbox);
    /// A room command from a member.
    fn on_command(
        &mut self,
        now: Instant,
        session: SessionId,
        cmd: &RoomCommand,
        out: &mut Outbox,
    ) -> Result<(), CommandError>;
    /// A timer armed with [`Outbox::set_timer`] fired.
    fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox);
    /// Whether this member is talking, for USERLIST.
    fn is_talking(&self, session: SessionId) -> bool;
    /// An operator's command. By default a kind takes mute (the engine
    /// enforces it on routes) and refuses floor commands.
    fn on_admin(
        &mut self,
        _now: Instant,
        cmd: AdminCommand,
        _out: &mut Outbox,
    ) -> Result<(), AdminError> {
        match cmd {
            AdminCommand::Mute { .. } => Ok(()),
            AdminCommand::GrantFloor { .. } | AdminCommand::RevokeFloor => Err(
                AdminError::NotSupported(format!("rooms of kind `{}` have no floor", self.kind())),
            ),
            AdminCommand::Lobby { .. } => Err(AdminError::NotSupported(format!(
                "rooms of kind `{}` have no lobby",
                self.kind()
            ))),
            AdminCommand::Chat { .. } => Err(AdminError::NotSupported(format!(
                "rooms of kind `{}` keep no chat log",
                self.kind()
            ))),
        }
    }
    /// A session asks to join (by name or, for meetings, by code). The engine
    /// has checked capacity and nickname. By default everyone is admitted.
    fn on_join_request(
        &mut self,
        _now: Instant,
        _member: &Member,
        _out: &mut Outbox,
    ) -> JoinPolicy {
        JoinPolicy::Admit
    }
    /// A waiting session gave up (LEAVE, disconnected, timed out) before a
    /// decision.
    fn on_join_withdrawn(&mut self, _now: Instant, _session: SessionId, _out: &mut Outbox) {}
    /// Figures about one member for the admin API's GetStats
    /// (name, value), e.g. a meeting's video level.
    fn member_stats(&self, _session: SessionId) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// What happens to a join request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinPolicy {
    /// The session joins now.
    Admit,
    /// The session waits (`JOIN_PENDING`) until the plugin emits
    /// [`Effect::Admit`] or [`Effect::Reject`].
    Wait,
}

/// A token bucket on virtual time: `burst` tokens at once, one more earned
/// every `every`. Shared by every per-member and per-address rate limit
/// (chat messages, meeting join attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    tokens: u32,
    /// When the last token was earned (or the bucket was last full): the
    /// next comes `every` later.
    earned_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: burst,
            earned_at: now,
        }
    }

    /// When the bucket last earned a token or was full.
    pub fn earned_at(&self) -> Instant {
        self.earned_at
    }

    /// Takes one token, or says how long until the next is earned.
    pub fn take(&mut self, now: Instant, burst: u32, every: Duration) -> Result<(), Duration> {
        if every.is_zero() {
            self.tokens = burst;
        }
        while self.tokens < burst && now.saturating_duration_since(self.earned_at) >= every {
            self.tokens += 1;
            self.earned_at += every;
        }
        if self.tokens >= burst {
            // Full: earning starts again from now.
            self.earned_at = now;
        }
        if self.tokens == 0 {
            return Err((self.earned_at + every).saturating_duration_since(now));
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// Wall-clock time for plugins, which never read a clock: the engine's
/// `Instant` origin and the Unix time it corresponds to, both given to the
/// engine by its driver (tests build one by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    pub origin: Instant,
    pub origin_unix_ms: u64,
}

impl WallClock {
    /// Milliseconds since the Unix epoch at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_millis() as u64;
        let before = self.origin.saturating_duration_since(now).as_millis() as u64;
        (self.origin_unix_ms + since).saturating_sub(before)
    }
}

/// The type of an option value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionType {
    Bool,
    Integer,
    String,
}

/// One option a room kind takes, for `ListPlugins` and docs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OptionInfo {
    pub name: &'static str,
    pub ty: OptionType,
    pub default: String,
    pub help: &'static str,
}

/// What a room kind is and which options it takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub kind: &'static str,
    pub description: &'static str,
    pub options: Vec<OptionInfo>,
}

/// Room options as given in a config file or a gRPC call.
pub type Options = BTreeMap<String, serde_json::Value>;

/// An option that is unknown or has a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option `{name}`: {message}")]
pub struct OptionError {
    pub name: String,
    pub message: String,
}

/// What a plugin is told about the room it will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomInfo<'a> {
    pub name: &'a str,
    /// The room's capacity; the engine answers FULL beyond it.
    pub max_participants: u32,
    /// For stamping messages with server time.
    pub clock: WallClock,
}

/// Makes rooms of one kind.
pub trait PluginFactory: Send + Sync {
    fn info(&self) -> PluginInfo;
    /// A new plugin instance for `room`, configured by `options`.
    fn create(
        &self,
        room: &RoomInfo<'_>,
        options: &Options,
    ) -> Result<Box<dyn RelayPlugin>, OptionError>;
}

/// Options every room takes whatever its kind, checked by the router, not
/// the plugin: `codec`, the room's audio codec, and `secure`, whether its
/// media is SRTP (JOINED tells both).
pub const COMMON_OPTIONS: &[&str] = &["codec", "secure"];

/// Typed access to [`Options`], refusing unknown names and wrong types.
/// The [`COMMON_OPTIONS`] are known to every reader.
pub struct OptionReader<'a> {
    options: &'a Options,
    known: Vec<&'static str>,
}

impl<'a> OptionReader<'a> {
    pub fn new(options: &'a Options) -> Self {
        Self {
            options,
            known: COMMON_OPTIONS.to_vec(),
        }
    }

    fn get(&mut self, name: &'static str) -> Option<&'a serde_json::Value> {
        self.known.push(name);
        self.options.get(name)
    }

    pub fn bool(&mut self, name: &'static str, default: bool) -> Result<bool, OptionError> {
        match self.get(name) {
            None => Ok(default),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(serde_json::Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(v) => Err(OptionError {
                name: name.into(),
                message: format!("expected true or false, got {v}"),
            }),
        }
    }

    /// An integer within `min..=max`.
    pub fn int(
        &mut self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, OptionError> {
        let v = match self.get(name) {
            None => return Ok(default),
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        match v {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(OptionError {
                name: name.into(),
                message: format!("expected an integer from {min} to {max}"),
            }),
        }
    }

    /// Fails on any option that was never asked for.
    pub fn finish(self) -> Result<(), OptionError> {
        match self
            .options
            .keys()
            .find(|k| !self.known.contains(&k.as_str()))
        {
            Some(k) => Err(OptionError {
                name: k.clone(),
                message: format!("unknown option; this kind takes: {}", self.known.join(", ")),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_reader_checks_types_ranges_and_unknown_names() {
        let mut o = Options::new();
        o.insert("queue".into(), serde_json::json!(false));
        o.insert("burst".into(), serde_json::json!("30"));
        let mut r = OptionReader::new(&o);
        assert_eq!(r.bool("queue", true), Ok(false));
        assert_eq!(r.int("burst", 60, 1, 100), Ok(30));
        assert_eq!(r.int("other", 5, 1, 10), Ok(5));
        assert!(r.finish().is_ok());

        o.insert("bogus".into(), serde_json::json!(1));
        let mut r = OptionReader::new(&o);
        let _ = r.bool("queue", true);
        let _ = r.int("burst", 60, 1, 100);
        assert_eq!(r.finish().map_err(|e| e.name), Err("bogus".to_string()));

        let mut r = OptionReader::new(&o);
        assert!(r.int("burst", 60, 1, 10).is_err());
        assert!(r.int("queue", 60, 1, 10).is_err());
    }
}
