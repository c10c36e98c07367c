//! Scale-up: a router with two media workers. Rooms are placed across them,
//! JOINED tells each client its room's UDP port, media flows through each
//! worker's own socket, and a worker forwards only for the rooms placed on
//! it.

use std::time::Duration;

use client::Media;
use switchboard_tests::{drain_media, member, start_router};

fn voice_room(name: &str) -> router::config::RoomConfig {
    router::config::RoomConfig {
        name: name.into(),
        kind: "voice".into(),
        max_participants: 0,
        options: Default::default(),
    }
}

/// Sends `n` packets from `from` and returns what `to` received.
async fn through(from: &Media, to: &Media, n: u16) -> usize {
    for seq in 0..n {
        if let Err(e) = from
            .send_rtp(96, seq, u32::from(seq) * 960, &[7; 160])
            .await
        {
            panic!("send: {e}");
        }
    }
    drain_media(to, Duration::from_millis(300)).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_two_workers_forward_on_their_own_ports() {
    let router = start_router(|c| {
        c.media_workers = 2;
        c.rooms = vec![voice_room("a"), voice_room("b")];
    })
    .await;
    let ports: Vec<u16> = router.media_addrs().iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0], ports[1]);
    let addr = router.control_addr();
    let (_ann, ann) = member(addr, "ann", "a").await;
    let (_bob, bob) = member(addr, "bob", "a").await;
    let (_cat, cat) = member(addr, "cat", "b").await;
    let (mut dan_s, dan) = member(addr, "dan", "b").await;
    // Room a is on worker 0, room b on worker 1: each client bound at the
    // port JOINED gave it.
    assert_eq!(ann.server().port(), ports[0]);
    assert_eq!(cat.server().port(), ports[1]);
    assert_eq!(dan.server().port(), ports[1]);

    assert_eq!(through(&ann, &bob, 20).await, 20, "room a on worker 0");
    assert_eq!(through(&cat, &dan, 20).await, 20, "room b on worker 1");
    assert_eq!(drain_media(&ann, Duration::from_millis(100)).await.len(), 0);
    let before = router.media_stats();

    // Room a's media sent to worker 1's port goes nowhere: that worker
    // does not know ann's address.
    let wrong = client::Media::open(router.media_addrs()[1], 0, ann.ssrcs(), "x").await;
    assert!(
        wrong.is_err(),
        "an unknown token is refused at every worker"
    );
    let raw = proto::media::build_rtp(96, 1, 960, ann.ssrcs().audio, false, &[1; 160]);
    let stray = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = stray.send_to(&raw, router.media_addrs()[1]).await;
    assert_eq!(drain_media(&bob, Duration::from_millis(200)).await.len(), 0);
    let after = router.media_stats();
    assert_eq!(after.dropped_unbound, before.dropped_unbound + 1);

    // dan moves to room a (worker 0): after binding at JOINED's port he
    // hears ann, and no longer cat.
    if let Err(e) = dan_s.send(proto::control::ClientMessage::Leave).await {
        panic!("{e}");
    }
    if let Err(e) = dan_s.join("a").await {
        panic!("{e}");
    }
    assert_eq!(dan_s.media_server().port(), ports[0]);
    let dan2 = dan_s.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(through(&ann, &dan2, 20).await, 20, "dan in room a");
    let _ = drain_media(&bob, Duration::from_millis(100)).await;
    assert_eq!(through(&cat, &dan2, 10).await, 0, "dan left room b");
    router.shutdown().await;
}
