//! Interop with tools this project did not write: a plain `gst-launch-1.0`
//! pipeline sends RTP into a room and a Switchboard client hears it; another
//! receives what the router forwards; and a `tcpdump` capture of the
//! router's output decodes as RTP (Opus) with GStreamer's `pcapparse`.
//!
//! `switchboard-client hold` does the part a plain pipeline cannot: the
//! session, the STUN binding of a local port, the floor. It then frees the
//! port for gst-launch (docs/pipelines.md, "Interop").

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use client::FloorAnswer;
use client::av::{Av, AvOptions, LaneConfig};
use pipelines::{Catalog, Media as Kind, Sink, Source};
use switchboard_tests::audio::{analyze_wav, assert_heard, sine_dbfs};
use switchboard_tests::capture::{Capture, interrupt, udp_payloads, wait_exit};
use switchboard_tests::{member, start_router};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const OPUS_CAPS: &str =
    "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(name)
}

/// The switchboard-client binary, built beside this test by cargo.
fn client_exe() -> PathBuf {
    let mut p = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    let exe = p.join("switchboard-client");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p client` (cargo test --workspace builds it)",
        exe.display()
    );
    exe
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `switchboard-client hold` and returns it with its READY line.
async fn hold(server: &str, nick: &str, port: u16, floor: bool) -> (Child, serde_json::Value) {
    let port = port.to_string();
    let mut args = vec![
        "--server",
        server,
        "--nick",
        nick,
        "hold",
        "lobby",
        "--media-port",
        &port,
    ];
    if floor {
        args.push("--floor");
    }
    let mut child = Command::new(client_exe())
        .args(&args)
        .env(
            "SWITCHBOARD_KNOWN_HOSTS",
            switchboard_tests::scratch("known_hosts"),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("hold: {e}"));
    let Some(out) = child.stdout.take() else {
        panic!("no stdout")
    };
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
        if v["type"] == "READY" {
            // Keep reading so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, v);
        }
    }
    panic!("hold never became READY")
}

fn assert_tone(wav: &Path, what: &str) {
    let r = analyze_wav(wav, sine_dbfs(0.5), 10.0).unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: {r:?}");
    assert_heard(&r, 440.0, 0.5, 1.9, what);
}

fn opus() -> pipelines::Definition {
    match Catalog::builtin() {
        Ok(c) => c.require("opus").unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gst_launch_sends_into_a_room_and_a_client_hears_it() {
    let router = start_router(|_| {}).await;
    let server = router.control_addr().to_string();
    let (_b, mb) = member(router.control_addr(), "bob", "lobby").await;
    let wav = scratch("from-gst-launch.wav");
    let bob = Av::start(
        &mb,
        vec![LaneConfig::new(opus(), None, Sink::Wav(wav.clone()))],
        AvOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let port = free_udp_port();
    let (_holder, ready) = hold(&server, "radio", port, true).await;
    let ssrc = ready["audio_ssrc"].as_u64().unwrap_or(0);
    let router_media: std::net::SocketAddr = ready["router_media"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{ready}"));
    // The recipe from docs/pipelines.md: 2 s of 440 Hz.
    let status = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "audiotestsrc",
            "is-live=true",
            "num-buffers=100",
            "samplesperbuffer=960",
            "freq=440",
            "volume=0.5",
        ])
        .args([
            "!",
            "audioconvert",
            "!",
            "audioresample",
            "!",
            "audio/x-raw,rate=48000,channels=1",
        ])
        .args([
            "!",
            "opusenc",
            "!",
            "rtpopuspay",
            "pt=111",
            &format!("ssrc={ssrc}"),
        ])
        .args([
            "!",
            "udpsink",
            "host=127.0.0.1",
            &format!("port={}", router_media.port()),
            &format!("bind-port={port}"),
        ])
        .status()
        .await
        .unwrap_or_else(|e| panic!("gst-launch-1.0: {e}"));
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bob.senders(Kind::Audio), [ssrc as u32]);
    tokio::task::block_in_place(|| bob.stop(Duration::from_secs(3)));
    assert_tone(&wav, "client hearing gst-launch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_output_decodes_as_rtp_in_gst_launch_and_in_a_capture() {
    let router = start_router(|_| {}).await;
    let server = router.control_addr().to_string();
    let port = free_udp_port();
    let (_holder, ready) = hold(&server, "ears", port, false).await;
    let router_port = ready["router_media"]
        .as_str()
        .and_then(|s| s.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("READY without router_media: {ready}"));

    let capture = Capture::udp(scratch("router-output.pcap"), router_port, port).await;

    let heard = scratch("gst-launch-heard.wav");
    let mut receiver = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "-e",
            "udpsrc",
            &format!("port={port}"),
            &format!("caps={OPUS_CAPS}"),
        ])
        .args([
            "!",
            "rtpjitterbuffer",
            "latency=50",
            "!",
            "rtpopusdepay",
            "!",
            "opusdec",
        ])
        .args(["!", "audioconvert", "!", "wavenc", "!", "filesink"])
        .arg(format!("location={}", heard.display()))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("gst-launch-1.0: {e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Alice talks 2 s of 440 Hz through the router.
    let (mut a, ma) = member(router.control_addr(), "alice", "lobby").await;
    assert!(matches!(
        a.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let tone = Source::Tone {
        freq: 440.0,
        volume: 0.5,
    };
    let alice = Av::start(
        &ma,
        vec![LaneConfig::new(opus(), Some(tone), Sink::Discard)],
        AvOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    alice.transmit(Kind::Audio, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.transmit(Kind::Audio, false);
    let sent = alice.stats().sent[0].packets_sent;
    tokio::time::sleep(Duration::from_millis(500)).await;
    interrupt(&receiver);
    wait_exit(&mut receiver, "gst-launch receiver").await;
    let pcap = capture.stop().await;
    assert_tone(&heard, "gst-launch hearing the router");

    // The capture: every RTP packet the router sent, decoded offline.
    let decoded = scratch("capture-decoded.wav");
    let out = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", pcap.display()))
        .args(["!", "pcapparse", &format!("caps={OPUS_CAPS}")])
        .args([
            "!",
            "rtpopusdepay",
            "!",
            "opusdec",
            "!",
            "audioconvert",
            "!",
            "wavenc",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", decoded.display()))
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_tone(&decoded, "capture decoded as RTP");
    // Every packet Alice sent is in the capture, as valid RTP with her SSRC;
    // her RTCP sender reports are there too.
    let (rtp, rtcp) = pcap_media(&pcap);
    assert!(
        rtp.iter()
            .all(|&(ssrc, pt)| ssrc == ma.ssrcs().audio && pt == 111),
        "{rtp:?}"
    );
    assert_eq!(rtp.len() as u64, sent, "captured vs sent");
    assert!(rtcp > 0, "no RTCP in the capture");
}

/// The (SSRC, payload type) of every RTP packet in a capture, and how many
/// RTCP packets it holds; anything else fails the test.
fn pcap_media(path: &Path) -> (Vec<(u32, u8)>, usize) {
    let mut out = Vec::new();
    let mut rtcp = 0;
    for udp_payload in udp_payloads(path) {
        let udp_payload = udp_payload.as_slice();
        match proto::media::classify(udp_payload) {
            proto::media::PacketKind::Rtp => {
                let rtp = rtp_types::RtpPacket::parse(udp_payload)
                    .unwrap_or_else(|e| panic!("not RTP: {e:?}"));
                out.push((rtp.ssrc(), rtp.payload_type()));
            }
            proto::media::PacketKind::Rtcp => {
                rtcp_types::Compound::parse(udp_payload)
                    .unwrap_or_else(|e| panic!("not RTCP: {e:?}"));
                rtcp += 1;
            }
            other => panic!("neither RTP nor RTCP: {other:?}"),
        }
    }
    (out, rtcp)
}
