//! A two-person `voice` room through a real router: a call. Both hear each
//! other's tone at once (decoded, frequency and level checked); a third is
//! refused with FULL; hanging up ends the call for the other.

use std::time::Duration;

use client::av::{Av, AvOptions, LaneConfig};
use pipelines::{Catalog, Media as Kind, Sink, Source};
use proto::control::{LeaveReason, ServerMessage};
use switchboard_tests::audio::{read_wav, sine_dbfs, tone_level_dbfs};
use switchboard_tests::{member, start_router, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_person_voice_room_is_a_call() {
    let router = start_router(|c| {
        // A dropped connection keeps its session this long (it may come
        // back); then the call ends.
        c.limits.resume_grace_ms = 300;
        c.rooms.push(router::config::RoomConfig {
            name: "call".into(),
            kind: "voice".into(),
            max_participants: 2,
            options: Default::default(),
        });
    })
    .await;
    let addr = router.control_addr();
    let (mut ann, ma) = member(addr, "ann", "call").await;
    let (mut bob, mb) = member(addr, "bob", "call").await;
    let quiet = Duration::from_secs(2);
    let started = |peer: &'static str| {
        move |m: &ServerMessage| {
            matches!(m, ServerMessage::CallStarted { peer: p, .. } if p == peer).then_some(())
        }
    };
    wait_for(&mut ann, quiet, "CALL_STARTED", started("bob")).await;
    wait_for(&mut bob, quiet, "CALL_STARTED", started("ann")).await;

    // A third is refused: the call is full.
    let mut cat = client::Session::connect(addr, "cat")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match cat.join("call").await {
        Err(client::ClientError::Full(m)) => eprintln!("cat: FULL {m}"),
        other => panic!("cat joined a call: {other:?}"),
    }

    // Both talk at once, with no floor: each hears the other's tone.
    let opus = match Catalog::builtin() {
        Ok(c) => c.require("opus").unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    };
    let dir = std::env::temp_dir().join(format!("switchboard-call-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut avs = Vec::new();
    for (media, freq, name) in [(&ma, 440.0, "ann"), (&mb, 660.0, "bob")] {
        let wav = dir.join(format!("{name}-heard.wav"));
        let tone = Source::Tone { freq, volume: 0.5 };
        let av = Av::start(
            media,
            vec![LaneConfig::new(
                opus.clone(),
                Some(tone),
                Sink::Wav(wav.clone()),
            )],
            AvOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        av.transmit(Kind::Audio, true);
        avs.push((av, wav));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (av, _) in &avs {
        av.transmit(Kind::Audio, false);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((av, wav), (hears, not)) in avs.iter().zip([(660.0, 440.0), (440.0, 660.0)]) {
        tokio::task::block_in_place(|| av.stop(Duration::from_secs(3)));
        let (rate, samples) = read_wav(wav).unwrap_or_else(|e| panic!("{e}"));
        let mid = samples.len() / 2;
        let second = &samples[mid - rate as usize / 2..mid + rate as usize / 2];
        let (other, own) = (
            tone_level_dbfs(rate, second, hears),
            tone_level_dbfs(rate, second, not),
        );
        eprintln!(
            "{}: the other at {other:.2} dBFS, own tone at {own:.2}",
            wav.display()
        );
        assert!((other - sine_dbfs(0.5)).abs() <= 3.0, "{other}");
        assert!(own < sine_dbfs(0.5) - 40.0, "hears itself: {own}");
    }

    // Bob's connection is cut: once his grace has passed without him, Ann
    // is told the call ended, and stays for the next call.
    drop(bob);
    let ended = wait_for(&mut ann, quiet, "CALL_ENDED", |m| match m {
        ServerMessage::CallEnded { peer, reason, .. } if peer == "bob" => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(ended, LeaveReason::Disconnected);
}
