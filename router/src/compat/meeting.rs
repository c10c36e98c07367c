//! Seed 002, meetings (docs/compat.md): TCP frames of a 4-byte big-endian
//! length and a JSON object with a `type`; the client makes a meeting
//! (`CREATE_MEETING`) or asks to join one by its code (`REQUEST_JOIN`) and
//! the host admits it, as native clients do; chat, files, camera state.
//! Media on one UDP port from unbound sockets, known by source IP: audio as
//! a 19-byte header + 1,024 samples at 16 kHz, video as a 40-byte header +
//! one JPEG frame, re-framed into the room's RTP L16 and RTP JPEG (RFC 2435)
//! and back.
//!
//! Files: the seed announces its MD5 at the end, native offers carry a
//! SHA-256 first. The front-end holds a seed client's file until its
//! FILE_END (acknowledging each chunk as the seed expects), checks the MD5,
//! and then offers it to the meeting like a native sender; a native file to
//! a seed client is passed on as it arrives, re-cut into the seed's
//! 8,192-byte chunks, with the MD5 the seed checks at the end and the
//! SHA-256 the native sender is told.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use md5::Digest as _;
use plugin_api::{FileOffer, Notice, RoomCommand, SessionId};
use proto::control::ErrorCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{Instrument, info_span};

use super::gateway::{Leg, Media, Mixer, SEED_DATAGRAM};
use super::jpeg::{self, Depacketizer};
use super::{
    Bound, Context, Link, NAME_TRIES, Refusal, Welcome, ended, numbered, sanitize_nickname,
};
use crate::engine::{Command, SessionCommand, SessionNotice, Told};

/// The largest control frame a client may send (a file chunk's base64 is
/// about 11 KiB).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Frames that are no JSON object, or not the seed's, before a close.
pub const MAX_BAD_FRAMES: usize = 16;
/// Frames waiting to be written to a client before it is too slow.
pub const MAX_QUEUED_FRAMES: usize = 4096;
/// The seed's file chunk: the receiver writes chunk i at i × 8,192.
pub const FILE_CHUNK: usize = 8192;
/// Files one client may be sending (held here) at once.
pub const MAX_UPLOADS: usize = 4;
/// The largest file held for a seed sender when the meeting says nothing.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// Audio: `!IQHBi` header + 1,024 samples at 16 kHz (64 ms).
pub const AUDIO_HEADER: usize = 19;
pub const AUDIO_SAMPLES: usize = 1024;
const AUDIO_TIME: Duration = Duration::from_millis(64);
/// Video: `!IQIHHi16s` header + one JPEG frame.
pub const VIDEO_HEADER: usize = 40;
/// RTP JPEG payload per packet, within the router's 1,500-byte datagrams.
pub const VIDEO_PAYLOAD: usize = 1200;
/// Frames of a talker's audio a receiver's mixer holds at most (256 ms).
const MIX_FRAMES: usize = 4;
/// Chunks of a file in flight to the meeting, and how long without an
/// acknowledgement before they are sent again.
const FILE_WINDOW: u64 = 16;
const FILE_RESEND: Duration = Duration::from_secs(1);

/// What the front-end shares between its sessions.
struct Front {
    codec: &'static proto::codec::Codec,
    media: Arc<UdpSocket>,
    /// Each client's IP → its session's leg.
    sources: Mutex<HashMap<IpAddr, Arc<Leg>>>,
}

pub async fn run(bound: Bound, ctx: Context) {
    let (config, listener, media) = bound.into_parts();
    let Some(media) = media else { return };
    let Some(codec) = proto::codec::audio(config.seed.codec()) else {
        return;
    };
    let front = Arc::new(Front {
        codec,
        media,
        sources: Mutex::new(HashMap::new()),
    });
    let media_task = tokio::spawn(media_in(front.clone()));
    let mut acceptor = crate::driver::accept::Acceptor::new(listener, "seed meeting");
    loop {
        let (stream, peer) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            Session::run(stream, peer, front.clone(), ctx.clone())
                .instrument(info_span!("seed-meeting", %peer)),
        );
        if media_task.is_finished() {
            return;
        }
    }
}

/// One datagram from a client, by its header.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    Audio(&'a [u8]),
    Video(&'a [u8]),
    Other,
}

/// Tells a seed datagram's kind by its header (both kinds come to one port).
pub fn classify(d: &[u8]) -> Datagram<'_> {
    let be32 = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if d.len() >= AUDIO_HEADER {
        let rate = u16::from_be_bytes([d[12], d[13]]);
        let size = be32(&d[15..19]);
        if rate == 16_000 && d[14] == 1 && size as usize == d.len() - AUDIO_HEADER && size > 0 {
            return Datagram::Audio(&d[AUDIO_HEADER..]);
        }
    }
    if d.len() > VIDEO_HEADER + 2 {
        let size = be32(&d[20..24]);
        if size as usize == d.len() - VIDEO_HEADER && d[VIDEO_HEADER..].starts_with(&[0xFF, 0xD8]) {
            return Datagram::Video(&d[VIDEO_HEADER..]);
        }
    }
    Datagram::Other
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// An audio datagram to a client.
pub fn audio_datagram(audio_id: u32, pcm: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(AUDIO_HEADER + pcm.len());
    d.extend_from_slice(&audio_id.to_be_bytes());
    d.extend_from_slice(&micros_now().to_be_bytes());
    d.extend_from_slice(&16_000u16.to_be_bytes());
    d.push(1);
    d.extend_from_slice(&(pcm.len() as i32).to_be_bytes());
    d.extend_from_slice(pcm);
    d
}

