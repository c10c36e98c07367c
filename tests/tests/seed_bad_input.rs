//! Bad input on the seed front-ends: garbage, oversize, truncated input and
//! floods get a close (the seeds have no error message to answer with) and
//! never disturb the other members.

use std::time::Duration;

use router::config::{CompatConfig, RoomConfig, Seed};
use switchboard_tests::seed::{
    QUIET, Seed000, Seed001, Seed002, Seed003, Seed004, WAIT, constant, datagram, ip,
    seed001_request,
};
use switchboard_tests::start_router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn lo() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())
}

async fn router() -> router::Router {
    start_router(|c| {
        c.limits.hello_timeout_ms = 500;
        for (name, kind, codec) in [
            ("walkie", "ptt", "l16-44k"),
            ("talk", "chat", "l16-44k"),
            ("tip", "voice", "l16-20k"),
        ] {
            c.rooms.push(RoomConfig {
                name: name.into(),
                kind: kind.into(),
                max_participants: 0,
                options: plugin_api::sim::options(&[("codec", serde_json::json!(codec))]),
            });
        }
        c.compat.push(CompatConfig {
            seed: Seed::Ptt,
            control: lo(),
            media: Some(lo()),
            room: Some("walkie".into()),
        });
        c.compat.push(CompatConfig {
            seed: Seed::Chat,
            control: lo(),
            media: None,
            room: Some("talk".into()),
        });
        c.compat.push(CompatConfig {
            seed: Seed::Tip,
            control: lo(),
            media: Some(lo()),
            room: Some("tip".into()),
        });
        c.compat.push(CompatConfig {
            seed: Seed::Voip,
            control: lo(),
            media: Some(lo()),
            room: None,
        });
        c.compat.push(CompatConfig {
            seed: Seed::Meeting,
            control: lo(),
            media: Some(lo()),
            room: None,
        });
    })
    .await
}

/// Reads until the router closes `tcp`; panics if it stays open.
async fn closed(tcp: &mut TcpStream, what: &str) {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("{what}: still open"),
        }
    }
}

