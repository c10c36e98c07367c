//! Messages of the TCP control channel: one JSON object per line, tagged by `"type"`.
//!
//! Names follow the systems Switchboard replaces (`MIC_REQUEST`, `MIC_GRANTED`, …).
//! Every message is documented with an example in `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// Maximum length of a control line in bytes, newline excluded.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Nickname length limits, in characters.
pub const NICKNAME_MIN_CHARS: usize = 1;
/// See [`NICKNAME_MIN_CHARS`].
pub const NICKNAME_MAX_CHARS: usize = 32;
/// Room name length limits, in characters.
pub const ROOM_NAME_MAX_CHARS: usize = 64;
/// Longest chat message, in characters.
pub const CHAT_MAX_CHARS: usize = 4096;
/// Longest reason text an operator may give (kick, close), in characters.
pub const REASON_MAX_CHARS: usize = 256;
/// Feature: the member list arrives whole once (`USERLIST` on joining), then
/// as `MEMBERS_CHANGED` deltas instead of a whole `USERLIST` on every change.
pub const FEATURE_MEMBER_DELTAS: &str = "member_deltas";
/// Feature: as [`FEATURE_MEMBER_DELTAS`] while a room has at most
/// [`LARGE_ROOM`] members; in a larger room the list is not kept up: the
/// client gets `MEMBER_COUNT` instead, and asks for the part of the list it
/// shows with `LIST_MEMBERS`.
pub const FEATURE_MEMBER_PAGES: &str = "member_pages";
/// HELLO feature: STUN bindings carry a public `media_id` as USERNAME and
/// MESSAGE-INTEGRITY keyed by the media token; a replayed transaction is
/// refused, and moving a bound session needs a `MEDIA_NONCE`.
pub const FEATURE_STUN_INTEGRITY: &str = "stun_integrity";
/// HELLO feature: the client can join secure rooms, whose media is SRTP
/// keyed by the router (JOINED's `srtp`, then `SRTP_KEYS`). Granted only on
/// a TLS connection, and a secure room takes only sessions that also have
/// [`FEATURE_STUN_INTEGRITY`].
pub const FEATURE_SRTP: &str = "srtp";
/// The SRTP protection profile of secure rooms (RFC 3711, RFC 5764): AES
/// counter mode with a 128-bit key, HMAC-SHA1 tags of 80 bits. RTCP uses
/// the same key with a null cipher (authenticated, readable by the router).
pub const SRTP_PROFILE: &str = "AES_CM_128_HMAC_SHA1_80";
/// Bytes of an SRTP master key and salt for [`SRTP_PROFILE`] (16 + 14).
pub const SRTP_KEY_BYTES: usize = 30;
/// Most keys in one `SRTP_KEYS` (a joiner of a large room gets several).
pub const SRTP_KEYS_PER_MESSAGE: usize = 256;
/// Every optional feature this router knows, for HELLO's `features`.
pub const FEATURES: &[&str] = &[
    FEATURE_MEMBER_DELTAS,
    FEATURE_MEMBER_PAGES,
    FEATURE_STUN_INTEGRITY,
    FEATURE_SRTP,
];
/// A room becomes large for `member_pages` clients when it grows past this
/// many members...
pub const LARGE_ROOM: usize = 500;
/// ...and listed again when it shrinks to this many.
pub const LARGE_ROOM_UNTIL: usize = LARGE_ROOM / 2;
/// `LIST_MEMBERS`: members in a page when `limit` is absent, and at most.
pub const MEMBER_PAGE_DEFAULT: u32 = 100;
/// See [`MEMBER_PAGE_DEFAULT`].
pub const MEMBER_PAGE_MAX: u32 = 500;
/// The `from` of chat messages sent by an operator through the admin API.
pub const SERVER_NICKNAME: &str = "server";
/// Nicknames no client may take (nor any that looks like one, case and
/// confusable characters ignored): the operator's, and names people would
/// read as the system speaking.
pub const RESERVED_NICKNAMES: &[&str] = &[
    SERVER_NICKNAME,
    "operator",
    "admin",
    "administrator",
    "moderator",
    "switchboard",
    "system",
    "router",
];

/// The SSRCs the router assigned to one session. A client must send its media
/// with exactly these; anything else is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ssrcs {
    pub audio: u32,
    pub video: u32,
}