/// A video datagram to a client: `sender`'s frame, named in 16 bytes.
pub fn video_datagram(frame_id: u32, sequence: u32, sender: &str, jpeg: &[u8]) -> Option<Vec<u8>> {
    let f = jpeg::parse(jpeg).ok()?;
    if VIDEO_HEADER + jpeg.len() > SEED_DATAGRAM {
        return None;
    }
    let mut d = Vec::with_capacity(VIDEO_HEADER + jpeg.len());
    d.extend_from_slice(&frame_id.to_be_bytes());
    d.extend_from_slice(&micros_now().to_be_bytes());
    d.extend_from_slice(&sequence.to_be_bytes());
    d.extend_from_slice(&f.width.to_be_bytes());
    d.extend_from_slice(&f.height.to_be_bytes());
    d.extend_from_slice(&(jpeg.len() as i32).to_be_bytes());
    let mut name = [0u8; 16];
    let mut cut = sender.len().min(16);
    while !sender.is_char_boundary(cut) {
        cut -= 1;
    }
    name[..cut].copy_from_slice(&sender.as_bytes()[..cut]);
    d.extend_from_slice(&name);
    d.extend_from_slice(jpeg);
    Some(d)
}

/// Clients' media into their legs, by source IP.
async fn media_in(front: Arc<Front>) {
    let mut buf = vec![0u8; SEED_DATAGRAM + 1];
    loop {
        let Ok((n, from)) = front.media.recv_from(&mut buf).await else {
            continue;
        };
        let Some(leg) = front
            .sources
            .lock()
            .ok()
            .and_then(|s| s.get(&from.ip()).cloned())
        else {
            continue;
        };
        match classify(&buf[..n]) {
            Datagram::Audio(pcm) => leg.send_pcm(pcm, Instant::now()),
            Datagram::Video(frame) => match jpeg::packetize(frame, VIDEO_PAYLOAD) {
                Ok(payloads) => leg.send_video(&payloads),
                Err(e) => tracing::debug!(%e, "a seed video frame RFC 2435 cannot carry"),
            },
            Datagram::Other => {}
        }
    }
}

/// Splits the client's stream into frames.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
}

/// One frame's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(Value),
    /// Not a JSON object.
    Bad,
    /// Longer than [`MAX_FRAME_BYTES`]: the stream cannot go on.
    TooLong,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        let len = u32::from_be_bytes(self.buf.get(..4)?.try_into().ok()?) as usize;
        if len > MAX_FRAME_BYTES {
            return Some(Frame::TooLong);
        }
        let body = self.buf.get(4..4 + len)?;
        let f = match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.is_object() => Frame::Message(v),
            _ => Frame::Bad,
        };
        self.buf.drain(..4 + len);
        Some(f)
    }
}

/// A message as the seed frames it.
pub fn frame(v: &Value) -> Vec<u8> {
    let body = v.to_string();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body.as_bytes());
    out
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A file a seed client is sending, held until its FILE_END.
#[derive(Debug)]
struct Upload {
    to: Option<String>,
    name: String,
    size: u64,
    data: Vec<u8>,
}

/// A held file being sent into the meeting as a native sender would.
#[derive(Debug)]
struct Sending {
    data: Vec<u8>,
    chunks: u64,
    next: u64,
    acked: u64,
    dups: u32,
    progress: Instant,
}

/// A native file passing to this seed client.
struct Download {
    from: String,
    size: u64,
    sha256: String,
    next_seq: u64,
    received: u64,
    pending: Vec<u8>,
    chunk_id: u64,
    md5: md5::Md5,
    sha: sha2::Sha256,
}

