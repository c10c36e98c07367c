//! Mixed rooms: seed clients (written from compat.md) and native clients
//! with real GStreamer pipelines hear each other's tone, frequency and level
//! checked at both ends. The native side picks its definition from the
//! room's codec, as the CLI and the desktop client do.

use std::net::SocketAddr;
use std::time::Duration;

use client::FloorAnswer;
use client::av::{Av, AvOptions, LaneConfig};
use pipelines::{Catalog, Media as Kind, Sink, Source};
use router::config::{CompatConfig, RoomConfig, Seed};
use switchboard_tests::audio::{analyze, analyze_wav, assert_heard, sine_dbfs};
use switchboard_tests::seed::{
    Seed000, Seed002, Seed003, Seed004, decode_jpeg, ip, jpeg_frame, samples, voice_of,
};
use switchboard_tests::{member, start_router, wait_for};

const VOLUME: f64 = 0.5;
const TALK: Duration = Duration::from_secs(2);

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())
}

/// A router with one room of `kind` speaking `codec`, behind `seed`'s
/// front-end.
async fn router(seed: Seed, kind: &str, codec: &str) -> router::Router {
    start_router(|c| {
        c.rooms.push(RoomConfig {
            name: "mixed".into(),
            kind: kind.into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("codec", serde_json::json!(codec))]),
        });
        c.compat.push(CompatConfig {
            seed,
            control: lo(),
            media: seed.has_media().then(lo),
            room: Some("mixed".into()),
        });
    })
    .await
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-mixed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(name)
}

