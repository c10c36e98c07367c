//! The native control channel's front-end: `docs/protocol.md`'s NDJSON
//! messages parsed into [`RoomCommand`]s, and what the engine tells
//! ([`Told`]: room [`Notice`]s and [`SessionNotice`]s) rendered into its
//! messages and lines. This is the only place where the engine's language
//! meets the native wire format; a seed system's front-end is a sibling of
//! this module.

use std::sync::Arc;

use plugin_api::{FileOffer, Notice, ReceiverReport, RoomCommand};
use proto::control::{
    self, ChatEntry, ClientMessage, LobbyEntry, MemberGone, ServerMessage, UserInfo,
};
use rustc_hash::FxHashMap;

use crate::engine::{Command, RoomSpec, SessionCommand, SessionNotice, Told};

/// Parses one control line into a command and the name the protocol gives
/// it (for error texts and timing), telling apart bad JSON, a missing or
/// unknown type, and bad fields.
pub fn parse(line: &[u8]) -> Result<(&'static str, Command), control::ParseError> {
    parse_request(line).0
}

/// As [`parse`], with the line's optional request `id` (known even when
/// the command is refused as a bad field, so that its ERROR carries it).
pub fn parse_request(line: &[u8]) -> (Parsed, Option<control::RequestId>) {
    let r = control::parse_client_request(line);
    (r.message.map(|m| (m.type_name(), command(m))), r.id)
}