impl Ssrcs {
    pub fn contains(&self, ssrc: u32) -> bool {
        self.audio == ssrc || self.video == ssrc
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> {
        [self.audio, self.video].into_iter()
    }
}

/// Messages from a client to the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientMessage {
    /// First message of every session.
    Hello {
        version: u32,
        nickname: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Optional protocol features the client asks for (see
        /// [`FEATURES`]); unknown names are ignored. WELCOME says which
        /// were granted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
        /// The `resume_token` of an earlier WELCOME: within its grace
        /// period after that connection dropped, this connection continues
        /// that session (same id, SSRCs, room and queue place).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// Enter a room (one room per session at a time).
    Join { room: String },
    /// Leave the current room; the session stays connected.
    Leave,
    /// Keep-alive; answered with `HEARTBEAT_ACK`.
    Heartbeat,
    /// Ask for the list of rooms.
    ListRooms,
    /// Ask for part of the current room's member list, in join order:
    /// answered `MEMBER_PAGE`.
    ListMembers {
        #[serde(default)]
        offset: u32,
        /// At most [`MEMBER_PAGE_MAX`]; [`MEMBER_PAGE_DEFAULT`] if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Ask for the floor of the current room.
    MicRequest {
        /// 0 is normal; higher values may pre-empt a lower-priority holder
        /// where the room allows it (up to the room's `max_priority`).
        #[serde(default)]
        priority: u8,
    },
    /// Give up the floor, or leave the floor queue.
    MicRelease,
    /// A chat message to everyone in the room, or privately to the member
    /// with nickname `to` (`chat` and `meeting` rooms).
    Chat {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Start a meeting: the router answers `MEETING_CREATED` with a 6-digit
    /// code and puts the sender in it as host.
    CreateMeeting {
        /// End the meeting for everyone when the host leaves (otherwise the
        /// longest-present participant becomes host).
        #[serde(default)]
        end_with_host: bool,
        /// The meeting's audio codec (`opus` when absent; see the room
        /// option `codec`): `l16-16k` lets seed-002 clients join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        codec: Option<String>,
    },
    /// Create a room of `kind` (`ptt`, `chat`, `voice`; meetings use
    /// `CREATE_MEETING`) and join it. It closes when its last member leaves.
    /// `JOINED` answers; errors: `ROOM_EXISTS`, `BAD_FIELD` (name, kind or
    /// options), `FULL` (server), `RATE_LIMITED`, `NOT_SUPPORTED` (the router
    /// does not let clients create rooms).
    CreateRoom {
        room: String,
        kind: String,
        /// 0 (or absent): the router's limit for client-made rooms.
        #[serde(default)]
        max_participants: u32,
        /// The kind's options, as in the router's config file.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        options: std::collections::BTreeMap<String, serde_json::Value>,
    },
    /// Ask to join the meeting with this code; answered `JOIN_PENDING`, then
    /// `JOIN_ACCEPTED` or `JOIN_REJECTED`.
    RequestJoin { code: String },
    /// Host: let a waiting guest in.
    AllowJoin { session_id: u64 },
    /// Host: refuse a waiting guest.
    DenyJoin {
        session_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Announce your microphone and camera state to the meeting.
    MediaState { audio: bool, video: bool },
    /// Host: mute or unmute a participant.
    Mute { nickname: String, muted: bool },
    /// Host: take a participant out of the meeting.
    Remove {
        nickname: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Offer a file to everyone in the meeting or to one nickname.
    FileOffer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        name: String,
        size: u64,
        /// Lowercase hex SHA-256 of the whole file.
        sha256: String,
        /// Bytes per chunk (the last may be shorter).
        chunk_size: u32,
    },
    /// One chunk of an offered file, base64 (standard alphabet, padded).
    FileChunk {
        transfer_id: u64,
        seq: u64,
        data: String,
    },
    /// Receiver: every chunk before `next_seq` arrived (cumulative, as TCP).
    FileAck { transfer_id: u64, next_seq: u64 },
    /// Sender: every chunk was acknowledged.
    FileEnd { transfer_id: u64 },
    /// Receiver: the file checked out (or not) against its SHA-256.
    FileResult {
        transfer_id: u64,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Either side: stop a transfer.
    FileCancel {
        transfer_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Sender of video: what the receivers' RTCP reports say about it, for
    /// the adaptive video rule.
    VideoStats { reports: Vec<ReceptionReport> },
    /// End the session cleanly; the router closes the connection.
    Bye {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl ClientMessage {
    /// Every `type` a client may send, for telling `UNKNOWN_TYPE` from `BAD_FIELD`.
    pub const TYPES: &'static [&'static str] = &[
        "HELLO",
        "JOIN",
        "LEAVE",
        "HEARTBEAT",
        "LIST_ROOMS",
        "LIST_MEMBERS",
        "MIC_REQUEST",
        "MIC_RELEASE",
        "CHAT",
        "CREATE_MEETING",
        "CREATE_ROOM",
        "REQUEST_JOIN",
        "ALLOW_JOIN",
        "DENY_JOIN",
        "MEDIA_STATE",
        "MUTE",
        "REMOVE",
        "FILE_OFFER",
        "FILE_CHUNK",
        "FILE_ACK",
        "FILE_END",
        "FILE_RESULT",
        "FILE_CANCEL",
        "VIDEO_STATS",
        "BYE",
    ];

    /// The wire name of this message's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "HELLO",
            ClientMessage::Join { .. } => "JOIN",
            ClientMessage::Leave => "LEAVE",
            ClientMessage::Heartbeat => "HEARTBEAT",
            ClientMessage::ListRooms => "LIST_ROOMS",
            ClientMessage::ListMembers { .. } => "LIST_MEMBERS",
            ClientMessage::MicRequest { .. } => "MIC_REQUEST",
            ClientMessage::MicRelease => "MIC_RELEASE",
            ClientMessage::Chat { .. } => "CHAT",
            ClientMessage::CreateMeeting { .. } => "CREATE_MEETING",
            ClientMessage::RequestJoin { .. } => "REQUEST_JOIN",
            ClientMessage::AllowJoin { .. } => "ALLOW_JOIN",
            ClientMessage::DenyJoin { .. } => "DENY_JOIN",
            ClientMessage::MediaState { .. } => "MEDIA_STATE",
            ClientMessage::Mute { .. } => "MUTE",
            ClientMessage::Remove { .. } => "REMOVE",
            ClientMessage::FileOffer { .. } => "FILE_OFFER",
            ClientMessage::FileChunk { .. } => "FILE_CHUNK",
            ClientMessage::FileAck { .. } => "FILE_ACK",
            ClientMessage::FileEnd { .. } => "FILE_END",
            ClientMessage::FileResult { .. } => "FILE_RESULT",
            ClientMessage::FileCancel { .. } => "FILE_CANCEL",
            ClientMessage::VideoStats { .. } => "VIDEO_STATS",
            ClientMessage::CreateRoom { .. } => "CREATE_ROOM",
            ClientMessage::Bye { .. } => "BYE",
        }
    }
}

/// One member of a room as shown in `USERLIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub session_id: u64,
    pub nickname: String,
    pub ssrcs: Ssrcs,
    /// True while this member's media is being forwarded (holds the floor).
    pub talking: bool,
    /// True while an operator has muted this member.
    #[serde(default)]
    pub muted: bool,
}

/// A member that left, in `MEMBERS_CHANGED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberGone {
    pub session_id: u64,
    pub nickname: String,
}

/// One receiver's view of a sender's video, from its RTCP receiver report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReceptionReport {
    /// The reporting receiver's SSRC.
    pub from_ssrc: u32,
    /// Fraction of packets lost since its previous report, 0.0 to 1.0.
    pub fraction_lost: f64,
    /// Round-trip time in ms, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// A session waiting in a meeting's lobby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbyEntry {
    pub session_id: u64,
    pub nickname: String,
    /// How long it has waited, in ms.
    pub waited_ms: u64,
}

/// One logged chat message, as carried by `CHAT_HISTORY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    pub id: u64,
    pub ts_ms: u64,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    pub text: String,
    /// Sent by an operator (the admin API), not by a member.
    #[serde(default, skip_serializing_if = "is_false")]
    pub operator: bool,
}

/// One room as listed by `ROOMS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub kind: String,
    pub participants: u32,
    /// 0 means unlimited.
    pub max_participants: u32,
    /// Its media is SRTP (absent: plain RTP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure: bool,
}

/// An SRTP master key and salt, as JOINED and `SRTP_KEYS` carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrtpKey {
    /// [`SRTP_PROFILE`].
    pub profile: String,
    /// [`SRTP_KEY_BYTES`] bytes, base64 (standard, padded).
    pub key: String,
}

