//! A meeting through a real router, over TCP and UDP: a host and three
//! guests (one denied), everyone's audio and video to everyone, a private
//! chat, a 20 MB file to one participant while the host's audio keeps
//! flowing, and the lobby timeout.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client::{ClientError, Media, Session};
use proto::control::{LobbyEntry, RejectReason, ServerMessage};
use switchboard_tests::{drain_media, start_router, wait_for};

const QUIET: Duration = Duration::from_secs(5);

async fn connect(addr: std::net::SocketAddr, nick: &str) -> Session {
    Session::connect(addr, nick)
        .await
        .unwrap_or_else(|e| panic!("{nick}: {e}"))
}

/// Waits until the host's LOBBY lists `n` guests.
async fn lobby(host: &mut Session, n: usize) -> Vec<LobbyEntry> {
    wait_for(host, QUIET, "LOBBY", |m| match m {
        ServerMessage::Lobby { waiting, .. } if waiting.len() == n => Some(waiting.clone()),
        _ => None,
    })
    .await
}

/// Hands a bound media port to a plain blocking socket on its own thread
/// (as `switchboard-client hold` hands it to gst-launch), so that timing
/// measurements do not depend on the test's async scheduler.
fn std_socket(m: Media) -> UdpSocket {
    let local = m.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(m);
    let s = UdpSocket::bind(local).unwrap_or_else(|e| panic!("rebind {local}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

/// Arrival times of packets with `ssrc` until `stop`.
fn record(
    sock: UdpSocket,
    ssrc: u32,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Instant>> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut at = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf)
                && n >= 12
                && u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) == ssrc
            {
                at.push(Instant::now());
            }
        }
        at
    })
}