struct Session {
    peer: SocketAddr,
    front: Arc<Front>,
    ctx: Context,
    out: mpsc::Sender<Vec<u8>>,
    link: Option<Link>,
    welcome: Option<Welcome>,
    me: Option<SessionId>,
    /// In a meeting (JOINED and not left).
    room: Option<String>,
    /// A guest's JOIN_ACCEPTED waits for JOINED (its codec checked).
    accepted: bool,
    host: Option<SessionId>,
    /// Who it was told is in the meeting.
    members: Vec<(SessionId, String)>,
    /// Video SSRC → nickname, for the sender name of video.
    video_names: HashMap<u32, String>,
    /// Waiting guests it was told of, by name.
    lobby: HashMap<String, SessionId>,
    leg: Option<Arc<Leg>>,
    /// Its registered (video, audio) ports.
    ports: Option<(u16, u16)>,
    audio_id: u32,
    video_seq: u32,
    frame_ids: HashMap<u32, u32>,
    mixer: Mixer,
    depack: HashMap<u32, Depacketizer>,
    uploads: HashMap<String, Upload>,
    offers: VecDeque<Upload>,
    /// The offer sent and not yet answered.
    offered: Option<Upload>,
    sending: HashMap<u64, Sending>,
    downloads: HashMap<u64, Download>,
    max_file_bytes: u64,
    bad: usize,
}

/// How a session ended.
type Why = &'static str;

