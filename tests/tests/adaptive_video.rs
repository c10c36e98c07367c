//! Adaptive video in a meeting, end to end: the host sends JPEG video; two
//! guests receive it with real GStreamer sessions, whose RTCP receiver
//! reports go back through the router; the host's client passes what they
//! say to the router (VIDEO_STATS), where the meeting's rule sets its level.
//! 15% loss towards one guest steps the level down within 3 s; once the
//! loss stops, it climbs back.

use std::time::{Duration, Instant};

use client::av::{Av, AvOptions, LaneConfig, video_reports};
use client::{Media, Session};
use pipelines::{Catalog, Media as Kind, Sink, Source};
use proto::control::{ClientMessage, ServerMessage};
use proto_grpc::admin::GetStatsRequest;
use switchboard_tests::shim::LossyShim;
use switchboard_tests::{admin, start_router, wait_for};

const QUIET: Duration = Duration::from_secs(5);

fn definition(name: &str) -> pipelines::Definition {
    match Catalog::builtin() {
        Ok(c) => c.require(name).unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    }
}

fn jpeg() -> pipelines::Definition {
    definition("jpeg")
}

/// Meeting clients send RTCP every 250 ms (RFC 3550 lets the minimum scale
/// down with bandwidth) so the rule hears of loss quickly.
fn options() -> AvOptions {
    AvOptions {
        rtcp_interval: Duration::from_millis(250),
        ..AvOptions::default()
    }
}

