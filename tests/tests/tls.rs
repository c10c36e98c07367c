//! TLS on the control channel, with real sockets: sessions over TLS beside
//! plaintext ones on the same port, the CLI pinning a router on first use
//! and refusing a changed certificate or a plaintext downgrade, `require`
//! refusing plaintext, and the certificate reloading without a restart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use client::tls::{TlsOptions, Transport, Trust};
use client::{ClientError, ConnectOptions, Session};
use proto::control::{ErrorCode, ServerMessage};
use router::config::TlsMode;
use switchboard_tests::{scratch, start_router, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn tls(trust: Trust, transport: Transport) -> ConnectOptions {
    ConnectOptions {
        tls: TlsOptions {
            transport,
            trust,
            server_name: None,
        },
        ..ConnectOptions::default()
    }
}

fn fingerprint_of(router: &router::Router) -> String {
    match router.tls_fingerprint() {
        Some(f) => f,
        None => panic!("the router offers no TLS"),
    }
}

#[tokio::test]
async fn tls_and_plaintext_sessions_share_the_port_and_the_room() {
    let router = start_router(|c| {
        c.rooms = vec![router::config::RoomConfig {
            name: "talk".into(),
            kind: "chat".into(),
            max_participants: 0,
            options: Default::default(),
        }]
    })
    .await;
    let addr = router.control_addr();
    let fp = fingerprint_of(&router);
    let before = router::driver::connection::TLS_SESSIONS.load(Ordering::Relaxed);
    let opts = tls(Trust::Fingerprint(fp.to_ascii_lowercase()), Transport::Tls);
    let mut alice = match Session::connect_with(addr, "alice", opts).await {
        Ok(s) => s,
        Err(e) => panic!("TLS connect: {e}"),
    };
    assert_eq!(alice.trust().fingerprint.as_deref(), Some(fp.as_str()));
    assert!(router::driver::connection::TLS_SESSIONS.load(Ordering::Relaxed) > before);
    let mut bob = match Session::connect(addr, "bob").await {
        Ok(s) => s,
        Err(e) => panic!("plain connect: {e}"),
    };
    assert_eq!(bob.trust().fingerprint, None);
    for s in [&mut alice, &mut bob] {
        if let Err(e) = s.join("talk").await {
            panic!("join: {e}");
        }
    }
    // Lines in order, a large one among them (within the room's chat rate).
    let big = "x".repeat(3000);
    for i in 0..5 {
        let text = if i == 2 {
            big.clone()
        } else {
            format!("line {i}")
        };
        if let Err(e) = alice.chat(&text, None).await {
            panic!("{e}");
        }
    }
    for i in 0..5 {
        let want = if i == 2 {
            big.clone()
        } else {
            format!("line {i}")
        };
        let got = wait_for(
            &mut bob,
            Duration::from_secs(10),
            "alice's chat",
            |m| match m {
                ServerMessage::Chat { text, .. } => Some(text.clone()),
                _ => None,
            },
        )
        .await;
        assert_eq!(got, want);
    }
    match alice.request_floor(0).await {
        Ok(client::FloorAnswer::Granted { .. }) => {}
        other => panic!("floor over TLS: {other:?}"),
    }
    // BYE over TLS ends cleanly: GOODBYE arrives, then the end.
    if let Err(e) = alice
        .control()
        .send(proto::control::ClientMessage::Bye { reason: None })
        .await
    {
        panic!("{e}");
    }
    wait_for(&mut alice, Duration::from_secs(5), "GOODBYE", |m| {
        matches!(m, ServerMessage::Goodbye).then_some(())
    })
    .await;
    router.shutdown().await;
}

#[tokio::test]
async fn a_wrong_fingerprint_or_a_changed_certificate_is_refused_before_hello() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let wrong = "AB:".repeat(31) + "AB";
    let r = Session::connect_with(addr, "a", tls(Trust::Fingerprint(wrong), Transport::Tls)).await;
    assert!(
        matches!(
            &r,
            Err(ClientError::Tls(
                client::tls::TlsError::WrongFingerprint { .. }
            ))
        ),
        "{:?}",
        r.err()
    );
    // Trust on first use: remembered, then trusted again.
    let known = scratch("tofu-known_hosts");
    let _ = std::fs::remove_file(&known);
    let first = Session::connect_with(
        addr,
        "b",
        tls(Trust::KnownHosts(known.clone()), Transport::Auto),
    )
    .await;
    let Ok(first) = first else {
        panic!("{:?}", first.err())
    };
    assert!(
        first.trust().decision.starts_with("first use"),
        "{:?}",
        first.trust()
    );
    let text = std::fs::read_to_string(&known).unwrap_or_default();
    assert!(text.contains(&fingerprint_of(&router)), "{text}");
    let again = Session::connect_with(
        addr,
        "c",
        tls(Trust::KnownHosts(known.clone()), Transport::Auto),
    )
    .await;
    assert!(again.is_ok_and(|s| s.trust().decision.starts_with("pinned")));
    // Another router on the address the file knows: another certificate.
    let other = start_router(|c| c.state_dir = Some(scratch("other-state"))).await;
    let lie = format!(
        "{} SHA256 {}\n",
        other.control_addr(),
        fingerprint_of(&router)
    );
    assert!(std::fs::write(&known, lie).is_ok());
    let changed = Session::connect_with(
        other.control_addr(),
        "d",
        tls(Trust::KnownHosts(known.clone()), Transport::Auto),
    )
    .await;
    let msg = changed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("has changed") && msg.contains("remove the line"),
        "{msg}"
    );
    other.shutdown().await;
    router.shutdown().await;
}

