//! Seed 002 (meeting) clients through the router's front-end, with a seed
//! client written from ../shared/compat.md alone: length-prefixed JSON
//! frames, the host's approval, chat, camera state, files with an MD5 at the
//! end, audio (19-byte header + 1,024 samples at 16 kHz) and JPEG video
//! (40-byte header + one frame) from unbound sockets.

use std::net::SocketAddr;
use std::time::Duration;

use router::config::{CompatConfig, Seed};
use switchboard_tests::seed::{Seed002, constant, decode_jpeg, ip, jpeg_frame, pixel};
use switchboard_tests::start_router;

async fn router() -> router::Router {
    start_router(|c| {
        c.compat.push(CompatConfig {
            seed: Seed::Meeting,
            control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            media: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            room: None,
        });
    })
    .await
}

fn addrs(r: &router::Router) -> (SocketAddr, SocketAddr) {
    let f = r.front_addrs()[0];
    (f.control, f.media.unwrap_or_else(|| unreachable!()))
}

/// A seed host with its meeting, and a seed guest it let in.
async fn meeting(control: SocketAddr, media: SocketAddr, a: u8) -> (Seed002, Seed002, String) {
    let mut ann = Seed002::connect(control, media, ip(a, 2), "ann").await;
    let code = ann.create().await;
    ann.register_udp().await;
    let mut bob = Seed002::connect(control, media, ip(a, 3), "bob").await;
    bob.request_join(&code).await;
    bob.expect("JOIN_PENDING").await;
    let req = ann.expect("NEW_JOIN_REQUEST").await;
    assert_eq!(req["client_name"], "bob");
    assert!(req["client_socket_id"].is_u64(), "{req}");
    ann.send(serde_json::json!({"type": "ALLOW_JOIN", "client_name": "bob"}))
        .await;
    bob.expect("JOIN_ACCEPTED").await;
    bob.register_udp().await;
    (ann, bob, code)
}

#[tokio::test]
async fn seed_meeting_host_admits_denies_and_chats() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let (mut ann, mut bob, code) = meeting(control, media, 21).await;
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );
    // The newcomer hears of each member, host first, then of itself; the
    // host hears of the newcomer.
    let joined: Vec<serde_json::Value> = bob
        .until(|v| v["type"] == "PARTICIPANT_JOINED" && v["participant_name"] == "bob")
        .await
        .into_iter()
        .filter(|v| v["type"] == "PARTICIPANT_JOINED")
        .collect();
    assert_eq!(
        joined,
        [
            serde_json::json!({"type": "PARTICIPANT_JOINED", "participant_name": "ann", "is_host": true}),
            serde_json::json!({"type": "PARTICIPANT_JOINED", "participant_name": "bob", "is_host": false}),
        ]
    );
    let j = ann.expect("PARTICIPANT_JOINED").await;
    assert_eq!(
        (&j["participant_name"], &j["is_host"]),
        (&"bob".into(), &false.into())
    );

    // A guest the host denies, and a code nobody has.
    let mut cy = Seed002::connect(control, media, ip(21, 4), "cy").await;
    cy.request_join(&code).await;
    cy.expect("JOIN_PENDING").await;
    ann.expect("NEW_JOIN_REQUEST").await;
    ann.send(serde_json::json!({"type": "DENY_JOIN", "client_name": "cy"}))
        .await;
    let no = cy.expect("JOIN_REJECTED").await;
    assert!(no["reason"].as_str().is_some_and(|r| !r.is_empty()), "{no}");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    cy.request_join(wrong).await;
    let no = cy.expect("JOIN_REJECTED").await;
    assert!(
        no["reason"].as_str().is_some_and(|r| r.contains("code")),
        "{no}"
    );

    // Chat to everyone and privately.
    bob.send(serde_json::json!({"type": "CHAT", "message": "hi all", "target_name": "Everyone"}))
        .await;
    let m = ann.expect("CHAT_BROADCAST").await;
    assert_eq!(
        m,
        serde_json::json!({"type": "CHAT_BROADCAST", "sender_name": "bob", "message": "hi all", "is_private": false})
    );
    ann.send(serde_json::json!({"type": "CHAT", "message": "psst", "target_name": "bob"}))
        .await;
    let m = bob
        .until(|v| v["type"] == "CHAT_BROADCAST" && v["message"] == "psst")
        .await
        .pop()
        .unwrap_or_default();
    assert_eq!(
        (&m["sender_name"], &m["is_private"]),
        (&"ann".into(), &true.into())
    );

    // Heartbeat, camera state.
    bob.send(serde_json::json!({"type": "HEARTBEAT", "timestamp": 1234.5}))
        .await;
    let h = bob.expect("HEARTBEAT_ACK").await;
    assert_eq!(h["timestamp"], 1234.5);
    bob.send(serde_json::json!({"type": "CAMERA_STATUS", "enabled": false}))
        .await;
    let c = ann.expect("CAMERA_STATUS_BROADCAST").await;
    assert_eq!(
        (&c["participant_name"], &c["enabled"]),
        (&"bob".into(), &false.into())
    );

    // LEAVE: the others hear of it.
    bob.send(serde_json::json!({"type": "LEAVE"})).await;
    let l = ann.expect("PARTICIPANT_LEFT").await;
    assert_eq!(l["participant_name"], "bob");
    r.shutdown().await;
}

#[tokio::test]
async fn seed_meeting_members_hear_and_see_each_other() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let (mut ann, bob, _) = meeting(control, media, 22).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Audio: every sample, in 1,024-sample datagrams numbered without a gap.
    let sent: Vec<Vec<u8>> = (0..8i16).map(|k| constant(100 * (k + 1), 1024)).collect();
    for d in &sent {
        ann.talk(d).await;
        tokio::time::sleep(Duration::from_millis(64)).await;
    }
    let heard = bob.heard_audio().await;
    let ids: Vec<u32> = heard.iter().map(|(i, _)| *i).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive audio ids: {ids:?}"
    );
    let pcm: Vec<u8> = heard.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(pcm, sent.concat(), "bob hears what ann said");
    assert!(ann.heard_audio().await.is_empty(), "no echo");

    // Video at a size RFC 2435 cannot describe: bob gets it at its MCU-padded
    // size, the picture intact, named as ann's.
    let frame = jpeg_frame(426, 240, [200, 30, 30], [30, 30, 200]);
    for _ in 0..3 {
        ann.show(&frame, 426, 240).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = bob.seen_video().await;
    assert_eq!(seen.len(), 3, "every frame");
    assert!(seen.windows(2).all(|w| w[1].sequence == w[0].sequence + 1));
    for v in &seen {
        assert_eq!((v.width, v.height, v.sender.as_str()), (432, 240, "ann"));
        let (w, h, px) = decode_jpeg(&v.jpeg);
        assert_eq!((w, h), (432, 240));
        let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24);
        assert!(
            near(pixel(&px, w, 50, 120), [200, 30, 30]),
            "{:?}",
            pixel(&px, w, 50, 120)
        );
        assert!(near(pixel(&px, w, 400, 120), [30, 30, 200]));
    }
    assert!(ann.seen_video().await.is_empty(), "no echo");

    // A file, chunk by chunk with the seed's acknowledgements, MD5 at the end.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ann.send_file("bob", "notes.txt", &data).await;
    let mut bob = bob;
    let (from, name, got) = bob.receive_file().await;
    assert_eq!((from.as_str(), name.as_str()), ("ann", "notes.txt"));
    assert_eq!(got, data);
    r.shutdown().await;
}
