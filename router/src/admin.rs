//! The gRPC admin service: a thin skin over engine calls.
//!
//! Each RPC runs one closure on the engine task ([`call_engine`]); wire ↔
//! domain conversions and the error → `Status` mapping live here, in one
//! place. Health (`grpc.health.v1`) and reflection (v1 and v1alpha) are served
//! beside it, and a bearer token guards everything when configured.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use plugin_api::Options;
use proto_grpc::admin::admin_server::{Admin, AdminServer};
use proto_grpc::admin::{
    CloseRoomRequest, CloseRoomResponse, CreateRoomRequest, GetRoomRequest, GetStatsRequest,
    GetStatsResponse, GrantFloorRequest, GrantFloorResponse, KickParticipantRequest,
    KickParticipantResponse, ListParticipantsRequest, ListParticipantsResponse, ListPluginsRequest,
    ListPluginsResponse, ListRoomsRequest, ListRoomsResponse, LobbyDecisionRequest,
    LobbyDecisionResponse, MuteParticipantRequest, MuteParticipantResponse, Participant,
    ParticipantRef, ParticipantStats, Plugin, PluginOption, RevokeFloorRequest,
    RevokeFloorResponse, Room, RoomStats, RouterStats, SendChatRequest, SendChatResponse,
    StreamStats, WatchRoomRequest, participant_ref, room_event,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

use crate::driver::engine_task::{EngineEvent, SharedCommandTimes, call_engine, unix_ms_now};
use crate::driver::watch::{WatchError, WatchItem};
use crate::engine::{OpError, RoomSpec, Who};
use crate::events::{ParticipantInfo, RoomEventKind, RoomSnapshot};
use crate::media::MediaCounters;
use crate::media::stats::MediaStatsHandle;
use crate::registry::RoomError;

/// Why the admin listener refused to start.
#[derive(Debug, thiserror::Error)]
pub enum AdminConfigError {
    #[error(
        "refusing to serve the admin API on {0} without a token: set --admin-token-file (or SWITCHBOARD_ADMIN_TOKEN, or admin_token_file in the config file), or bind it to a loopback address"
    )]
    TokenRequired(SocketAddr),
    #[error(
        "refusing to serve the admin API on {addr} with a weak token: {why} (make one with `openssl rand -hex 16`)"
    )]
    WeakToken { addr: SocketAddr, why: String },
}

/// Shortest admin token accepted beyond loopback, in characters.
pub const TOKEN_MIN_CHARS: usize = 16;
/// Fewest different characters in such a token.
pub const TOKEN_MIN_DISTINCT: usize = 8;

/// Why `token` is too weak to guard an admin API beyond loopback, if it is.
pub fn token_weakness(token: &str) -> Option<String> {
    let n = token.chars().count();
    if token.chars().any(char::is_whitespace) {
        return Some("it contains whitespace".into());
    }
    if n < TOKEN_MIN_CHARS {
        return Some(format!(
            "it has {n} characters, at least {TOKEN_MIN_CHARS} are needed"
        ));
    }
    let distinct = token
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < TOKEN_MIN_DISTINCT {
        return Some(format!(
            "it has {distinct} different characters, at least {TOKEN_MIN_DISTINCT} are needed"
        ));
    }
    None
}

/// Checks the bind address against the token rules: beyond loopback a
/// token is required, and a strong one; `by_grants` (token auth: an access
/// token with the admin grant is required) guards it as well.
pub fn check_exposure(
    addr: SocketAddr,
    token: Option<&str>,
    by_grants: bool,
) -> Result<(), AdminConfigError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    match token.filter(|t| !t.is_empty()) {
        None if by_grants => Ok(()),
        None => Err(AdminConfigError::TokenRequired(addr)),
        Some(t) => match token_weakness(t) {
            Some(why) => Err(AdminConfigError::WeakToken { addr, why }),
            None => Ok(()),
        },
    }
}

// ----- the one mapping from domain errors to gRPC status codes ----------

/// Characters of an error message sent back at most: messages quote what
/// the caller sent (a room name, a nickname), and a caller may send a
/// megabyte.
pub const ECHO_MAX_CHARS: usize = 256;

