//! Secure rooms with real sockets: two clients over TLS in a room whose
//! media is SRTP, GStreamer's `srtpenc`/`srtpdec` in their pipelines, the
//! router forwarding what it cannot read. A tone is heard; `tcpdump` on
//! the loopback shows no control line and no key in clear, and RTP payloads
//! that decode only with the sender's key; the router's statistics still
//! count loss and jitter, and SRTCP receiver reports still reach the talker.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use client::av::{Av, AvOptions, LaneConfig};
use client::{ClientError, ConnectOptions, FloorAnswer, Session};
use gst::prelude::*;
use pipelines::{Catalog, Media as Kind, Sink, Source};
use proto::control::{
    ClientMessage, ErrorCode, FEATURE_SRTP, FEATURE_STUN_INTEGRITY, ServerMessage,
};
use proto_grpc::admin::GetStatsRequest;
use switchboard_tests::audio::{ToneReport, analyze_wav, assert_heard, sine_dbfs};
use switchboard_tests::capture::{Capture, udp_payloads};
use switchboard_tests::shim::LossyShim;
use switchboard_tests::{admin, scratch, secure_options, secure_room, start_router};

const OPUS: &str = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111";
const TALK: Duration = Duration::from_secs(3);
const LOSS: f64 = 0.05;
const BACK: Duration = Duration::from_secs(2);
const BACK_HZ: f64 = 660.0;

fn opus() -> pipelines::Definition {
    match Catalog::builtin() {
        Ok(c) => c.require("opus").unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    }
}

