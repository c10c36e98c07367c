//! IPv6: control, media and admin listeners on `::1`, and a dual-stack
//! `[::]` listener serving IPv4 clients too.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_tests::{drain_media, member, start_router};

fn addr(s: &str) -> SocketAddr {
    match s.parse() {
        Ok(a) => a,
        Err(e) => panic!("{s}: {e}"),
    }
}

#[tokio::test]
async fn a_router_on_ipv6_loopback_serves_control_media_and_admin() {
    let router = start_router(|c| {
        c.control = addr("[::1]:0");
        c.media = addr("[::1]:0");
        c.admin = addr("[::1]:0");
    })
    .await;
    assert!(router.control_addr().is_ipv6());
    let (mut alice, ma) = member(router.control_addr(), "alice", "lobby").await;
    let (_bob, mb) = member(router.control_addr(), "bob", "lobby").await;
    // Floor and media over IPv6: Alice's packet reaches Bob.
    assert!(matches!(
        alice.request_floor(0).await,
        Ok(client::FloorAnswer::Granted { .. })
    ));
    if let Err(e) = ma.send_rtp(96, 1, 160, &[7; 160]).await {
        panic!("{e}");
    }
    let got = drain_media(&mb, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 1, "Bob heard Alice over IPv6");
    // The admin API answers on ::1.
    let endpoint = format!("http://{}", router.admin_addr());
    let mut admin = match proto_grpc::admin::admin_client::AdminClient::connect(endpoint).await {
        Ok(c) => c,
        Err(e) => panic!("admin over IPv6: {e}"),
    };
    let stats = admin
        .get_stats(proto_grpc::admin::GetStatsRequest::default())
        .await;
    assert!(stats.is_ok_and(|s| s.into_inner().router.is_some_and(|r| r.sessions == 2)));
    router.shutdown().await;
}

#[tokio::test]
async fn a_dual_stack_listener_serves_ipv4_and_ipv6_clients() {
    let router = start_router(|c| {
        c.control = addr("[::]:0");
        c.media = addr("[::]:0");
    })
    .await;
    let port = router.control_addr().port();
    let (_a, ma) = member(SocketAddr::from(([127, 0, 0, 1], port)), "v4", "lobby").await;
    let (_b, mb) = member(addr(&format!("[::1]:{port}")), "v6", "lobby").await;
    // Both bound their media; each one's packets reach the other's socket
    // once it may talk (ptt: nobody holds the floor, so nothing yet).
    assert!(
        drain_media(&ma, Duration::from_millis(100))
            .await
            .is_empty()
    );
    assert!(
        drain_media(&mb, Duration::from_millis(100))
            .await
            .is_empty()
    );
    let stats = router.engine_stats().await;
    assert!(
        stats.is_some_and(|s| s.sessions == 2 && s.stun_bound == 2),
        "{stats:?}"
    );
    router.shutdown().await;
}