/// `message`, cut to [`ECHO_MAX_CHARS`] characters (saying so).
pub fn capped(message: String) -> String {
    if message.chars().count() <= ECHO_MAX_CHARS {
        return message;
    }
    let mut s: String = message.chars().take(ECHO_MAX_CHARS).collect();
    s.push_str(&format!("… ({} bytes in all)", message.len()));
    s
}

/// Room creation errors.
pub fn room_error_status(e: RoomError) -> Status {
    let s = room_error_status_whole(e);
    Status::new(s.code(), capped(s.message().to_owned()))
}

fn room_error_status_whole(e: RoomError) -> Status {
    match e {
        RoomError::UnknownKind { .. } => Status::invalid_argument(format!("kind: {e}")),
        RoomError::BadName(_) => Status::invalid_argument(format!("name: {e}")),
        RoomError::Exists(_) => Status::already_exists(e.to_string()),
        RoomError::TooMany(_) => Status::resource_exhausted(e.to_string()),
        RoomError::Option(o) => {
            Status::invalid_argument(format!("options.{}: {}", o.name, o.message))
        }
    }
}

/// Operator verb errors.
pub fn op_status(e: OpError) -> Status {
    let m = capped(e.to_string());
    match e {
        OpError::NoRoom(_) | OpError::NoParticipant { .. } => Status::not_found(m),
        OpError::Invalid { .. } => Status::invalid_argument(m),
        OpError::Precondition(_) => Status::failed_precondition(m),
    }
}

/// `WatchRoom` start errors.
pub fn watch_status(e: WatchError) -> Status {
    match e {
        WatchError::Op(e) => op_status(e),
        WatchError::TooMany { .. } => Status::resource_exhausted(capped(e.to_string())),
    }
}

/// A `WatchRoom` stream that fell behind its buffer.
pub fn lagged_status(missed: u64, buffer: usize) -> Status {
    Status::resource_exhausted(format!(
        "this watcher fell behind and {missed} events were lost (the router buffers {buffer} events per watcher); call WatchRoom again for a fresh snapshot"
    ))
}

fn engine_gone() -> Status {
    Status::unavailable("the router is shutting down")
}

fn required(field: &'static str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field}: required")))
    } else {
        Ok(())
    }
}

/// A participant reference from the wire.
fn who(field: &'static str, r: Option<ParticipantRef>) -> Result<Who, Status> {
    match r.and_then(|r| r.who) {
        Some(participant_ref::Who::SessionId(id)) if id > 0 => Ok(Who::Session(id)),
        Some(participant_ref::Who::Nickname(n)) if !n.is_empty() => Ok(Who::Nickname(n)),
        _ => Err(Status::invalid_argument(format!(
            "{field}: required (`session_id` or `nickname`)"
        ))),
    }
}

/// The control protocol's name of an enum value (`KICKED`, `PREEMPTED`).
fn wire_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The service.
pub struct AdminService {
    engine: mpsc::Sender<EngineEvent>,
    stats: MediaStatsHandle,
    counters: Arc<MediaCounters>,
    times: SharedCommandTimes,
    watch_buffer: usize,
}

impl AdminService {
    pub fn new(
        engine: mpsc::Sender<EngineEvent>,
        stats: MediaStatsHandle,
        counters: Arc<MediaCounters>,
        times: SharedCommandTimes,
        watch_buffer: usize,
    ) -> Self {
        Self {
            engine,
            stats,
            counters,
            times,
            watch_buffer,
        }
    }

    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }

    async fn lobby_decision(
        &self,
        r: LobbyDecisionRequest,
        approve: bool,
    ) -> Result<Response<LobbyDecisionResponse>, Status> {
        required("room", &r.room)?;
        let who = who("participant", r.participant)?;
        self.op(move |e, now| e.lobby_decision(now, &r.room, &who, approve, &r.reason))
            .await?;
        Ok(Response::new(LobbyDecisionResponse {}))
    }

    /// Runs an operator verb on the engine task.
    async fn op<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::engine::Engine, std::time::Instant) -> Result<R, OpError>
        + Send
        + 'static,
    ) -> Result<R, Status> {
        call_engine(&self.engine, f)
            .await
            .ok_or_else(engine_gone)?
            .map_err(op_status)
    }
}

