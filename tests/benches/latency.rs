//! Mouth-to-ear latency on loopback with the default definitions.
//!
//! `cargo bench -p switchboard-tests --bench latency [-- --bursts 20]`
//!
//! Alice's tone source is silent; at a known instant its volume is turned
//! up (the "mouth"), and the instant Bob's pipeline renders the first
//! loud buffer is the "ear": Bob's app sink syncs to the pipeline clock, so
//! a buffer arrives when a sound card would be handed it (jitter buffer,
//! decoder and mixer latency included; the card's own buffer is not).
//! Each burst is 300 ms of tone then 400 ms of silence.
//!
//! Four paths in the same run: Opus through a ptt room of the router (the
//! goal: under 100 ms), the same through a secure room (SRTP: what
//! encryption adds is the difference), L16 through the router (no codec
//! delay), and Opus through a bare all-hear-all relay (what the router adds
//! is the difference). Resolution: one 10 ms buffer at each end.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::FloorAnswer;
use client::av::{Av, AvOptions, LaneConfig};
use pipelines::{Catalog, Media as Kind, Sink, Source};
use switchboard_tests::shim::MiniRelay;
use switchboard_tests::{member, secure_member, secure_room, start_router};

struct Args {
    bursts: usize,
    json: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        bursts: 20,
        json: Some("target/bench-latency.json".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bursts" => a.bursts = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.bursts),
            "--json" => a.json = it.next(),
            _ => {}
        }
    }
    a
}

