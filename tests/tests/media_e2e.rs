//! Real audio and video through a real router: GStreamer pipelines built
//! from the definition files, a ptt room, and what the listener decoded
//! checked for frequency, level, duration, frame count and size.

use std::path::PathBuf;
use std::time::Duration;

use client::FloorAnswer;
use client::av::{Av, AvOptions, LaneConfig, StatsSnapshot};
use pipelines::{Catalog, Definition, Media as Kind, Sink, Source};
use switchboard_tests::audio::{
    ToneReport, analyze, analyze_wav, assert_heard, read_wav, sine_dbfs, tone_level_dbfs,
};
use switchboard_tests::shim::{LossyShim, MiniRelay};
use switchboard_tests::{member, start_router};

const TONE_HZ: f64 = 440.0;
const VOLUME: f64 = 0.5;
const TALK: Duration = Duration::from_secs(3);

fn def(name: &str) -> Definition {
    match Catalog::builtin() {
        Ok(c) => c.require(name).unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(name)
}

fn opts() -> AvOptions {
    AvOptions {
        rtcp_interval: Duration::from_millis(500),
        ..AvOptions::default()
    }
}

/// Alice, holding the floor of a ptt room, and Bob listening, each with
/// their own media pipelines.
struct Pair {
    alice: Av,
    bob: Av,
    shim: Option<LossyShim>,
    _sessions: (client::Session, client::Session),
    _router: router::Router,
}

/// Starts a router; Bob joins with `bob_lane`; Alice joins (through a lossy
/// shim dropping `loss` of her RTP, if above 0), takes the floor and starts
/// `alice_lane`, not yet transmitting.
async fn pair(alice_lane: LaneConfig, bob_lane: LaneConfig, loss: f64) -> Pair {
    pair_with(alice_lane, bob_lane, loss, None).await
}

/// [`pair`], with every `n`th of Alice's packets held back `by` when `late`
/// is `Some((n, by))`.
async fn pair_with(
    alice_lane: LaneConfig,
    bob_lane: LaneConfig,
    loss: f64,
    late: Option<(u64, Duration)>,
) -> Pair {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let (b, mb) = member(addr, "bob", "lobby").await;
    let bob = Av::start(&mb, vec![bob_lane], opts()).unwrap_or_else(|e| panic!("bob: {e}"));
    let mut a = client::Session::connect(addr, "alice")
        .await
        .unwrap_or_else(|e| panic!("alice: {e}"));
    a.join("lobby").await.unwrap_or_else(|e| panic!("{e}"));
    let shim = if loss > 0.0 || late.is_some() {
        Some(
            LossyShim::start_with(a.media_server(), loss, 7, late)
                .await
                .unwrap_or_else(|e| panic!("shim: {e}")),
        )
    } else {
        None
    };
    let ma = match &shim {
        Some(s) => a.bind_media_from(s.addr, 0).await,
        None => a.bind_media().await,
    }
    .unwrap_or_else(|e| panic!("alice bind: {e}"));
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let alice = Av::start(&ma, vec![alice_lane], opts()).unwrap_or_else(|e| panic!("alice: {e}"));
    Pair {
        alice,
        bob,
        shim,
        _sessions: (a, b),
        _router: router,
    }
}

struct Heard {
    report: ToneReport,
    listener: StatsSnapshot,
    talker: StatsSnapshot,
}

/// Alice talks a tone with `definition` for [`TALK`]; Bob records what he
/// hears to a WAV file, which is then analysed.
async fn tone_through_router(definition: Definition, loss: f64, wav: &str) -> Heard {
    let wav = scratch(wav);
    let _ = std::fs::remove_file(&wav);
    let tone = Source::Tone {
        freq: TONE_HZ,
        volume: VOLUME,
    };
    let p = pair(
        LaneConfig::new(definition.clone(), Some(tone), Sink::Discard),
        LaneConfig::new(definition, None, Sink::Wav(wav.clone())),
        loss,
    )
    .await;
    assert!(p.alice.transmit(Kind::Audio, true));
    tokio::time::sleep(TALK).await;
    p.alice.transmit(Kind::Audio, false);
    // Let the jitter buffer play out and a round of RTCP pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let listener = p.bob.stats();
    let talker = p.alice.stats();
    tokio::task::block_in_place(|| p.bob.stop(Duration::from_secs(3)));
    assert!(p.bob.errors().is_empty(), "bob: {:?}", p.bob.errors());
    assert!(p.alice.errors().is_empty(), "alice: {:?}", p.alice.errors());
    if let Some(s) = &p.shim {
        eprintln!("shim dropped {:.1}% of RTP", s.loss() * 100.0);
    }
    let report = analyze_wav(&wav, sine_dbfs(VOLUME), 10.0).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report:?}\nlistener {listener:?}\ntalker {talker:?}");
    Heard {
        report,
        listener,
        talker,
    }
}