fn participant_wire(p: ParticipantInfo) -> Participant {
    Participant {
        session_id: p.session,
        nickname: p.nickname,
        audio_ssrc: p.ssrcs.audio,
        video_ssrc: p.ssrcs.video,
        talking: p.talking,
        muted: p.muted,
        media_address: p.media_addr.map(|a| a.to_string()).unwrap_or_default(),
        in_room_secs: p.in_room_for.as_secs_f64(),
    }
}

fn snapshot_wire(s: RoomSnapshot) -> room_event::Event {
    room_event::Event::Snapshot(proto_grpc::admin::RoomSnapshot {
        room: Some(room_wire(s.info)),
        participants: s.participants.into_iter().map(participant_wire).collect(),
    })
}

fn event_wire(item: &WatchItem) -> proto_grpc::admin::RoomEvent {
    use proto_grpc::admin as w;
    let ev = &item.event;
    let event = match &ev.kind {
        RoomEventKind::Joined { session, nickname } => {
            room_event::Event::Joined(w::ParticipantJoined {
                session_id: *session,
                nickname: nickname.clone(),
            })
        }
        RoomEventKind::Left {
            session,
            nickname,
            reason,
            message,
        } => room_event::Event::Left(w::ParticipantLeft {
            session_id: *session,
            nickname: nickname.clone(),
            reason: wire_name(reason),
            message: message.clone().unwrap_or_default(),
        }),
        RoomEventKind::FloorGranted {
            session,
            nickname,
            priority,
        } => room_event::Event::FloorGranted(w::FloorGranted {
            session_id: *session,
            nickname: nickname.clone(),
            priority: u32::from(*priority),
        }),
        RoomEventKind::FloorDenied {
            session,
            nickname,
            reason,
            queue_position,
        } => room_event::Event::FloorDenied(w::FloorDenied {
            session_id: *session,
            nickname: nickname.clone(),
            reason: wire_name(reason),
            queue_position: queue_position.unwrap_or(0),
        }),
        RoomEventKind::FloorReleased {
            session,
            nickname,
            reason,
        } => room_event::Event::FloorReleased(w::FloorReleased {
            session_id: *session,
            nickname: nickname.clone(),
            reason: wire_name(reason),
        }),
        RoomEventKind::FloorRevoked {
            session,
            nickname,
            reason,
        } => room_event::Event::FloorRevoked(w::FloorRevoked {
            session_id: *session,
            nickname: nickname.clone(),
            reason: wire_name(reason),
        }),
        RoomEventKind::Chat {
            from,
            session,
            to,
            text,
        } => room_event::Event::Chat(w::ChatMessage {
            from: from.clone(),
            from_session_id: session.unwrap_or(0),
            text: text.clone(),
            to_session_id: to.as_ref().map_or(0, |(id, _)| *id),
            to_nickname: to.as_ref().map(|(_, n)| n.clone()).unwrap_or_default(),
        }),
        RoomEventKind::Muted {
            session,
            nickname,
            muted,
        } => room_event::Event::Muted(w::ParticipantMuted {
            session_id: *session,
            nickname: nickname.clone(),
            muted: *muted,
        }),
        RoomEventKind::Closed { reason } => room_event::Event::Closed(w::RoomClosed {
            reason: reason.clone(),
        }),
    };
    proto_grpc::admin::RoomEvent {
        room: ev.room.clone(),
        seq: ev.seq,
        unix_ms: item.unix_ms,
        event: Some(event),
    }
}

/// The stream `WatchRoom` answers with.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<proto_grpc::admin::RoomEvent, Status>> + Send + 'static>>;

