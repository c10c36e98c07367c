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
use switchboard_tests::seed::{Seed000, Seed003, Seed004, ip, samples, voice_of};
use switchboard_tests::{member, start_router};

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
