//! `talk` and `listen` as real processes with real codecs through a router
//! in this process: a swapped definition from a user directory, a WAV file
//! as the source, and broken definitions refused before anything connects.

use std::path::{Path, PathBuf};
use std::process::Stdio;

mod common;
use common::{EXE, router, spawn_cli};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/src/audio.rs"]
mod audio;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of_type<'a>(lines: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["type"] == t).collect()
}

/// Runs `listen` with `listen_args` until `talk_args` has finished talking,
/// and returns both outputs' JSON lines.
async fn talk_to_listener(
    server: &str,
    listen_args: &[&str],
    talk_args: &[&str],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let args = ["--server", server, "--nick", "ears", "listen", "lobby"];
    let mut listener = spawn_cli(
        args.into_iter().chain(listen_args.iter().copied()),
        Stdio::inherit(),
    );
    let Some(stdout) = listener.stdout.take() else {
        panic!("no stdout")
    };
    let mut reader = BufReader::new(stdout).lines();
    let mut heard = Vec::new();
    while let Ok(Some(l)) = reader.next_line().await {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
        let ready = v["type"] == "USERLIST";
        heard.push(v);
        if ready {
            break;
        }
    }
    let talk = Command::new(EXE)
        .env("SWITCHBOARD_KNOWN_HOSTS", common::scratch("known_hosts"))
        .args(["--server", server, "--nick", "mouth", "talk", "lobby"])
        .args(talk_args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("talk: {e}"));
    assert!(
        talk.status.success(),
        "talk failed: {}",
        String::from_utf8_lossy(&talk.stderr)
    );
    while let Ok(Some(l)) = reader.next_line().await {
        heard.push(serde_json::from_str(&l).unwrap_or_default());
    }
    let status = listener.wait().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "listen failed");
    (json_lines(&talk.stdout), heard)
}

/// Opus at 16 kb/s with 10 ms frames, replacing the built-in `opus`.
const OPUS_16K: &str = r#"
description = "Opus, 16 kb/s, 10 ms frames"
media = "audio"
encoding_name = "OPUS"
payload_type = 111
clock_rate = 48000
[params]
bitrate = "16000"
[send]
pipeline = "{source} ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate={bitrate} frame-size=10 ! rtpopuspay pt={pt} ! appsink name=rtp"
[receive]
pipeline = "appsrc name=rtp caps=\"{caps}\" ! rtpjitterbuffer name=jitter latency={latency_ms} do-lost=true ! rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample ! {sink}"
latency_ms = 40
"#;

