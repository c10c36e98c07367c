//! Push-to-talk through a real router: TCP control, UDP media, STUN binding.

use std::time::Duration;

use client::FloorAnswer;
use proto::control::{DenyReason, ReleaseReason, ServerMessage};
use switchboard_tests::{drain_media, member, start_router, wait_for};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn holder_is_heard_by_others_byte_identical_and_floor_hands_over() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (mut a, ma) = member(addr, "alice", "lobby").await;
    let (mut b, mb) = member(addr, "bob", "lobby").await;
    let (_c, mc) = member(addr, "carol", "lobby").await;

    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    // Everyone is told who holds the floor.
    wait_for(&mut b, QUIET * 3, "MIC_GRANTED", |m| {
        matches!(m, ServerMessage::MicGranted { holder, .. } if holder == "alice").then_some(())
    })
    .await;

    let mut sent = Vec::new();
    for seq in 0..50u16 {
        let payload: Vec<u8> = (0..160).map(|i| (i as u16 ^ seq) as u8).collect();
        let p = proto::media::build_rtp(
            96,
            seq,
            u32::from(seq) * 960,
            ma.ssrcs().audio,
            seq == 0,
            &payload,
        );
        if let Err(e) = ma.send_raw(&p).await {
            panic!("send: {e}");
        }
        sent.push(p);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got_b = drain_media(&mb, QUIET).await;
    let got_c = drain_media(&mc, QUIET).await;
    let got_a = drain_media(&ma, QUIET).await;
    assert_eq!(got_b, sent, "B receives A's RTP byte for byte, in order");
    assert_eq!(got_c, sent, "C receives A's RTP byte for byte, in order");
    assert!(
        got_a.is_empty(),
        "A never hears itself ({} packets came back)",
        got_a.len()
    );

    // B asks while A talks: queued at position 1.
    match b.request_floor(0).await {
        Ok(FloorAnswer::Denied {
            reason: DenyReason::Queued,
            queue_position: Some(1),
            holder: Some(h),
        }) => assert_eq!(h, "alice"),
        other => panic!("expected queued at 1, got {other:?}"),
    }
    // B's media is not forwarded while it waits.
    let p = proto::media::build_rtp(96, 1, 1, mb.ssrcs().audio, false, &[7; 160]);
    let _ = mb.send_raw(&p).await;
    assert!(
        drain_media(&mc, QUIET).await.is_empty(),
        "a non-holder's RTP is not forwarded"
    );

    if let Err(e) = a.release_floor().await {
        panic!("{e}");
    }
    wait_for(&mut b, QUIET * 3, "MIC_GRANTED to bob", |m| {
        matches!(m, ServerMessage::MicGranted { holder, .. } if holder == "bob").then_some(())
    })
    .await;
    let _ = mb.send_raw(&p).await;
    assert_eq!(drain_media(&mc, QUIET).await, vec![p.clone()]);
    assert_eq!(drain_media(&ma, QUIET).await, vec![p]);
    let stats = router.media_stats();
    assert_eq!(stats.dropped_not_routed, 1, "{stats:?}");
    router.shutdown().await;
}