/// The key one member sends with: its session, the SSRCs it may send (RTP
/// and RTCP), and the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderKey {
    pub session_id: u64,
    pub ssrcs: Vec<u32>,
    #[serde(flatten)]
    pub key: SrtpKey,
}

/// Why a floor request was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DenyReason {
    /// Someone else holds the floor and the room does not queue.
    FloorBusy,
    /// Someone else holds the floor; the request waits in the queue.
    Queued,
    /// The queue is at its limit.
    QueueFull,
    /// The requester already holds the floor.
    AlreadyHolder,
    /// The requester is already in the queue.
    AlreadyQueued,
    /// The requester is muted by an operator.
    Muted,
}

/// Why the floor became free without being revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReleaseReason {
    /// The holder sent `MIC_RELEASE`.
    Released,
    /// The holder left the room.
    Left,
    /// The holder's connection closed.
    Disconnected,
    /// The holder was silent longer than the silence timeout.
    TimedOut,
}

/// Why the floor was taken from its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevokeReason {
    /// The talk burst reached the room's limit.
    BurstLimit,
    /// A higher-priority request took the floor.
    Preempted,
    /// An operator revoked it.
    Admin,
    /// An operator muted the holder.
    Muted,
}

/// Why a session left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LeaveReason {
    Left,
    Disconnected,
    TimedOut,
    Kicked,
    RoomClosed,
}

impl LeaveReason {
    /// The floor-release reason matching this way of leaving.
    pub fn as_release(self) -> ReleaseReason {
        match self {
            LeaveReason::Left | LeaveReason::Kicked | LeaveReason::RoomClosed => {
                ReleaseReason::Left
            }
            LeaveReason::Disconnected => ReleaseReason::Disconnected,
            LeaveReason::TimedOut => ReleaseReason::TimedOut,
        }
    }
}

/// Why a join request was refused (`JOIN_REJECTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectReason {
    /// The host (or an operator) denied it.
    Denied,
    /// Nobody decided within the room's lobby timeout.
    TimedOut,
    /// The meeting ended while the request waited.
    MeetingEnded,
}

/// What `FULL` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FullScope {
    /// The router has no room for another session; the connection is closed.
    Server,
    /// The room is at its participant limit; the session stays connected.
    Room,
}

