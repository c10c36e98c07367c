//! Definitions load, refuse what is broken with file, line and element, and
//! build pipelines that really run.

use super::*;

#[test]
fn builtins_load_and_describe_rtp() {
    let c = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<_> = c.names().collect();
    assert_eq!(
        names,
        [
            "jpeg", "l16", "l16-16k", "l16-20k", "l16-44k", "opus", "vp8"
        ]
    );
    let opus = c.require("opus").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (opus.media, opus.clock_rate, opus.latency_ms),
        (Media::Audio, 48_000, 40)
    );
    assert!(
        opus.latency_ms >= 40 && opus.latency_ms <= 60,
        "voice latency"
    );
    assert_eq!(
        opus.rtp_caps(),
        "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111"
    );
    let l16 = c.require("l16").unwrap_or_else(|e| panic!("{e}"));
    assert!(l16.rtp_caps().ends_with(",channels=1"));
    assert!(
        c.require("h264").is_err_and(
            |e| e.contains("available: jpeg, l16, l16-16k, l16-20k, l16-44k, opus, vp8")
        )
    );
}

#[test]
fn element_names_skip_caps_properties_and_references() {
    let names = element_names(
        "audiotestsrc is-live=true ! audio/x-raw,rate=48000 ! tee name=t t. ! queue ! fakesink t. ! queue ! appsink name=\"a ! b\"",
    );
    assert_eq!(
        names,
        [
            "audiotestsrc",
            "tee",
            "queue",
            "fakesink",
            "queue",
            "appsink"
        ]
    );
}

const GOOD: &str = r#"
description = "test"
media = "audio"
encoding_name = "OPUS"
payload_type = 96
clock_rate = 48000
[params]
bitrate = "16000"
[send]
pipeline = "{source} ! audioconvert ! opusenc bitrate={bitrate} ! rtpopuspay pt={pt} ! appsink name=rtp"
[receive]
pipeline = "appsrc name=rtp caps=\"{caps}\" ! rtpjitterbuffer latency={latency_ms} ! rtpopusdepay ! opusdec ! {sink}"
"#;