#[tokio::test]
async fn holder_dropping_its_connection_frees_the_floor_at_once() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (mut a, ma) = member(addr, "alice", "lobby").await;
    let (mut b, _mb) = member(addr, "bob", "lobby").await;
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let _ = ma.send_rtp(96, 0, 0, &[0; 160]).await;
    let started = tokio::time::Instant::now();
    drop(a); // closes the TCP connection mid-burst
    let reason = wait_for(
        &mut b,
        Duration::from_secs(15),
        "MIC_RELEASED",
        |m| match m {
            ServerMessage::MicReleased { holder, reason, .. } if holder == "alice" => Some(*reason),
            _ => None,
        },
    )
    .await;
    assert_eq!(reason, ReleaseReason::Disconnected);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The floor is free for the next speaker.
    assert!(matches!(
        b.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    router.shutdown().await;
}

#[tokio::test]
async fn silent_holder_is_dropped_within_the_silence_timeout() {
    let router = start_router(|c| {
        c.limits.heartbeat_interval_ms = 100;
        c.limits.silence_timeout_ms = 400;
    })
    .await;
    let addr = router.control_addr();
    let opts = client::ConnectOptions {
        heartbeat: false,
        ..Default::default()
    };
    let mut a = match client::Session::connect_with(addr, "mute", opts).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = a.join("lobby").await {
        panic!("{e}");
    }
    let (mut b, _mb) = member(addr, "bob", "lobby").await;
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let started = tokio::time::Instant::now();
    let reason = wait_for(
        &mut b,
        Duration::from_secs(3),
        "MIC_RELEASED",
        |m| match m {
            ServerMessage::MicReleased { holder, reason, .. } if holder == "mute" => Some(*reason),
            _ => None,
        },
    )
    .await;
    assert_eq!(reason, ReleaseReason::TimedOut);
    assert!(
        started.elapsed() <= Duration::from_millis(900),
        "took {:?}",
        started.elapsed()
    );
    // B, which heartbeats, is still there.
    assert!(matches!(
        b.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    router.shutdown().await;
}

#[tokio::test]
async fn spoofed_ssrc_from_another_address_is_dropped() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (mut a, ma) = member(addr, "alice", "lobby").await;
    let (_b, mb) = member(addr, "bob", "lobby").await;
    let (_m, mm) = member(addr, "mallory", "lobby").await;
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    // Mallory, bound at its own address, forges Alice's SSRC.
    let forged = proto::media::build_rtp(96, 9, 9, ma.ssrcs().audio, false, &[1; 160]);
    let _ = mm.send_raw(&forged).await;
    // An unbound socket tries the same.
    let stranger = match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let _ = stranger.send_to(&forged, router.media_addr()).await;
    assert!(
        drain_media(&mb, QUIET).await.is_empty(),
        "forged packets were forwarded"
    );
    let s = router.media_stats();
    assert_eq!(s.dropped_foreign_ssrc, 1, "{s:?}");
    assert_eq!(s.dropped_unbound, 1, "{s:?}");
    assert_eq!(s.sent, 0);
    // The real Alice still gets through.
    let _ = ma.send_rtp(96, 1, 1, &[2; 160]).await;
    assert_eq!(drain_media(&mb, QUIET).await.len(), 1);
    router.shutdown().await;
}

#[tokio::test]
async fn rtcp_reaches_the_other_members() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (_a, ma) = member(addr, "alice", "lobby").await;
    let (_b, mb) = member(addr, "bob", "lobby").await;
    // A receiver report from B (no floor needed): goes to A.
    let mut rr = vec![0x80, 201, 0, 1];
    rr.extend_from_slice(&mb.ssrcs().audio.to_be_bytes());
    let _ = mb.send_raw(&rr).await;
    assert_eq!(drain_media(&ma, QUIET).await, vec![rr]);
    router.shutdown().await;
}

#[tokio::test]
async fn two_rooms_are_isolated() {
    let router = start_router(|c| {
        c.rooms = vec![
            switchboard_tests::ptt_room("red", 0),
            switchboard_tests::ptt_room("blue", 0),
        ];
    })
    .await;
    let addr = router.control_addr();
    let (mut r1, m1) = member(addr, "r1", "red").await;
    let (_r2, m2) = member(addr, "r2", "red").await;
    let (mut b1, _) = member(addr, "b1", "blue").await;
    let (_b2, mb2) = member(addr, "b2", "blue").await;
    assert!(matches!(
        r1.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    // Each room has its own floor.
    assert!(matches!(
        b1.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let _ = m1.send_rtp(96, 0, 0, &[1; 100]).await;
    assert_eq!(drain_media(&m2, QUIET).await.len(), 1);
    assert!(drain_media(&mb2, QUIET).await.is_empty());
    router.shutdown().await;
}