/// Documented error codes carried by `ERROR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The line is not valid JSON (or not UTF-8).
    BadJson,
    /// The line is JSON but not an object with a string `type`.
    BadMessage,
    /// `type` names no message a client may send.
    UnknownType,
    /// A field is missing or has the wrong type or value.
    BadField,
    /// The line exceeded the size limit and was discarded.
    LineTooLong,
    /// A command other than `HELLO` arrived before `HELLO`.
    HelloRequired,
    /// `HELLO` arrived twice.
    AlreadyWelcomed,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// The nickname breaks the nickname rules.
    BadNickname,
    /// Another member of the room already uses the nickname.
    NicknameTaken,
    /// No room has that name.
    UnknownRoom,
    /// `CREATE_ROOM`: a room with that name exists.
    RoomExists,
    /// The command needs the session to be in a room.
    NotInRoom,
    /// The session is already in a room; `LEAVE` first.
    AlreadyInRoom,
    /// The room's kind does not take this command.
    NotSupported,
    /// `MIC_RELEASE` from a session that neither holds nor waits for the floor.
    NotFloorHolder,
    /// Too many bad lines in a short time; the connection is closed after this.
    TooManyErrors,
    /// The session's outgoing queue overflowed; the connection is closed after this.
    SlowConsumer,
    /// The session was silent longer than the silence timeout; the connection is closed after this.
    TimedOut,
    /// The session sent this kind of command faster than the room allows;
    /// the command was dropped (the message says when to retry).
    RateLimited,
    /// A private message or command names a nickname not in the room.
    UnknownParticipant,
    /// No meeting has that code.
    UnknownMeeting,
    /// Only the meeting's host may do this.
    NotHost,
    /// No transfer with that id involves you.
    UnknownTransfer,
    /// A file is larger than the room allows, or a chunk is malformed.
    BadFile,
    /// The router failed internally; the command had no effect.
    Internal,
    /// Audio in another codec than the room's, in a room that seed clients
    /// share (they hear only its own): the audio is dropped (the message
    /// names the room's codec and payload type).
    WrongCodec,
    /// HELLO without a token to a router that admits only token holders.
    TokenRequired,
    /// The token is malformed, signed by a key the router does not know (or
    /// has retired), its signature does not verify, or its issuer is
    /// another (the message says which).
    TokenInvalid,
    /// The token has expired (or is not valid yet is `TOKEN_INVALID`).
    TokenExpired,
    /// The token (or its identity) was revoked; a session using it is ended.
    TokenRevoked,
    /// The token's grants do not allow this: joining, talking in or
    /// creating the room, that floor priority, or the admin API.
    Forbidden,
    /// A plaintext connection to a router that takes only TLS; the
    /// connection is closed after this.
    TlsRequired,
    /// The room is secure (SRTP media) and this session cannot take part:
    /// it is not on TLS, did not ask for `srtp` and `stun_integrity`, or is
    /// a seed front-end's (plain RTP by nature).
    SecureRoom,
}

/// A token bucket as the router announces it: `burst` at once, then one
/// more every `refill_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub burst: u32,
    pub refill_ms: u64,
}

/// The limits a client must respect, announced in WELCOME (a room's own,
/// such as its chat rate and file size, come in JOINED's `settings`).
/// Fields may be added; a client ignores those it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest control line, in bytes, newline excluded.
    pub line_bytes: u32,
    pub nickname_chars: u32,
    pub room_name_chars: u32,
    pub chat_chars: u32,
    /// Longest string `id` of a command.
    pub request_id_chars: u32,
    /// Malformed lines (bad JSON, unknown types, bad fields): beyond this
    /// budget the connection is closed (`TOO_MANY_ERRORS`).
    pub bad_lines: Rate,
    /// Refused well-formed commands: far beyond any user's pace, and only
    /// then is the connection closed.
    pub refusals: Rate,
    /// JOIN, LEAVE, REQUEST_JOIN: beyond this, `RATE_LIMITED` and dropped.
    pub membership: Rate,
    /// MIC_REQUEST, MIC_RELEASE.
    pub floor: Rate,
    /// CREATE_ROOM, CREATE_MEETING.
    pub create: Rate,
    /// REQUEST_JOIN attempts from one IP address (meeting codes).
    pub join_attempts: Rate,
}