#[test]
fn broken_definitions_name_the_file_line_and_element() {
    let e = |text: &str| match Definition::parse("x", "dir/x.toml", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    assert!(Definition::parse("x", "dir/x.toml", GOOD).is_ok());

    let err = e(&GOOD.replace("opusenc bitrate", "opusencx bitrate"));
    assert_eq!(err.element.as_deref(), Some("opusencx"));
    assert_eq!(err.line, Some(10), "{err}");
    assert_eq!(
        err.to_string(),
        "dir/x.toml:10: [send] pipeline: element `opusencx` is not installed (gst-inspect-1.0 opusencx)"
    );
    let err = e(&GOOD.replace("rtpopusdepay", "rtpfoodepay"));
    assert_eq!(
        (err.line, err.element.as_deref()),
        (Some(12), Some("rtpfoodepay"))
    );

    let err = e(&GOOD.replace("clock_rate = 48000", "clock_rate = \"fast\""));
    assert_eq!(err.line, Some(6), "{err}");
    let err = e(&GOOD.replace("media = \"audio\"", "media = \"smell\""));
    assert_eq!(err.line, Some(3), "{err}");
    let err = e(&GOOD.replace("[params]", "colour = 1\n[params]"));
    assert!(err.to_string().contains("colour"), "{err}");
    let err = e(&GOOD.replace("{bitrate}", "{bitrat}"));
    assert!(
        err.to_string().contains("unknown placeholder `{bitrat}`"),
        "{err}"
    );
    let err = e(&GOOD.replace("appsink name=rtp", "fakesink"));
    assert!(
        err.to_string().contains("must contain `appsink name=rtp`"),
        "{err}"
    );
    let err = e("description = \"unterminated");
    assert_eq!(err.line, Some(1), "{err}");
}

#[test]
fn a_user_directory_adds_and_overrides_definitions() {
    let dir = std::env::temp_dir().join(format!("sb-pipelines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("opus.toml"), GOOD.replace("16000", "12000"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("opus-lowrate.toml"), GOOD).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("notes.txt"), "not a definition").unwrap_or_else(|e| panic!("{e}"));
    let c = Catalog::load(Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let opus = c.require("opus").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        opus.params.get("bitrate").map(String::as_str),
        Some("12000")
    );
    assert!(opus.origin.ends_with("opus.toml"));
    assert!(c.get("opus-lowrate").is_some() && c.get("vp8").is_some());

    std::fs::write(
        dir.join("zz-broken.toml"),
        GOOD.replace("opusenc", "nosuchenc"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = Catalog::load(Some(&dir)).err();
    assert!(
        err.as_ref().is_some_and(
            |e| e.file.ends_with("zz-broken.toml") && e.element.as_deref() == Some("nosuchenc")
        ),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // A directory that does not exist is simply empty.
    assert!(Catalog::load(Some(Path::new("/nonexistent/sb"))).is_ok());
}

#[test]
fn params_and_sources_are_checked() {
    let c = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    let opus = c.require("opus").unwrap_or_else(|e| panic!("{e}"));
    let p = parse_params(["bitrate=16000", "frame_ms=10"]).unwrap_or_else(|e| panic!("{e}"));
    let d = opus
        .send_description(&Source::Silence, &p)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.contains("bitrate=16000 frame-size=10"), "{d}");
    let bad = parse_params(["volume=11"]).unwrap_or_default();
    assert!(
        opus.send_description(&Source::Silence, &bad)
            .is_err_and(|e| e.contains("takes no parameter `volume`"))
    );
    let evil = parse_params(["bitrate=1 ! filesink location=/etc/x"]).unwrap_or_default();
    assert!(opus.send_description(&Source::Silence, &evil).is_err());
    assert!(parse_params(["nonsense"]).is_err());
    assert_eq!(
        "tone:1000:0.25".parse(),
        Ok(Source::Tone {
            freq: 1000.0,
            volume: 0.25
        })
    );
    assert!("tone:99999".parse::<Source>().is_err());
    assert!("file:".parse::<Source>().is_err());
    assert!("wav:a\"b".parse::<Sink>().is_err());
    assert!("radio".parse::<Source>().is_err_and(|e| e.contains("tone")));
    // A chosen device: a factory and key=value properties, nothing that
    // could start another branch of the pipeline.
    assert_eq!(
        "element:v4l2src device=/dev/video1".parse(),
        Ok(Source::Element("v4l2src device=/dev/video1".into()))
    );
    assert_eq!(
        Sink::Element("gtk4paintablesink".into()).fragment(Media::Video),
        "gtk4paintablesink name=view"
    );
    for bad in [
        "element:",
        "element:a ! filesink",
        "element:pulsesrc dev",
        "element:x=1",
        "element:a \"b\"",
    ] {
        assert!(bad.parse::<Source>().is_err(), "{bad}");
        assert!(bad.parse::<Sink>().is_err(), "{bad}");
    }
}

/// Both halves of `def`: a 440 Hz tone in, decoded media to an app sink.
fn tone_halves(def: &Definition) -> (SendPipeline, ReceivePipeline) {
    let tone = Source::Tone {
        freq: 440.0,
        volume: 0.5,
    };
    let send = def
        .build_send(&tone, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{}: {e}", def.name));
    let recv = def
        .build_receive(&Sink::App, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{}: {e}", def.name));
    (send, recv)
}

/// Every built-in definition builds both halves, and the send half really
/// produces RTP with the definition's payload type.
#[test]
fn every_builtin_builds_and_sends_rtp() {
    let c = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    for def in c.iter() {
        let (send, recv) = tone_halves(def);
        assert!(recv.jitter.is_some() && recv.out.is_some(), "{}", def.name);
        send.pipeline
            .set_state(gst::State::Playing)
            .unwrap_or_else(|e| panic!("{}: {e}", def.name));
        let mut seqs = Vec::new();
        for _ in 0..5 {
            let Some(sample) = send.rtp.try_pull_sample(gst::ClockTime::from_seconds(5)) else {
                panic!("{}: no RTP within 5 s", def.name)
            };
            let Some(buf) = sample.buffer() else {
                panic!("no buffer")
            };
            let map = buf.map_readable().unwrap_or_else(|e| panic!("{e}"));
            let p = rtp_types::RtpPacket::parse(map.as_slice())
                .unwrap_or_else(|e| panic!("{}: not RTP: {e:?}", def.name));
            assert_eq!(p.payload_type(), def.payload_type, "{}", def.name);
            seqs.push(p.sequence_number());
        }
        let _ = send.pipeline.set_state(gst::State::Null);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{}: {seqs:?}",
            def.name
        );
    }
}

/// Opus and L16 at each rate end to end inside one process: the send
/// half's RTP, pushed into the receive half, comes out as about as much
/// decoded audio as was sent, at the definition's clock rate.
#[test]
fn audio_round_trips_through_send_and_receive_halves() {
    let c = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    for name in ["opus", "l16", "l16-44k", "l16-20k", "l16-16k"] {
        let def = c.require(name).unwrap_or_else(|e| panic!("{e}"));
        let (send, recv) = tone_halves(def);
        let Some(out) = recv.out.clone() else {
            panic!("no out")
        };
        recv.pipeline
            .set_state(gst::State::Playing)
            .unwrap_or_else(|e| panic!("{e}"));
        send.pipeline
            .set_state(gst::State::Playing)
            .unwrap_or_else(|e| panic!("{e}"));
        // One second of tone, by RTP timestamp; no packet over one datagram.
        let mut first_ts = None;
        loop {
            let Some(sample) = send.rtp.try_pull_sample(gst::ClockTime::from_seconds(5)) else {
                panic!("{name}: no RTP")
            };
            let Some(buf) = sample.buffer_owned() else {
                panic!("no buffer")
            };
            let ts = {
                let map = buf.map_readable().unwrap_or_else(|e| panic!("{e}"));
                assert!(map.len() <= 1500, "{name}: {} byte packet", map.len());
                rtp_types::RtpPacket::parse(map.as_slice())
                    .map(|p| p.timestamp())
                    .unwrap_or_else(|e| panic!("{e:?}"))
            };
            let start = *first_ts.get_or_insert(ts);
            if ts.wrapping_sub(start) >= def.clock_rate {
                break;
            }
            if recv.rtp.push_buffer(buf).is_err() {
                panic!("{name}: receive pipeline refused a buffer");
            }
        }
        let _ = recv.rtp.end_of_stream();
        let mut decoded = gst::ClockTime::ZERO;
        let mut rates = std::collections::BTreeSet::new();
        while let Some(sample) = out.try_pull_sample(gst::ClockTime::from_seconds(2)) {
            if let Some(d) = sample.buffer().and_then(|b| b.duration()) {
                decoded += d;
            }
            if let Some(rate) = sample
                .caps()
                .and_then(|c| c.structure(0))
                .and_then(|s| s.get::<i32>("rate").ok())
            {
                rates.insert(rate);
            }
        }
        assert_eq!(
            rates.into_iter().collect::<Vec<_>>(),
            [def.clock_rate as i32],
            "{name}: decoded at its clock rate"
        );
        let _ = send.pipeline.set_state(gst::State::Null);
        let _ = recv.pipeline.set_state(gst::State::Null);
        let ms = decoded.mseconds();
        assert!(
            (900..=1100).contains(&ms),
            "{name}: decoded {ms} ms of 1000"
        );
    }
}

#[test]
fn every_room_codec_has_its_builtin_definition() {
    let c = Catalog::builtin().expect("builtins load");
    for codec in proto::codec::AUDIO {
        let d = c
            .for_room_codec(codec.name)
            .expect("a built-in for every room codec");
        assert_eq!(d.name, codec.name);
        assert_eq!(d.payload_type, codec.payload_type, "{}", codec.name);
        assert_eq!(d.clock_rate, codec.clock_rate, "{}", codec.name);
        assert!(d.encoding_name.eq_ignore_ascii_case(codec.encoding));
    }
    let unknown = c.for_room_codec("g729").err().unwrap_or_default();
    assert!(
        unknown.contains("g729") && unknown.contains("l16-44k"),
        "{unknown}"
    );
    // Without the built-in of that name, nothing carries PT 114 at 20 kHz.
    let mut only_opus = Catalog::default();
    let opus = c.get("opus").expect("opus").clone();
    only_opus.defs.insert("opus".into(), opus);
    let none = only_opus
        .for_room_codec("l16-20k")
        .err()
        .unwrap_or_default();
    assert!(none.contains("no pipeline definition"), "{none}");
    assert!(only_opus.for_room_codec("opus").is_ok());
}