#[tokio::test]
async fn bad_input_on_the_push_to_talk_front_end_closes_only_its_sender() {
    let r = router().await;
    let f = r.front_addrs()[0];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let mut alice = Seed000::join(control, media, ip(5, 2), "alice").await;
    let mut bob = Seed000::join(control, media, ip(5, 3), "bob").await;
    alice.say("MIC_REQUEST").await;
    assert_eq!(alice.hear().await, "MIC_GRANTED:alice");
    assert_eq!(bob.hear().await, "MIC_GRANTED:alice");

    // Garbage after the name: closed.
    let mut g = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = g.write_all(b"garbage").await;
    let mut junk = Vec::new();
    for i in 0..20_000u32 {
        junk.push(b"xyz#"[(i % 4) as usize]);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = g.write_all(&junk).await;
    closed(&mut g, "garbage").await;
    // A name and nothing more: no HELLO in time is the engine's close too
    // (the name is only read on the first write).
    let mut mute = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    closed(&mut mute, "silent").await;
    // Truncated: half a word, then gone.
    let mut t = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = t.write_all(b"trunc").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = t.write_all(b"MIC_REQ").await;
    drop(t);
    // A flood of floor requests: denied while alice holds, then rate
    // limited; refused too often, its connection is closed.
    let mut flood = Seed000::join(control, media, ip(5, 4), "flood").await;
    let many = "MIC_REQUESTMIC_RELEASE".repeat(3000);
    flood.say(&many).await;
    let flood_closed = tokio::time::timeout(Duration::from_secs(10), async {
        while flood.heard.recv().await.is_some() {}
    })
    .await;
    assert!(flood_closed.is_ok(), "the flooder is closed");
    // Media from nowhere, and a datagram at the seeds' largest size from a
    // member who does not hold the floor: dropped.
    let stranger = UdpSocket::bind((ip(5, 9), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..100 {
        let _ = stranger.send_to(&datagram(1), media).await;
    }
    bob.talk(&vec![7u8; 65_507]).await;
    assert!(
        alice.heard_audio().await.is_empty(),
        "nothing reached alice"
    );

    // Alice was never disturbed: still holding, still heard; a datagram of
    // the largest size arrives whole (its samples, an odd byte left out).
    let d = datagram(5);
    alice.talk(&d).await;
    assert_eq!(bob.heard_audio().await.concat(), d);
    let big: Vec<u8> = (0..65_507u32).map(|i| (i % 251) as u8).collect();
    alice.talk(&big).await;
    assert_eq!(bob.heard_audio().await.concat(), big[..65_506]);
    alice.say("MIC_RELEASE").await;
    assert_eq!(alice.hear().await, "MIC_RELEASED");
    assert_eq!(bob.hear().await, "MIC_RELEASED");
    assert_eq!(bob.silent().await, None);
    r.shutdown().await;
}

#[tokio::test]
async fn bad_input_on_the_chat_front_end_closes_only_its_sender() {
    let r = router().await;
    let control = r.front_addrs()[1].control;
    let mut ann = Seed004::join(control, "ann").await;
    ann.expect("USERLIST:ann").await;
    let mut bob = Seed004::join(control, "bob").await;
    bob.expect("USERLIST:ann,bob").await;

    // A line longer than any the seed sends: closed.
    let mut long = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = long.write_all(b"long\n").await;
    let _ = long.write_all(&vec![b'a'; 100_000]).await;
    closed(&mut long, "a 100 kB line").await;
    // A nickname line that never ends: closed as well.
    let mut name = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = name.write_all(&vec![b'n'; 100_000]).await;
    closed(&mut name, "an endless nickname").await;
    // Lines that are not the seed's, and voice that is not base64.
    let mut junk = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = junk.write_all(b"junk\n").await;
    let mut lines = Vec::new();
    for i in 0..200 {
        lines.extend_from_slice(if i % 2 == 0 {
            b"HELLO?\n"
        } else {
            b"VOICE:***\n"
        });
    }
    let _ = junk.write_all(&lines).await;
    closed(&mut junk, "junk lines").await;
    // A chat flood: rate limited by the room, then closed for being
    // refused too often.
    let mut flood = Seed004::join(control, "flood").await;
    let mut burst = String::new();
    for i in 0..2000 {
        burst.push_str(&format!("MSG:spam {i}\n"));
    }
    flood.say(burst.trim_end()).await;
    let flood_closed = tokio::time::timeout(Duration::from_secs(10), async {
        while flood.lines.recv().await.is_some() {}
    })
    .await;
    assert!(flood_closed.is_ok(), "the flooder is closed");

    // Ann and Bob carry on.
    ann.say("MSG:still fine").await;
    bob.until(|l| l == "MSG:ann: still fine").await;
    ann.say("STATUS:START:ann").await;
    bob.until(|l| l == "STATUS:START:ann").await;
    let _ = QUIET;
    r.shutdown().await;
}

#[tokio::test]
async fn bad_input_on_the_voice_communicator_front_end_gets_unknown_error_or_a_close() {
    let r = router().await;
    let f = r.front_addrs()[2];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let (ann, _) = Seed003::join(control, media, ip(6, 2), "ann").await;
    let (mut bob, _) = Seed003::join(control, media, ip(6, 3), "bob").await;

    // Objects that are not the seed's are answered UNKNOWN_ERROR; the
    // session stays (bob still hears ann afterwards).
    bob.send(serde_json::json!({"KEY": 42})).await;
    bob.until(|v| v["KEY"] == 1).await;
    bob.send(serde_json::json!({"NAME": "no key"})).await;
    bob.until(|v| v["KEY"] == 1).await;
    // Garbage: UNKNOWN_ERROR, then, when it goes on, a close.
    let mut g = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = g.write_all(b"not json at all").await;
    let mut first = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, g.read(&mut first))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let v: serde_json::Value = serde_json::from_slice(&first[..n]).unwrap_or_default();
    assert_eq!(v["KEY"], 1, "UNKNOWN_ERROR for garbage");
    for _ in 0..40 {
        let _ = g.write_all(b"}}junk{]").await;
    }
    closed(&mut g, "garbage").await;
    // An object that never ends: closed once it passes 4 KiB.
    let mut long = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = long.write_all(br#"{"KEY":2,"NAME":""#).await;
    let _ = long.write_all(&vec![b'x'; 10_000]).await;
    closed(&mut long, "an endless object").await;
    // Audio before CLIENT_PORT, or from strangers: dropped.
    let stranger = UdpSocket::bind((ip(6, 9), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = stranger.send_to(&constant(5, 512), media).await;
    assert!(bob.heard_audio().await.is_empty());

    let d = constant(321, 512);
    ann.talk(&d).await;
    assert_eq!(bob.heard_audio().await.concat(), d, "bob still hears ann");
    let _ = QUIET;
    r.shutdown().await;
}

#[tokio::test]
async fn bad_input_on_the_voip_front_end_is_invalid_and_leaves_calls_alone() {
    let r = router().await;
    let f = r.front_addrs()[3];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let (a, b) = (ip(15, 2), ip(15, 3));
    let (mut ann, _) = Seed001::register(control, media, a, b).await;
    let (bob, _) = Seed001::register(control, media, b, a).await;

    // Connections that say nothing hold no one up (each gets TIMEOUT in
    // 30 s); a flood of garbage requests, each answered INVALID, at once.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(
            TcpStream::connect(control)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let floods: Vec<_> = (0..100u32)
        .map(|i| {
            tokio::spawn(async move {
                let junk: Vec<u8> = (0..1 + (i * 37) % 300).map(|k| (k * i) as u8).collect();
                seed001_request(control, ip(15, 50), &junk).await
            })
        })
        .collect();
    for f in floods {
        let reply = f.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply, "INVALID");
    }
    assert_eq!(ann.request(b"HEARTBEAT").await, "ALIVE");
    // A request cut short, then the connection closed: nothing answered,
    // nothing registered.
    let mut cut = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = cut.write_all(b"HELLO\0\0").await;
    drop(cut);

    // Media floods: from an unknown IP, and runts from ann's: dropped.
    let stranger = UdpSocket::bind((ip(15, 9), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..200u32 {
        let _ = stranger.send_to(&vec![i as u8; 4 + 1764], media).await;
        let _ = ann.send.send_to(&[1, 2, 3], media).await;
    }
    assert!(bob.heard().await.is_empty(), "nothing reached bob");
    // The call goes on as before.
    let sent: Vec<u8> = (0..5u8).flat_map(|k| vec![k + 1; 1764]).collect();
    for frame in sent.chunks(1764) {
        ann.talk(frame).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heard = bob.heard().await;
    let audio: Vec<u8> = heard
        .iter()
        .filter(|(s, _)| *s != switchboard_tests::seed::SEED001_EOT)
        .flat_map(|(_, a)| a.clone())
        .collect();
    assert_eq!(audio, sent);
    assert_eq!(
        heard.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, switchboard_tests::seed::SEED001_EOT]
    );
    drop(silent);
    r.shutdown().await;
}

/// A frame as seed 002 writes one.
fn seed002_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn bad_input_on_the_meeting_front_end_closes_only_its_sender() {
    let r = router().await;
    let f = r.front_addrs()[4];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let mut ann = Seed002::connect(control, media, ip(16, 2), "ann").await;
    let code = ann.create().await;
    ann.register_udp().await;
    let mut bob = Seed002::connect(control, media, ip(16, 3), "bob").await;
    bob.request_join(&code).await;
    ann.expect("NEW_JOIN_REQUEST").await;
    ann.send(serde_json::json!({"type": "ALLOW_JOIN", "client_name": "bob"}))
        .await;
    bob.expect("JOIN_ACCEPTED").await;
    bob.register_udp().await;

    // A length beyond 64 KiB: closed at once.
    let mut huge = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = huge.write_all(&0x7fff_ffffu32.to_be_bytes()).await;
    closed(&mut huge, "a huge length").await;
    // Frames that are no JSON object, or not the seed's: closed after 16.
    let mut junk = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..20 {
        let body: &[u8] = if i % 2 == 0 {
            b"not json"
        } else {
            br#"{"type":"NOPE"}"#
        };
        let _ = junk.write_all(&seed002_frame(body)).await;
    }
    closed(&mut junk, "bad frames").await;
    // A truncated frame, then gone.
    let mut cut = TcpStream::connect(control)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = cut.write_all(&[0, 0, 0, 100, b'{']).await;
    drop(cut);
    // Chunks of a file never started, a REQUEST_JOIN with no code: ignored.
    bob.send(serde_json::json!({"type": "FILE_CHUNK", "chunk_id": 3, "data": "AAAA", "target_name": "ann"}))
        .await;
    bob.send(serde_json::json!({"type": "REQUEST_JOIN"})).await;
    // A chat flood from a third member: refused beyond the room's rate and,
    // refused too often, closed; it never reaches the others in full.
    let mut flood = Seed002::connect(control, media, ip(16, 4), "flood").await;
    flood.request_join(&code).await;
    ann.expect("NEW_JOIN_REQUEST").await;
    ann.send(serde_json::json!({"type": "ALLOW_JOIN", "client_name": "flood"}))
        .await;
    flood.expect("JOIN_ACCEPTED").await;
    for i in 0..2000 {
        let body = serde_json::json!({"type": "CHAT", "message": format!("spam {i}"), "target_name": "Everyone"});
        if flood
            .wr
            .write_all(&seed002_frame(body.to_string().as_bytes()))
            .await
            .is_err()
        {
            break;
        }
    }
    let gone = ann
        .until(|v| v["type"] == "PARTICIPANT_LEFT" && v["participant_name"] == "flood")
        .await;
    let spam = gone
        .iter()
        .filter(|v| v["type"] == "CHAT_BROADCAST")
        .count();
    assert!(spam < 2000, "the flood was cut short ({spam} relayed)");

    // Media junk: from a stranger, a JPEG header on garbage, an audio
    // header that lies about its size, the largest datagram of noise.
    let stranger = UdpSocket::bind((ip(16, 9), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut fake = vec![0u8; 40];
    fake[20..24].copy_from_slice(&1000i32.to_be_bytes());
    fake.extend_from_slice(&[0xFF, 0xD8]);
    fake.extend(std::iter::repeat_n(0x55, 998));
    let mut liar = vec![0u8; 19 + 100];
    liar[12..14].copy_from_slice(&16_000u16.to_be_bytes());
    liar[14] = 1;
    liar[15..19].copy_from_slice(&5000i32.to_be_bytes());
    for d in [&fake, &liar, &vec![0x33; 65_507]] {
        let _ = stranger.send_to(d, media).await;
        let _ = ann.send.send_to(d, media).await;
    }
    assert!(bob.seen_video().await.is_empty(), "no video from junk");
    assert!(bob.heard_audio().await.is_empty(), "no audio from junk");

    // Ann and bob carry on.
    let d = constant(777, 1024);
    ann.talk(&d).await;
    let heard = bob.heard_audio().await;
    assert_eq!(
        heard
            .iter()
            .flat_map(|(_, p)| p.clone())
            .collect::<Vec<u8>>(),
        d
    );
    ann.send(
        serde_json::json!({"type": "CHAT", "message": "still here", "target_name": "Everyone"}),
    )
    .await;
    bob.until(|v| v["type"] == "CHAT_BROADCAST" && v["message"] == "still here")
        .await;
    r.shutdown().await;
}