impl Session {
    async fn run(stream: TcpStream, peer: SocketAddr, front: Arc<Front>, ctx: Context) {
        let (mut rd, mut wr) = stream.into_split();
        let (out, mut queued) = mpsc::channel::<Vec<u8>>(MAX_QUEUED_FRAMES);
        let writer = tokio::spawn(async move {
            while let Some(f) = queued.recv().await {
                match tokio::time::timeout(Duration::from_secs(10), wr.write_all(&f)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            let _ = wr.shutdown().await;
        });
        let mut s = Session {
            peer,
            front,
            ctx,
            out,
            link: None,
            welcome: None,
            me: None,
            room: None,
            accepted: false,
            host: None,
            members: Vec::new(),
            video_names: HashMap::new(),
            lobby: HashMap::new(),
            leg: None,
            ports: None,
            audio_id: 0,
            video_seq: 0,
            frame_ids: HashMap::new(),
            mixer: Mixer::new(AUDIO_SAMPLES, AUDIO_TIME, MIX_FRAMES),
            depack: HashMap::new(),
            uploads: HashMap::new(),
            offers: VecDeque::new(),
            offered: None,
            sending: HashMap::new(),
            downloads: HashMap::new(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            bad: 0,
        };
        let why = s.serve(&mut rd).await;
        s.leave_media();
        if let Some(link) = s.link.take() {
            link.close().await;
        }
        drop(s);
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        ended(why);
    }

    fn say(&mut self, v: Value) -> bool {
        self.out.try_send(frame(&v)).is_ok()
    }

    async fn serve(&mut self, rd: &mut tokio::net::tcp::OwnedReadHalf) -> Why {
        let mut frames = Frames::default();
        let mut read = vec![0u8; 16 * 1024];
        let mut heard = vec![0u8; 2048];
        let mut audio_tick = tokio::time::interval(AUDIO_TIME);
        audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut file_tick = tokio::time::interval(Duration::from_millis(250));
        // The router's heartbeat interval, once a session has said HELLO.
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        loop {
            while let Some(f) = frames.next_frame() {
                match f {
                    Frame::Message(v) => {
                        if let Err(why) = self.on_message(&v).await {
                            return why;
                        }
                    }
                    Frame::Bad => self.bad += 1,
                    Frame::TooLong => return "a frame over 64 KiB",
                }
            }
            if self.bad > MAX_BAD_FRAMES {
                return "too many bad frames";
            }
            if self.out.is_closed() {
                return "its writes stalled";
            }
            tokio::select! {
                biased;
                told = next_told(&mut self.link) => {
                    let Some(told) = told else { return "closed by the router" };
                    if let Err(why) = self.on_told(&told).await {
                        return why;
                    }
                }
                r = rd.read(&mut read) => match r {
                    Ok(n) if n > 0 => frames.push(&read[..n]),
                    _ => return "the client closed",
                },
                m = recv_media(&self.leg, &mut heard) => self.on_media(m).await,
                _ = audio_tick.tick() => {
                    if let (Some(frame), Some((_, port))) = (self.mixer.tick(Instant::now()), self.ports) {
                        let d = audio_datagram(self.audio_id, &frame);
                        self.audio_id = self.audio_id.wrapping_add(1);
                        let _ = self.front.media.try_send_to(&d, SocketAddr::new(self.peer.ip(), port));
                    }
                }
                _ = file_tick.tick() => self.resend_stalled().await,
                _ = heartbeat.tick() => {
                    let due = self.welcome.as_ref().map(|w| w.heartbeat_interval);
                    if let Some(every) = due.filter(|d| heartbeat.period() != *d) {
                        heartbeat = tokio::time::interval(every);
                    }
                    if let Some(link) = &self.link {
                        let _ = link.send("HEARTBEAT", Command::Session(SessionCommand::Heartbeat)).await;
                    }
                }
            }
        }
    }

    async fn send(&self, name: &'static str, command: Command) {
        if let Some(link) = &self.link {
            let _ = link.send(name, command).await;
        }
    }

    async fn room_command(&self, name: &'static str, c: RoomCommand) {
        self.send(name, Command::Room(c)).await;
    }

    /// A session for `wanted` that has said `command` and been answered by
    /// `pick`; names taken in the meeting get `-2`, `-3`, ...
    async fn enter(
        &mut self,
        wanted: &str,
        name: &'static str,
        command: SessionCommand,
        mut pick: impl FnMut(&Told) -> bool,
    ) -> Result<(), Refusal> {
        if let Some(old) = self.link.take() {
            old.close().await;
        }
        let base = sanitize_nickname(wanted);
        for n in 1..=NAME_TRIES {
            let Some(mut link) = Link::open(&self.ctx.engine, self.peer).await else {
                break;
            };
            let welcome = match link.hello(&numbered(&base, n)).await {
                Ok(w) => w,
                Err(r) => {
                    link.close().await;
                    return Err(r);
                }
            };
            let _ = link.send(name, Command::Session(command.clone())).await;
            self.me = Some(link.session);
            match link.expect_told(&mut pick).await {
                Ok(()) => {
                    self.link = Some(link);
                    self.welcome = Some(welcome);
                    return Ok(());
                }
                Err(r) if r.code == Some(ErrorCode::NicknameTaken) && n < NAME_TRIES => {
                    link.close().await;
                }
                Err(r) => {
                    // The session stays, as the seed's did after a refusal.
                    self.link = Some(link);
                    self.welcome = Some(welcome);
                    return Err(r);
                }
            }
        }
        Err(Refusal {
            code: None,
            message: "the router is stopping".into(),
        })
    }

    async fn on_message(&mut self, v: &Value) -> Result<(), Why> {
        let Some(kind) = text(v, "type") else {
            self.bad += 1;
            return Ok(());
        };
        match kind {
            "CREATE_MEETING" if self.room.is_none() => {
                let name = text(v, "name").unwrap_or("host").to_owned();
                let command = SessionCommand::CreateMeeting {
                    end_with_host: false,
                    codec: Some(self.front.codec.name.to_owned()),
                };
                let r = self
                    .enter(&name, "CREATE_MEETING", command, |t| {
                        matches!(t, Told::Session(SessionNotice::MeetingCreated { .. }))
                    })
                    .await;
                match r {
                    // MEETING_CREATED is rendered from the notice, held.
                    Ok(()) => {}
                    Err(r) => tracing::debug!(message = %r.message, "CREATE_MEETING refused"),
                }
            }
            "REQUEST_JOIN" if self.room.is_none() => {
                let name = text(v, "name").unwrap_or("guest").to_owned();
                let code = match v.get("meeting_code") {
                    Some(Value::String(c)) => c.trim().to_owned(),
                    Some(Value::Number(n)) => format!("{n:0>6}"),
                    _ => String::new(),
                };
                let command = SessionCommand::RequestJoin { code };
                let r = self
                    .enter(&name, "REQUEST_JOIN", command, |t| {
                        matches!(
                            t,
                            Told::Room {
                                notice: Notice::JoinPending { .. },
                                ..
                            } | Told::Session(
                                SessionNotice::Joined { .. }
                                    | SessionNotice::JoinAccepted { .. }
                                    | SessionNotice::JoinRejected { .. }
                            )
                        )
                    })
                    .await;
                match r {
                    Ok(()) => {}
                    Err(r) => {
                        let reason = match r.code {
                            Some(ErrorCode::UnknownMeeting) => "no meeting has this code".into(),
                            _ => r.message,
                        };
                        self.say(json!({"type": "JOIN_REJECTED", "reason": reason}));
                    }
                }
            }
            "ALLOW_JOIN" | "DENY_JOIN" => {
                let who = text(v, "client_name").unwrap_or_default();
                let Some(&session) = self.lobby.get(who) else {
                    return Ok(());
                };
                let admit = kind == "ALLOW_JOIN";
                self.room_command(
                    if admit { "ALLOW_JOIN" } else { "DENY_JOIN" },
                    RoomCommand::LobbyAnswer {
                        session,
                        admit,
                        reason: (!admit).then(|| "the host declined".to_owned()),
                    },
                )
                .await;
            }
            "CHAT" => {
                let text_ = text(v, "message").unwrap_or_default().to_owned();
                let to = text(v, "target_name")
                    .filter(|t| !t.is_empty() && *t != "Everyone")
                    .map(str::to_owned);
                self.room_command("CHAT", RoomCommand::Chat { text: text_, to })
                    .await;
            }
            "CAMERA_STATUS" => {
                let video = v.get("enabled").and_then(Value::as_bool).unwrap_or(true);
                self.room_command(
                    "CAMERA_STATUS",
                    RoomCommand::MediaState { audio: true, video },
                )
                .await;
            }
            "REGISTER_UDP" => {
                let port = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_u64)
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p != 0)
                };
                if let (Some(video), Some(audio)) = (port("video_port"), port("audio_port")) {
                    self.ports = Some((video, audio));
                } else {
                    self.bad += 1;
                }
            }
            "HEARTBEAT" => {
                let ts = v.get("timestamp").cloned().unwrap_or(Value::Null);
                self.say(json!({"type": "HEARTBEAT_ACK", "timestamp": ts}));
            }
            "VIDEO_STATS" => {} // the seed adapts its own video; see docs/compat.md
            "LEAVE" => {
                self.send("LEAVE", Command::Session(SessionCommand::Leave))
                    .await;
            }
            "FILE_START" => self.file_start(v),
            "FILE_CHUNK" => self.file_chunk(v),
            "FILE_END" => self.file_end(v).await,
            "FILE_ACK" => {} // chunks to it were acknowledged as they went
            // Making or joining a second meeting while in one.
            "CREATE_MEETING" | "REQUEST_JOIN" => {}
            _ => self.bad += 1,
        }
        Ok(())
    }