/// Every packet Alice sent reached Bob, and RTCP went both ways: Alice has
/// Bob's receiver report with a round-trip time.
fn assert_clean_stats(h: &Heard) {
    let [sent] = &h.talker.sent[..] else {
        panic!("talker: {:?}", h.talker)
    };
    let [got] = &h.listener.received[..] else {
        panic!("listener: {:?}", h.listener)
    };
    assert_eq!(got.ssrc, sent.ssrc);
    assert!(sent.packets_sent >= 140, "{sent:?}");
    assert_eq!(got.packets_received, sent.packets_sent);
    assert!(got.packets_lost <= 0 && got.jb_lost == 0, "{got:?}");
    let [report] = &sent.reports[..] else {
        panic!("no receiver report: {sent:?}")
    };
    let rtt = report
        .rtt_ms
        .unwrap_or_else(|| panic!("no RTT: {report:?}"));
    assert!(rtt < 50.0, "loopback RTT {rtt} ms");
    assert_eq!(report.fraction_lost, 0.0);
}

fn assert_clean_tone(h: &Heard) {
    assert_heard(
        &h.report,
        TONE_HZ,
        VOLUME,
        0.95 * TALK.as_secs_f64(),
        "listener",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_tone_is_heard_at_its_frequency_level_and_length() {
    let h = tone_through_router(def("opus"), 0.0, "opus.wav").await;
    assert_clean_tone(&h);
    assert_clean_stats(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l16_tone_is_heard_at_its_frequency_level_and_length() {
    let h = tone_through_router(def("l16"), 0.0, "l16.wav").await;
    assert_clean_tone(&h);
    assert_clean_stats(&h);
    // Uncompressed: the level is exact to a fraction of a dB.
    assert!(
        (h.report.level_dbfs - sine_dbfs(VOLUME)).abs() < 0.5,
        "{:?}",
        h.report
    );
}

/// 10% of Alice's RTP is dropped before the router. Opus conceals (PLC and
/// in-band FEC) and the tone still dominates; both ends see the loss: Bob's
/// jitter buffer and RTCP counters, and Bob's receiver report at Alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_tone_survives_ten_percent_loss_and_the_loss_is_reported() {
    let h = tone_through_router(def("opus"), 0.10, "opus-lossy.wav").await;
    let r = &h.report;
    assert!((r.dominant_hz - TONE_HZ).abs() <= 2.0, "{r:?}");
    assert!(
        r.peak_over_median_db > 40.0,
        "tone does not dominate: {r:?}"
    );
    assert!(r.voiced_s >= 0.8 * TALK.as_secs_f64(), "{r:?}");
    let [got] = &h.listener.received[..] else {
        panic!("listener: {:?}", h.listener)
    };
    let [sent] = &h.talker.sent[..] else {
        panic!("talker: {:?}", h.talker)
    };
    let lost = got.packets_lost as f64 / sent.packets_sent as f64;
    assert!((0.04..0.2).contains(&lost), "RTCP loss {lost:.3}: {got:?}");
    assert!(got.jb_lost > 0, "the jitter buffer saw no loss: {got:?}");
    assert!(
        sent.reports.iter().any(|r| r.packets_lost > 0),
        "no loss in Bob's reports: {sent:?}"
    );
}

/// A test pattern through the router: Bob decodes every frame Alice sends,
/// at the size the definition's parameters ask for.
/// Returns the payload bytes Alice sent.
async fn video_through_router(
    name: &str,
    pattern: &str,
    width: u32,
    height: u32,
    extra: &[(&str, &str)],
) -> u64 {
    let mut lane = LaneConfig::new(
        def(name),
        Some(Source::Pattern(pattern.into())),
        Sink::Discard,
    );
    for (k, v) in extra {
        lane.params.insert((*k).into(), (*v).into());
    }
    lane.params.insert("width".into(), width.to_string());
    lane.params.insert("height".into(), height.to_string());
    lane.params.insert("framerate".into(), "15".into());
    let p = pair(lane, LaneConfig::new(def(name), None, Sink::App), 0.0).await;
    assert!(p.alice.transmit(Kind::Video, true));
    let talk = Duration::from_secs(2);
    tokio::time::sleep(talk).await;
    p.alice.transmit(Kind::Video, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sinks = p.bob.app_sinks(Kind::Video);
    let [(Some(ssrc), sink)] = &sinks[..] else {
        panic!("one sender expected: {:?}", p.bob.senders(Kind::Video))
    };
    assert_eq!(*ssrc, p.alice.stats().sent[0].ssrc);
    let mut frames = 0;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
        let info = sample
            .caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
            .unwrap_or_else(|| panic!("no video caps"));
        assert_eq!((info.width(), info.height()), (width, height));
        let size = sample.buffer().map(|b| b.size()).unwrap_or(0);
        assert_eq!(size, info.size(), "a whole frame");
        frames += 1;
    }
    let expected = 15.0 * talk.as_secs_f64();
    eprintln!("{name}: {frames} frames of {width}x{height} decoded, {expected} sent");
    assert!(frames as f64 >= 0.8 * expected, "{frames} frames");
    assert!(p.bob.errors().is_empty(), "{:?}", p.bob.errors());
    p.alice.stats().sent[0].octets_sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_test_pattern_arrives_frame_by_frame() {
    video_through_router("jpeg", "ball", 640, 360, &[]).await;
}

/// RFC 2435 JPEG from 144p to 720p, and its quality parameter matters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_spans_144p_to_720p_and_quality_sets_the_bitrate() {
    video_through_router("jpeg", "ball", 256, 144, &[]).await;
    video_through_router("jpeg", "ball", 1280, 720, &[("quality", "50")]).await;
    let low = video_through_router("jpeg", "smpte", 640, 360, &[("quality", "20")]).await;
    let high = video_through_router("jpeg", "smpte", 640, 360, &[("quality", "90")]).await;
    eprintln!("640x360: quality 20 sent {low} bytes, quality 90 sent {high} bytes");
    assert!(high as f64 > 1.5 * low as f64, "{low} vs {high}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_test_pattern_arrives_frame_by_frame() {
    video_through_router("vp8", "ball", 320, 240, &[]).await;
}

/// Two people talk at once (440 Hz and 660 Hz) through a relay where all
/// hear all: the listener builds one receive chain per SSRC and mixes them,
/// so both tones are in the WAV at their own level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simultaneous_talkers_are_mixed() {
    let relay = MiniRelay::start()
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    let ssrcs = |a, v| proto::control::Ssrcs { audio: a, video: v };
    let open = |ssrc| client::Media::open(relay.addr, 0, ssrcs(ssrc, ssrc + 1), "t");
    let wav = scratch("mixed.wav");
    let _ = std::fs::remove_file(&wav);
    let mb = open(100).await.unwrap_or_else(|e| panic!("{e}"));
    let bob = av(
        &mb,
        LaneConfig::new(def("opus"), None, Sink::Wav(wav.clone())),
    );
    let mut talkers = Vec::new();
    for (ssrc, freq) in [(200, 440.0), (300, 660.0)] {
        let m = open(ssrc).await.unwrap_or_else(|e| panic!("{e}"));
        let tone = Source::Tone { freq, volume: 0.3 };
        let av = av(&m, LaneConfig::new(def("opus"), Some(tone), Sink::Discard));
        talkers.push(av);
    }
    for t in &talkers {
        t.transmit(Kind::Audio, true);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut senders = bob.senders(Kind::Audio);
    senders.sort_unstable();
    assert_eq!(senders, [200, 300]);
    drop(talkers);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| bob.stop(Duration::from_secs(3)));
    let (rate, samples) = read_wav(&wav).unwrap_or_else(|e| panic!("{e}"));
    // One second from the middle of the talk.
    let r = analyze(rate, &samples, sine_dbfs(0.3), 10.0);
    let mid = ((r.total_s / 2.0) * f64::from(rate)) as usize;
    let second = &samples[mid - rate as usize / 2..mid + rate as usize / 2];
    let (a, b) = (
        tone_level_dbfs(rate, second, 440.0),
        tone_level_dbfs(rate, second, 660.0),
    );
    eprintln!("mixed: 440 Hz at {a:.2} dBFS, 660 Hz at {b:.2} dBFS");
    for level in [a, b] {
        assert!((level - sine_dbfs(0.3)).abs() <= 3.0, "{a:.2} / {b:.2}");
    }
    assert!(bob.errors().is_empty(), "{:?}", bob.errors());
}

fn av(media: &client::Media, lane: LaneConfig) -> Av {
    Av::start(media, vec![lane], opts()).unwrap_or_else(|e| panic!("{e}"))
}

async fn relay_peer(relay: &MiniRelay, ssrcs: proto::control::Ssrcs) -> client::Media {
    client::Media::open(relay.addr, 0, ssrcs, "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `count` RTP packets of `size` bytes of xorshift noise as payload
/// type `pt` with `ssrc` from `media`, one every 20 ms, the timestamp
/// advancing by `ts_step`.
async fn send_noise(
    media: &client::Media,
    pt: u8,
    ssrc: u32,
    count: u16,
    size: usize,
    ts_step: u32,
    marker: bool,
) {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for seq in 0..count {
        let payload: Vec<u8> = (0..size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let p = proto::media::build_rtp(pt, seq, u32::from(seq) * ts_step, ssrc, marker, &payload);
        let _ = media.send_raw(&p).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A peer that sends garbage with the right payload type (here: random
/// bytes as Opus) must not silence anyone else: its chain fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_of_garbage_does_not_silence_the_others() {
    let relay = MiniRelay::start()
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    let ssrcs = |a| proto::control::Ssrcs {
        audio: a,
        video: a + 1,
    };
    let wav = scratch("garbage.wav");
    let _ = std::fs::remove_file(&wav);
    let mb = relay_peer(&relay, ssrcs(100)).await;
    let bob = av(
        &mb,
        LaneConfig::new(def("opus"), None, Sink::Wav(wav.clone())),
    );
    let mallory = relay_peer(&relay, ssrcs(666)).await;
    let ma = relay_peer(&relay, ssrcs(200)).await;
    let tone = Source::Tone {
        freq: TONE_HZ,
        volume: VOLUME,
    };
    let alice = av(&ma, LaneConfig::new(def("opus"), Some(tone), Sink::Discard));
    alice.transmit(Kind::Audio, true);
    // 3 s: Mallory sends 50 packets a second of noise as Opus.
    send_noise(&mallory, 111, 666, 150, 120, 960, false).await;
    alice.transmit(Kind::Audio, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| bob.stop(Duration::from_secs(3)));
    eprintln!("errors: {:?}", bob.errors());
    let r = analyze_wav(&wav, sine_dbfs(VOLUME), 10.0).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{r:?}");
    assert!((r.dominant_hz - TONE_HZ).abs() <= 2.0, "{r:?}");
    assert!(r.voiced_s >= 0.9 * 3.0, "{r:?}");
}

/// The same for video, where a sender whose packets never decode gets a
/// chain whose sink never sees a frame: that must not stall the lane (it
/// did, until chain sinks stopped waiting to preroll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_of_garbage_video_does_not_stop_the_others() {
    let relay = MiniRelay::start()
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    let ssrcs = |a| proto::control::Ssrcs {
        audio: a + 1,
        video: a,
    };
    let mb = relay_peer(&relay, ssrcs(100)).await;
    let bob = av(&mb, LaneConfig::new(def("jpeg"), None, Sink::App));
    let mallory = relay_peer(&relay, ssrcs(666)).await;
    let ma = relay_peer(&relay, ssrcs(200)).await;
    let alice = av(
        &ma,
        LaneConfig::new(
            def("jpeg"),
            Some(Source::Pattern("ball".into())),
            Sink::Discard,
        ),
    );
    alice.transmit(Kind::Video, true);
    // Marker set: every packet "ends a frame" of garbage.
    send_noise(&mallory, 26, 666, 100, 400, 1800, true).await;
    let frames = |bob: &Av| {
        let mut n = 0;
        for (ssrc, sink) in bob.app_sinks(Kind::Video) {
            if ssrc == Some(200) {
                while sink.try_pull_sample(gst::ClockTime::ZERO).is_some() {
                    n += 1;
                }
            }
        }
        n
    };
    let before = frames(&bob);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = frames(&bob);
    eprintln!("errors: {:?}; frames {before} then {after}", bob.errors());
    assert!(before >= 20 && after >= 10, "{before} then {after}");
}

/// Every 10th packet of Alice's held back 150 ms (the Opus jitter buffer
/// waits 40): Bob's jitter buffer counts them late, and the interarrival
/// jitter (a fraction of a millisecond on a clean link) rises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_packets_and_jitter_show_in_the_listeners_statistics() {
    let tone = Source::Tone {
        freq: TONE_HZ,
        volume: VOLUME,
    };
    let p = pair_with(
        LaneConfig::new(def("opus"), Some(tone), Sink::Discard),
        LaneConfig::new(def("opus"), None, Sink::Discard),
        0.0,
        Some((10, Duration::from_millis(150))),
    )
    .await;
    p.alice.transmit(Kind::Audio, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.alice.transmit(Kind::Audio, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = p.bob.stats();
    let [got] = &stats.received[..] else {
        panic!("{stats:?}")
    };
    eprintln!("{got:?}");
    assert!(got.jb_late >= 5, "late: {got:?}");
    assert!(got.jitter_ms > 2.0, "jitter: {got:?}");
    assert!(
        got.jb_avg_jitter_ms > 2.0,
        "jitter buffer's jitter: {got:?}"
    );
}
