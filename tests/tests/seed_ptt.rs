//! Seed 000 (push-to-talk) clients through the router's front-end. The seed
//! client here is written from ../shared/compat.md alone and speaks only the
//! seed's wire format: its username as the first write, bare `MIC_REQUEST` /
//! `MIC_RELEASE`, each answer compared with one whole `recv()`, and raw
//! little-endian 44.1 kHz PCM datagrams from (its IP, the port it was given).

use std::net::SocketAddr;
use std::time::Duration;

use proto::control::ServerMessage;
use proto_grpc::admin::{
    GrantFloorRequest, KickParticipantRequest, ListParticipantsRequest, MuteParticipantRequest,
    ParticipantRef, RevokeFloorRequest, WatchRoomRequest, participant_ref,
};
use router::config::{CompatConfig, RoomConfig, Seed};
use switchboard_tests::seed::{QUIET, Seed000, WAIT, datagram, ip};
use switchboard_tests::{admin, describe, start_router, wait_for};

/// A router with a seed-000 front-end for room `walkie` (L16 at 44.1 kHz).
async fn router() -> router::Router {
    start_router(|c| {
        c.rooms.push(RoomConfig {
            name: "walkie".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("codec", serde_json::json!("l16-44k"))]),
        });
        c.compat.push(CompatConfig {
            seed: Seed::Ptt,
            control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            media: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            room: Some("walkie".into()),
        });
    })
    .await
}

fn front(r: &router::Router) -> (SocketAddr, SocketAddr) {
    let f = r.front_addrs()[0];
    let media = f.media.unwrap_or_else(|| panic!("no media address"));
    (f.control, media)
}