fn max_gap(at: &[Instant]) -> Duration {
    at.windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Duration::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_three_guests_one_denied_media_chat_and_a_20_mb_file() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let mut host = connect(addr, "host").await;
    let (room, code) = host
        .create_meeting(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("meeting {room}, code {code}");

    // Three guests ask; the host sees them in the lobby and decides.
    let mut asking = Vec::new();
    let mut waiting = Vec::new();
    for nick in ["ann", "bob", "eve"] {
        let mut g = connect(addr, nick).await;
        let code = code.clone();
        asking.push(tokio::spawn(async move {
            let r = g.request_join(&code, QUIET).await;
            (g, r)
        }));
        // One at a time, so the lobby order is known.
        waiting = lobby(&mut host, asking.len()).await;
    }
    let names: Vec<&str> = waiting.iter().map(|w| w.nickname.as_str()).collect();
    assert_eq!(names, ["ann", "bob", "eve"]);
    let id = |n: &str| {
        waiting
            .iter()
            .find(|w| w.nickname == n)
            .map_or(0, |w| w.session_id)
    };
    use proto::control::ClientMessage as C;
    for msg in [
        C::AllowJoin {
            session_id: id("ann"),
        },
        C::DenyJoin {
            session_id: id("eve"),
            reason: Some("invite only".into()),
        },
        C::AllowJoin {
            session_id: id("bob"),
        },
    ] {
        host.send(msg).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let mut guests = Vec::new();
    for t in asking {
        let (g, r) = t.await.unwrap_or_else(|e| panic!("{e}"));
        guests.push((g, r));
    }
    let (mut eve, denied) = guests.pop().unwrap_or_else(|| unreachable!());
    match denied {
        Err(ClientError::Rejected { reason, message }) => {
            assert_eq!(reason, RejectReason::Denied);
            assert_eq!(message, "invite only");
        }
        other => panic!("eve: {other:?}"),
    }
    let (mut bob, r) = guests.pop().unwrap_or_else(|| unreachable!());
    assert_eq!(r.as_deref().ok(), Some(room.as_str()));
    let (mut ann, r) = guests.pop().unwrap_or_else(|| unreachable!());
    assert_eq!(r.as_deref().ok(), Some(room.as_str()));

    // Audio and video: each admitted participant sends 10 packets of each;
    // each receives the other two's, and eve (denied) nothing.
    let mut media = Vec::new();
    for s in [&host, &ann, &bob] {
        media.push(s.bind_media().await.unwrap_or_else(|e| panic!("{e}")));
    }
    let eve_media = eve.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    for m in &media {
        let ssrcs = m.ssrcs();
        for seq in 0..10u16 {
            for (pt, ssrc) in [(111u8, ssrcs.audio), (100u8, ssrcs.video)] {
                let p = proto::media::build_rtp(
                    pt,
                    seq,
                    u32::from(seq) * 960,
                    ssrc,
                    false,
                    &[7u8; 120],
                );
                m.send_raw(&p).await.unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    for (i, m) in media.iter().enumerate() {
        let got = drain_media(m, Duration::from_millis(300)).await;
        for (j, other) in media.iter().enumerate() {
            let from = |ssrc: u32| {
                got.iter()
                    .filter(|p| proto::media::rtp_header(p).is_some_and(|h| h.ssrc == ssrc))
                    .count()
            };
            let (a, v) = (from(other.ssrcs().audio), from(other.ssrcs().video));
            if i == j {
                assert_eq!((a, v), (0, 0), "never back to the sender");
            } else {
                assert_eq!(
                    (a, v),
                    (10, 10),
                    "participant {i} from {j}: audio and video"
                );
            }
        }
    }
    assert!(
        drain_media(&eve_media, Duration::from_millis(100))
            .await
            .is_empty()
    );

    // A private chat is seen by its two parties only.
    ann.chat("between us", Some("bob"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chat = |m: &ServerMessage| match m {
        ServerMessage::Chat {
            from,
            text,
            private,
            ..
        } => Some((from.clone(), text.clone(), *private)),
        _ => None,
    };
    for s in [&mut ann, &mut bob] {
        assert_eq!(
            wait_for(s, QUIET, "private CHAT", chat).await,
            ("ann".into(), "between us".into(), true)
        );
    }
    // Only now does the host speak (two connections race otherwise).
    host.chat("hello everyone", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        wait_for(&mut host, QUIET, "CHAT", chat).await,
        ("host".into(), "hello everyone".into(), false),
        "the host's first chat message is its own: it never saw the private one"
    );

    // A 20 MB file from ann to bob while the host talks at 50 packets/s;
    // ann's and bob's media ports move to plain threads that time arrivals.
    let mut iter = media.into_iter();
    let (host_media, ann_media, bob_media) = match (iter.next(), iter.next(), iter.next()) {
        (Some(h), Some(a), Some(b)) => (h, a, b),
        _ => unreachable!(),
    };
    let host_ssrc = host_media.ssrcs().audio;
    let server = host_media.server();
    let talk = std_socket(host_media);
    let stop = Arc::new(AtomicBool::new(false));
    let ann_rx = record(std_socket(ann_media), host_ssrc, stop.clone());
    let bob_rx = record(std_socket(bob_media), host_ssrc, stop.clone());
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut t = client::SyntheticTalker::new(50, 160);
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = t.next_packet(host_ssrc, 0);
                let _ = talk.send_to(&p, server);
                n += 1;
                let due = start + Duration::from_millis(20 * n);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            n
        })
    };
    let dir = std::env::temp_dir().join(format!("switchboard-meeting-{}", std::process::id()));
    let (sent_dir, got_dir) = (dir.join("sent"), dir.join("got"));
    for d in [&sent_dir, &got_dir] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    let file = sent_dir.join("big.bin");
    let bytes: Vec<u8> = {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(20);
        (0..20 * 1024 * 1024).map(|_| rng.random::<u8>()).collect()
    };
    std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let r = client::file::receive_file(&mut bob, &got_dir, |_, _| {}, |_| {}).await;
        (bob, r)
    });
    let mut windows = Vec::new();
    let report = client::file::send_file(
        &mut ann,
        &file,
        Some("bob"),
        client::file::DEFAULT_CHUNK,
        |p| windows.push(p.cwnd),
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("send: {e}"));
    let (_bob, received) = receiving.await.unwrap_or_else(|e| panic!("{e}"));
    let received = received.unwrap_or_else(|e| panic!("receive: {e}"));
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let talked = talker.join().unwrap_or(0);
    let (ann_at, bob_at) = (
        ann_rx.join().unwrap_or_default(),
        bob_rx.join().unwrap_or_default(),
    );
    let got = std::fs::read(&received.path).unwrap_or_else(|e| panic!("{e}"));
    assert!(got == bytes, "the file arrived intact");
    assert_eq!(report.results, [("bob".to_string(), true, None)]);
    let max_cwnd = windows.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "20 MiB in {:.2} s ({:.1} MB/s); window max {max_cwnd:.1} chunks; {:?}; host sent {talked} packets: ann got {} (max gap {:?}), bob got {} (max gap {:?})",
        elapsed.as_secs_f64(),
        20.0 * 1.048576 / elapsed.as_secs_f64(),
        report.counters,
        ann_at.len(),
        max_gap(&ann_at),
        bob_at.len(),
        max_gap(&bob_at),
    );
    for (who, at) in [("ann", &ann_at), ("bob", &bob_at)] {
        assert!(
            at.len() as u64 + 3 >= talked,
            "{who} got {} of {talked}",
            at.len()
        );
        assert!(
            max_gap(at) < Duration::from_millis(100),
            "{who}: gap {:?}",
            max_gap(at)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    // eve, denied, is still connected and may ask again.
    eve.send(proto::control::ClientMessage::Heartbeat)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&mut eve, QUIET, "HEARTBEAT_ACK", |m| {
        matches!(m, ServerMessage::HeartbeatAck).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_join_request_times_out() {
    let router = start_router(|c| {
        let mut options = plugin_api::Options::new();
        options.insert("lobby_timeout_secs".into(), 5.into());
        c.rooms.push(router::config::RoomConfig {
            name: "standup".into(),
            kind: "meeting".into(),
            max_participants: 0,
            options,
        });
    })
    .await;
    let addr = router.control_addr();
    // A meeting from the config file: its first member is host.
    let mut host = connect(addr, "host").await;
    host.join("standup").await.unwrap_or_else(|e| panic!("{e}"));
    let mut late = connect(addr, "late").await;
    let started = Instant::now();
    late.send(proto::control::ClientMessage::Join {
        room: "standup".into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let timeout = wait_for(&mut late, QUIET, "JOIN_PENDING", |m| match m {
        ServerMessage::JoinPending { timeout_ms, .. } => Some(*timeout_ms),
        _ => None,
    })
    .await;
    assert_eq!(timeout, 5000);
    lobby(&mut host, 1).await;
    let (reason, message) =
        wait_for(
            &mut late,
            Duration::from_secs(10),
            "JOIN_REJECTED",
            |m| match m {
                ServerMessage::JoinRejected {
                    reason, message, ..
                } => Some((*reason, message.clone())),
                _ => None,
            },
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(reason, RejectReason::TimedOut, "{message}");
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    lobby(&mut host, 0).await;
}

/// A sender reads every message of its session while it sends: errors
/// that answer the session's other commands pass by it to `other`, and
/// only its own offer's refusal, told by the offer's request id, ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_goes_on_through_errors_that_answer_other_commands() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let mut host = connect(addr, "host").await;
    let (_, code) = host
        .create_meeting(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bob = connect(addr, "bob").await;
    bob.send(proto::control::ClientMessage::RequestJoin { code })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let guest = lobby(&mut host, 1).await;
    host.send(proto::control::ClientMessage::AllowJoin {
        session_id: guest[0].session_id,
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&mut bob, QUIET, "JOINED", |m| {
        matches!(m, ServerMessage::Joined { .. }).then_some(())
    })
    .await;

    let dir = std::env::temp_dir().join(format!("switchboard-sender-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("got")).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("notes.bin");
    let bytes: Vec<u8> = (0..600_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));

    // Offered to nobody in the meeting: refused, and the refusal is known
    // as the offer's.
    let refused =
        client::file::send_file(&mut host, &file, Some("nobody"), 4096, |_| {}, |_| {}).await;
    assert!(
        matches!(refused, Err(ClientError::Router { .. })),
        "{refused:?}"
    );

    let got_dir = dir.join("got");
    // bob is handed back: dropped at once, its FILE_RESULT could be lost
    // with its connection.
    let receiving = tokio::spawn(async move {
        let r = client::file::receive_file(&mut bob, &got_dir, |_, _| {}, |_| {}).await;
        (r, bob)
    });
    // While it sends, the host's MIC_RELEASE (no floor in a meeting) is
    // answered with an ERROR, again and again.
    let control = host.control();
    // One before the offer: its ERROR comes while the sender waits for
    // FILE_STARTED (the router answers in order).
    control
        .send(proto::control::ClientMessage::MicRelease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pester = tokio::spawn(async move {
        for _ in 0..20 {
            let _ = control
                .send(proto::control::ClientMessage::MicRelease)
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut others = Vec::new();
    let report = client::file::send_file(
        &mut host,
        &file,
        Some("bob"),
        4096,
        |_| {},
        |m| others.push(m),
    )
    .await
    .unwrap_or_else(|e| panic!("the transfer ended on an error that was not its own: {e}"));
    pester.await.unwrap_or_else(|e| panic!("{e}"));
    let (received, _bob) = receiving.await.unwrap_or_else(|e| panic!("{e}"));
    let received = received.unwrap_or_else(|e| panic!("receive: {e}"));
    assert_eq!(std::fs::read(&received.path).ok(), Some(bytes));
    assert_eq!(report.results, [("bob".to_string(), true, None)]);
    let errors = others
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { .. }))
        .count();
    assert!(errors > 0, "the errors passed to `other`: {others:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