fn room_wire(i: proto::control::RoomInfo) -> Room {
    Room {
        name: i.name,
        kind: i.kind,
        participants: i.participants,
        max_participants: i.max_participants,
        secure: i.secure,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    type WatchRoomStream = WatchStream;

    async fn list_plugins(
        &self,
        _req: Request<ListPluginsRequest>,
    ) -> Result<Response<ListPluginsResponse>, Status> {
        let infos = call_engine(&self.engine, |e, _| e.registry().list())
            .await
            .ok_or_else(engine_gone)?;
        let plugins = infos
            .into_iter()
            .map(|p| Plugin {
                kind: p.kind.into(),
                description: p.description.into(),
                options: p
                    .options
                    .into_iter()
                    .map(|o| PluginOption {
                        name: o.name.into(),
                        r#type: serde_json::to_value(o.ty)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        default_value: o.default,
                        help: o.help.into(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListPluginsResponse { plugins }))
    }

    async fn create_room(&self, req: Request<CreateRoomRequest>) -> Result<Response<Room>, Status> {
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("name: required"));
        }
        if r.kind.is_empty() {
            return Err(Status::invalid_argument("kind: required"));
        }
        let spec = RoomSpec {
            name: r.name.clone(),
            kind: r.kind,
            max_participants: r.max_participants,
            options: r
                .options
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<Options>(),
        };
        let name = r.name;
        let result = call_engine(&self.engine, move |e, _| {
            e.create_room(spec)?;
            Ok(e.room_info(&name))
        })
        .await
        .ok_or_else(engine_gone)?;
        match result {
            Ok(Some(info)) => Ok(Response::new(room_wire(info))),
            Ok(None) => Err(Status::internal("room vanished after creation")),
            Err(e) => Err(room_error_status(e)),
        }
    }

    async fn list_rooms(
        &self,
        _req: Request<ListRoomsRequest>,
    ) -> Result<Response<ListRoomsResponse>, Status> {
        let rooms = call_engine(&self.engine, |e, _| e.room_infos())
            .await
            .ok_or_else(engine_gone)?;
        Ok(Response::new(ListRoomsResponse {
            rooms: rooms.into_iter().map(room_wire).collect(),
        }))
    }

    async fn get_room(&self, req: Request<GetRoomRequest>) -> Result<Response<Room>, Status> {
        let name = req.into_inner().name;
        let shown = name.clone();
        let info = call_engine(&self.engine, move |e, _| e.room_info(&name))
            .await
            .ok_or_else(engine_gone)?;
        info.map(|i| Response::new(room_wire(i)))
            .ok_or_else(|| Status::not_found(capped(format!("no room named `{shown}`"))))
    }

    async fn close_room(
        &self,
        req: Request<CloseRoomRequest>,
    ) -> Result<Response<CloseRoomResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        let n = self
            .op(move |e, now| e.close_room(now, &r.room, &r.reason, r.keep_connected))
            .await?;
        Ok(Response::new(CloseRoomResponse {
            participants: n as u32,
        }))
    }

    async fn list_participants(
        &self,
        req: Request<ListParticipantsRequest>,
    ) -> Result<Response<ListParticipantsResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        let list = self.op(move |e, now| e.participants(now, &r.room)).await?;
        Ok(Response::new(ListParticipantsResponse {
            participants: list.into_iter().map(participant_wire).collect(),
        }))
    }

    async fn kick_participant(
        &self,
        req: Request<KickParticipantRequest>,
    ) -> Result<Response<KickParticipantResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        let who = who("participant", r.participant)?;
        self.op(move |e, now| e.kick(now, &r.room, &who, &r.reason))
            .await?;
        Ok(Response::new(KickParticipantResponse {}))
    }

    async fn mute_participant(
        &self,
        req: Request<MuteParticipantRequest>,
    ) -> Result<Response<MuteParticipantResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        let who = who("participant", r.participant)?;
        self.op(move |e, now| e.mute(now, &r.room, &who, r.muted))
            .await?;
        Ok(Response::new(MuteParticipantResponse {}))
    }

    async fn grant_floor(
        &self,
        req: Request<GrantFloorRequest>,
    ) -> Result<Response<GrantFloorResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        let who = who("participant", r.participant)?;
        self.op(move |e, now| e.grant_floor(now, &r.room, &who))
            .await?;
        Ok(Response::new(GrantFloorResponse {}))
    }

    async fn revoke_floor(
        &self,
        req: Request<RevokeFloorRequest>,
    ) -> Result<Response<RevokeFloorResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        self.op(move |e, now| e.revoke_floor(now, &r.room)).await?;
        Ok(Response::new(RevokeFloorResponse {}))
    }

    async fn send_chat(
        &self,
        req: Request<SendChatRequest>,
    ) -> Result<Response<SendChatResponse>, Status> {
        let r = req.into_inner();
        required("room", &r.room)?;
        let to = match r.to {
            Some(t) => Some(who("to", Some(t))?),
            None => None,
        };
        self.op(move |e, now| e.send_chat(now, &r.room, to.as_ref(), &r.text))
            .await?;
        Ok(Response::new(SendChatResponse {}))
    }

    async fn approve_join(
        &self,
        req: Request<LobbyDecisionRequest>,
    ) -> Result<Response<LobbyDecisionResponse>, Status> {
        self.lobby_decision(req.into_inner(), true).await
    }

    async fn deny_join(
        &self,
        req: Request<LobbyDecisionRequest>,
    ) -> Result<Response<LobbyDecisionResponse>, Status> {
        self.lobby_decision(req.into_inner(), false).await
    }

    async fn get_stats(
        &self,
        req: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        let req = req.into_inner();
        let wanted = req.room;
        let reset = req.reset_command_latency;
        let (rooms, engine) = self
            .op(move |e, now| {
                let names: Vec<String> = if wanted.is_empty() {
                    e.room_infos().into_iter().map(|i| i.name).collect()
                } else {
                    vec![wanted]
                };
                let mut rooms = Vec::new();
                for name in names {
                    let kind = e.room_info(&name).map(|i| i.kind).unwrap_or_default();
                    rooms.push((name.clone(), kind, e.participants(now, &name)?));
                }
                Ok((rooms, e.stats()))
            })
            .await?;
        let media = self.stats.snapshot().await.ok_or_else(engine_gone)?;
        let m = self.counters.snapshot();
        let router = RouterStats {
            sessions: engine.sessions as u64,
            rooms: engine.rooms as u64,
            datagrams_received: m.received,
            datagrams_forwarded: m.forwarded,
            datagrams_sent: m.sent,
            dropped_unbound: m.dropped_unbound,
            dropped_foreign_ssrc: m.dropped_foreign_ssrc,
            dropped_not_routed: m.dropped_not_routed,
            dropped_malformed: m.dropped_malformed,
            dropped_oversize: m.dropped_oversize,
            dropped_wrong_codec: m.dropped_wrong_codec,
            bans: engine.bans,
            banned_addresses: engine.banned_addresses as u64,
            connections_refused: engine.refused_banned
                + engine.refused_per_address
                + engine.refused_pending,
            hello_timeouts: engine.hello_timeouts,
            accept_failures: crate::driver::accept::ACCEPT_FAILURES
                .load(std::sync::atomic::Ordering::Relaxed),
            sessions_detached: engine.detached,
            sessions_resumed: engine.resumed,
            resumes_expired: engine.resume_expired,
            stun_requests: m.stun_requests,
            stun_dropped: m.stun_dropped,
            protocol_errors: engine.protocol_errors,
            sessions_timed_out: engine.timed_out,
            join_attempts_limited: engine.join_attempts_limited,
            bulk_dropped: crate::driver::outbox::BULK_DROPPED
                .load(std::sync::atomic::Ordering::Relaxed),
            command_latency: self
                .times
                .lock()
                .map(|mut t| {
                    let s = t.summary();
                    if reset {
                        t.clear();
                    }
                    s
                })
                .unwrap_or_default()
                .into_iter()
                .map(|c| proto_grpc::admin::CommandLatency {
                    command: c.command.into(),
                    count: c.count,
                    p50_us: c.p50_us,
                    p99_us: c.p99_us,
                    p999_us: c.p999_us,
                    max_us: c.max_us,
                })
                .collect(),
        };
        let rooms = rooms
            .into_iter()
            .map(|(name, kind, participants)| {
                let participants: Vec<ParticipantStats> = participants
                    .into_iter()
                    .map(|p| participant_stats(p, &media))
                    .collect();
                RoomStats {
                    room: name,
                    kind,
                    packets_in: participants.iter().map(|p| p.packets_sent).sum(),
                    bytes_in: participants.iter().map(|p| p.bytes_sent).sum(),
                    packets_out: participants.iter().map(|p| p.packets_received).sum(),
                    bytes_out: participants.iter().map(|p| p.bytes_received).sum(),
                    dropped: participants.iter().map(|p| p.dropped).sum(),
                    lost: participants.iter().map(|p| p.lost).sum(),
                    participants,
                }
            })
            .collect();
        Ok(Response::new(GetStatsResponse {
            rooms,
            router: Some(router),
        }))
    }

    async fn watch_room(
        &self,
        req: Request<WatchRoomRequest>,
    ) -> Result<Response<Self::WatchRoomStream>, Status> {
        let room = req.into_inner().room;
        required("room", &room)?;
        let (tx, rx) = oneshot::channel();
        self.engine
            .send(EngineEvent::Watch {
                room: room.clone(),
                reply: tx,
            })
            .await
            .map_err(|_| engine_gone())?;
        let sub = rx.await.map_err(|_| engine_gone())?.map_err(watch_status)?;
        let first = proto_grpc::admin::RoomEvent {
            room,
            seq: sub.snapshot.seq,
            unix_ms: unix_ms_now(),
            event: Some(snapshot_wire(sub.snapshot)),
        };
        let buffer = self.watch_buffer;
        let rest = BroadcastStream::new(sub.events).map(move |item| match item {
            Ok(item) => Ok(event_wire(&item)),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Err(lagged_status(n, buffer))
            }
        });
        let stream = tokio_stream::once(Ok(first)).chain(rest);
        Ok(Response::new(Box::pin(stream)))
    }
}