/// A tone as seed PCM: `n` little-endian samples at `rate`, from sample `at`.
fn tone(hz: f64, rate: u32, at: usize, n: usize) -> Vec<u8> {
    (at..at + n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (VOLUME * 32767.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// Sends `hz` for [`TALK`] in frames of `frame` samples at real time.
async fn seed_tone(hz: f64, rate: u32, frame: usize, mut send: impl AsyncFnMut(Vec<u8>)) {
    let frames = (TALK.as_secs_f64() * f64::from(rate) / frame as f64) as usize;
    let period = Duration::from_secs_f64(frame as f64 / f64::from(rate));
    let start = tokio::time::Instant::now();
    for k in 0..frames {
        send(tone(hz, rate, k * frame, frame)).await;
        tokio::time::sleep_until(start + period * (k as u32 + 1)).await;
    }
}

/// A native member's pipelines for the room's codec: a tone source that
/// is not yet transmitting, and a WAV sink.
fn native_av(media: &client::Media, codec: &str, hz: f64, wav: &std::path::Path) -> Av {
    let catalog = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    let def = catalog
        .for_room_codec(codec)
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    let source = Source::Tone {
        freq: hz,
        volume: VOLUME,
    };
    let lanes = vec![LaneConfig::new(
        def,
        Some(source),
        Sink::Wav(wav.to_path_buf()),
    )];
    Av::start(media, lanes, AvOptions::default()).unwrap_or_else(|e| panic!("av: {e}"))
}

/// What a seed client heard of the native tone.
fn check_seed_heard(pcm: &[u8], rate: u32, hz: f64, what: &str) {
    let s: Vec<f32> = samples(pcm)
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();
    let r = analyze(rate, &s, sine_dbfs(VOLUME), 10.0);
    eprintln!("{what}: {r:?}");
    assert_heard(&r, hz, VOLUME, 0.8 * TALK.as_secs_f64(), what);
}

fn check_native_heard(av: Av, wav: &std::path::Path, hz: f64, what: &str) {
    tokio::task::block_in_place(|| av.stop(Duration::from_secs(3)));
    assert!(av.errors().is_empty(), "{what}: {:?}", av.errors());
    let r = analyze_wav(wav, sine_dbfs(VOLUME), 10.0).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{what}: {r:?}");
    assert_heard(&r, hz, VOLUME, 0.8 * TALK.as_secs_f64(), what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_000_client_and_a_native_client_hear_each_others_tone() {
    let r = router(Seed::Ptt, "ptt", "l16-44k").await;
    let f = r.front_addrs()[0];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let mut seed = Seed000::join(control, media, ip(7, 2), "seedy").await;
    let (mut nat, nm) = member(r.control_addr(), "nat", "mixed").await;
    assert_eq!(nat.room_codec(), Some("l16-44k"));
    let wav = scratch("ptt-native.wav");
    let av = native_av(&nm, "l16-44k", 440.0, &wav);

    // Native talks 440 Hz; the seed client hears it.
    assert!(matches!(
        nat.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    assert_eq!(seed.hear().await, "MIC_GRANTED:nat");
    assert!(av.transmit(Kind::Audio, true));
    let heard = tokio::spawn(async move {
        let got = seed.heard_audio().await;
        (seed, got)
    });
    tokio::time::sleep(TALK).await;
    av.transmit(Kind::Audio, false);
    let (mut seed, got) = heard.await.unwrap_or_else(|e| panic!("{e}"));
    check_seed_heard(&got.concat(), 44_100, 440.0, "the seed-000 client");
    let _ = nat.release_floor().await;
    assert_eq!(seed.hear().await, "MIC_RELEASED");

    // The seed client talks 660 Hz in its 2,048-byte datagrams; the native
    // client hears it.
    seed.say("MIC_REQUEST").await;
    assert_eq!(seed.hear().await, "MIC_GRANTED:seedy");
    seed_tone(660.0, 44_100, 1024, async |d| seed.talk(&d).await).await;
    seed.say("MIC_RELEASE").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_native_heard(av, &wav, 660.0, "the native client");
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_004_client_and_a_native_client_hear_each_others_tone() {
    let r = router(Seed::Chat, "chat", "l16-44k").await;
    let control = r.front_addrs()[0].control;
    let mut seed = Seed004::join(control, "seedy").await;
    seed.expect("USERLIST:seedy").await;
    let (mut nat, nm) = member(r.control_addr(), "nat", "mixed").await;
    let wav = scratch("chat-native.wav");
    let av = native_av(&nm, "l16-44k", 440.0, &wav);

    assert!(matches!(
        nat.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    seed.expect("STATUS:START:nat").await;
    assert!(av.transmit(Kind::Audio, true));
    tokio::time::sleep(TALK).await;
    av.transmit(Kind::Audio, false);
    let _ = nat.release_floor().await;
    let lines = seed.expect("STATUS:STOP:nat").await;
    check_seed_heard(&voice_of(&lines), 44_100, 440.0, "the seed-004 client");

    seed.say("STATUS:START:seedy").await;
    seed.expect("STATUS:START:seedy").await;
    seed_tone(660.0, 44_100, 1024, async |d| seed.talk(&d).await).await;
    seed.say("STATUS:STOP:seedy").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_native_heard(av, &wav, 660.0, "the native client");
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_003_client_and_a_native_client_hear_each_other_in_open_voice() {
    let r = router(Seed::Tip, "voice", "l16-20k").await;
    let f = r.front_addrs()[0];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let (seed, _) = Seed003::join(control, media, ip(7, 3), "seedy").await;
    let (_nat, nm) = member(r.control_addr(), "nat", "mixed").await;
    let wav = scratch("tip-native.wav");
    let av = native_av(&nm, "l16-20k", 440.0, &wav);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Both talk at once (open voice): each hears the other.
    assert!(av.transmit(Kind::Audio, true));
    let seed = std::sync::Arc::new(seed);
    let ears = seed.clone();
    let heard = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        let until = tokio::time::Instant::now() + TALK + Duration::from_millis(500);
        while let Ok(Ok(n)) = tokio::time::timeout_at(until, ears.udp.recv(&mut buf)).await {
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    seed_tone(660.0, 20_000, 512, async |d| seed.talk(&d).await).await;
    av.transmit(Kind::Audio, false);
    let got = heard.await.unwrap_or_else(|e| panic!("{e}"));
    check_seed_heard(&got, 20_000, 440.0, "the seed-003 client");
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_native_heard(av, &wav, 660.0, "the native client");
    r.shutdown().await;
}

/// A router with a seed-002 front-end (meetings are made by clients).
async fn meeting_router() -> router::Router {
    start_router(|c| {
        c.compat.push(CompatConfig {
            seed: Seed::Meeting,
            control: lo(),
            media: Some(lo()),
            room: None,
        });
    })
    .await
}

/// A native member's pipelines for a meeting: L16 at 16 kHz (a tone, not
/// yet transmitting; a WAV sink) and JPEG video (a test pattern, not yet
/// transmitting; decoded frames to an app sink).
fn meeting_av(media: &client::Media, wav: &std::path::Path) -> Av {
    let catalog = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    let audio = catalog
        .for_room_codec("l16-16k")
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    let video = catalog
        .get("jpeg")
        .unwrap_or_else(|| panic!("no jpeg definition"))
        .clone();
    let mut v = LaneConfig::new(video, Some(Source::Pattern("smpte".into())), Sink::App);
    for (k, val) in [("width", "320"), ("height", "240"), ("framerate", "10")] {
        v.params.insert(k.into(), val.into());
    }
    let lanes = vec![
        LaneConfig::new(
            audio,
            Some(Source::Tone {
                freq: 440.0,
                volume: VOLUME,
            }),
            Sink::Wav(wav.to_path_buf()),
        ),
        v,
    ];
    Av::start(media, lanes, AvOptions::default()).unwrap_or_else(|e| panic!("av: {e}"))
}

/// Everything both ways between a seed-002 client and a native member of
/// one meeting: chat, video, a file each way, then audio each way.
async fn meet(seed: &mut Seed002, nat: &mut client::Session, nm: &client::Media, tag: &str) {
    let wav = scratch(&format!("meeting-{tag}.wav"));
    let av = meeting_av(nm, &wav);
    let nick = seed.name.clone();

    // Chat both ways.
    nat.chat("hello seed", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let m = seed
        .until(|v| v["type"] == "CHAT_BROADCAST" && v["message"] == "hello seed")
        .await
        .pop()
        .unwrap_or_default();
    assert_eq!(
        (&m["sender_name"], &m["is_private"]),
        (&"nat".into(), &false.into())
    );
    seed.send(serde_json::json!({"type": "CHAT", "message": "hello native", "target_name": "nat"}))
        .await;
    let (from, private) = wait_for(nat, Duration::from_secs(5), "CHAT", |m| match m {
        proto::control::ServerMessage::Chat { from, text, to, .. } if text == "hello native" => {
            Some((from.clone(), to.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(
        (from.as_str(), private.as_deref()),
        (nick.as_str(), Some("nat"))
    );

    // Native video reaches the seed client as whole JPEG frames.
    assert!(av.transmit(Kind::Video, true));
    let frames = seed.video_for(Duration::from_millis(2500)).await;
    av.transmit(Kind::Video, false);
    eprintln!("{tag}: the seed client got {} native frames", frames.len());
    assert!(frames.len() >= 8, "{} frames", frames.len());
    for f in &frames {
        assert_eq!((f.width, f.height, f.sender.as_str()), (320, 240, "nat"));
        let (w, h, _) = decode_jpeg(&f.jpeg);
        assert_eq!((w, h), (320, 240));
    }
    // The seed's video reaches the native client, decoded by GStreamer, at
    // its MCU-padded size.
    let jpeg = jpeg_frame(426, 240, [220, 40, 40], [40, 40, 220]);
    for _ in 0..15 {
        seed.show(&jpeg, 426, 240).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut decoded = 0;
    for (_, sink) in av.app_sinks(Kind::Video) {
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
            let info = sample
                .caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                .unwrap_or_else(|| panic!("no video caps"));
            assert_eq!((info.width(), info.height()), (432, 240));
            decoded += 1;
        }
    }
    eprintln!("{tag}: the native client decoded {decoded} seed frames");
    assert!(decoded >= 10, "{decoded} frames");

    // A native file to the seed client, in 4,096-byte chunks: the seed gets
    // its 8,192-byte chunks and an MD5 that checks, the sender an OK.
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let path = scratch(&format!("{tag}-native.bin"));
    std::fs::write(&path, &data).unwrap_or_else(|e| panic!("{e}"));
    let (report, (from, name, got)) = tokio::join!(
        client::file::send_file(nat, &path, Some(&nick), 4096, |_| {}, |_| {}),
        seed.receive_file()
    );
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.results, [(nick.clone(), true, None)]);
    assert_eq!(
        (from.as_str(), name.as_str()),
        (
            "nat",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("")
        )
    );
    assert_eq!(got, data);
    // A seed file to the native client, SHA-256 checked there.
    let back: Vec<u8> = (0..30_000u32).map(|i| (i * 29 % 253) as u8).collect();
    let dir = scratch(&format!("{tag}-got"));
    let _ = std::fs::create_dir_all(&dir);
    let ((), received) = tokio::join!(
        seed.send_file("nat", "seed.bin", &back),
        client::file::receive_file(nat, &dir, |_, _| {}, |_| {})
    );
    let received = received.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(received.from, nick);
    assert_eq!(std::fs::read(&received.path).unwrap_or_default(), back);

    // Audio: the native tone at the seed client…
    assert!(av.transmit(Kind::Audio, true));
    let heard = seed.audio_for(TALK + Duration::from_millis(500)).await;
    av.transmit(Kind::Audio, false);
    let ids: Vec<u32> = heard.iter().map(|(i, _)| *i).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive: {ids:?}"
    );
    let pcm: Vec<u8> = heard.into_iter().flat_map(|(_, p)| p).collect();
    check_seed_heard(&pcm, 16_000, 440.0, &format!("{tag}: the seed-002 client"));
    // …and the seed's tone at the native client.
    seed_tone(660.0, 16_000, 1024, async |d| seed.talk(&d).await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_native_heard(av, &wav, 660.0, &format!("{tag}: the native client"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_002_host_admits_a_native_guest_and_they_share_everything() {
    let r = meeting_router().await;
    let f = r.front_addrs()[0];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let mut ann = Seed002::connect(control, media, ip(24, 2), "ann").await;
    let code = ann.create().await;
    ann.register_udp().await;
    let mut nat = client::Session::connect(r.control_addr(), "nat")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let asking = tokio::spawn(async move {
        let joined = nat.request_join(&code, Duration::from_secs(10)).await;
        (nat, joined)
    });
    let req = ann.expect("NEW_JOIN_REQUEST").await;
    assert_eq!(req["client_name"], "nat");
    ann.send(serde_json::json!({"type": "ALLOW_JOIN", "client_name": "nat"}))
        .await;
    let (mut nat, joined) = asking.await.unwrap_or_else(|e| panic!("{e}"));
    joined.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        nat.room_codec(),
        Some("l16-16k"),
        "the seed's meeting speaks its audio"
    );
    let j = ann.expect("PARTICIPANT_JOINED").await;
    assert_eq!(j["participant_name"], "nat");
    let nm = nat.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    meet(&mut ann, &mut nat, &nm, "seed-host").await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_host_admits_a_seed_002_guest_and_they_share_everything() {
    let r = meeting_router().await;
    let f = r.front_addrs()[0];
    let (control, media) = (f.control, f.media.unwrap_or_else(|| unreachable!()));
    let mut nat = client::Session::connect(r.control_addr(), "nat")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, code) = nat
        .create_meeting_with(false, Some("l16-16k"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bob = Seed002::connect(control, media, ip(24, 3), "bob").await;
    bob.request_join(&code).await;
    bob.expect("JOIN_PENDING").await;
    let id = wait_for(&mut nat, Duration::from_secs(5), "LOBBY", |m| match m {
        proto::control::ServerMessage::Lobby { waiting, .. } => waiting
            .iter()
            .find(|w| w.nickname == "bob")
            .map(|w| w.session_id),
        _ => None,
    })
    .await;
    nat.send(proto::control::ClientMessage::AllowJoin { session_id: id })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bob.expect("JOIN_ACCEPTED").await;
    let joined: Vec<serde_json::Value> = bob
        .until(|v| v["type"] == "PARTICIPANT_JOINED" && v["participant_name"] == "bob")
        .await
        .into_iter()
        .filter(|v| v["type"] == "PARTICIPANT_JOINED")
        .collect();
    assert_eq!(joined[0]["participant_name"], "nat");
    assert_eq!(joined[0]["is_host"], true);
    bob.register_udp().await;
    let nm = nat.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    meet(&mut bob, &mut nat, &nm, "native-host").await;

    // A meeting in another codec cannot take a seed client: it is told why.
    let mut opus = client::Session::connect(r.control_addr(), "ohost")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, code) = opus
        .create_meeting(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cy = Seed002::connect(control, media, ip(24, 4), "cy").await;
    cy.request_join(&code).await;
    cy.expect("JOIN_PENDING").await;
    let id = wait_for(&mut opus, Duration::from_secs(5), "LOBBY", |m| match m {
        proto::control::ServerMessage::Lobby { waiting, .. } => {
            waiting.first().map(|w| w.session_id)
        }
        _ => None,
    })
    .await;
    opus.send(proto::control::ClientMessage::AllowJoin { session_id: id })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let no = cy.expect("JOIN_REJECTED").await;
    assert!(
        no["reason"].as_str().is_some_and(|r| r.contains("l16-16k")),
        "{no}"
    );
    r.shutdown().await;
}