    async fn on_told(&mut self, told: &Told) -> Result<(), Why> {
        match told {
            Told::Session(n) => self.on_session_notice(n).await,
            Told::Room { notice, .. } => self.on_notice(notice).await,
        }
    }

    async fn on_session_notice(&mut self, n: &SessionNotice) -> Result<(), Why> {
        match n {
            SessionNotice::MeetingCreated { code, .. } => {
                self.say(json!({"type": "MEETING_CREATED", "meeting_code": code}));
            }
            SessionNotice::JoinAccepted { .. } => self.accepted = true,
            SessionNotice::JoinRejected { message, .. } => {
                self.say(json!({"type": "JOIN_REJECTED", "reason": message}));
            }
            SessionNotice::Joined {
                room,
                udp_port,
                settings,
                ..
            } => self.joined(room, *udp_port, settings).await,
            SessionNotice::Members { users, .. } => {
                let now: Vec<(SessionId, String)> = users
                    .iter()
                    .map(|u| (u.session_id, u.nickname.clone()))
                    .collect();
                for u in users {
                    self.video_names.insert(u.ssrcs.video, u.nickname.clone());
                }
                self.members_now(now);
            }
            SessionNotice::Left { reason, .. } => {
                let was_in = self.room.take().is_some();
                self.leave_media();
                self.members.clear();
                self.lobby.clear();
                use proto::control::LeaveReason as R;
                // Removed by the host or an operator, or the meeting
                // ended: the seed has no message for it; its connection
                // closes.
                if was_in && !matches!(reason, R::Left) {
                    return Err("taken out of its meeting");
                }
            }
            // The file offer waiting for its answer was refused.
            SessionNotice::Refused { code, message }
                if self.offered.is_some()
                    && matches!(
                        code,
                        ErrorCode::BadFile | ErrorCode::RateLimited | ErrorCode::UnknownParticipant
                    ) =>
            {
                self.offered = None;
                tracing::debug!(%message, "a seed file offer was refused");
                self.next_offer().await;
            }
            SessionNotice::ServerClose { .. } | SessionNotice::Goodbye => {
                return Err("the router closes");
            }
            _ => {}
        }
        Ok(())
    }

    async fn joined(&mut self, room: &str, udp_port: u16, settings: &plugin_api::Options) {
        let codec = settings
            .get("codec")
            .and_then(Value::as_str)
            .unwrap_or(proto::codec::DEFAULT);
        if codec != self.front.codec.name {
            self.send("LEAVE", Command::Session(SessionCommand::Leave))
                .await;
            self.say(json!({
                "type": "JOIN_REJECTED",
                "reason": format!(
                    "this meeting's audio is {codec}; seed clients need a meeting made with codec {}",
                    self.front.codec.name
                ),
            }));
            return;
        }
        if let Some(mb) = settings.get("max_file_mb").and_then(Value::as_u64) {
            self.max_file_bytes = mb << 20;
        }
        self.room = Some(room.to_owned());
        if std::mem::take(&mut self.accepted) {
            self.say(json!({"type": "JOIN_ACCEPTED"}));
        }
        let (Some(link), Some(welcome)) = (&self.link, &self.welcome) else {
            return;
        };
        if let Some(leg) = self
            .ctx
            .leg(link, welcome, udp_port, self.front.codec)
            .await
        {
            let leg = Arc::new(leg);
            if let Ok(mut s) = self.front.sources.lock() {
                s.insert(self.peer.ip(), leg.clone());
            }
            self.leg = Some(leg);
        }
    }

    fn leave_media(&mut self) {
        if let Some(leg) = self.leg.take()
            && let Ok(mut s) = self.front.sources.lock()
            && s.get(&self.peer.ip()).is_some_and(|l| Arc::ptr_eq(l, &leg))
        {
            s.remove(&self.peer.ip());
        }
    }

