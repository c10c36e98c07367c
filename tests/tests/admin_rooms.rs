//! Operators driving a live room over gRPC while headless clients use it over
//! TCP and UDP: WatchRoom, GrantFloor, Mute, SendChat, Kick, CloseRoom,
//! GetStats, and the errors of each.

use std::time::Duration;

use proto::control::{LeaveReason, RevokeReason, ServerMessage};
use proto_grpc::admin::{
    CloseRoomRequest, CreateRoomRequest, GetRoomRequest, GetStatsRequest, GrantFloorRequest,
    KickParticipantRequest, ListParticipantsRequest, LobbyDecisionRequest, MuteParticipantRequest,
    ParticipantRef, RevokeFloorRequest, RoomEvent, SendChatRequest, WatchRoomRequest,
    participant_ref,
};
use switchboard_tests::{admin, describe, drain_media, member, start_router, wait_for};
use tonic::{Code, Streaming};

const WAIT: Duration = Duration::from_secs(5);

fn nick(n: &str) -> Option<ParticipantRef> {
    Some(ParticipantRef {
        who: Some(participant_ref::Who::Nickname(n.into())),
    })
}

async fn next(stream: &mut Streaming<RoomEvent>) -> String {
    match tokio::time::timeout(WAIT, stream.message()).await {
        Ok(Ok(Some(ev))) => describe(&ev),
        Ok(Ok(None)) => "END".into(),
        Ok(Err(s)) => format!("ERROR {:?} {}", s.code(), s.message()),
        Err(_) => "TIMEOUT".into(),
    }
}

async fn next_n(stream: &mut Streaming<RoomEvent>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(stream).await);
    }
    out
}

fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("{:?}: {}", s.code(), s.message()),
    }
}

