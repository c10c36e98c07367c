//! Bad input over real sockets: each gets its documented outcome
//! (docs/protocol.md, "Errors"), and the router keeps serving everyone else.

use std::time::Duration;

use proto::control::{ErrorCode, FullScope, ServerMessage};
use switchboard_tests::{drain_media, member, start_router};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A control connection spoken by hand, byte for byte.
struct Raw {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        let s = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let (r, w) = s.into_split();
        Raw {
            r: BufReader::new(r),
            w,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.w.write_all(bytes).await {
            panic!("write: {e}");
        }
    }

    /// The next message, or None on close / 2 s of silence.
    async fn next(&mut self) -> Option<ServerMessage> {
        let v = self.next_value().await?;
        match serde_json::from_value(v.clone()) {
            Ok(m) => Some(m),
            Err(e) => panic!("router sent a line that is no message {v}: {e}"),
        }
    }

    /// The next line as JSON (to see fields outside [`ServerMessage`], such
    /// as a request id), or None on close / 2 s of silence.
    async fn next_value(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(2), self.r.read_line(&mut line)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => None,
            Ok(Ok(_)) => match serde_json::from_str(&line) {
                Ok(m) => Some(m),
                Err(e) => panic!("router sent unparseable line {line:?}: {e}"),
            },
        }
    }

    /// Sends `bytes` and expects ERROR with `code` (skipping other messages).
    async fn expect_error(&mut self, bytes: &[u8], code: ErrorCode) {
        self.send(bytes).await;
        loop {
            match self.next().await {
                Some(ServerMessage::Error { code: c, message }) => {
                    assert_eq!(
                        c,
                        code,
                        "for {:?}: {message}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
                    );
                    assert!(!message.is_empty());
                    return;
                }
                Some(_) => continue,
                None => panic!(
                    "no ERROR {code:?} for {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
                ),
            }
        }
    }

    async fn hello(&mut self, nick: &str) {
        self.send(
            format!("{{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"{nick}\"}}\n").as_bytes(),
        )
        .await;
        assert!(matches!(
            self.next().await,
            Some(ServerMessage::Welcome { .. })
        ));
    }

    /// True when the connection is still served (a heartbeat is answered).
    async fn alive(&mut self) -> bool {
        self.send(b"{\"type\":\"HEARTBEAT\"}\n").await;
        loop {
            match self.next().await {
                Some(ServerMessage::HeartbeatAck) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_outcome() {
    // A generous error budget: this test is about each outcome, not the flood limit.
    let router = start_router(|c| c.limits.error_burst = 100).await;
    let addr = router.control_addr();
    // Two innocent members keep talking through all of it.
    let ((_alice, ma), (_bob, mb)) = switchboard_tests::alice_talks_to_bob(addr).await;

    let mut x = Raw::connect(addr).await;
    // 1. A command before HELLO.
    x.expect_error(
        b"{\"type\":\"JOIN\",\"room\":\"lobby\"}\n",
        ErrorCode::HelloRequired,
    )
    .await;
    // 2. Truncated JSON.
    x.expect_error(b"{\"type\":\"HELLO\",\"version\":1\n", ErrorCode::BadJson)
        .await;
    // 3. Binary garbage.
    x.expect_error(b"\x00\xff\xfe\x13\x37garbage\x80\n", ErrorCode::BadJson)
        .await;
    // 4. JSON that is not an object.
    x.expect_error(b"[\"HELLO\"]\n", ErrorCode::BadMessage)
        .await;
    // 5. An unknown type.
    x.expect_error(b"{\"type\":\"SELF_DESTRUCT\"}\n", ErrorCode::UnknownType)
        .await;
    // 6. A field of the wrong type.
    x.expect_error(
        b"{\"type\":\"HELLO\",\"version\":\"one\",\"nickname\":\"x\"}\n",
        ErrorCode::BadField,
    )
    .await;
    // 7. A missing field.
    x.expect_error(b"{\"type\":\"HELLO\",\"version\":1}\n", ErrorCode::BadField)
        .await;
    // 8. An unsupported protocol version.
    x.expect_error(
        b"{\"type\":\"HELLO\",\"version\":99,\"nickname\":\"x\"}\n",
        ErrorCode::UnsupportedVersion,
    )
    .await;
    // 9. A nickname breaking the rules.
    x.expect_error(
        b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"<b>x</b>\"}\n",
        ErrorCode::BadNickname,
    )
    .await;
    // 10. A 10 MB line: discarded, reported, connection kept.
    let mut big = vec![b'{'; 10 * 1024 * 1024];
    big.push(b'\n');
    x.expect_error(&big, ErrorCode::LineTooLong).await;
    // The connection is still served after all of that.
    x.hello("xavier").await;
    // 11. HELLO twice.
    x.expect_error(
        b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"x\"}\n",
        ErrorCode::AlreadyWelcomed,
    )
    .await;
    // 12. An unknown room.
    x.expect_error(
        b"{\"type\":\"JOIN\",\"room\":\"atlantis\"}\n",
        ErrorCode::UnknownRoom,
    )
    .await;
    // 13. A floor request outside any room.
    x.expect_error(b"{\"type\":\"MIC_REQUEST\"}\n", ErrorCode::NotInRoom)
        .await;
    // 14. A nickname already used in the room (case-insensitively).
    let mut y = Raw::connect(addr).await;
    y.hello("ALICE").await;
    y.expect_error(
        b"{\"type\":\"JOIN\",\"room\":\"lobby\"}\n",
        ErrorCode::NicknameTaken,
    )
    .await;
    // 15. Release without holding the floor.
    x.send(b"{\"type\":\"JOIN\",\"room\":\"lobby\"}\n").await;
    x.expect_error(b"{\"type\":\"MIC_RELEASE\"}\n", ErrorCode::NotFloorHolder)
        .await;
    // 16. A priority above the room's maximum.
    x.expect_error(
        b"{\"type\":\"MIC_REQUEST\",\"priority\":200}\n",
        ErrorCode::BadField,
    )
    .await;
    // 17. JOIN while in a room.
    x.expect_error(
        b"{\"type\":\"JOIN\",\"room\":\"lobby\"}\n",
        ErrorCode::AlreadyInRoom,
    )
    .await;
    assert!(x.alive().await, "the connection survived every error");

    // Media plane.
    let udp = match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let media = router.media_addr();
    let before = router.media_stats();
    // 18. UDP garbage and an empty datagram from an unknown address: dropped, counted.
    let _ = udp.send_to(b"\xde\xad\xbe\xef garbage", media).await;
    let _ = udp.send_to(b"", media).await;
    // 19. A STUN request with a wrong token: a 401 error response.
    let Ok((req, tid)) = proto::media::binding_request("wrong-token") else {
        panic!()
    };
    let _ = udp.send_to(&req, media).await;
    let mut buf = [0u8; 1500];
    let reply = tokio::time::timeout(Duration::from_secs(2), udp.recv_from(&mut buf)).await;
    let Ok(Ok((n, _))) = reply else {
        panic!("no STUN answer")
    };
    assert!(matches!(
        proto::media::parse_binding_response(&buf[..n], tid),
        Some(proto::media::BindingResponse::Error(401, _))
    ));
    // 20. A truncated STUN message.
    let _ = udp.send_to(&req[..10], media).await;
    // 21. Truncated RTP from a bound member.
    let _ = ma.send_raw(&[0x80, 96, 0, 1, 0]).await;
    // 22. RTCP with a lying length field from a bound member.
    let _ = mb.send_raw(&[0x80, 201, 0, 9, 1, 2, 3, 4]).await;
    // 23. A well-formed RTP header on a 2,000-byte datagram from the member
    // that may talk: dropped whole, not cut to 1,500 and forwarded.
    let mut big = vec![0u8; 2000];
    big[..12].copy_from_slice(&[0x80, 96, 0, 9, 0, 0, 0, 9, 0, 0, 0, 0]);
    big[8..12].copy_from_slice(&ma.ssrcs().audio.to_be_bytes());
    let _ = ma.send_raw(&big).await;
    // 24. A compound RTCP packet from Bob, his own receiver report first,
    // then a BYE that speaks for Alice's stream: dropped, not forwarded.
    let mut rtcp = vec![0x80, 201, 0, 1];
    rtcp.extend(mb.ssrcs().audio.to_be_bytes());
    rtcp.extend([0x82, 203, 0, 2]);
    rtcp.extend(mb.ssrcs().audio.to_be_bytes());
    rtcp.extend(ma.ssrcs().audio.to_be_bytes());
    let _ = mb.send_raw(&rtcp).await;
    // Wait until the worker has counted all seven (not a fixed sleep).
    let counted = |m: &router::media::MediaStats| {
        m.dropped_unbound + m.dropped_malformed + m.dropped_oversize + m.dropped_foreign_ssrc
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counted(&router.media_stats()) < counted(&before) + 7 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            router.media_stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = router.media_stats();
    assert_eq!(
        after.dropped_unbound - before.dropped_unbound,
        2,
        "{after:?}"
    );
    assert_eq!(
        after.dropped_malformed - before.dropped_malformed,
        3,
        "{after:?}"
    );
    assert_eq!(
        after.dropped_oversize - before.dropped_oversize,
        1,
        "{after:?}"
    );
    assert_eq!(
        after.dropped_foreign_ssrc - before.dropped_foreign_ssrc,
        1,
        "{after:?}"
    );
    assert_eq!(after.sent, before.sent, "nothing bad was forwarded");

    // The innocent are still served: Alice's media reaches Bob.
    let _ = ma.send_rtp(96, 5, 5, &[9; 160]).await;
    assert_eq!(drain_media(&mb, Duration::from_millis(300)).await.len(), 1);
    assert!(x.alive().await);
    let stats = router.engine_stats().await;
    assert!(stats.is_some_and(|s| s.sessions == 4), "{stats:?}");
    router.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_keeps_sending_garbage_is_closed() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (_alice, _) = member(addr, "alice", "lobby").await;
    let mut x = Raw::connect(addr).await;
    let mut last = None;
    for _ in 0..30 {
        x.send(b"not json at all\n").await;
    }
    while let Some(m) = x.next().await {
        last = Some(m);
    }
    match last {
        Some(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::TooManyErrors),
        other => panic!("expected TOO_MANY_ERRORS then close, got {other:?}"),
    }
    // Closed: reads end.
    assert!(x.next().await.is_none());
    let stats = router.engine_stats().await;
    assert!(
        stats.is_some_and(|s| s.sessions == 1 && s.closed_for_errors == 1),
        "{stats:?}"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn a_full_router_answers_full_then_closes() {
    let router = start_router(|c| c.limits.max_sessions = 2).await;
    let addr = router.control_addr();
    let (_a, _) = member(addr, "a", "lobby").await;
    let (_b, _) = member(addr, "b", "lobby").await;
    // A third connects (it waits among those who have not said HELLO)
    // and is told FULL at its HELLO.
    let mut x = Raw::connect(addr).await;
    x.send(b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"x\"}\n")
        .await;
    assert!(matches!(
        x.next().await,
        Some(ServerMessage::Full {
            scope: FullScope::Server,
            ..
        })
    ));
    assert!(x.next().await.is_none(), "closed after FULL");
    router.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_closed_at_its_deadline() {
    let router = start_router(|c| c.limits.hello_timeout_ms = 300).await;
    let addr = router.control_addr();
    let (_a, _) = member(addr, "a", "lobby").await;
    let mut x = Raw::connect(addr).await;
    assert!(matches!(
        x.next().await,
        Some(ServerMessage::Error {
            code: ErrorCode::HelloRequired,
            ..
        })
    ));
    assert!(x.next().await.is_none(), "closed after the deadline");
    let stats = router.engine_stats().await;
    assert!(
        stats.is_some_and(|s| s.sessions == 1 && s.hello_timeouts == 1),
        "{stats:?}"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn a_full_room_answers_full_and_keeps_the_session() {
    let router = start_router(|c| {
        c.rooms = vec![switchboard_tests::ptt_room("duo", 2)];
    })
    .await;
    let addr = router.control_addr();
    let (_a, _) = member(addr, "a", "duo").await;
    let (_b, _) = member(addr, "b", "duo").await;
    let mut x = Raw::connect(addr).await;
    x.hello("c").await;
    x.send(b"{\"type\":\"JOIN\",\"room\":\"duo\"}\n").await;
    assert!(matches!(
        x.next().await,
        Some(ServerMessage::Full {
            scope: FullScope::Room,
            ..
        })
    ));
    assert!(x.alive().await);
    router.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_server_close_to_everyone() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let mut x = Raw::connect(addr).await;
    x.hello("x").await;
    let mut y = Raw::connect(addr).await;
    y.hello("y").await;
    let started = tokio::time::Instant::now();
    router.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    for c in [&mut x, &mut y] {
        assert!(matches!(
            c.next().await,
            Some(ServerMessage::ServerClose { .. })
        ));
        assert!(c.next().await.is_none());
    }
}

#[tokio::test]
async fn a_stun_flood_neither_stalls_control_nor_goes_unaccounted() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (mut alice, _) = member(addr, "alice", "lobby").await;
    let media = router.media_addr();
    let flooder = match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let Ok((req, _)) = proto::media::binding_request("bogus-token") else {
        panic!()
    };
    let flood = tokio::spawn(async move {
        for _ in 0..20_000 {
            let _ = flooder.send_to(&req, media).await;
        }
    });
    // Control keeps answering promptly during the flood.
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = tokio::time::Instant::now();
        if let Err(e) = alice.send(proto::control::ClientMessage::Heartbeat).await {
            panic!("{e}");
        }
        switchboard_tests::wait_for(&mut alice, Duration::from_secs(2), "HEARTBEAT_ACK", |m| {
            matches!(m, ServerMessage::HeartbeatAck).then_some(())
        })
        .await;
        worst = worst.max(t.elapsed());
    }
    let _ = flood.await;
    // Not stalled: every heartbeat was answered (within wait_for's 2 s);
    // how fast is a benchmark's business, not a test's on a busy machine.
    eprintln!("slowest heartbeat during the flood: {worst:?}");
    // Every request the router read was refused or dropped, and counted,
    // once the engine has caught up with what the worker handed it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = router.media_stats();
        let Some(e) = router.engine_stats().await else {
            panic!()
        };
        if m.stun_requests > 0 && m.stun_requests == e.stun_refused + e.stun_bound + m.stun_dropped
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m:?} {e:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    router.shutdown().await;
}

#[tokio::test]
async fn pipelined_commands_are_told_apart_by_their_request_ids() {
    let router = start_router(|_| {}).await;
    let mut x = Raw::connect(router.control_addr()).await;
    x.send(b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"x\",\"id\":\"h\"}\n")
        .await;
    let Some(welcome) = x.next_value().await else {
        panic!("no WELCOME")
    };
    assert_eq!(welcome["type"], "WELCOME");
    assert_eq!(welcome["id"], "h");
    assert_eq!(welcome["limits"]["line_bytes"], 65536, "{welcome}");
    assert!(welcome["limits"]["floor"]["burst"].is_u64(), "{welcome}");
    // Three commands in one write; each answer says which it answers.
    x.send(
        concat!(
            "{\"type\":\"MIC_RELEASE\",\"id\":1}\n",
            "{\"type\":\"JOIN\",\"room\":\"lobby\",\"id\":2}\n",
            "{\"type\":\"JOIN\",\"room\":[],\"id\":3}\n",
        )
        .as_bytes(),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let Some(v) = x.next_value().await else {
            panic!("answers so far: {seen:?}")
        };
        let code = v["code"].as_str().unwrap_or_default().to_owned();
        let ty = v["type"].as_str().unwrap_or_default().to_owned();
        if ty == "ERROR" || ty == "JOINED" {
            seen.push((v["id"].as_u64(), ty, code));
        } else {
            assert_eq!(v["id"], 2, "what else comes now answers the JOIN: {v}");
        }
    }
    assert_eq!(
        seen,
        vec![
            (Some(1), "ERROR".into(), "NOT_IN_ROOM".into()),
            (Some(2), "JOINED".into(), String::new()),
            (Some(3), "ERROR".into(), "BAD_FIELD".into()),
        ]
    );
    assert!(x.alive().await);
    router.shutdown().await;
}