    /// PARTICIPANT_JOINED / PARTICIPANT_LEFT for how the list changed: on
    /// its own entry, one per member already there, then itself.
    fn members_now(&mut self, now: Vec<(SessionId, String)>) {
        if self.room.is_none() {
            return;
        }
        let me = self.me;
        let first = self.members.is_empty();
        let is_host = |s: SessionId, host: Option<SessionId>| host == Some(s);
        for (s, name) in &self.members {
            if !now.iter().any(|(t, _)| t == s) {
                let m = json!({"type": "PARTICIPANT_LEFT", "participant_name": name});
                let _ = self.out.try_send(frame(&m));
            }
        }
        let mut new: Vec<&(SessionId, String)> = now
            .iter()
            .filter(|(s, _)| !self.members.iter().any(|(t, _)| t == s))
            .collect();
        if first {
            // The host that made the meeting is not told of itself.
            if self.host == me && now.len() == 1 {
                new.clear();
            }
            new.sort_by_key(|(s, _)| Some(*s) == me);
        }
        for (s, name) in new {
            let m = json!({
                "type": "PARTICIPANT_JOINED",
                "participant_name": name,
                "is_host": is_host(*s, self.host),
            });
            let _ = self.out.try_send(frame(&m));
        }
        self.members = now;
    }

    async fn on_notice(&mut self, n: &Notice) -> Result<(), Why> {
        match n {
            Notice::HostChanged { session, .. } => self.host = Some(*session),
            Notice::LobbyWaiting { waiting } => {
                let mut now = HashMap::new();
                for w in waiting {
                    if !self.lobby.contains_key(&w.nickname) {
                        self.say(json!({
                            "type": "NEW_JOIN_REQUEST",
                            "client_name": w.nickname,
                            "client_socket_id": w.session,
                        }));
                    }
                    now.insert(w.nickname.clone(), w.session);
                }
                self.lobby = now;
            }
            Notice::JoinPending { .. } => {
                self.say(json!({
                    "type": "JOIN_PENDING",
                    "message": "waiting for the host to let you in",
                }));
            }
            Notice::ChatPosted { line, to } => {
                self.say(json!({
                    "type": "CHAT_BROADCAST",
                    "sender_name": line.from,
                    "message": line.text,
                    "is_private": to.is_some(),
                }));
            }
            Notice::MediaState {
                session,
                nickname,
                video,
                ..
            } if Some(*session) != self.me => {
                self.say(json!({
                    "type": "CAMERA_STATUS_BROADCAST",
                    "participant_name": nickname,
                    "enabled": video,
                }));
            }
            Notice::RoomClosed { .. } => return Err("the meeting closed"),
            Notice::FileStarted {
                transfer, chunks, ..
            } => self.file_started(*transfer, *chunks).await,
            Notice::FileAcked { transfer, next_seq } => self.file_acked(*transfer, *next_seq).await,
            Notice::FileAborted { transfer, .. } => {
                self.sending.remove(transfer);
                self.downloads.remove(transfer);
            }
            Notice::FileOffered {
                transfer,
                from,
                name,
                size,
                sha256,
                ..
            } => {
                self.file_offered(*transfer, from, name, *size, sha256)
                    .await
            }
            Notice::FileChunk {
                transfer,
                seq,
                data,
            } => self.file_chunk_in(*transfer, *seq, data).await,
            Notice::FileEnded { transfer } => self.file_ended(*transfer).await,
            _ => {}
        }
        Ok(())
    }

    async fn on_media(&mut self, m: std::io::Result<Media>) {
        match m {
            Ok(Media::Audio(h)) => self.mixer.push(h.ssrc, &h.pcm, Instant::now()),
            Ok(Media::Video {
                ssrc,
                ts,
                marker,
                payload,
            }) => {
                let d = self.depack.entry(ssrc).or_default();
                let Some(jpeg) = d.push(ts, marker, &payload) else {
                    return;
                };
                let Some((video_port, _)) = self.ports else {
                    return;
                };
                let name = self.video_names.get(&ssrc).cloned().unwrap_or_default();
                let id = self.frame_ids.entry(ssrc).or_insert(0);
                if let Some(d) = video_datagram(*id, self.video_seq, &name, &jpeg) {
                    *id = id.wrapping_add(1);
                    self.video_seq = self.video_seq.wrapping_add(1);
                    let to = SocketAddr::new(self.peer.ip(), video_port);
                    let _ = self.front.media.try_send_to(&d, to);
                }
            }
            Err(_) => {
                self.leave_media();
            }
        }
    }

    // ----- files from the seed client -----

    fn file_start(&mut self, v: &Value) {
        let target = text(v, "target_name").unwrap_or("Everyone").to_owned();
        let name = text(v, "filename").unwrap_or_default().to_owned();
        let size = v.get("filesize").and_then(Value::as_u64).unwrap_or(0);
        if self.room.is_none()
            || name.is_empty()
            || size > self.max_file_bytes
            || self.uploads.len() >= MAX_UPLOADS
        {
            tracing::debug!(%name, size, "a seed file not taken");
            return;
        }
        self.uploads.insert(
            target.clone(),
            Upload {
                to: (target != "Everyone").then_some(target),
                name,
                size,
                data: Vec::new(),
            },
        );
    }