fn def(name: &str) -> pipelines::Definition {
    match Catalog::builtin() {
        Ok(c) => c.require(name).unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Watches an app sink and reports, on `tx`, the instant each rendered
/// buffer crosses from quiet to loud.
fn ear(sink: gst_app::AppSink, tx: mpsc::Sender<Instant>) {
    sink.set_sync(true);
    std::thread::spawn(move || {
        let mut loud = false;
        while let Ok(sample) = sink.pull_sample() {
            let now = Instant::now();
            let Some(buf) = sample.buffer() else { continue };
            let Ok(map) = buf.map_readable() else {
                continue;
            };
            let info = sample
                .caps()
                .and_then(|c| gst_audio::AudioInfo::from_caps(c).ok());
            let rms = match info.map(|i| i.format()) {
                Some(gst_audio::AudioFormat::F32le) => rms_f32(map.as_slice()),
                _ => rms_s16(map.as_slice()),
            };
            let now_loud = rms > 0.05;
            if now_loud && !loud && tx.send(now).is_err() {
                break;
            }
            loud = now_loud;
        }
    });
}

fn rms_s16(b: &[u8]) -> f64 {
    let n = (b.len() / 2).max(1) as f64;
    (b.chunks_exact(2)
        .map(|c| (f64::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

fn rms_f32(b: &[u8]) -> f64 {
    let n = (b.len() / 4).max(1) as f64;
    (b.chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// Runs `bursts` onsets from `alice` to `bob`'s ear; latencies in ms.
async fn measure(label: &str, alice: &Av, bob: &Av, bursts: usize) -> Vec<f64> {
    alice.set_source_volume(0.0);
    alice.transmit(Kind::Audio, true);
    // Bob's chain (and app sink) exists once the first packet arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    let sink = loop {
        if let Some((_, s)) = bob.app_sinks(Kind::Audio).into_iter().next()
            && !bob.senders(Kind::Audio).is_empty()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "{label}: nothing arrives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (tx, rx) = mpsc::channel();
    ear(sink, tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let mut out = Vec::new();
    for i in 0..bursts {
        let mouth = Instant::now();
        alice.set_source_volume(0.5);
        let heard = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(2)));
        match heard {
            Ok(t) => {
                let ms = t.saturating_duration_since(mouth).as_secs_f64() * 1000.0;
                eprintln!("  {label}: burst {}/{bursts}: {ms:.1} ms", i + 1);
                out.push(ms);
            }
            Err(_) => eprintln!("  {label}: burst {}/{bursts}: not heard", i + 1),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.set_source_volume(0.0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        while rx.try_recv().is_ok() {}
    }
    alice.transmit(Kind::Audio, false);
    eprintln!(
        "  {label}: receive pipeline latency {:?}, send pipeline latency {:?}",
        bob.pipeline_latency(Kind::Audio),
        alice.pipeline_latency(Kind::Audio)
    );
    out
}

fn lanes(codec: &str) -> (Vec<LaneConfig>, Vec<LaneConfig>) {
    let tone = Source::Tone {
        freq: 440.0,
        volume: 0.0,
    };
    (
        vec![LaneConfig::new(def(codec), Some(tone), Sink::Discard)],
        vec![LaneConfig::new(def(codec), None, Sink::App)],
    )
}

async fn through_router(codec: &str, bursts: usize) -> Vec<f64> {
    let router = start_router(|_| {}).await;
    let (_b, mb) = member(router.control_addr(), "bob", "lobby").await;
    let (mut a, ma) = member(router.control_addr(), "alice", "lobby").await;
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let (la, lb) = lanes(codec);
    let bob = Av::start(&mb, lb, AvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let alice = Av::start(&ma, la, AvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    measure(&format!("{codec} via router"), &alice, &bob, bursts).await
}

/// As [`through_router`], in a secure room: SRTP out of Alice's
/// `srtpenc`, into Bob's `srtpdec`, over TLS-keyed sessions.
async fn through_secure_router(codec: &str, bursts: usize) -> Vec<f64> {
    let router = start_router(|c| c.rooms = vec![secure_room("vault")]).await;
    let (b, mb) = secure_member(&router, "bob", "vault").await;
    let (mut a, ma) = secure_member(&router, "alice", "vault").await;
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let srtp = |s: &client::Session| AvOptions {
        srtp: Some(s.keyring().clone()),
        ..AvOptions::default()
    };
    let (la, lb) = lanes(codec);
    let bob = Av::start(&mb, lb, srtp(&b)).unwrap_or_else(|e| panic!("{e}"));
    let alice = Av::start(&ma, la, srtp(&a)).unwrap_or_else(|e| panic!("{e}"));
    assert!(alice.secure() && bob.secure());
    measure(&format!("{codec} via router, SRTP"), &alice, &bob, bursts).await
}

async fn through_bare_relay(codec: &str, bursts: usize) -> Vec<f64> {
    let relay = MiniRelay::start().await.unwrap_or_else(|e| panic!("{e}"));
    let ssrcs = |a| proto::control::Ssrcs {
        audio: a,
        video: a + 1,
    };
    let mb = client::Media::open(relay.addr, 0, ssrcs(10), "x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ma = client::Media::open(relay.addr, 0, ssrcs(20), "x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (la, lb) = lanes(codec);
    let bob = Av::start(&mb, lb, AvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let alice = Av::start(&ma, la, AvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    measure(&format!("{codec} via bare relay"), &alice, &bob, bursts).await
}

fn summary(v: &[f64]) -> serde_json::Value {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        s.get(((s.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    serde_json::json!({
        "bursts_heard": s.len(),
        "min_ms": pct(0.0), "median_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": pct(1.0),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let runs = [
        ("opus_router", through_router("opus", a.bursts).await),
        (
            "opus_router_srtp",
            through_secure_router("opus", a.bursts).await,
        ),
        ("l16_router", through_router("l16", a.bursts).await),
        (
            "opus_bare_relay",
            through_bare_relay("opus", a.bursts).await,
        ),
    ];
    let mut report = serde_json::Map::new();
    println!(
        "mouth-to-ear latency, loopback, default definitions ({} bursts each)",
        a.bursts
    );
    println!(
        "{:<18} {:>8} {:>8} {:>8} {:>8}",
        "path", "min", "median", "p95", "max"
    );
    for (name, v) in &runs {
        let s = summary(v);
        println!(
            "{:<18} {:>6.1}ms {:>6.1}ms {:>6.1}ms {:>6.1}ms",
            name,
            s["min_ms"].as_f64().unwrap_or(f64::NAN),
            s["median_ms"].as_f64().unwrap_or(f64::NAN),
            s["p95_ms"].as_f64().unwrap_or(f64::NAN),
            s["max_ms"].as_f64().unwrap_or(f64::NAN)
        );
        report.insert((*name).into(), s);
    }
    let med = |k: &str| report[k]["median_ms"].as_f64().unwrap_or(f64::NAN);
    let added = med("opus_router") - med("opus_bare_relay");
    let srtp = med("opus_router_srtp") - med("opus_router");
    println!("router adds {added:.1} ms over a bare relay (median); goal for Opus: under 100 ms");
    println!("SRTP adds {srtp:.1} ms (median, secure room beside a plain one)");
    report.insert("router_added_ms".into(), added.into());
    report.insert("srtp_added_ms".into(), srtp.into());
    if let Some(path) = a.json
        && let Ok(text) = serde_json::to_string_pretty(&report)
    {
        let _ = std::fs::write(&path, text);
        println!("wrote {path}");
    }
}