/// Messages from the router to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerMessage {
    Welcome {
        version: u32,
        session_id: u64,
        nickname: String,
        /// UDP port for media (same host as the control connection).
        udp_port: u16,
        /// Put this in the USERNAME of a STUN Binding Request to bind your UDP address.
        media_token: String,
        ssrcs: Ssrcs,
        heartbeat_interval_ms: u64,
        /// A session silent for this long is dropped.
        silence_timeout_ms: u64,
        /// The features of HELLO's `features` this router granted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
        /// The limits this session must respect (absent from routers
        /// before they were announced).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<Limits>,
        /// Give this in a later HELLO's `resume` to continue this session
        /// on a new connection, within `resume_grace_ms` of this one
        /// dropping (absent when the router keeps no sessions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_grace_ms: Option<u64>,
        /// This connection continues an earlier session (HELLO's `resume`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
        /// With `stun_integrity`: the STUN USERNAME to bind with (public;
        /// `media_token` is then the MESSAGE-INTEGRITY key, never sent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_id: Option<String>,
    },
    Joined {
        room: String,
        kind: String,
        udp_port: u16,
        /// The room's settings in force, each of its kind's options with
        /// its value (given or default): its chat rate, largest file, ...
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        settings: std::collections::BTreeMap<String, serde_json::Value>,
        /// With `stun_integrity`: the nonce the binding for this room may
        /// carry to move the session's media to a new socket (once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_nonce: Option<String>,
        /// The room's media is SRTP (absent: plain RTP).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secure: bool,
        /// In a secure room: the key this session protects everything it
        /// sends with (all its SSRCs, RTP and RTCP), valid while it stays.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        srtp: Option<SrtpKey>,
    },
    /// In a secure room: the keys other members send with. The joiner gets
    /// every member's (in messages of at most [`SRTP_KEYS_PER_MESSAGE`]),
    /// the members each joiner's; a key stays valid until its member leaves.
    SrtpKeys {
        room: String,
        keys: Vec<SenderKey>,
    },
    Left {
        room: String,
        reason: LeaveReason,
        /// Why, in words, when an operator did it (`KICKED`, `ROOM_CLOSED`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Userlist {
        room: String,
        users: Vec<UserInfo>,
    },
    /// With the `member_deltas` feature: how the member list changed since
    /// the last `USERLIST` or `MEMBERS_CHANGED`, coalesced (each member at
    /// most once, in its state now). `joined` and `changed` replace any
    /// entry with the same `session_id`; `left` removes one (and is ignored
    /// for one not known).
    MembersChanged {
        room: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<UserInfo>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changed: Vec<UserInfo>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<MemberGone>,
    },
    /// With `member_pages`, in a room of more than [`LARGE_ROOM`] members:
    /// how many members it has, instead of the list (on joining, when the
    /// room grows large, then on changes, coalesced).
    MemberCount {
        room: String,
        count: u32,
    },
    /// The answer to `LIST_MEMBERS`: `members` from `offset` in join order,
    /// of `count` in all.
    MemberPage {
        room: String,
        count: u32,
        offset: u32,
        members: Vec<UserInfo>,
    },
    HeartbeatAck,
    /// With `stun_integrity`: the router saw a binding move this session's
    /// media to a new address; a Binding Request from there must carry this
    /// in its NONCE attribute (once).
    MediaNonce {
        nonce: String,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
    },
    MicGranted {
        room: String,
        holder: String,
        session_id: u64,
        ssrc: u32,
        priority: u8,
        /// The talk burst is revoked after this long; 0 means no limit.
        burst_limit_ms: u64,
    },
    MicDenied {
        room: String,
        reason: DenyReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue_position: Option<u32>,
    },
    /// A queued request's position changed.
    MicQueued {
        room: String,
        queue_position: u32,
    },
    /// A queued request was withdrawn (by `MIC_RELEASE`).
    MicDequeued {
        room: String,
    },
    MicReleased {
        room: String,
        holder: String,
        session_id: u64,
        reason: ReleaseReason,
    },
    MicRevoked {
        room: String,
        holder: String,
        session_id: u64,
        reason: RevokeReason,
    },
    /// A chat message; `session_id` is absent when the operator sent it.
    Chat {
        room: String,
        /// Increasing within the room (history and live messages share the
        /// sequence); 0 when the room keeps no chat log.
        #[serde(default)]
        id: u64,
        /// Server time when the router accepted it, in ms since the Unix epoch.
        #[serde(default)]
        ts_ms: u64,
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<u64>,
        text: String,
        /// Sent to one member only (`to`), with a copy to its sender.
        #[serde(default)]
        private: bool,
        /// The recipient's nickname, for private messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Sent by an operator through the admin API (`from` is then
        /// `server`, and no member can go by that name): shown apart from
        /// members' messages.
        #[serde(default, skip_serializing_if = "is_false")]
        operator: bool,
    },
    /// The room's recent public messages, oldest first, sent once to each
    /// member on joining a room that keeps a chat log.
    ChatHistory {
        room: String,
        messages: Vec<ChatEntry>,
    },
    /// An operator muted or unmuted this member: while muted its media is
    /// dropped at the router and floor requests are denied with `MUTED`.
    Muted {
        room: String,
        muted: bool,
    },
    /// In a two-person `voice` room (a call): the second member joined and
    /// the two hear each other; sent to both, naming the other.
    CallStarted {
        room: String,
        peer: String,
        peer_session_id: u64,
    },
    /// The call ended because the other member left, for `reason`; sent to
    /// the one who stays (who may wait for a new call).
    CallEnded {
        room: String,
        peer: String,
        peer_session_id: u64,
        reason: LeaveReason,
    },
    /// Your meeting exists: share the code; you are its host. `JOINED`
    /// follows.
    MeetingCreated {
        room: String,
        code: String,
        end_with_host: bool,
    },
    /// Your join request waits for the host's decision (at most
    /// `timeout_ms`).
    JoinPending {
        room: String,
        timeout_ms: u64,
    },
    /// Your join request was accepted; `JOINED` follows.
    JoinAccepted {
        room: String,
    },
    /// Your join request was refused.
    JoinRejected {
        room: String,
        reason: RejectReason,
        message: String,
    },
    /// Host: who waits in the lobby now (sent on every change).
    Lobby {
        room: String,
        waiting: Vec<LobbyEntry>,
    },
    /// The meeting's host is now `host` (on creation, or when the previous
    /// host left: the longest-present participant).
    HostChanged {
        room: String,
        host: String,
        session_id: u64,
    },
    /// A participant's microphone and camera state.
    MediaState {
        room: String,
        nickname: String,
        session_id: u64,
        audio: bool,
        video: bool,
    },
    /// To the sender of `FILE_OFFER`: the transfer's id and who receives it.
    FileStarted {
        room: String,
        transfer_id: u64,
        receivers: Vec<String>,
        chunks: u64,
    },
    /// To receivers: a file is coming; chunks follow as `FILE_CHUNK`.
    FileOffered {
        room: String,
        transfer_id: u64,
        from: String,
        session_id: u64,
        name: String,
        size: u64,
        sha256: String,
        chunk_size: u32,
        chunks: u64,
    },
    /// A chunk of a file (bulk: may be dropped under load; the sender
    /// retransmits).
    FileChunk {
        transfer_id: u64,
        seq: u64,
        data: String,
    },
    /// To the sender: the slowest receiver has every chunk before `next_seq`.
    FileAck {
        transfer_id: u64,
        next_seq: u64,
    },
    /// To receivers: every chunk was sent; check the SHA-256.
    FileEnd {
        transfer_id: u64,
    },
    /// To the sender: one receiver's verdict.
    FileResult {
        transfer_id: u64,
        nickname: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The transfer stopped before completing.
    FileAborted {
        transfer_id: u64,
        reason: String,
    },
    /// To a video sender: send at this level (the adaptive rule moved it).
    VideoLevel {
        room: String,
        /// `144p`, `240p`, `360p`, `480p` or `720p`.
        level: String,
        height: u32,
        /// Worst fraction lost and RTT that decided it.
        fraction_lost: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f64>,
    },
    /// To a video sender: a viewer needs a keyframe (it just joined), so
    /// send one now rather than at the encoder's next interval. The router
    /// asks here, not with RTCP: in a secure room it cannot sign RTCP.
    KeyframeRequest {
        room: String,
    },
    Full {
        scope: FullScope,
        message: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    ServerClose {
        reason: String,
    },
    Goodbye,
}

/// A line that could not be turned into a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ParseError {
    pub code: ErrorCode,
    pub message: String,
}