fn participant_stats(
    p: ParticipantInfo,
    media: &crate::media::stats::MediaSnapshot,
) -> ParticipantStats {
    let streams: Vec<StreamStats> = [(p.ssrcs.audio, "audio"), (p.ssrcs.video, "video")]
        .into_iter()
        .map(|(ssrc, kind)| {
            let s = media.streams.get(&ssrc).copied().unwrap_or_default();
            StreamStats {
                ssrc,
                media: kind.into(),
                packets: s.packets,
                bytes: s.bytes,
                forwarded: s.forwarded,
                dropped: s.dropped,
                expected: s.expected,
                lost: s.lost,
                loss_fraction: loss_fraction(s.lost, s.expected),
                jitter_ms: s.jitter_ms,
            }
        })
        .collect();
    let delivered = p
        .media_addr
        .and_then(|a| media.delivered.get(&a).copied())
        .unwrap_or_default();
    let lost: i64 = streams.iter().map(|s| s.lost).sum();
    let expected: u64 = streams.iter().map(|s| s.expected).sum();
    ParticipantStats {
        session_id: p.session,
        nickname: p.nickname,
        packets_sent: streams.iter().map(|s| s.packets).sum(),
        bytes_sent: streams.iter().map(|s| s.bytes).sum(),
        dropped: streams.iter().map(|s| s.dropped).sum(),
        lost,
        loss_fraction: loss_fraction(lost, expected),
        jitter_ms: streams.iter().map(|s| s.jitter_ms).fold(0.0, f64::max),
        packets_received: delivered.packets,
        bytes_received: delivered.bytes,
        video_level: p
            .room_state
            .iter()
            .find(|(k, _)| *k == "video_level")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        room_state: p
            .room_state
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        streams,
    }
}