#[tokio::test]
async fn seed_clients_get_unique_ports_and_the_floor_as_the_seed_says_it() {
    let r = router().await;
    let (control, media) = front(&r);
    let mut a = Seed000::join(control, media, ip(1, 2), "alice").await;
    let mut b = Seed000::join(control, media, ip(1, 3), "bob").await;
    assert_ne!(a.port, b.port);

    // Asked and granted: every client is told, each message alone.
    a.say("MIC_REQUEST").await;
    assert_eq!(a.hear().await, "MIC_GRANTED:alice");
    assert_eq!(b.hear().await, "MIC_GRANTED:alice");
    // Taken: the requester alone is denied; seed rooms do not queue (the
    // ptt room does, for native clients), so a release grants nobody.
    b.say("MIC_REQUEST").await;
    assert_eq!(b.hear().await, "MIC_DENIED");
    assert_eq!(a.silent().await, None, "the holder hears nothing of it");

    // Only the holder's audio is forwarded, never back to it; a
    // 2,048-byte datagram arrives whole (as two 1,024-byte halves).
    let sent: Vec<Vec<u8>> = (0..5).map(datagram).collect();
    for d in &sent {
        a.talk(d).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = b.heard_audio().await;
    assert_eq!(
        got.concat(),
        sent.concat(),
        "bob hears alice's PCM as she sent it"
    );
    assert!(got.iter().all(|d| d.len() <= 2048 && d.len() % 2 == 0));
    assert!(a.heard_audio().await.is_empty(), "no echo to the talker");
    b.talk(&datagram(9)).await;
    assert!(
        a.heard_audio().await.is_empty(),
        "the floor is enforced on media: bob is not heard"
    );

    // Released: every client is told; the floor is free (bob was not
    // queued, so nobody holds it).
    a.say("MIC_RELEASE").await;
    assert_eq!(a.hear().await, "MIC_RELEASED");
    assert_eq!(b.hear().await, "MIC_RELEASED");
    assert_eq!(
        b.silent().await,
        None,
        "no grant for a request that was denied"
    );

    // Words coalesced in one write, and split across two.
    b.say("MIC_REQUESTMIC_RELEASE").await;
    assert_eq!(b.hear().await, "MIC_GRANTED:bob");
    assert_eq!(b.hear().await, "MIC_RELEASED", "a message of its own");
    assert_eq!(a.hear().await, "MIC_GRANTED:bob");
    assert_eq!(a.hear().await, "MIC_RELEASED");
    b.say("MIC_REQ").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.say("UEST").await;
    assert_eq!(b.hear().await, "MIC_GRANTED:bob");
    assert_eq!(a.hear().await, "MIC_GRANTED:bob");

    // The holder leaves: the room is told at once and goes on.
    drop(b);
    assert_eq!(a.hear().await, "MIC_RELEASED");
    a.say("MIC_REQUEST").await;
    assert_eq!(a.hear().await, "MIC_GRANTED:alice");

    // Ports stay unique among live clients after a leave (the original's
    // 10000 + count repeated a live one), and a taken name is numbered.
    let c = Seed000::join(control, media, ip(1, 4), "alice").await;
    let d = Seed000::join(control, media, ip(1, 4), "dave").await;
    let ports = [a.port, c.port, d.port];
    assert!(
        ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2],
        "{ports:?}"
    );
    let mut g = admin(&r).await;
    let list = g
        .list_participants(ListParticipantsRequest {
            room: "walkie".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut names: Vec<String> = list.participants.into_iter().map(|p| p.nickname).collect();
    names.sort();
    assert_eq!(names, ["alice", "alice-2", "dave"]);
    drop((c, d));
    r.shutdown().await;
}

fn who(nick: &str) -> Option<ParticipantRef> {
    Some(ParticipantRef {
        who: Some(participant_ref::Who::Nickname(nick.into())),
    })
}

#[tokio::test]
async fn seed_sessions_are_members_like_any_other() {
    let r = router().await;
    let (control, media) = front(&r);
    let mut g = admin(&r).await;
    let mut events = g
        .watch_room(WatchRoomRequest {
            room: "walkie".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut a = Seed000::join(control, media, ip(2, 2), "ann").await;
    // A native member in the same room sees the seed client in its list
    // and hears its floor.
    let (mut n, nm) = switchboard_tests::member(r.control_addr(), "nat", "walkie").await;
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &String| e.contains("ann")) {
        match tokio::time::timeout(WAIT, events.message()).await {
            Ok(Ok(Some(ev))) => seen.push(describe(&ev)),
            other => panic!("watch: {other:?}; saw {seen:?}"),
        }
    }
    // An operator gives the seed client the floor and takes it back.
    g.grant_floor(GrantFloorRequest {
        room: "walkie".into(),
        participant: who("ann"),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.hear().await, "MIC_GRANTED:ann");
    wait_for(&mut n, WAIT, "MIC_GRANTED ann", |m| {
        matches!(m, ServerMessage::MicGranted { holder, .. } if holder == "ann").then_some(())
    })
    .await;
    // Its audio reaches the native member as RTP L16 (PT 113, big-endian).
    let d = datagram(3);
    a.talk(&d).await;
    let mut pcm = Vec::new();
    while let Ok(Some(p)) = nm.recv(QUIET).await {
        let Some((_, pt, payload)) = proto::media::rtp_payload(&p) else {
            continue;
        };
        assert_eq!(pt, 113);
        pcm.extend(payload.chunks_exact(2).flat_map(|s| [s[1], s[0]]));
    }
    assert_eq!(pcm, d, "the native member hears the seed's samples");
    g.revoke_floor(RevokeFloorRequest {
        room: "walkie".into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.hear().await, "MIC_RELEASED");
    // Muted: its request is refused, so denied.
    g.mute_participant(MuteParticipantRequest {
        room: "walkie".into(),
        participant: who("ann"),
        muted: true,
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    a.say("MIC_REQUEST").await;
    assert_eq!(a.hear().await, "MIC_DENIED");
    // Kicked: its connection closes.
    g.kick_participant(KickParticipantRequest {
        room: "walkie".into(),
        participant: who("ann"),
        reason: "enough".into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let closed = tokio::time::timeout(WAIT, a.heard.recv()).await;
    assert_eq!(
        closed.ok(),
        Some(None),
        "the kicked client's connection ends"
    );
    drop(n);
    r.shutdown().await;
}

#[tokio::test]
async fn a_native_member_sending_another_codec_beside_seed_clients_is_refused() {
    let r = router().await;
    let (control, media) = front(&r);
    let ann = Seed000::join(control, media, ip(8, 2), "ann").await;
    let (mut nat, nm) = switchboard_tests::member(r.control_addr(), "nat", "walkie").await;
    let (_ear, em) = switchboard_tests::member(r.control_addr(), "ear", "walkie").await;
    assert!(matches!(
        nat.request_floor(0).await,
        Ok(client::FloorAnswer::Granted { .. })
    ));
    let opus = |seq: u16| {
        proto::media::build_rtp(
            111,
            seq,
            u32::from(seq) * 960,
            nm.ssrcs().audio,
            false,
            &[1; 80],
        )
    };
    for seq in 0..5 {
        let _ = nm.send_raw(&opus(seq)).await;
    }
    let message = wait_for(&mut nat, WAIT, "WRONG_CODEC", |m| match m {
        ServerMessage::Error {
            code: proto::control::ErrorCode::WrongCodec,
            message,
        } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert!(
        message.contains("l16-44k") && message.contains("113"),
        "{message}"
    );
    assert!(
        ann.heard_audio().await.is_empty(),
        "the seed client heard nothing"
    );
    assert!(
        switchboard_tests::drain_media(&em, QUIET).await.is_empty(),
        "nor anyone"
    );
    assert!(r.media_stats().dropped_wrong_codec >= 5);
    // The room's codec passes.
    let l16 = proto::media::build_rtp(113, 9, 0, nm.ssrcs().audio, false, &[0, 1, 0, 2]);
    let _ = nm.send_raw(&l16).await;
    assert_eq!(ann.heard_audio().await.concat(), [1, 0, 2, 0]);
    // Once the seed client left, the room takes any codec again.
    drop(ann);
    tokio::time::sleep(QUIET).await;
    for seq in 10..13 {
        let _ = nm.send_raw(&opus(seq)).await;
    }
    let got = switchboard_tests::drain_media(&em, QUIET).await;
    assert!(
        got.len() >= 3,
        "the L16 packet and the 3 Opus ones: {}",
        got.len()
    );
    r.shutdown().await;
}