impl ParseError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Longest request id a client may give, in characters.
pub const REQUEST_ID_MAX_CHARS: usize = 64;

/// The optional `id` of a command, echoed in everything the router sends
/// the client while handling that command (its answer, or its ERROR): an
/// unsigned integer or a string of at most [`REQUEST_ID_MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

impl RequestId {
    /// The id as it appears on the wire (`7`, `"a"`).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One control line with its request id: the id is known (and echoed)
/// even when the rest of the command is refused as a bad field.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub message: Result<ClientMessage, ParseError>,
    pub id: Option<RequestId>,
}

/// Parses one control line, telling apart bad JSON, a missing or unknown type,
/// and bad fields (the message names the field). A command's `id` is not
/// part of the message: see [`parse_client_request`].
pub fn parse_client_line(line: &[u8]) -> Result<ClientMessage, ParseError> {
    parse_client_request(line).message
}

/// Parses one control line and its optional `id`.
pub fn parse_client_request(line: &[u8]) -> Request {
    let mut value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Request {
                message: Err(ParseError::new(
                    ErrorCode::BadJson,
                    format!("invalid JSON: {e}"),
                )),
                id: None,
            };
        }
    };
    let mut id = None;
    let mut bad_id = None;
    if let Some(obj) = value.as_object_mut()
        && let Some(v) = obj.remove("id")
    {
        match serde_json::from_value::<RequestId>(v) {
            Ok(RequestId::Text(t)) if t.chars().count() > REQUEST_ID_MAX_CHARS => {
                bad_id = Some(format!(
                    "field `id`: at most {REQUEST_ID_MAX_CHARS} characters"
                ));
            }
            Ok(r) => id = Some(r),
            Err(_) => {
                bad_id = Some("field `id`: an unsigned integer or a string expected".into());
            }
        }
    }
    let mut message = parse_value(value);
    if let (Ok(m), Some(why)) = (&message, bad_id) {
        message = Err(ParseError::new(
            ErrorCode::BadField,
            format!("{}: {why}", m.type_name()),
        ));
    }
    Request { message, id }
}

fn parse_value(value: serde_json::Value) -> Result<ClientMessage, ParseError> {
    let Some(obj) = value.as_object() else {
        return Err(ParseError::new(
            ErrorCode::BadMessage,
            "a message must be a JSON object",
        ));
    };
    let Some(ty) = obj.get("type").and_then(|t| t.as_str()).map(str::to_owned) else {
        return Err(ParseError::new(
            ErrorCode::BadMessage,
            "field `type` (string) is required",
        ));
    };
    if !ClientMessage::TYPES.contains(&ty.as_str()) {
        let shown: String = ty.chars().take(40).collect();
        return Err(ParseError::new(
            ErrorCode::UnknownType,
            format!("unknown message type `{shown}`"),
        ));
    }
    serde_json::from_value(value.clone()).map_err(|e| {
        let e = e.to_string();
        let message = match (e.contains("field `"), culprit(&value)) {
            (false, Some(field)) => format!("{ty}: field `{field}`: {e}"),
            _ => format!("{ty}: {e}"),
        };
        ParseError::new(ErrorCode::BadField, message)
    })
}

/// The field a serde type error is about. Internally tagged messages lose
/// the field's name in serde's error ("invalid type: string \"1\", expected
/// u8"), so each field is tried alone beside `type`: the message then fails
/// on that field or, lacking the others, with "missing field". The one
/// that fails otherwise is it. Only on the error path, and in time linear
/// in the line (each value is looked at once).
fn culprit(value: &serde_json::Value) -> Option<String> {
    let obj = value.as_object()?;
    let ty = obj.get("type")?.clone();
    obj.iter().filter(|(k, _)| *k != "type").find_map(|(k, v)| {
        let mut alone = serde_json::Map::new();
        alone.insert("type".into(), ty.clone());
        alone.insert(k.clone(), v.clone());
        match serde_json::from_value::<ClientMessage>(serde_json::Value::Object(alone)) {
            Err(e) if !e.to_string().starts_with("missing field") => Some(k.clone()),
            _ => None,
        }
    })
}

/// The field a request id is echoed in on `line`: `id`, except on a line
/// that has an `id` of its own (CHAT, whose `id` numbers the message),
/// where it is `request_id`.
pub fn request_id_field(line: &[u8]) -> &'static str {
    if line.starts_with(br#"{"type":"CHAT","#) {
        "request_id"
    } else {
        "id"
    }
}

/// `line` (one JSON object and its newline) with its command's request id
/// added as the last field (see [`request_id_field`]).
pub fn append_request_id(line: &[u8], id: &RequestId) -> Vec<u8> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let Some(open) = body.strip_suffix(b"}") else {
        return line.to_vec();
    };
    let id = id.to_json();
    let field = request_id_field(line);
    let mut out = Vec::with_capacity(line.len() + id.len() + field.len() + 6);
    out.extend_from_slice(open);
    // `{}` has no field before the id.
    if open.len() > 1 {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(&id);
    out.extend_from_slice(b"}\n");
    out
}