fn loss_fraction(lost: i64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        lost.max(0) as f64 / expected as f64
    }
}

/// Checks `authorization: Bearer <token>` on every call when the API is
/// guarded: by the static admin token when one is set, and by access
/// tokens with the admin grant when the router takes tokens (either one
/// will do).
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<String>,
    auth: crate::auth::SharedVerifier,
}

impl BearerAuth {
    pub fn new(token: Option<String>, auth: crate::auth::SharedVerifier) -> Self {
        Self {
            expected: token
                .filter(|t| !t.is_empty())
                .map(|t| format!("Bearer {t}")),
            auth,
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let verifier = crate::auth::current(&self.auth);
        let by_grants = verifier.mode() == crate::config::AuthMode::Token;
        if self.expected.is_none() && !by_grants {
            return Ok(req);
        }
        let Some(v) = req.metadata().get("authorization").map(|v| v.to_str()) else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            ));
        };
        let Ok(v) = v else {
            return Err(Status::unauthenticated("wrong bearer token"));
        };
        if let Some(expected) = &self.expected
            && constant_time_eq(v.as_bytes(), expected.as_bytes())
        {
            return Ok(req);
        }
        match v.strip_prefix("Bearer ") {
            Some(jwt) if verifier.has_keys() && jwt.contains('.') => {
                let now = crate::driver::unix_ms_now() / 1000;
                match verifier.verify(jwt, now) {
                    Ok(id) if id.grants.admin => Ok(req),
                    Ok(id) => Err(Status::permission_denied(format!(
                        "the access token of `{}` has no admin grant",
                        capped(id.subject)
                    ))),
                    Err(e) => Err(Status::unauthenticated(e.to_string())),
                }
            }
            _ => Err(Status::unauthenticated("wrong bearer token")),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves admin, health and reflection on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: AdminService,
    token: Option<String>,
    auth: crate::auth::SharedVerifier,
    tls: Option<std::sync::Arc<crate::driver::tls::TlsShared>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    // Each reflection service also describes the other, so `list` shows the
    // same services whichever version a tool speaks.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto_grpc::admin::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto_grpc::admin::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let auth = BearerAuth::new(token, auth);
    let admin =
        tonic::service::interceptor::InterceptedService::new(service.into_server(), auth.clone());
    // Without TCP_NODELAY every small response waits for the client's delayed
    // ACK (Nagle): ~40 ms per call instead of well under 1 ms.
    let acceptor = crate::driver::accept::Acceptor::new(listener, "admin");
    let router = tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            health,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1?,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1alpha?,
            auth,
        ))
        .add_service(admin);
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(acceptor.into_tls_stream(tls), stop)
                .await?
        }
        None => {
            router
                .serve_with_incoming_shutdown(acceptor.into_stream(), stop)
                .await?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_echo_at_most_a_few_hundred_characters_of_the_input() {
        let huge = "x".repeat(1 << 20);
        for s in [
            room_error_status(RoomError::BadName(huge.clone())),
            room_error_status(RoomError::Exists(huge.clone())),
            op_status(OpError::NoRoom(huge.clone())),
        ] {
            assert!(
                s.message().len() < ECHO_MAX_CHARS + 64,
                "{}",
                s.message().len()
            );
            assert!(
                s.message().ends_with("bytes in all)"),
                "{}",
                &s.message()[..40]
            );
        }
        assert_eq!(capped("short".into()), "short");
    }

    #[test]
    fn beyond_loopback_the_token_must_be_there_and_strong() {
        let any: SocketAddr = ([0, 0, 0, 0], 7072).into();
        let lo: SocketAddr = ([127, 0, 0, 1], 7072).into();
        let v6lo: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, 7072).into();
        assert!(check_exposure(lo, None, false).is_ok());
        assert!(check_exposure(v6lo, Some("a"), false).is_ok());
        assert!(matches!(
            check_exposure(any, None, false),
            Err(AdminConfigError::TokenRequired(_))
        ));
        assert!(matches!(
            check_exposure(any, Some(""), false),
            Err(AdminConfigError::TokenRequired(_))
        ));
        for weak in [
            " ",
            "a",
            "correct horse battery staple",
            "abababababababababab",
        ] {
            assert!(
                matches!(
                    check_exposure(any, Some(weak), false),
                    Err(AdminConfigError::WeakToken { .. })
                ),
                "{weak:?}"
            );
        }
        assert!(check_exposure(any, Some("9f86d081884c7d659a2feaa0c55ad015"), false).is_ok());
        // Token auth guards it with admin grants; a weak static token beside
        // is still refused.
        assert!(check_exposure(any, None, true).is_ok());
        assert!(check_exposure(any, Some("a"), true).is_err());
    }
}
