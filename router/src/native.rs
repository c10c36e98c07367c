//! The native control channel's front-end for rooms: `docs/protocol.md`'s
//! NDJSON messages parsed into [`RoomCommand`]s, and [`Notice`]s rendered
//! into its messages. This is the only place where the room's language meets
//! the native wire format; a seed system's front-end is a sibling of this
//! module with its own two functions.

use plugin_api::{CommandError, FileOffer, Notice, ReceiverReport, RoomCommand};
use proto::control::{ChatEntry, ClientMessage, ErrorCode, LobbyEntry, ServerMessage};

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
        | ClientMessage::CreateMeeting { .. }
        | ClientMessage::CreateRoom { .. }
        | ClientMessage::RequestJoin { .. }
        | ClientMessage::Bye { .. } => return None,
    })
}

/// The `ERROR` a room's refusal of `msg` becomes: the room says why, the
/// front-end names the command in its own terms.
pub fn refusal(msg: &ClientMessage, e: CommandError) -> (ErrorCode, String) {
    (e.code, format!("{}: {}", msg.type_name(), e.message))
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::control::{DenyReason, parse_client_line};

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
    fn notices_render_with_the_room_and_refusals_name_the_command() {
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
        let (code, text) = refusal(
            &ClientMessage::MicRelease,
            CommandError::new(ErrorCode::NotFloorHolder, "you do not hold it"),
        );
        assert_eq!(code, ErrorCode::NotFloorHolder);
        assert_eq!(text, "MIC_RELEASE: you do not hold it");
    }
}