/// The request id a server line carries (see [`append_request_id`]), read
/// without parsing the line when it has none.
pub fn request_id_of(line: &[u8]) -> Option<RequestId> {
    let field = request_id_field(line);
    let key = format!("\"{field}\":");
    // A key inside a string value would have its quotes escaped.
    line.windows(key.len())
        .any(|w| w == key.as_bytes())
        .then_some(())?;
    #[derive(Deserialize)]
    struct Id {
        id: Option<RequestId>,
        request_id: Option<RequestId>,
    }
    let ids: Id = serde_json::from_slice(line).ok()?;
    if field == "id" {
        ids.id
    } else {
        ids.request_id
    }
}

/// Serializes a message as one line, newline included.
pub fn to_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no
    // custom serializers.
    let mut out = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// Checks a nickname against the rules in `docs/protocol.md`: 1–32 characters,
/// letters, digits, space, `_`, `-`, `.`; no leading or trailing space.
pub fn validate_nickname(nick: &str) -> Result<(), String> {
    let n = nick.chars().count();
    if !(NICKNAME_MIN_CHARS..=NICKNAME_MAX_CHARS).contains(&n) {
        return Err(format!(
            "nickname must have {NICKNAME_MIN_CHARS} to {NICKNAME_MAX_CHARS} characters, got {n}"
        ));
    }
    if nick.starts_with(' ') || nick.ends_with(' ') {
        return Err("nickname must not start or end with a space".into());
    }
    if let Some(c) = nick
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.')))
    {
        return Err(format!("nickname may not contain {c:?}"));
    }
    Ok(())
}

/// Checks a room name: 1–64 characters, letters, digits, `_`, `-`, `.`.
/// For `skip_serializing_if`: optional flags are left out when false.
fn is_false(b: &bool) -> bool {
    !*b
}