/// A parsed line: the protocol's name for the command, and the command.
pub type Parsed = Result<(&'static str, Command), control::ParseError>;

/// `line` with its command's request id added as the last field
/// ([`control::append_request_id`]).
pub fn with_request_id(line: &[u8], id: &control::RequestId) -> Arc<[u8]> {
    control::append_request_id(line, id).into()
}

/// The command a client message stands for.
pub fn command(msg: ClientMessage) -> Command {
    if let Some(c) = room_command(&msg) {
        return Command::Room(c);
    }
    Command::Session(match msg {
        ClientMessage::Hello {
            version,
            nickname,
            token,
            features,
            resume,
        } => SessionCommand::Hello {
            legacy: false,
            token,
            version,
            nickname,
            features,
            resume,
        },
        ClientMessage::Join { room } => SessionCommand::Join { room },
        ClientMessage::Leave => SessionCommand::Leave,
        ClientMessage::Heartbeat => SessionCommand::Heartbeat,
        ClientMessage::ListRooms => SessionCommand::ListRooms,
        ClientMessage::ListMembers { offset, limit } => SessionCommand::ListMembers {
            offset: offset as usize,
            limit: limit
                .unwrap_or(control::MEMBER_PAGE_DEFAULT)
                .min(control::MEMBER_PAGE_MAX) as usize,
        },
        ClientMessage::RequestJoin { code } => SessionCommand::RequestJoin { code },
        ClientMessage::CreateMeeting {
            end_with_host,
            codec,
        } => SessionCommand::CreateMeeting {
            end_with_host,
            codec,
        },
        ClientMessage::CreateRoom {
            room,
            kind,
            max_participants,
            options,
        } => SessionCommand::CreateRoom(RoomSpec {
            name: room,
            kind,
            max_participants,
            options,
        }),
        // Room commands were taken above; BYE is what is left.
        _ => SessionCommand::Bye,
    })
}

/// The message what the engine tells is rendered into; `None` for what
/// the native channel shows another way (membership goes into member lists,
/// a room's end into `LEFT`).
pub fn message(told: &Told) -> Option<ServerMessage> {
    match told {
        Told::Room { room, notice } => render(room, notice),
        Told::Session(n) => Some(session_message(n)),
    }
}

/// An SRTP key as the wire carries it: the profile, the bytes in base64.
fn wire_srtp_key(key: &crate::engine::SrtpKey) -> control::SrtpKey {
    use base64::Engine as _;
    control::SrtpKey {
        profile: control::SRTP_PROFILE.into(),
        key: base64::engine::general_purpose::STANDARD.encode(key),
    }
}

fn session_message(n: &SessionNotice) -> ServerMessage {
    let users = |v: &[Arc<UserInfo>]| v.iter().map(|u| (**u).clone()).collect::<Vec<_>>();
    match n {
        SessionNotice::Welcome {
            media_id,
            session,
            nickname,
            udp_port,
            media_token,
            ssrcs,
            heartbeat_interval,
            silence_timeout,
            features,
            limits,
            resume,
            resumed,
        } => ServerMessage::Welcome {
            version: proto::PROTOCOL_VERSION,
            session_id: *session,
            nickname: nickname.clone(),
            udp_port: *udp_port,
            media_token: media_token.clone(),
            ssrcs: *ssrcs,
            heartbeat_interval_ms: heartbeat_interval.as_millis() as u64,
            silence_timeout_ms: silence_timeout.as_millis() as u64,
            features: features.clone(),
            limits: Some(*limits),
            resume_token: resume.as_ref().map(|(t, _)| t.clone()),
            resume_grace_ms: resume
                .as_ref()
                .map(|(_, g)| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
            resumed: *resumed,
            media_id: media_id.clone(),
        },
        SessionNotice::Joined {
            room,
            kind,
            udp_port,
            settings,
            media_nonce,
            secure,
            srtp_key,
        } => ServerMessage::Joined {
            secure: *secure,
            srtp: srtp_key.as_ref().map(wire_srtp_key),
            media_nonce: media_nonce.clone(),
            room: room.clone(),
            kind: kind.clone(),
            udp_port: *udp_port,
            settings: (**settings).clone(),
        },
        SessionNotice::Left {
            room,
            reason,
            message,
        } => ServerMessage::Left {
            room: room.clone(),
            reason: *reason,
            message: message.clone(),
        },
        SessionNotice::Full { scope, message } => ServerMessage::Full {
            scope: *scope,
            message: message.clone(),
        },
        SessionNotice::Refused { code, message } => ServerMessage::Error {
            code: *code,
            message: message.clone(),
        },
        SessionNotice::SrtpKeys { room, keys } => ServerMessage::SrtpKeys {
            room: room.clone(),
            keys: keys
                .iter()
                .map(|k| control::SenderKey {
                    session_id: k.session,
                    ssrcs: vec![k.ssrcs.audio, k.ssrcs.video],
                    key: wire_srtp_key(&k.key),
                })
                .collect(),
        },
        SessionNotice::HeartbeatAck => ServerMessage::HeartbeatAck,
        SessionNotice::MediaNonce { nonce } => ServerMessage::MediaNonce {
            nonce: nonce.clone(),
        },
        SessionNotice::Rooms { rooms } => ServerMessage::Rooms {
            rooms: rooms.clone(),
        },
        SessionNotice::MeetingCreated {
            room,
            code,
            end_with_host,
        } => ServerMessage::MeetingCreated {
            room: room.clone(),
            code: code.clone(),
            end_with_host: *end_with_host,
        },
        SessionNotice::JoinAccepted { room } => ServerMessage::JoinAccepted { room: room.clone() },
        SessionNotice::JoinRejected {
            room,
            reason,
            message,
        } => ServerMessage::JoinRejected {
            room: room.clone(),
            reason: *reason,
            message: message.clone(),
        },
        SessionNotice::ServerClose { reason } => ServerMessage::ServerClose {
            reason: reason.clone(),
        },
        SessionNotice::Goodbye => ServerMessage::Goodbye,
        SessionNotice::Members { room, users: u } => ServerMessage::Userlist {
            room: room.clone(),
            users: users(u),
        },
        SessionNotice::MemberCount { room, count } => ServerMessage::MemberCount {
            room: room.clone(),
            count: *count as u32,
        },
        SessionNotice::MemberPage {
            room,
            count,
            offset,
            users: u,
        } => ServerMessage::MemberPage {
            room: room.clone(),
            count: *count as u32,
            offset: *offset as u32,
            members: users(u),
        },
        SessionNotice::MembersChanged {
            room,
            joined,
            changed,
            left,
        } => ServerMessage::MembersChanged {
            room: room.clone(),
            joined: users(joined),
            changed: users(changed),
            left: left
                .iter()
                .map(|(session_id, nickname)| MemberGone {
                    session_id: *session_id,
                    nickname: nickname.clone(),
                })
                .collect(),
        },
    }
}

/// Renders what the engine tells into lines, keeping the bytes of each
/// member-list entry while the engine keeps the entry: a join to a room of
/// thousands copies the list's entries instead of serializing them again.
#[derive(Default)]
pub struct Renderer {
    /// Entry (by address, held so the address stays its own) → its JSON.
    entries: FxHashMap<usize, (Arc<UserInfo>, Arc<[u8]>)>,
}

impl Renderer {
    /// The line (newline included) for `told`; `None` when nothing is shown.
    pub fn line(&mut self, told: &Told) -> Option<Arc<[u8]>> {
        if let Told::Session(SessionNotice::Members { room, users }) = told {
            return Some(self.member_list(room, users));
        }
        message(told).map(|m| control::to_line(&m).into())
    }

    /// `USERLIST`, exactly as serializing `ServerMessage::Userlist` would
    /// write it.
    fn member_list(&mut self, room: &str, users: &[Arc<UserInfo>]) -> Arc<[u8]> {
        let mut out = Vec::with_capacity(64 + users.len() * 128);
        out.extend_from_slice(br#"{"type":"USERLIST","room":"#);
        out.extend_from_slice(&serde_json::to_vec(room).unwrap_or_default());
        out.extend_from_slice(br#","users":["#);
        for (i, u) in users.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let key = Arc::as_ptr(u) as usize;
            let bytes = match self.entries.get(&key) {
                Some((_, b)) => b.clone(),
                None => {
                    let b: Arc<[u8]> = serde_json::to_vec(&**u).unwrap_or_default().into();
                    self.entries.insert(key, (u.clone(), b.clone()));
                    b
                }
            };
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(b"]}\n");
        // Forget entries nobody else holds any more (the member changed or
        // left), once they outnumber the list by far.
        if self.entries.len() > 2 * users.len() + 1024 {
            self.entries.retain(|_, (u, _)| Arc::strong_count(u) > 1);
        }
        out.into()
    }
}

/// The room command a client message stands for; `None` for session-level
/// messages (HELLO, JOIN, ...), which the engine's session layer handles.
pub fn room_command(msg: &ClientMessage) -> Option<RoomCommand> {
    Some(match msg {
        ClientMessage::MicRequest { priority } => RoomCommand::FloorRequest {
            priority: *priority,
        },
        ClientMessage::MicRelease => RoomCommand::FloorRelease,
        ClientMessage::Chat { text, to } => RoomCommand::Chat {
            text: text.clone(),
            to: to.clone(),
        },
        ClientMessage::AllowJoin { session_id } => RoomCommand::LobbyAnswer {
            session: *session_id,
            admit: true,
            reason: None,
        },
        ClientMessage::DenyJoin { session_id, reason } => RoomCommand::LobbyAnswer {
            session: *session_id,
            admit: false,
            reason: reason.clone(),
        },
        ClientMessage::MediaState { audio, video } => RoomCommand::MediaState {
            audio: *audio,
            video: *video,
        },
        ClientMessage::Mute { nickname, muted } => RoomCommand::Mute {
            nickname: nickname.clone(),
            muted: *muted,
        },
        ClientMessage::Remove { nickname, reason } => RoomCommand::Remove {
            nickname: nickname.clone(),
            reason: reason.clone(),
        },
        ClientMessage::FileOffer {
            to,
            name,
            size,
            sha256,
            chunk_size,
        } => RoomCommand::FileOffer(FileOffer {
            to: to.clone(),
            name: name.clone(),
            size: *size,
            sha256: sha256.clone(),
            chunk_size: *chunk_size,
        }),
        ClientMessage::FileChunk {
            transfer_id,
            seq,
            data,
        } => RoomCommand::FileChunk {
            transfer: *transfer_id,
            seq: *seq,
            data: data.clone(),
        },
        ClientMessage::FileAck {
            transfer_id,
            next_seq,
        } => RoomCommand::FileAck {
            transfer: *transfer_id,
            next_seq: *next_seq,
        },
        ClientMessage::FileEnd { transfer_id } => RoomCommand::FileEnd {
            transfer: *transfer_id,
        },
        ClientMessage::FileResult {
            transfer_id,
            ok,
            message,
        } => RoomCommand::FileResult {
            transfer: *transfer_id,
            ok: *ok,
            message: message.clone(),
        },
        ClientMessage::FileCancel {
            transfer_id,
            reason,
        } => RoomCommand::FileCancel {
            transfer: *transfer_id,
            reason: reason.clone(),
        },
        ClientMessage::VideoStats { reports } => RoomCommand::VideoReports {
            reports: reports
                .iter()
                .map(|r| ReceiverReport {
                    from_ssrc: r.from_ssrc,
                    fraction_lost: r.fraction_lost,
                    rtt_ms: r.rtt_ms,
                })
                .collect(),
        },
        ClientMessage::Hello { .. }
        | ClientMessage::Join { .. }
        | ClientMessage::Leave
        | ClientMessage::Heartbeat
        | ClientMessage::ListRooms
        | ClientMessage::ListMembers { .. }
        | ClientMessage::CreateMeeting { .. }
        | ClientMessage::CreateRoom { .. }
        | ClientMessage::RequestJoin { .. }
        | ClientMessage::Bye { .. } => return None,
    })
}

/// The message a notice of room `room` is rendered into, the same for every
/// receiver; `None` for notices the native channel shows another way
/// (membership goes into USERLIST, a room's end into `LEFT`).
pub fn render(room: &str, notice: &Notice) -> Option<ServerMessage> {
    let room = room.to_owned();
    Some(match notice {
        Notice::MemberJoined { .. } | Notice::MemberLeft { .. } | Notice::RoomClosed { .. } => {
            return None;
        }
        Notice::Muted { muted, .. } => ServerMessage::Muted {
            room,
            muted: *muted,
        },
        Notice::FloorGranted {
            session,
            nickname,
            ssrc,
            priority,
            burst_limit_ms,
        } => ServerMessage::MicGranted {
            room,
            holder: nickname.clone(),
            session_id: *session,
            ssrc: *ssrc,
            priority: *priority,
            burst_limit_ms: *burst_limit_ms,
        },
        Notice::FloorDenied {
            reason,
            holder,
            queue_position,
            ..
        } => ServerMessage::MicDenied {
            room,
            reason: *reason,
            holder: holder.clone(),
            queue_position: *queue_position,
        },
        Notice::FloorQueued { queue_position } => ServerMessage::MicQueued {
            room,
            queue_position: *queue_position,
        },
        Notice::FloorDequeued => ServerMessage::MicDequeued { room },
        Notice::FloorReleased {
            session,
            nickname,
            reason,
        } => ServerMessage::MicReleased {
            room,
            holder: nickname.clone(),
            session_id: *session,
            reason: *reason,
        },
        Notice::FloorRevoked {
            session,
            nickname,
            reason,
        } => ServerMessage::MicRevoked {
            room,
            holder: nickname.clone(),
            session_id: *session,
            reason: *reason,
        },
        Notice::ChatPosted { line, to } => ServerMessage::Chat {
            room,
            id: line.id,
            ts_ms: line.ts_ms,
            from: line.from.clone(),
            session_id: line.session,
            text: line.text.clone(),
            private: to.is_some(),
            to: to.as_ref().map(|(_, n)| n.clone()),
            operator: line.session.is_none(),
        },
        Notice::ChatHistory { messages } => ServerMessage::ChatHistory {
            room,
            messages: messages
                .iter()
                .map(|l| ChatEntry {
                    id: l.id,
                    ts_ms: l.ts_ms,
                    from: l.from.clone(),
                    session_id: l.session,
                    text: l.text.clone(),
                    operator: l.session.is_none(),
                })
                .collect(),
        },
        Notice::CallStarted { peer, peer_session } => ServerMessage::CallStarted {
            room,
            peer: peer.clone(),
            peer_session_id: *peer_session,
        },
        Notice::CallEnded {
            peer,
            peer_session,
            reason,
        } => ServerMessage::CallEnded {
            room,
            peer: peer.clone(),
            peer_session_id: *peer_session,
            reason: *reason,
        },
        Notice::JoinPending { timeout_ms } => ServerMessage::JoinPending {
            room,
            timeout_ms: *timeout_ms,
        },
        Notice::LobbyWaiting { waiting } => ServerMessage::Lobby {
            room,
            waiting: waiting
                .iter()
                .map(|w| LobbyEntry {
                    session_id: w.session,
                    nickname: w.nickname.clone(),
                    waited_ms: w.waited_ms,
                })
                .collect(),
        },
        Notice::HostChanged { session, nickname } => ServerMessage::HostChanged {
            room,
            host: nickname.clone(),
            session_id: *session,
        },
        Notice::MediaState {
            session,
            nickname,
            audio,
            video,
        } => ServerMessage::MediaState {
            room,
            nickname: nickname.clone(),
            session_id: *session,
            audio: *audio,
            video: *video,
        },
        Notice::FileStarted {
            transfer,
            receivers,
            chunks,
        } => ServerMessage::FileStarted {
            room,
            transfer_id: *transfer,
            receivers: receivers.clone(),
            chunks: *chunks,
        },
        Notice::FileOffered {
            transfer,
            from,
            session,
            name,
            size,
            sha256,
            chunk_size,
            chunks,
        } => ServerMessage::FileOffered {
            room,
            transfer_id: *transfer,
            from: from.clone(),
            session_id: *session,
            name: name.clone(),
            size: *size,
            sha256: sha256.clone(),
            chunk_size: *chunk_size,
            chunks: *chunks,
        },
        Notice::FileChunk {
            transfer,
            seq,
            data,
        } => ServerMessage::FileChunk {
            transfer_id: *transfer,
            seq: *seq,
            data: data.clone(),
        },
        Notice::FileAcked { transfer, next_seq } => ServerMessage::FileAck {
            transfer_id: *transfer,
            next_seq: *next_seq,
        },
        Notice::FileEnded { transfer } => ServerMessage::FileEnd {
            transfer_id: *transfer,
        },
        Notice::FileResult {
            transfer,
            nickname,
            ok,
            message,
        } => ServerMessage::FileResult {
            transfer_id: *transfer,
            nickname: nickname.clone(),
            ok: *ok,
            message: message.clone(),
        },
        Notice::FileAborted { transfer, reason } => ServerMessage::FileAborted {
            transfer_id: *transfer,
            reason: reason.clone(),
        },
        Notice::VideoLevel {
            level,
            height,
            fraction_lost,
            rtt_ms,
        } => ServerMessage::VideoLevel {
            room,
            level: (*level).to_owned(),
            height: *height,
            fraction_lost: *fraction_lost,
            rtt_ms: *rtt_ms,
        },
        Notice::KeyframeRequest => ServerMessage::KeyframeRequest { room },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::control::{DenyReason, RequestId, parse_client_line};

    #[test]
    fn a_request_id_is_added_as_the_lines_last_field() {
        let msg = ServerMessage::Error {
            code: control::ErrorCode::NotInRoom,
            message: "x \"}\n".into(),
        };
        let line = control::to_line(&msg);
        for id in [RequestId::Number(u64::MAX), RequestId::Text("a\"}b".into())] {
            let with = with_request_id(&line, &id);
            assert_eq!(with.last(), Some(&b'\n'));
            let v: serde_json::Value = match serde_json::from_slice(&with) {
                Ok(v) => v,
                Err(e) => panic!("{e}: {}", String::from_utf8_lossy(&with)),
            };
            assert_eq!(v["id"], serde_json::to_value(&id).unwrap_or_default());
            let back: ServerMessage = match serde_json::from_value(v) {
                Ok(m) => m,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(back, msg, "the message itself is unchanged");
        }
        let bare = with_request_id(b"{}\n", &RequestId::Number(1));
        assert_eq!(&*bare, b"{\"id\":1}\n");
    }

    #[test]
    fn every_room_message_type_becomes_a_command_and_session_messages_do_not() {
        let room_types = [
            r#"{"type":"MIC_REQUEST","priority":2}"#,
            r#"{"type":"MIC_RELEASE"}"#,
            r#"{"type":"CHAT","text":"hi"}"#,
            r#"{"type":"ALLOW_JOIN","session_id":4}"#,
            r#"{"type":"DENY_JOIN","session_id":4}"#,
            r#"{"type":"MEDIA_STATE","audio":true,"video":false}"#,
            r#"{"type":"MUTE","nickname":"a","muted":true}"#,
            r#"{"type":"REMOVE","nickname":"a"}"#,
            r#"{"type":"FILE_OFFER","name":"f","size":1,"sha256":"x","chunk_size":1024}"#,
            r#"{"type":"FILE_CHUNK","transfer_id":1,"seq":0,"data":"AA=="}"#,
            r#"{"type":"FILE_ACK","transfer_id":1,"next_seq":1}"#,
            r#"{"type":"FILE_END","transfer_id":1}"#,
            r#"{"type":"FILE_RESULT","transfer_id":1,"ok":true}"#,
            r#"{"type":"FILE_CANCEL","transfer_id":1}"#,
            r#"{"type":"VIDEO_STATS","reports":[]}"#,
        ];
        let mut seen = Vec::new();
        for line in room_types {
            let msg = parse_client_line(line.as_bytes()).unwrap_or(ClientMessage::Heartbeat);
            assert!(room_command(&msg).is_some(), "{line}");
            seen.push(msg.type_name());
        }
        // Every other client type is the session layer's.
        for ty in ClientMessage::TYPES {
            if !seen.contains(ty) {
                assert!(
                    [
                        "HELLO",
                        "JOIN",
                        "LEAVE",
                        "HEARTBEAT",
                        "LIST_ROOMS",
                        "LIST_MEMBERS",
                        "CREATE_MEETING"
                    ]
                    .iter()
                    .chain(&["CREATE_ROOM", "REQUEST_JOIN", "BYE"])
                    .any(|t| t == ty),
                    "{ty} is neither a room command nor a session message"
                );
            }
        }
        assert_eq!(
            room_command(&ClientMessage::DenyJoin {
                session_id: 4,
                reason: Some("no".into())
            }),
            Some(RoomCommand::LobbyAnswer {
                session: 4,
                admit: false,
                reason: Some("no".into())
            })
        );
    }

    #[test]
    fn member_lists_from_kept_entries_are_serdes_bytes() {
        use proto::control::Ssrcs;
        let u = |id: u64, nick: &str, talking: bool| {
            Arc::new(UserInfo {
                session_id: id,
                nickname: nick.into(),
                ssrcs: Ssrcs {
                    audio: id as u32,
                    video: 7,
                },
                talking,
                muted: false,
            })
        };
        let mut r = Renderer::default();
        let (a, b) = (u(1, "ann \"q\"", false), u(2, "Zoë", true));
        for users in [
            vec![],
            vec![a.clone()],
            vec![a.clone(), b.clone()],
            vec![b, a],
        ] {
            let told = Told::Session(SessionNotice::Members {
                room: "r\\1".into(),
                users,
            });
            let want = message(&told).map(|m| control::to_line(&m));
            assert_eq!(r.line(&told).map(|l| l.to_vec()), want);
        }
    }

    #[test]
    fn notices_render_with_the_room_and_lines_parse_into_commands() {
        let n = Notice::FloorDenied {
            session: 2,
            nickname: "bob".into(),
            reason: DenyReason::Queued,
            holder: Some("ann".into()),
            queue_position: Some(1),
        };
        assert_eq!(
            render("r", &n),
            Some(ServerMessage::MicDenied {
                room: "r".into(),
                reason: DenyReason::Queued,
                holder: Some("ann".into()),
                queue_position: Some(1)
            })
        );
        assert_eq!(
            render(
                "r",
                &Notice::RoomClosed {
                    reason: "bye".into()
                }
            ),
            None
        );
        assert!(matches!(
            parse(br#"{"type":"MIC_RELEASE"}"#),
            Ok(("MIC_RELEASE", Command::Room(RoomCommand::FloorRelease)))
        ));
        assert!(matches!(
            parse(br#"{"type":"BYE","reason":"done"}"#),
            Ok(("BYE", Command::Session(SessionCommand::Bye)))
        ));
        assert!(matches!(
            parse(br#"{"type":"CREATE_ROOM","room":"a","kind":"ptt"}"#),
            Ok(("CREATE_ROOM", Command::Session(SessionCommand::CreateRoom(s)))) if s.name == "a"
        ));
        assert_eq!(
            parse(br#"{"type":"JOIN"}"#).err().map(|e| e.code),
            Some(proto::control::ErrorCode::BadField)
        );
    }

    #[test]
    fn list_members_has_defaults_and_a_capped_limit() {
        let page = |line: &[u8]| match parse(line) {
            Ok((_, Command::Session(SessionCommand::ListMembers { offset, limit }))) => {
                Some((offset, limit))
            }
            _ => None,
        };
        assert_eq!(page(br#"{"type":"LIST_MEMBERS"}"#), Some((0, 100)));
        assert_eq!(
            page(br#"{"type":"LIST_MEMBERS","offset":20,"limit":5}"#),
            Some((20, 5))
        );
        assert_eq!(
            page(br#"{"type":"LIST_MEMBERS","limit":100000}"#),
            Some((0, 500))
        );
        assert_eq!(
            parse(br#"{"type":"LIST_MEMBERS","offset":-1}"#)
                .err()
                .map(|e| e.code),
            Some(proto::control::ErrorCode::BadField)
        );
        let count = Told::Session(SessionNotice::MemberCount {
            room: "r".into(),
            count: 8000,
        });
        assert_eq!(
            Renderer::default().line(&count).as_deref(),
            Some(&b"{\"type\":\"MEMBER_COUNT\",\"room\":\"r\",\"count\":8000}\n"[..])
        );
    }
}