    fn file_chunk(&mut self, v: &Value) {
        let target = text(v, "target_name").unwrap_or("Everyone").to_owned();
        let id = v.get("chunk_id").and_then(Value::as_u64);
        let data =
            text(v, "data").and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
        let (Some(up), Some(id), Some(data)) = (self.uploads.get_mut(&target), id, data) else {
            self.bad += 1;
            return;
        };
        let at = id.saturating_mul(FILE_CHUNK as u64);
        if data.len() > FILE_CHUNK || at + data.len() as u64 > up.size {
            self.bad += 1;
            return;
        }
        let (at, end) = (at as usize, at as usize + data.len());
        if up.data.len() < end {
            up.data.resize(end, 0);
        }
        up.data[at..end].copy_from_slice(&data);
        let ack = json!({"type": "FILE_ACK", "chunk_id": id, "sender_name": target});
        self.say(ack);
    }

    async fn file_end(&mut self, v: &Value) {
        let target = text(v, "target_name").unwrap_or("Everyone").to_owned();
        let Some(up) = self.uploads.remove(&target) else {
            return;
        };
        let want = text(v, "checksum").unwrap_or_default().to_ascii_lowercase();
        if up.data.len() as u64 != up.size || md5_hex(&up.data) != want {
            tracing::debug!(name = %up.name, "a seed file failed its MD5; not offered");
            return;
        }
        self.offers.push_back(up);
        if self.offered.is_none() {
            self.next_offer().await;
        }
    }

    async fn next_offer(&mut self) {
        let Some(up) = self.offers.pop_front() else {
            return;
        };
        let offer = FileOffer {
            to: up.to.clone(),
            name: up.name.clone(),
            size: up.size,
            sha256: hex(&sha2::Sha256::digest(&up.data)),
            chunk_size: FILE_CHUNK as u32,
        };
        self.offered = Some(up);
        self.room_command("FILE_START", RoomCommand::FileOffer(offer))
            .await;
    }

    async fn file_started(&mut self, transfer: u64, chunks: u64) {
        let Some(up) = self.offered.take() else {
            return;
        };
        self.sending.insert(
            transfer,
            Sending {
                data: up.data,
                chunks,
                next: 0,
                acked: 0,
                dups: 0,
                progress: Instant::now(),
            },
        );
        self.pump(transfer).await;
        self.next_offer().await;
    }

    /// Sends what the window allows, and FILE_END once all is acknowledged.
    async fn pump(&mut self, transfer: u64) {
        let Some(s) = self.sending.get_mut(&transfer) else {
            return;
        };
        if s.acked >= s.chunks {
            self.sending.remove(&transfer);
            self.room_command("FILE_END", RoomCommand::FileEnd { transfer })
                .await;
            return;
        }
        let mut chunks = Vec::new();
        while s.next < s.chunks && s.next < s.acked + FILE_WINDOW {
            let at = s.next as usize * FILE_CHUNK;
            let end = (at + FILE_CHUNK).min(s.data.len());
            chunks.push((s.next, b64(&s.data[at.min(end)..end])));
            s.next += 1;
        }
        for (seq, data) in chunks {
            self.room_command(
                "FILE_CHUNK",
                RoomCommand::FileChunk {
                    transfer,
                    seq,
                    data,
                },
            )
            .await;
        }
    }

    async fn file_acked(&mut self, transfer: u64, next_seq: u64) {
        let Some(s) = self.sending.get_mut(&transfer) else {
            return;
        };
        if next_seq > s.acked {
            s.acked = next_seq.min(s.chunks);
            s.dups = 0;
            s.progress = Instant::now();
        } else {
            s.dups += 1;
            if s.dups >= 3 {
                // A gap: go back to it.
                s.next = s.acked;
                s.dups = 0;
            }
        }
        self.pump(transfer).await;
    }

    async fn resend_stalled(&mut self) {
        let stalled: Vec<u64> = self
            .sending
            .iter_mut()
            .filter(|(_, s)| s.progress.elapsed() >= FILE_RESEND)
            .map(|(t, s)| {
                s.next = s.acked;
                s.progress = Instant::now();
                *t
            })
            .collect();
        for t in stalled {
            self.pump(t).await;
        }
    }

    // ----- files to the seed client -----

    async fn file_offered(
        &mut self,
        transfer: u64,
        from: &str,
        name: &str,
        size: u64,
        sha256: &str,
    ) {
        if self.downloads.values().any(|d| d.from == from) {
            self.room_command(
                "FILE_CANCEL",
                RoomCommand::FileCancel {
                    transfer,
                    reason: Some("a seed client takes one file at a time from each sender".into()),
                },
            )
            .await;
            return;
        }
        let me = self
            .members
            .iter()
            .find(|(s, _)| Some(*s) == self.me)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        self.say(json!({
            "type": "FILE_START_NOTIFY",
            "sender_name": from,
            "filename": name,
            "filesize": size,
            "chunk_size": FILE_CHUNK,
            "target_name": me,
        }));
        self.downloads.insert(
            transfer,
            Download {
                from: from.to_owned(),
                size,
                sha256: sha256.to_ascii_lowercase(),
                next_seq: 0,
                received: 0,
                pending: Vec::new(),
                chunk_id: 0,
                md5: md5::Md5::new(),
                sha: sha2::Sha256::new(),
            },
        );
    }