pub fn validate_room_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > ROOM_NAME_MAX_CHARS {
        return Err(format!(
            "room name must have 1 to {ROOM_NAME_MAX_CHARS} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!("room name may not contain {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_messages() {
        assert_eq!(
            parse_client_line(br#"{"type":"HELLO","version":1,"nickname":"ann"}"#),
            Ok(ClientMessage::Hello {
                version: 1,
                nickname: "ann".into(),
                token: None,
                features: vec![],
                resume: None,
            })
        );
        assert_eq!(
            parse_client_line(br#"{"type":"MIC_REQUEST"}"#),
            Ok(ClientMessage::MicRequest { priority: 0 })
        );
        assert_eq!(
            parse_client_line(br#"{"type":"LEAVE","extra":true}"#),
            Ok(ClientMessage::Leave)
        );
    }

    #[test]
    fn classifies_bad_lines() {
        let code = |l: &[u8]| parse_client_line(l).map_err(|e| e.code).err();
        assert_eq!(code(br#"{"type":"HELLO""#), Some(ErrorCode::BadJson));
        assert_eq!(code(b"\xff\xfe\x00"), Some(ErrorCode::BadJson));
        assert_eq!(code(b"[1,2]"), Some(ErrorCode::BadMessage));
        assert_eq!(code(br#"{"kind":"HELLO"}"#), Some(ErrorCode::BadMessage));
        assert_eq!(code(br#"{"type":7}"#), Some(ErrorCode::BadMessage));
        assert_eq!(code(br#"{"type":"DANCE"}"#), Some(ErrorCode::UnknownType));
        assert_eq!(code(br#"{"type":"JOIN"}"#), Some(ErrorCode::BadField));
        assert_eq!(
            code(br#"{"type":"JOIN","room":5}"#),
            Some(ErrorCode::BadField)
        );
        assert_eq!(
            code(br#"{"type":"MIC_REQUEST","priority":300}"#),
            Some(ErrorCode::BadField)
        );
        let e = parse_client_line(br#"{"type":"JOIN"}"#)
            .err()
            .map(|e| e.message);
        assert!(
            e.is_some_and(|m| m.contains("room")),
            "message names the field"
        );
    }

    #[test]
    fn every_bad_field_error_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"type":"HELLO","version":"1","nickname":"a"}"#,
                "version",
            ),
            (r#"{"type":"HELLO","version":1,"nickname":5}"#, "nickname"),
            (
                r#"{"type":"HELLO","version":1,"nickname":"a","features":"x"}"#,
                "features",
            ),
            (r#"{"type":"HELLO","version":1}"#, "nickname"),
            (r#"{"type":"JOIN","room":5}"#, "room"),
            (r#"{"type":"MIC_REQUEST","priority":"1"}"#, "priority"),
            (r#"{"type":"MIC_REQUEST","priority":300}"#, "priority"),
            (r#"{"type":"CHAT","text":1}"#, "text"),
            (r#"{"type":"CHAT","text":"hi","to":5}"#, "to"),
            (
                r#"{"type":"CREATE_MEETING","end_with_host":"yes"}"#,
                "end_with_host",
            ),
            (r#"{"type":"CREATE_ROOM","room":1,"kind":"ptt"}"#, "room"),
            (
                r#"{"type":"CREATE_ROOM","room":"a","kind":"ptt","max_participants":-1}"#,
                "max_participants",
            ),
            (
                r#"{"type":"CREATE_ROOM","room":"a","kind":"ptt","options":3}"#,
                "options",
            ),
            (r#"{"type":"REQUEST_JOIN","code":123456}"#, "code"),
            (r#"{"type":"ALLOW_JOIN","session_id":"a"}"#, "session_id"),
            (
                r#"{"type":"DENY_JOIN","session_id":1,"reason":5}"#,
                "reason",
            ),
            (
                r#"{"type":"MEDIA_STATE","audio":"on","video":true}"#,
                "audio",
            ),
            (r#"{"type":"MEDIA_STATE","audio":true}"#, "video"),
            (r#"{"type":"MUTE","nickname":"a","muted":"x"}"#, "muted"),
            (r#"{"type":"REMOVE","nickname":[]}"#, "nickname"),
            (
                r#"{"type":"FILE_OFFER","name":"f","size":"big","sha256":"x","chunk_size":1024}"#,
                "size",
            ),
            (
                r#"{"type":"FILE_OFFER","name":"f","size":1,"sha256":"x","chunk_size":-1}"#,
                "chunk_size",
            ),
            (
                r#"{"type":"FILE_CHUNK","transfer_id":"x","seq":0,"data":""}"#,
                "transfer_id",
            ),
            (
                r#"{"type":"FILE_CHUNK","transfer_id":1,"seq":-1,"data":""}"#,
                "seq",
            ),
            (
                r#"{"type":"FILE_CHUNK","transfer_id":1,"seq":0,"data":1}"#,
                "data",
            ),
            (
                r#"{"type":"FILE_ACK","transfer_id":1,"next_seq":"x"}"#,
                "next_seq",
            ),
            (r#"{"type":"FILE_END","transfer_id":null}"#, "transfer_id"),
            (r#"{"type":"FILE_RESULT","transfer_id":1,"ok":"y"}"#, "ok"),
            (
                r#"{"type":"FILE_CANCEL","transfer_id":1,"reason":1}"#,
                "reason",
            ),
            (r#"{"type":"VIDEO_STATS","reports":"x"}"#, "reports"),
            (r#"{"type":"BYE","reason":5}"#, "reason"),
            (r#"{"type":"LIST_MEMBERS","offset":-1}"#, "offset"),
            (r#"{"type":"LIST_MEMBERS","limit":"x"}"#, "limit"),
        ];
        for (line, field) in cases {
            match parse_client_line(line.as_bytes()) {
                Err(e) => {
                    assert_eq!(e.code, ErrorCode::BadField, "{line}");
                    assert!(
                        e.message.contains(&format!("`{field}`")),
                        "{line}: {}",
                        e.message
                    );
                }
                Ok(m) => panic!("{line} parsed: {m:?}"),
            }
        }
        // Junk keys beside the bad one do not hide it, nor cost without bound.
        let mut junk: String = (0..10_000).map(|i| format!(r#""k{i}":{i},"#)).collect();
        junk.insert_str(0, r#"{"type":"JOIN","room":5,"#);
        junk.push_str(r#""z":0}"#);
        let e = parse_client_line(junk.as_bytes()).err();
        assert!(e.is_some_and(|e| e.code == ErrorCode::BadField && e.message.contains("`room`")));
    }

    #[test]
    fn nickname_rules() {
        assert!(validate_nickname("Ann-1.b_c d").is_ok());
        assert!(validate_nickname("Zoë").is_ok());
        assert!(validate_nickname("").is_err());
        assert!(validate_nickname(" ann").is_err());
        assert!(validate_nickname("a\nb").is_err());
        assert!(validate_nickname("<script>").is_err());
        assert!(validate_nickname(&"x".repeat(33)).is_err());
        assert!(validate_nickname(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn server_messages_roundtrip_with_screaming_tags() {
        let m = ServerMessage::MicDenied {
            room: "lobby".into(),
            reason: DenyReason::Queued,
            holder: Some("ann".into()),
            queue_position: Some(1),
        };
        let line = to_line(&m);
        let text = String::from_utf8_lossy(&line);
        assert!(text.contains(r#""type":"MIC_DENIED""#), "{text}");
        assert!(text.contains(r#""reason":"QUEUED""#), "{text}");
        let back: ServerMessage = serde_json::from_slice(&line)
            .ok()
            .unwrap_or(ServerMessage::Goodbye);
        assert_eq!(back, m);
    }

    #[test]
    fn a_chat_copy_carries_its_request_id_beside_its_own_id() {
        let chat = ServerMessage::Chat {
            room: "r".into(),
            id: 41,
            ts_ms: 5,
            from: "ann".into(),
            session_id: Some(2),
            text: "\"id\": 3}".into(),
            private: false,
            to: None,
            operator: false,
        };
        let line = append_request_id(&to_line(&chat), &RequestId::Text("c1".into()));
        let back: ServerMessage = serde_json::from_slice(&line).unwrap_or(ServerMessage::Goodbye);
        assert_eq!(back, chat, "{}", String::from_utf8_lossy(&line));
        assert_eq!(request_id_of(&line), Some(RequestId::Text("c1".into())));
        // Elsewhere the field is `id`; a line without one has none.
        let err = ServerMessage::Error {
            code: ErrorCode::NotInRoom,
            message: "\"id\":9".into(),
        };
        let plain = to_line(&err);
        assert_eq!(request_id_of(&plain), None);
        assert_eq!(request_id_of(&to_line(&chat)), None);
        let tagged = append_request_id(&plain, &RequestId::Number(7));
        assert!(tagged.ends_with(b",\"id\":7}\n"));
        assert_eq!(request_id_of(&tagged), Some(RequestId::Number(7)));
        // The operator flag is only written when set (lines stay as they were).
        assert!(!String::from_utf8_lossy(&to_line(&chat)).contains("operator"));
    }
}
