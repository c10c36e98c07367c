//! Session resumption on real sockets: a client whose connection drops
//! comes back with its resume token and is the same member of the same
//! room, heard again once it has bound its media anew.

use std::time::Duration;

use client::{ConnectOptions, FloorAnswer, Session};
use proto::control::ServerMessage;
use switchboard_tests::{drain_media, member, start_router, wait_for};

#[tokio::test]
async fn a_client_that_lost_its_connection_resumes_its_session() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (mut alice, ma) = member(addr, "alice", "lobby").await;
    let (bob, _) = member(addr, "bob", "lobby").await;
    let id = bob.welcome().session_id;
    let Some(token) = bob.welcome().resume_token.clone() else {
        panic!("no resume token in WELCOME")
    };
    // Bob's connection is cut (the process died, the Wi-Fi dropped).
    drop(bob);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while router.engine_stats().await.is_some_and(|s| s.detached == 0) {
        assert!(tokio::time::Instant::now() < deadline, "never detached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let opts = ConnectOptions {
        resume: Some(token),
        ..ConnectOptions::default()
    };
    let mut bob = match Session::connect_with(addr, "bob", opts).await {
        Ok(s) => s,
        Err(e) => panic!("resume: {e}"),
    };
    assert!(bob.welcome().resumed);
    assert_eq!(bob.welcome().session_id, id, "the same session");
    wait_for(&mut bob, Duration::from_secs(5), "JOINED", |m| {
        matches!(m, ServerMessage::Joined { room, .. } if room == "lobby").then_some(())
    })
    .await;
    // Media again from the new socket: Alice is heard.
    let mb = match bob.bind_media().await {
        Ok(m) => m,
        Err(e) => panic!("bind: {e}"),
    };
    assert!(matches!(
        alice.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    if let Err(e) = ma.send_rtp(96, 1, 160, &[1; 160]).await {
        panic!("{e}");
    }
    assert_eq!(drain_media(&mb, Duration::from_millis(500)).await.len(), 1);
    let stats = router.engine_stats().await;
    assert!(
        stats.is_some_and(|s| s.sessions == 2 && s.resumed == 1),
        "{stats:?}"
    );
    router.shutdown().await;
}