    async fn file_chunk_in(&mut self, transfer: u64, seq: u64, data: &str) {
        let Some(d) = self.downloads.get_mut(&transfer) else {
            return;
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok();
        if let Some(bytes) =
            bytes.filter(|b| seq == d.next_seq && d.received + b.len() as u64 <= d.size)
        {
            d.next_seq += 1;
            d.received += bytes.len() as u64;
            d.md5.update(&bytes);
            d.sha.update(&bytes);
            d.pending.extend_from_slice(&bytes);
            let mut forward = Vec::new();
            while d.pending.len() >= FILE_CHUNK {
                let chunk: Vec<u8> = d.pending.drain(..FILE_CHUNK).collect();
                forward.push(json!({
                    "type": "FILE_CHUNK_FORWARD",
                    "chunk_id": d.chunk_id,
                    "data": b64(&chunk),
                    "sender_name": d.from,
                }));
                d.chunk_id += 1;
            }
            for m in forward {
                // Chunks wait for the client (a slow reader slows the
                // transfer, never drops a chunk).
                let sent = tokio::time::timeout(Duration::from_secs(5), self.out.send(frame(&m)));
                if !matches!(sent.await, Ok(Ok(()))) {
                    return;
                }
            }
        }
        // Cumulative: a chunk out of order repeats the last (a gap).
        let next_seq = self.downloads.get(&transfer).map_or(0, |d| d.next_seq);
        self.room_command("FILE_ACK", RoomCommand::FileAck { transfer, next_seq })
            .await;
    }

    async fn file_ended(&mut self, transfer: u64) {
        let Some(d) = self.downloads.remove(&transfer) else {
            return;
        };
        if !d.pending.is_empty() {
            self.say(json!({
                "type": "FILE_CHUNK_FORWARD",
                "chunk_id": d.chunk_id,
                "data": b64(&d.pending),
                "sender_name": d.from,
            }));
        }
        let md5 = hex(&d.md5.finalize());
        self.say(json!({"type": "FILE_END_NOTIFY", "checksum": md5}));
        let sha = hex(&d.sha.finalize());
        let ok = d.received == d.size && sha == d.sha256;
        self.room_command(
            "FILE_RESULT",
            RoomCommand::FileResult {
                transfer,
                ok,
                message: (!ok).then(|| "the file did not match its SHA-256".to_owned()),
            },
        )
        .await;
    }
}

async fn next_told(link: &mut Option<Link>) -> Option<Arc<Told>> {
    match link {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

async fn recv_media(leg: &Option<Arc<Leg>>, buf: &mut [u8]) -> std::io::Result<Media> {
    match leg {
        Some(l) => l.recv_media(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_whole_and_refuse_the_oversized() {
        let mut f = Frames::default();
        let a = frame(&json!({"type": "HEARTBEAT", "timestamp": 1}));
        let b = frame(&json!({"type": "LEAVE"}));
        let mut both = a.clone();
        both.extend_from_slice(&b);
        f.push(&both[..5]);
        assert_eq!(f.next_frame(), None);
        f.push(&both[5..]);
        assert_eq!(
            f.next_frame(),
            Some(Frame::Message(json!({"type": "HEARTBEAT", "timestamp": 1})))
        );
        assert_eq!(
            f.next_frame(),
            Some(Frame::Message(json!({"type": "LEAVE"})))
        );
        assert_eq!(f.next_frame(), None);
        f.push(&[0, 0, 0, 3, b'[', b'1', b']']);
        assert_eq!(f.next_frame(), Some(Frame::Bad));
        f.push(&[0, 0x10, 0, 0]);
        assert_eq!(f.next_frame(), Some(Frame::TooLong));
    }

    #[test]
    fn datagrams_are_told_apart_by_their_headers() {
        let a = audio_datagram(7, &[1u8; 2048]);
        assert_eq!(a.len(), AUDIO_HEADER + 2048);
        assert_eq!(classify(&a), Datagram::Audio(&[1u8; 2048][..]));
        let jpeg = super::super::jpeg::test_frame(426, 240, &[1, 2, 3]);
        let v = video_datagram(1, 2, "a very long name indeed", &jpeg)
            .unwrap_or_else(|| panic!("no datagram"));
        assert_eq!(&v[16..18], &426u16.to_be_bytes());
        assert_eq!(&v[24..40], b"a very long name");
        assert_eq!(classify(&v), Datagram::Video(&jpeg[..]));
        assert_eq!(classify(&a[..100]), Datagram::Other);
        assert_eq!(classify(&[0u8; 10]), Datagram::Other);
    }
}