#[tokio::test]
async fn operator_drives_a_ptt_room_while_watching_it() {
    let router = start_router(|_| {}).await;
    let mut a = admin(&router).await;
    ok(a.create_room(CreateRoomRequest {
        name: "ops".into(),
        kind: "ptt".into(),
        max_participants: 0,
        options: Default::default(),
    })
    .await);
    let mut watch = ok(a.watch_room(WatchRoomRequest { room: "ops".into() }).await);
    assert_eq!(next(&mut watch).await, "#0 snapshot []");

    // Two clients join over TCP; one takes the floor.
    let (mut x, xm) = member(router.control_addr(), "x", "ops").await;
    let (mut y, ym) = member(router.control_addr(), "y", "ops").await;
    let granted = x.request_floor(0).await;
    assert!(
        matches!(granted, Ok(client::FloorAnswer::Granted { .. })),
        "{granted:?}"
    );
    assert_eq!(
        next_n(&mut watch, 3).await,
        ["#1 joined x", "#2 joined y", "#3 granted x p0"]
    );

    // GrantFloor pre-empts the holder: x is told, y talks, routes follow.
    ok(a.grant_floor(GrantFloorRequest {
        room: "ops".into(),
        participant: nick("Y"),
    })
    .await);
    assert_eq!(
        next_n(&mut watch, 2).await,
        ["#4 revoked x ADMIN", "#5 granted y p7"]
    );
    wait_for(&mut x, WAIT, "MIC_REVOKED", |m| match m {
        ServerMessage::MicRevoked {
            reason: RevokeReason::Admin,
            holder,
            ..
        } if holder == "x" => Some(()),
        _ => None,
    })
    .await;
    wait_for(&mut y, WAIT, "MIC_GRANTED", |m| match m {
        ServerMessage::MicGranted { holder, .. } if holder == "y" => Some(()),
        _ => None,
    })
    .await;
    for i in 0..5u16 {
        let _ = ym.send_rtp(96, i, u32::from(i) * 960, b"from y").await;
        let _ = xm.send_rtp(96, i, u32::from(i) * 960, b"from x").await;
    }
    let at_x = drain_media(&xm, Duration::from_millis(300)).await;
    let at_y = drain_media(&ym, Duration::from_millis(300)).await;
    assert_eq!((at_x.len(), at_y.len()), (5, 0), "only the holder is heard");

    let people = ok(a
        .list_participants(ListParticipantsRequest { room: "ops".into() })
        .await)
    .participants;
    let shown: Vec<_> = people
        .iter()
        .map(|p| (p.nickname.as_str(), p.talking, p.media_address.is_empty()))
        .collect();
    assert_eq!(shown, [("x", false, false), ("y", true, false)]);

    // Mute: the holder loses the floor and its media stops at the router.
    ok(a.mute_participant(MuteParticipantRequest {
        room: "ops".into(),
        participant: nick("y"),
        muted: true,
    })
    .await);
    assert_eq!(
        next_n(&mut watch, 2).await,
        ["#6 muted y true", "#7 revoked y MUTED"]
    );
    wait_for(&mut y, WAIT, "MUTED", |m| match m {
        ServerMessage::Muted { muted: true, .. } => Some(()),
        _ => None,
    })
    .await;
    let denied = y.request_floor(7).await;
    assert!(
        matches!(
            denied,
            Ok(client::FloorAnswer::Denied {
                reason: proto::control::DenyReason::Muted,
                ..
            })
        ),
        "{denied:?}"
    );
    assert_eq!(next(&mut watch).await, "#8 denied y MUTED 0");

    // Server chat to the room and to one participant.
    ok(a.send_chat(SendChatRequest {
        room: "ops".into(),
        to: None,
        text: "drill in 5".into(),
    })
    .await);
    ok(a.send_chat(SendChatRequest {
        room: "ops".into(),
        to: nick("x"),
        text: "you lead".into(),
    })
    .await);
    assert_eq!(
        next_n(&mut watch, 2).await,
        ["#9 chat server-> drill in 5", "#10 chat server->x you lead"]
    );
    let chats = |from_x: bool| {
        move |m: &ServerMessage| match m {
            ServerMessage::Chat {
                text,
                private,
                from,
                session_id: None,
                operator: true,
                ..
            } if from == "server" && (*private == from_x) => Some(text.clone()),
            _ => None,
        }
    };
    assert_eq!(
        wait_for(&mut y, WAIT, "CHAT", chats(false)).await,
        "drill in 5"
    );
    assert_eq!(
        wait_for(&mut x, WAIT, "private CHAT", chats(true)).await,
        "you lead"
    );

    // Kick: x sees the reason, then its connection closes.
    ok(a.kick_participant(KickParticipantRequest {
        room: "ops".into(),
        participant: nick("x"),
        reason: "end of shift".into(),
    })
    .await);
    let why = wait_for(&mut x, WAIT, "LEFT", |m| match m {
        ServerMessage::Left {
            reason: LeaveReason::Kicked,
            message,
            ..
        } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(why.as_deref(), Some("end of shift"));
    assert_closed(&mut x).await;
    assert_eq!(next(&mut watch).await, "#11 left x KICKED end of shift");

    // CloseRoom ends every session in the room, and the watch stream.
    let (mut z, _zm) = member(router.control_addr(), "z", "ops").await;
    assert_eq!(next(&mut watch).await, "#12 joined z");
    let closed = ok(a
        .close_room(CloseRoomRequest {
            room: "ops".into(),
            reason: "drill over".into(),
            keep_connected: false,
        })
        .await);
    assert_eq!(closed.participants, 2);
    for s in [&mut y, &mut z] {
        wait_for(s, WAIT, "LEFT ROOM_CLOSED", |m| match m {
            ServerMessage::Left {
                reason: LeaveReason::RoomClosed,
                message: Some(t),
                ..
            } if t == "drill over" => Some(()),
            _ => None,
        })
        .await;
        assert_closed(s).await;
    }
    assert_eq!(
        next_n(&mut watch, 4).await,
        [
            "#13 left y ROOM_CLOSED drill over",
            "#14 left z ROOM_CLOSED drill over",
            "#15 closed drill over",
            "END"
        ]
    );
    let gone = a.get_room(GetRoomRequest { name: "ops".into() }).await;
    assert_eq!(gone.err().map(|s| s.code()), Some(Code::NotFound));
    let stats = router.engine_stats().await.map(|s| s.sessions);
    assert_eq!(stats, Some(0), "every session ended");
    router.shutdown().await;
}

/// The connection ends (after whatever was queued before the close).
async fn assert_closed(s: &mut client::Session) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.next_event()).await {
            Ok(None) => return,
            Ok(Some(_)) => continue,
            Err(_) => panic!("connection still open"),
        }
    }
}