#[tokio::test]
async fn a_pinned_router_that_answers_in_plaintext_is_a_downgrade() {
    let plain = start_router(|c| c.tls.mode = TlsMode::Off).await;
    assert_eq!(plain.tls_fingerprint(), None);
    let addr = plain.control_addr();
    let known = scratch("downgrade-known_hosts");
    let _ = std::fs::remove_file(&known);
    // Not pinned: Auto falls back to plaintext.
    let s = Session::connect_with(
        addr,
        "a",
        tls(Trust::KnownHosts(known.clone()), Transport::Auto),
    )
    .await;
    assert!(s.is_ok_and(|s| s.trust().fingerprint.is_none()));
    // Pinned: refused.
    let pin = format!("{addr} SHA256 {}\n", "CD:".repeat(31) + "CD");
    assert!(std::fs::write(&known, pin).is_ok());
    let s = Session::connect_with(addr, "b", tls(Trust::KnownHosts(known), Transport::Auto)).await;
    let msg = s.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("plaintext downgrade"), "{msg}");
    // TLS asked for, none spoken: an error, not a plaintext session.
    let s = Session::connect_with(
        addr,
        "c",
        tls(Trust::Fingerprint("EF".repeat(32)), Transport::Tls),
    )
    .await;
    assert!(matches!(s, Err(ClientError::Tls(_))), "{:?}", s.err());
    plain.shutdown().await;
}

#[tokio::test]
async fn require_answers_plaintext_with_tls_required_and_closes() {
    let router = start_router(|c| c.tls.mode = TlsMode::Require).await;
    let addr = router.control_addr();
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        panic!("connect")
    };
    let _ = tcp
        .write_all(b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"p\"}\n")
        .await;
    let mut lines = BufReader::new(tcp).lines();
    let first = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    let Ok(Ok(Some(line))) = first else {
        panic!("{first:?}")
    };
    let m: ServerMessage = serde_json::from_str(&line).unwrap_or(ServerMessage::Goodbye);
    assert!(
        matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::TlsRequired,
                ..
            }
        ),
        "{line}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    assert!(matches!(end, Ok(Ok(None))), "then the end: {end:?}");
    // TLS clients are served.
    let fp = fingerprint_of(&router);
    let s = Session::connect_with(addr, "t", tls(Trust::Fingerprint(fp), Transport::Tls)).await;
    assert!(s.is_ok(), "{:?}", s.err());
    router.shutdown().await;
}

#[tokio::test]
async fn the_certificate_reloads_without_a_restart() {
    // Two certificates, made by routers with state directories of their own.
    let mut pems = Vec::new();
    for name in ["reload-a", "reload-b"] {
        let r = start_router(|c| c.state_dir = Some(scratch(name))).await;
        pems.push((fingerprint_of(&r), scratch(name).join("tls.pem")));
        r.shutdown().await;
    }
    let file = scratch("reload-cert.pem");
    assert!(std::fs::copy(&pems[0].1, &file).is_ok());
    let mut config = None;
    let router = start_router(|c| {
        c.tls.cert = Some(file.clone());
        c.tls.key = Some(file.clone());
        config = Some(c.clone());
    })
    .await;
    let Some(config) = config else { panic!() };
    assert_eq!(
        router.tls_fingerprint().as_deref(),
        Some(pems[0].0.as_str())
    );
    let addr = router.control_addr();
    let held = Session::connect_with(
        addr,
        "held",
        tls(Trust::Fingerprint(pems[0].0.clone()), Transport::Tls),
    )
    .await;
    let Ok(mut held) = held else {
        panic!("{:?}", held.err())
    };
    assert!(std::fs::copy(&pems[1].1, &file).is_ok());
    if let Err(e) = router.reload(&config).await {
        panic!("reload: {e}");
    }
    assert_eq!(
        router.tls_fingerprint().as_deref(),
        Some(pems[1].0.as_str())
    );
    let new = Session::connect_with(
        addr,
        "new",
        tls(Trust::Fingerprint(pems[1].0.clone()), Transport::Tls),
    )
    .await;
    assert!(new.is_ok(), "{:?}", new.err());
    let old = Session::connect_with(
        addr,
        "old",
        tls(Trust::Fingerprint(pems[0].0.clone()), Transport::Tls),
    )
    .await;
    assert!(old.is_err(), "the old certificate is gone");
    // The session made before the reload goes on.
    assert!(held.join("lobby").await.is_ok());
    router.shutdown().await;
}