fn write_def(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_in_the_user_directory_swaps_the_codec() {
    let router = router().await;
    let server = router.control_addr().to_string();
    let dir = scratch("swap");
    let defs = dir.join("pipelines");
    std::fs::create_dir_all(&defs).unwrap_or_else(|e| panic!("{e}"));
    write_def(&defs, "opus.toml", OPUS_16K);
    let defs_arg = defs.display().to_string();
    let wav = dir.join("heard.wav");

    // The catalog shows the file in place of the built-in.
    let out = Command::new(EXE)
        .args(["codecs", "--pipelines", &defs_arg])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let codecs = json_lines(&out.stdout);
    let opus = codecs
        .iter()
        .find(|c| c["name"] == "opus")
        .unwrap_or_else(|| panic!("{codecs:?}"));
    assert!(
        opus["origin"]
            .as_str()
            .is_some_and(|o| o.ends_with("opus.toml")),
        "{opus}"
    );
    assert_eq!(opus["latency_ms"], 40);

    let (talked, heard) = talk_to_listener(
        &server,
        &[
            "--pipelines",
            &defs_arg,
            "--sink",
            &format!("wav:{}", wav.display()),
            "--seconds",
            "4",
            "--stats-every",
            "0.5",
        ],
        &[
            "--pipelines",
            &defs_arg,
            "--source",
            "tone:440:0.5",
            "--seconds",
            "2",
        ],
    )
    .await;
    let summary = of_type(&talked, "SUMMARY");
    let [summary] = &summary[..] else {
        panic!("{talked:?}")
    };
    // 10 ms frames: 100 packets a second (the built-in sends 50).
    let sent = summary["sent"].as_u64().unwrap_or(0);
    let secs = summary["seconds"].as_f64().unwrap_or(0.0);
    let rate = sent as f64 / secs;
    assert!((90.0..=110.0).contains(&rate), "{rate:.1} packets/s");
    // 16 kb/s of payload (the built-in spends 32).
    let octets = summary["stats"]["sent"][0]["octets_sent"]
        .as_u64()
        .unwrap_or(0);
    let kbps = octets as f64 * 8.0 / secs / 1000.0;
    assert!((11.0..=21.0).contains(&kbps), "{kbps:.1} kb/s");
    // The listener printed statistics while it listened, and heard it all.
    let stats = of_type(&heard, "STATS");
    assert!(stats.len() >= 4, "{} STATS lines", stats.len());
    let last = of_type(&heard, "SUMMARY");
    let got = last[0]["received"][0]["packets_received"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(got, sent, "{}", last[0]);
    let r = audio::analyze_wav(&wav, audio::sine_dbfs(0.5), 10.0).unwrap_or_else(|e| panic!("{e}"));
    audio::assert_heard(&r, 440.0, 0.5, 0.95 * 2.0, "listener");
}

/// Over TLS into a secure room, `talk` and `listen` ask for `srtp`, send
/// and hear SRTP, and never print a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_and_listen_over_tls_in_a_secure_room_speak_srtp() {
    let router = common::router_with(|c| {
        let mut lobby = router::config::RoomConfig {
            name: "lobby".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: Default::default(),
        };
        lobby.options.insert("secure".into(), true.into());
        c.rooms = vec![lobby];
    })
    .await;
    let server = format!("tls://{}", router.control_addr());
    let wav = scratch("secure").join("heard.wav");
    let (talked, heard) = talk_to_listener(
        &server,
        &[
            "--sink",
            &format!("wav:{}", wav.display()),
            "--seconds",
            "4",
        ],
        &["--source", "tone:440:0.5", "--seconds", "2"],
    )
    .await;
    let (Some(said), Some(got)) = (
        of_type(&talked, "SUMMARY").first().copied(),
        of_type(&heard, "SUMMARY").first().copied(),
    ) else {
        panic!("{talked:?} {heard:?}")
    };
    assert_eq!(
        (said["srtp"].as_bool(), got["srtp"].as_bool()),
        (Some(true), Some(true))
    );
    let sent = said["sent"].as_u64().unwrap_or(0);
    assert!(sent > 80, "{said}");
    assert_eq!(
        got["received"][0]["packets_received"].as_u64(),
        Some(sent),
        "{got}"
    );
    // The talker's key reached the listener, and stayed out of its output.
    let keys = of_type(&heard, "SRTP_KEYS");
    assert!(!keys.is_empty(), "{heard:?}");
    for k in keys
        .iter()
        .flat_map(|l| l["keys"].as_array().into_iter().flatten())
    {
        assert_eq!(k["key"], "(hidden)", "{k}");
    }
    let r = audio::analyze_wav(&wav, audio::sine_dbfs(0.5), 10.0).unwrap_or_else(|e| panic!("{e}"));
    audio::assert_heard(&r, 440.0, 0.5, 0.95 * 2.0, "listener");
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_plays_a_wav_file_to_its_end() {
    let router = router().await;
    let server = router.control_addr().to_string();
    let dir = scratch("file");
    let source = dir.join("say.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&source, spec).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..24_000 {
        let x = 0.5 * (2.0 * std::f64::consts::PI * 660.0 * f64::from(i) / 16_000.0).sin();
        w.write_sample((x * 32767.0) as i16)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    w.finalize().unwrap_or_else(|e| panic!("{e}"));
    let wav = dir.join("heard.wav");
    let (talked, _) = talk_to_listener(
        &server,
        &[
            "--sink",
            &format!("wav:{}", wav.display()),
            "--seconds",
            "3.5",
        ],
        &["--source", &format!("file:{}", source.display())],
    )
    .await;
    let summary = of_type(&talked, "SUMMARY");
    assert_eq!(summary[0]["stopped_by"], "end of source", "{talked:?}");
    let secs = summary[0]["seconds"].as_f64().unwrap_or(0.0);
    assert!(
        (1.4..2.5).contains(&secs),
        "talked {secs:.2} s of a 1.5 s file"
    );
    let r = audio::analyze_wav(&wav, audio::sine_dbfs(0.5), 10.0).unwrap_or_else(|e| panic!("{e}"));
    assert!((r.dominant_hz - 660.0).abs() <= 2.0, "{r:?}");
    assert!(r.voiced_s >= 0.95 * 1.5, "{r:?}");
}

#[tokio::test]
async fn broken_definitions_are_refused_with_file_line_and_element() {
    let dir = scratch("broken");
    let cases = [
        (
            OPUS_16K.replace("opusenc bitrate", "opusencx bitrate"),
            ":10: [send] pipeline: element `opusencx` is not installed (gst-inspect-1.0 opusencx)",
        ),
        (
            OPUS_16K.replace("clock_rate = 48000", "clock_rate = \"fast\""),
            ":6: invalid type: string \"fast\", expected u32",
        ),
        (
            OPUS_16K.replace("{bitrate}", "{bitrat}"),
            ":10: [send] pipeline: unknown placeholder `{bitrat}`",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let defs = dir.join(format!("case{i}"));
        std::fs::create_dir_all(&defs).unwrap_or_else(|e| panic!("{e}"));
        write_def(&defs, "opus.toml", text);
        // No router listens there: the definition is refused first.
        let out = Command::new(EXE)
            .args([
                "--server",
                "127.0.0.1:9",
                "talk",
                "--source",
                "tone",
                "--pipelines",
            ])
            .arg(&defs)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let file = defs.join("opus.toml").display().to_string();
        assert!(
            err.contains(&format!("pipeline definition rejected: {file}{expected}")),
            "case {i}: {err}"
        );
    }
}

/// A router whose room `tip` speaks L16 at 20 kHz.
async fn l16_20k_router() -> router::Router {
    let config = router::Config {
        control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        media: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        admin: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        rooms: vec![router::config::RoomConfig {
            name: "tip".into(),
            kind: "voice".into(),
            max_participants: 0,
            options: [("codec".to_owned(), serde_json::json!("l16-20k"))]
                .into_iter()
                .collect(),
        }],
        ..router::Config::default()
    };
    match router::Router::start(config).await {
        Ok(r) => r,
        Err(e) => panic!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_picks_the_rooms_codec_or_says_it_has_none() {
    let router = l16_20k_router().await;
    let server = router.control_addr().to_string();
    let out = Command::new(EXE)
        .args([
            "--server",
            &server,
            "--nick",
            "ears1",
            "listen",
            "tip",
            "--seconds",
            "0.5",
        ])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let audio = of_type(&lines, "AUDIO");
    assert_eq!(audio.len(), 1, "{lines:?}");
    assert_eq!(audio[0]["definition"], "l16-20k");
    assert_eq!(audio[0]["room_codec"], "l16-20k");

    // A user directory whose l16-20k carries another payload type leaves
    // nothing that fits: the CLI says so and stops.
    let dir = scratch("no-fit");
    let defs = dir.join("pipelines");
    std::fs::create_dir_all(&defs).unwrap_or_else(|e| panic!("{e}"));
    let builtin = pipelines::BUILTIN
        .iter()
        .find(|(n, _)| *n == "l16-20k")
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no built-in l16-20k"));
    write_def(
        &defs,
        "l16-20k.toml",
        &builtin.replace("payload_type = 114", "payload_type = 120"),
    );
    let defs_arg = defs.display().to_string();
    let out = Command::new(EXE)
        .args([
            "--server",
            &server,
            "--nick",
            "ears2",
            "listen",
            "tip",
            "--seconds",
            "0.5",
        ])
        .args(["--pipelines", &defs_arg])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the room speaks `l16-20k`") && err.contains("no pipeline definition"),
        "{err}"
    );
    // Asked for explicitly, another codec is sent with a warning.
    let out = Command::new(EXE)
        .args([
            "--server",
            &server,
            "--nick",
            "ears3",
            "listen",
            "tip",
            "--seconds",
            "0.5",
        ])
        .args(["--codec", "opus"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: the room speaks `l16-20k`"), "{err}");
}