#[tokio::test]
async fn stats_count_packets_bytes_loss_and_drops_per_participant() {
    let router = start_router(|_| {}).await;
    let mut a = admin(&router).await;
    let (mut x, xm) = member(router.control_addr(), "x", "lobby").await;
    let (_y, ym) = member(router.control_addr(), "y", "lobby").await;
    assert!(matches!(
        x.request_floor(0).await,
        Ok(client::FloorAnswer::Granted { .. })
    ));
    // x talks 100 sequence numbers with 10 missing; y, without the floor,
    // sends 20 that are dropped.
    let payload = [7u8; 100];
    let mut sent = 0u64;
    for seq in 0..100u16 {
        if seq % 10 == 3 {
            continue;
        }
        let _ = xm.send_rtp(96, seq, u32::from(seq) * 960, &payload).await;
        sent += 1;
    }
    for seq in 0..20u16 {
        let _ = ym.send_rtp(96, seq, u32::from(seq) * 960, &payload).await;
    }
    let heard = drain_media(&ym, Duration::from_millis(300)).await;
    assert_eq!(heard.len() as u64, sent);
    let rtp_len = 12 + payload.len() as u64;

    let stats = ok(a
        .get_stats(GetStatsRequest {
            room: "lobby".into(),
            ..Default::default()
        })
        .await);
    let [room] = &stats.rooms[..] else {
        panic!("{stats:?}")
    };
    let [px, py] = &room.participants[..] else {
        panic!("{room:?}")
    };
    assert_eq!((px.nickname.as_str(), py.nickname.as_str()), ("x", "y"));
    assert_eq!((px.packets_sent, px.bytes_sent), (90, 90 * rtp_len));
    let audio = &px.streams[0];
    assert_eq!(
        (
            audio.media.as_str(),
            audio.expected,
            audio.lost,
            audio.forwarded
        ),
        ("audio", 100, 10, 90)
    );
    assert!((px.loss_fraction - 0.1).abs() < 1e-9, "{px:?}");
    // Sent back to back with 20 ms timestamps: RFC 3550 jitter is large.
    assert!(
        audio.jitter_ms > 5.0 && audio.jitter_ms.is_finite(),
        "{audio:?}"
    );
    assert_eq!((py.packets_received, py.bytes_received), (90, 90 * rtp_len));
    assert_eq!(
        (py.packets_sent, py.dropped, px.packets_received),
        (20, 20, 0)
    );
    assert_eq!(
        (room.packets_in, room.packets_out, room.dropped),
        (110, 90, 20)
    );
    let r = stats.router.unwrap_or_default();
    assert_eq!((r.sessions, r.rooms), (2, 1));
    assert!(
        r.dropped_not_routed >= 20 && r.datagrams_sent >= 90,
        "{r:?}"
    );
    // Time in the router per command type: x's MIC_REQUEST, and each
    // HELLO and JOIN, counted once; percentiles ordered and plausible.
    let by = |name: &str| {
        r.command_latency
            .iter()
            .find(|c| c.command == name)
            .cloned()
    };
    let Some(mic) = by("MIC_REQUEST") else {
        panic!("{:?}", r.command_latency)
    };
    assert_eq!(mic.count, 1);
    assert!(mic.p50_us >= 1 && mic.p50_us <= mic.p99_us && mic.p99_us <= mic.max_us);
    assert!(mic.max_us < 1_000_000, "{mic:?}");
    assert_eq!(by("HELLO").map(|c| c.count), Some(2));
    assert_eq!(by("JOIN").map(|c| c.count), Some(2));

    // Every room when none is named; NOT_FOUND for an unknown one.
    let all = ok(a
        .get_stats(GetStatsRequest {
            room: String::new(),
            ..Default::default()
        })
        .await);
    assert_eq!(all.rooms.len(), 1);
    let none = a
        .get_stats(GetStatsRequest {
            room: "nope".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(none.err().map(|s| s.code()), Some(Code::NotFound));
    router.shutdown().await;
}

#[tokio::test]
async fn operator_errors_map_to_grpc_codes() {
    let router = start_router(|c| {
        c.limits.max_rooms = 2;
        c.limits.max_watchers_per_room = 2;
    })
    .await;
    let mut a = admin(&router).await;
    let (_x, _) = member(router.control_addr(), "x", "lobby").await;
    let code = |r: Result<tonic::Status, ()>| match r {
        Ok(s) => (s.code(), s.message().to_owned()),
        Err(()) => (Code::Ok, String::new()),
    };
    macro_rules! call {
        ($e:expr) => {
            code($e.await.map(|_| ()).err().ok_or(()))
        };
    }
    let kick = |room: &str, who: Option<ParticipantRef>, reason: &str| KickParticipantRequest {
        room: room.into(),
        participant: who,
        reason: reason.into(),
    };

    // NOT_FOUND: unknown room, unknown participant.
    let (c, m) = call!(a.kick_participant(kick("atlantis", nick("x"), "")));
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(m.contains("atlantis"), "{m}");
    let (c, m) = call!(a.kick_participant(kick("lobby", nick("nobody"), "")));
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(m.contains("nobody"), "{m}");
    let by_id = Some(ParticipantRef {
        who: Some(participant_ref::Who::SessionId(999_999)),
    });
    assert_eq!(
        call!(a.mute_participant(MuteParticipantRequest {
            room: "lobby".into(),
            participant: by_id,
            muted: true,
        }))
        .0,
        Code::NotFound
    );
    for c in [
        call!(a.close_room(CloseRoomRequest {
            room: "atlantis".into(),
            ..Default::default()
        }))
        .0,
        call!(a.list_participants(ListParticipantsRequest {
            room: "atlantis".into()
        }))
        .0,
        call!(a.revoke_floor(RevokeFloorRequest {
            room: "atlantis".into()
        }))
        .0,
        call!(a.watch_room(WatchRoomRequest {
            room: "atlantis".into()
        }))
        .0,
    ] {
        assert_eq!(c, Code::NotFound);
    }

    // INVALID_ARGUMENT naming the field.
    let (c, m) = call!(a.kick_participant(kick("", nick("x"), "")));
    assert_eq!((c, m.as_str()), (Code::InvalidArgument, "room: required"));
    let (c, m) = call!(a.kick_participant(kick("lobby", None, "")));
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("participant:"), "{m}");
    let (c, m) = call!(a.kick_participant(kick("lobby", nick("x"), &"r".repeat(300))));
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("reason:"), "{m}");
    let (c, m) = call!(a.send_chat(SendChatRequest {
        room: "lobby".into(),
        to: None,
        text: " ".into(),
    }));
    assert_eq!((c, m.as_str()), (Code::InvalidArgument, "text: required"));
    let (c, m) = call!(a.send_chat(SendChatRequest {
        room: "lobby".into(),
        to: Some(ParticipantRef { who: None }),
        text: "hi".into(),
    }));
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("to:"), "{m}");

    // FAILED_PRECONDITION: nothing to revoke, no lobby to decide.
    let (c, m) = call!(a.revoke_floor(RevokeFloorRequest {
        room: "lobby".into()
    }));
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    for (c, m) in [
        call!(a.approve_join(LobbyDecisionRequest {
            room: "lobby".into(),
            participant: nick("x"),
            reason: String::new(),
        })),
        call!(a.deny_join(LobbyDecisionRequest {
            room: "lobby".into(),
            participant: nick("x"),
            reason: String::new(),
        })),
    ] {
        // Nobody ever waits to enter a ptt room.
        assert_eq!(c, Code::NotFound, "{m}");
        assert!(m.contains("waiting in the lobby"), "{m}");
    }

    // RESOURCE_EXHAUSTED: the room limit and the watcher limit.
    let room = |n: &str| CreateRoomRequest {
        name: n.into(),
        kind: "ptt".into(),
        max_participants: 0,
        options: Default::default(),
    };
    ok(a.create_room(room("second")).await);
    let (c, m) = call!(a.create_room(room("third")));
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    assert!(m.contains("at most 2 rooms"), "{m}");
    let w1 = ok(a
        .watch_room(WatchRoomRequest {
            room: "lobby".into(),
        })
        .await);
    let w2 = ok(a
        .watch_room(WatchRoomRequest {
            room: "lobby".into(),
        })
        .await);
    let (c, m) = call!(a.watch_room(WatchRoomRequest {
        room: "lobby".into()
    }));
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    assert!(m.contains("2 watchers"), "{m}");
    // A watcher that goes away frees its place.
    drop(w1);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(w) = a
            .watch_room(WatchRoomRequest {
                room: "lobby".into(),
            })
            .await
        {
            again = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a dropped watcher's place was not freed");
    drop(w2);
    router.shutdown().await;
}