fn av(media: &client::Media, session: &Session, lane: LaneConfig) -> Av {
    let opts = AvOptions {
        rtcp_interval: Duration::from_millis(500),
        srtp: Some(session.keyring().clone()),
        ..AvOptions::default()
    };
    Av::start(media, vec![lane], opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Decodes the Opus RTP packets of a capture (its SRTCP left out) to a
/// WAV with GStreamer, through `srtpdec` given `key` for `ssrc` when there
/// is one; `None` if the pipeline fails.
fn decode_capture(pcap: &Path, key: Option<(u32, [u8; 30])>, wav: &str) -> Option<ToneReport> {
    let wav = scratch(wav);
    let _ = std::fs::remove_file(&wav);
    let caps = match key {
        Some(_) => OPUS.replace("application/x-rtp", "application/x-srtp"),
        None => OPUS.to_owned(),
    };
    let srtpdec = if key.is_some() {
        "! srtpdec name=dec "
    } else {
        ""
    };
    let desc = format!(
        "appsrc name=src format=time caps={caps} {srtpdec}! rtpopusdepay ! opusdec \
         ! audioconvert ! wavenc ! filesink location={}",
        wav.display()
    );
    pipelines::init().unwrap_or_else(|e| panic!("{e}"));
    let pipeline = gst::parse::launch(&desc).unwrap_or_else(|e| panic!("{desc}: {e}"));
    let bin = pipeline
        .clone()
        .downcast::<gst::Bin>()
        .unwrap_or_else(|_| panic!("not a bin"));
    if let (Some((ssrc, key)), Some(dec)) = (key, bin.by_name("dec")) {
        dec.connect("request-key", false, move |args| {
            let asked = args.get(1).and_then(|v| v.get::<u32>().ok());
            let caps = (asked == Some(ssrc)).then(|| {
                gst::Caps::builder("application/x-srtp")
                    .field("srtp-key", gst::Buffer::from_slice(key.to_vec()))
                    .field("srtp-cipher", "aes-128-icm")
                    .field("srtp-auth", "hmac-sha1-80")
                    .field("srtcp-cipher", "null")
                    .field("srtcp-auth", "hmac-sha1-80")
                    .build()
            });
            Some(caps.to_value())
        });
    }
    let Some(src) = bin
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    else {
        panic!("no appsrc")
    };
    let bus = pipeline.bus().unwrap_or_else(|| panic!("no bus"));
    pipeline.set_state(gst::State::Playing).ok()?;
    let rtp = udp_payloads(pcap)
        .into_iter()
        .filter(|d| proto::media::classify(d) == proto::media::PacketKind::Rtp);
    for (i, d) in rtp.enumerate() {
        let mut buffer = gst::Buffer::from_slice(d);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(20 * i as u64));
        }
        if src.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let end = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match end.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => analyze_wav(&wav, sine_dbfs(0.5), 10.0).ok(),
        other => {
            eprintln!("decoding the capture: {other:?}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_room_is_heard_by_its_members_and_by_nobody_on_the_wire() {
    let router = start_router(|c| c.rooms = vec![secure_room("vault")]).await;
    let control_port = router.control_addr().port().to_string();
    let control = Capture::start(
        scratch("srtp-control.pcap"),
        &["tcp", "port", &control_port],
    )
    .await;

    // Bob listens; Alice talks through a shim that loses some of her RTP
    // on the way to the router.
    let mut bob = Session::connect_with(router.control_addr(), "bob", secure_options(&router))
        .await
        .unwrap_or_else(|e| panic!("bob: {e}"));
    bob.join("vault").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(bob.room_secure(), "JOINED gave bob no key");
    let mb = bob.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let heard = scratch("srtp-heard.wav");
    let _ = std::fs::remove_file(&heard);
    let back = Source::Tone {
        freq: BACK_HZ,
        volume: 0.5,
    };
    let bob_av = av(
        &mb,
        &bob,
        LaneConfig::new(opus(), Some(back), Sink::Wav(heard.clone())),
    );
    assert!(bob_av.secure());

    let mut alice = Session::connect_with(router.control_addr(), "alice", secure_options(&router))
        .await
        .unwrap_or_else(|e| panic!("alice: {e}"));
    alice.join("vault").await.unwrap_or_else(|e| panic!("{e}"));
    let shim = LossyShim::start(alice.media_server(), LOSS, 11)
        .await
        .unwrap_or_else(|e| panic!("shim: {e}"));
    let ma = alice
        .bind_media_from(shim.addr, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        alice.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let (Some(alice_key), Some(bob_key)) = (alice.keyring().own(), bob.keyring().own()) else {
        panic!("no keys")
    };
    assert_ne!(alice_key, bob_key, "one key per sender");
    // Each has the other's key, by SSRC, once the router told it.
    let a_ssrc = ma.ssrcs().audio;
    switchboard_tests::wait_for(&mut bob, Duration::from_secs(5), "SRTP_KEYS", |m| match m {
        ServerMessage::SrtpKeys { keys, .. } => {
            keys.iter().any(|k| k.ssrcs.contains(&a_ssrc)).then_some(())
        }
        _ => None,
    })
    .await;
    assert_eq!(bob.keyring().peer(a_ssrc), Some(alice_key));
    assert_eq!(alice.keyring().peer(mb.ssrcs().audio), Some(bob_key));

    // What the router sends Bob, from here on.
    let router_port = mb.server().port();
    let bob_port = mb
        .socket()
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let media = Capture::udp(scratch("srtp-media.pcap"), router_port, bob_port).await;
    let tone = Source::Tone {
        freq: 440.0,
        volume: 0.5,
    };
    let heard_back = scratch("srtp-heard-back.wav");
    let _ = std::fs::remove_file(&heard_back);
    let alice_av = av(
        &ma,
        &alice,
        LaneConfig::new(opus(), Some(tone), Sink::Wav(heard_back.clone())),
    );
    assert!(alice_av.transmit(Kind::Audio, true));
    tokio::time::sleep(TALK).await;
    alice_av.transmit(Kind::Audio, false);
    // The jitter buffer plays out; a round of receiver reports passes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let listener = bob_av.stats();
    let talker = alice_av.stats();
    let media = media.stop().await;
    // Then Bob answers, and Alice hears him.
    alice
        .release_floor()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    switchboard_tests::wait_for(&mut bob, Duration::from_secs(5), "MIC_RELEASED", |m| {
        matches!(m, ServerMessage::MicReleased { .. }).then_some(())
    })
    .await;
    match bob.request_floor(0).await {
        Ok(FloorAnswer::Granted { .. }) => {}
        other => panic!("bob's floor: {other:?}"),
    }
    assert!(bob_av.transmit(Kind::Audio, true));
    tokio::time::sleep(BACK).await;
    bob_av.transmit(Kind::Audio, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| {
        bob_av.stop(Duration::from_secs(3));
        alice_av.stop(Duration::from_secs(3));
    });
    assert!(bob_av.errors().is_empty() && alice_av.errors().is_empty());
    let report = analyze_wav(&heard_back, sine_dbfs(0.5), 10.0).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("alice heard {report:?}");
    assert_heard(&report, BACK_HZ, 0.5, 0.8 * BACK.as_secs_f64(), "alice");

    // Bob heard the tone through srtpdec, every forwarded packet
    // authenticated and decrypted.
    let report = analyze_wav(&heard, sine_dbfs(0.5), 10.0).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("bob heard {report:?}\nlistener {listener:?}\ntalker {talker:?}");
    assert_heard(&report, 440.0, 0.5, 0.8 * TALK.as_secs_f64(), "bob");

    // The router's figures, from RTP headers it reads in the clear.
    let stats = admin(&router)
        .await
        .get_stats(GetStatsRequest {
            room: "vault".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let room = &stats.rooms[0];
    let Some(pa) = room.participants.iter().find(|p| p.nickname == "alice") else {
        panic!("{room:?}")
    };
    let audio = &pa.streams[0];
    eprintln!("router: {audio:?}; shim lost {:.3}", shim.loss());
    let sent = talker.sent[0].packets_sent;
    assert_eq!(audio.expected, sent, "{audio:?}");
    assert!(
        audio.lost > 0 && audio.lost as f64 <= 0.15 * sent as f64,
        "{audio:?}"
    );
    assert!(
        audio.jitter_ms.is_finite() && audio.jitter_ms >= 0.0,
        "{audio:?}"
    );
    let [got] = &listener.received[..] else {
        panic!("{listener:?}")
    };
    // Every packet that reached the router (its statistics count RTCP
    // too) reached Bob and was authenticated and decrypted.
    assert_eq!(
        got.packets_received as i64,
        audio.expected as i64 - audio.lost,
        "every forwarded RTP packet decrypted"
    );
    // Bob's SRTCP receiver report reached Alice and was authenticated.
    assert!(
        talker.sent[0].reports.iter().any(|r| r.packets_lost > 0),
        "{talker:?}"
    );

    // On the wire: SRTP with Alice's SSRC in clear, payloads that decode
    // only through srtpdec with her key; SRTCP readable, not encrypted.
    let datagrams = udp_payloads(&media);
    let (mut rtp, mut rtcp) = (0u64, 0u64);
    for d in &datagrams {
        match proto::media::classify(d) {
            proto::media::PacketKind::Rtp => {
                let p =
                    rtp_types::RtpPacket::parse(d.as_slice()).unwrap_or_else(|e| panic!("{e:?}"));
                assert_eq!((p.ssrc(), p.payload_type()), (a_ssrc, 111));
                rtp += 1;
            }
            proto::media::PacketKind::Rtcp => {
                let Some(clear) = proto::media::srtcp_clear(d) else {
                    panic!("RTCP that is not SRTCP with a null cipher: {d:?}")
                };
                assert!(rtcp_types::Compound::parse(clear).is_ok());
                rtcp += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rtp, got.packets_received, "captured vs decrypted");
    assert!(rtcp > 0, "no SRTCP in the capture");
    // Without the key, the payloads decode to noise (or not at all); a
    // clean tone stands 130 dB over its spectrum's median.
    let clear = tokio::task::block_in_place(|| decode_capture(&media, None, "srtp-as-rtp.wav"));
    if let Some(r) = &clear {
        eprintln!("decoded without the key: {r:?}");
        assert!(
            (r.dominant_hz - 440.0).abs() > 2.0 || r.peak_over_median_db < 80.0,
            "the capture decodes without the key: {r:?}"
        );
    }
    let key = Some((a_ssrc, alice_key));
    let Some(r) = tokio::task::block_in_place(|| decode_capture(&media, key, "srtp-decrypted.wav"))
    else {
        panic!("the capture does not decrypt with alice's key")
    };
    assert_heard(
        &r,
        440.0,
        0.5,
        0.8 * TALK.as_secs_f64(),
        "capture through srtpdec",
    );

    // The control channel: TLS records only. No line, no token, no key.
    let control = control.stop().await;
    let wire: Vec<u8> = switchboard_tests::capture::tcp_data(&control).concat();
    assert!(wire.len() > 2000, "the capture missed the control channel");
    let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
    for needle in [
        "\"type\"".to_owned(),
        "HELLO".into(),
        "vault".into(),
        alice.welcome().media_token.clone(),
        b64(&alice_key),
        b64(&bob_key),
    ] {
        assert!(
            !wire.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is on the wire in clear"
        );
    }
    drop(shim);
}

#[tokio::test]
async fn sessions_that_cannot_key_are_refused_a_secure_room_and_keep_their_connection() {
    let router = start_router(|c| {
        c.rooms = vec![
            secure_room("vault"),
            switchboard_tests::ptt_room("lobby", 0),
        ]
    })
    .await;
    // Plaintext, and TLS without asking for srtp.
    let plain = Session::connect_with(
        router.control_addr(),
        "plain",
        ConnectOptions {
            features: vec![FEATURE_STUN_INTEGRITY.into(), FEATURE_SRTP.into()],
            ..ConnectOptions::default()
        },
    )
    .await;
    let mut no_srtp = secure_options(&router);
    no_srtp.features.retain(|f| f != FEATURE_SRTP);
    let unkeyed = Session::connect_with(router.control_addr(), "unkeyed", no_srtp).await;
    for (s, why) in [(plain, "connect with TLS"), (unkeyed, "`srtp`")] {
        let mut s = s.unwrap_or_else(|e| panic!("{e}"));
        match s.join("vault").await {
            Err(ClientError::Router {
                code: ErrorCode::SecureRoom,
                message,
            }) => {
                assert!(message.contains(why), "{message}")
            }
            other => panic!("{why}: {other:?}"),
        }
        // Refused, not disconnected: a plain room still takes it.
        s.join("lobby").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.room_secure());
    }
    // ROOMS tells which rooms are secure.
    let mut s = Session::connect_with(router.control_addr(), "look", secure_options(&router))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.send(ClientMessage::ListRooms)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rooms = switchboard_tests::wait_for(&mut s, Duration::from_secs(5), "ROOMS", |m| match m {
        ServerMessage::Rooms { rooms } => Some(rooms.clone()),
        _ => None,
    })
    .await;
    let secure: Vec<(&str, bool)> = rooms.iter().map(|r| (r.name.as_str(), r.secure)).collect();
    assert!(
        secure.contains(&("vault", true)) && secure.contains(&("lobby", false)),
        "{secure:?}"
    );
    // And the admin API, where `"secure": "true"` makes a secure room too.
    let mut a = admin(&router).await;
    let made = a
        .create_room(proto_grpc::admin::CreateRoomRequest {
            name: "vault2".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: [("secure".to_owned(), "true".to_owned())].into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(made.secure, "{made:?}");
    let listed = a
        .list_rooms(proto_grpc::admin::ListRoomsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .rooms;
    let secure: Vec<(&str, bool)> = listed.iter().map(|r| (r.name.as_str(), r.secure)).collect();
    assert_eq!(
        secure,
        [("lobby", false), ("vault", true), ("vault2", true)],
        "{listed:?}"
    );
}