fn receiver(media: &Media) -> Av {
    Av::start(
        media,
        vec![LaneConfig::new(jpeg(), None, Sink::Discard)],
        options(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn rank(level: &str) -> usize {
    ["144p", "240p", "360p", "480p", "720p"]
        .iter()
        .position(|l| *l == level)
        .unwrap_or_else(|| panic!("unknown level {level}"))
}

async fn join(addr: std::net::SocketAddr, nick: &str, code: &str, host: &mut Session) -> Session {
    let mut s = Session::connect(addr, nick)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.send(ClientMessage::RequestJoin { code: code.into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = wait_for(host, QUIET, "LOBBY", |m| match m {
        ServerMessage::Lobby { waiting, .. } => waiting.first().map(|w| w.session_id),
        _ => None,
    })
    .await;
    host.send(ClientMessage::AllowJoin { session_id: id })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&mut s, QUIET, "JOINED", |m| {
        matches!(m, ServerMessage::Joined { .. }).then_some(())
    })
    .await;
    s
}

/// The next VIDEO_LEVEL the host gets, with when it came.
async fn next_level(host: &mut Session, within: Duration) -> (String, Instant) {
    wait_for(host, within, "VIDEO_LEVEL", |m| match m {
        ServerMessage::VideoLevel { level, .. } => Some((level.clone(), Instant::now())),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_towards_one_receiver_steps_the_senders_video_down_then_back_up() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let mut host = Session::connect(addr, "host")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (room, code) = host
        .create_meeting(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ann = join(addr, "ann", &code, &mut host).await;
    let bob = join(addr, "bob", &code, &mut host).await;
    let host_media = host.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let ann_media = ann.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let shim = LossyShim::start(bob.media_server(), 0.0, 15)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bob_media = bob
        .bind_media_from(shim.addr, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_ann_av, _bob_av) = (receiver(&ann_media), receiver(&bob_media));
    let mut lane = LaneConfig::new(jpeg(), Some(Source::Pattern("ball".into())), Sink::Discard);
    lane.params.insert("framerate".into(), "25".into());
    let sender = std::sync::Arc::new(
        Av::start(&host_media, vec![lane], options()).unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(sender.transmit(Kind::Video, true));
    // The host's client passes on its receivers' reports four times a
    // second (what the desktop client does).
    let control = host.control();
    let reporter = {
        let av = sender.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let reports = video_reports(&av.stats());
                if !reports.is_empty()
                    && control
                        .send(ClientMessage::VideoStats { reports })
                        .await
                        .is_err()
                {
                    break;
                }
            }
        })
    };

    // A clean path first: the level climbs from 360p.
    let (up, _) = next_level(&mut host, Duration::from_secs(6)).await;
    assert_eq!(up, "480p", "clean reports step up from the start level");

    // 15% towards bob: within 3 s the level steps down.
    shim.set_loss_to_client(0.15);
    let loss_from = Instant::now();
    let mut levels = vec![up];
    let stepped_down = loop {
        let (l, at) = next_level(&mut host, Duration::from_secs(6)).await;
        let before = levels.last().map_or(0, |b| rank(b));
        levels.push(l.clone());
        if rank(&l) < before {
            break at;
        }
    };
    let took = stepped_down - loss_from;
    eprintln!("levels after the loss started: {levels:?}; first step down after {took:?}");
    assert!(
        took <= Duration::from_secs(3),
        "stepped down after {took:?}"
    );
    // It keeps going down while the loss lasts; GetStats shows it.
    let low = loop {
        let (l, _) = next_level(&mut host, Duration::from_secs(4)).await;
        if l == "144p" {
            break l;
        }
    };
    let mut a = admin(&router).await;
    let stats = a
        .get_stats(GetStatsRequest {
            room: room.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let level = stats.rooms[0]
        .participants
        .iter()
        .find(|p| p.nickname == "host")
        .map(|p| p.video_level.clone());
    assert_eq!(level.as_deref(), Some(low.as_str()));
    let dropped = shim
        .dropped_to_client
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 10, "the shim dropped {dropped}");

    // The loss stops: one step up per second back to where it was and on.
    shim.set_loss_to_client(0.0);
    let healed = Instant::now();
    let mut back = Vec::new();
    while back.last().map(String::as_str) != Some("720p") {
        let (l, _) = next_level(&mut host, Duration::from_secs(5)).await;
        back.push(l);
    }
    eprintln!("after the loss stopped: {back:?} in {:?}", healed.elapsed());
    assert_eq!(&back[back.len() - 4..], ["240p", "360p", "480p", "720p"]);
    reporter.abort();
    tokio::task::block_in_place(|| sender.stop(Duration::from_secs(2)));
}

/// Whether an RTP packet starts a VP8 keyframe (RFC 7741: the payload
/// descriptor, then, at a partition's start, the payload header's P bit).
fn vp8_keyframe(datagram: &[u8]) -> bool {
    if proto::media::classify(datagram) != proto::media::PacketKind::Rtp {
        return false;
    }
    let Ok(rtp) = rtp_types::RtpPacket::parse(datagram) else {
        return false;
    };
    if rtp.payload_type() != 100 {
        return false;
    }
    let p = rtp.payload();
    let Some(&b0) = p.first() else { return false };
    let (extended, start, partition) = (b0 & 0x80 != 0, b0 & 0x10 != 0, b0 & 0x07);
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(1) else { return false };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            i += if p.get(i).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    start && partition == 0 && p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// A newcomer to a meeting sees video at once: the router asks each camera
/// for a keyframe (KEYFRAME_REQUEST over the control channel, which works
/// in secure rooms too), and the sender's encoder makes one on request,
/// rather than at its next interval (2 s with vp8.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_a_keyframe_at_once() {
    let vp8 = definition("vp8");
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let mut host = Session::connect(addr, "host")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_room, code) = host
        .create_meeting(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let host_media = host.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let lane = LaneConfig::new(vp8, Some(Source::Pattern("ball".into())), Sink::Discard);
    let sender = Av::start(&host_media, vec![lane], options()).unwrap_or_else(|e| panic!("{e}"));
    assert!(sender.transmit(Kind::Video, true));
    // Into the encoder's keyframe interval: its first keyframe is behind.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let ann = join(addr, "ann", &code, &mut host).await;
    let ann_media = ann.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let bound = Instant::now();
    // What the desktop client and the CLI do with the request.
    wait_for(&mut host, QUIET, "KEYFRAME_REQUEST", |m| {
        matches!(m, ServerMessage::KeyframeRequest { .. }).then_some(())
    })
    .await;
    assert!(sender.request_keyframe(Kind::Video));
    let mut packets = 0;
    let first_keyframe = loop {
        match ann_media.recv(Duration::from_secs(3)).await {
            Ok(Some(d)) if vp8_keyframe(&d) => break bound.elapsed(),
            Ok(Some(_)) => packets += 1,
            other => panic!("no keyframe within 3 s ({packets} packets): {other:?}"),
        }
    };
    eprintln!("first keyframe {first_keyframe:?} after binding, {packets} packets before it");
    assert!(
        first_keyframe < Duration::from_millis(600),
        "keyframe after {first_keyframe:?}: the request was not honoured"
    );
}
