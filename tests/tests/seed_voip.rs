//! Seed 001 (VoIP call) clients through the router's front-end, with a seed
//! client written from ../shared/compat.md alone: one request per TCP
//! connection (`HELLO` + port + target IP, `HEARTBEAT`, `DISCONNECT`),
//! known by IP; audio as a big-endian sequence number + exactly 1,764 bytes,
//! and an end-of-transmission datagram when the peer stops.

use std::net::SocketAddr;
use std::time::Duration;

use proto_grpc::admin::{
    KickParticipantRequest, ListParticipantsRequest, ListRoomsRequest, ParticipantRef,
    participant_ref,
};
use router::config::{CompatConfig, Seed};
use switchboard_tests::seed::{QUIET, SEED001_EOT, Seed001, ip, seed001_hello, seed001_request};
use switchboard_tests::{admin, start_router};

/// 882 samples at 44.1 kHz.
const FRAME: Duration = Duration::from_millis(20);

async fn router() -> router::Router {
    start_router(|c| {
        c.compat.push(CompatConfig {
            seed: Seed::Voip,
            control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            media: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            room: None,
        });
    })
    .await
}

fn addrs(r: &router::Router) -> (SocketAddr, SocketAddr) {
    let f = r.front_addrs()[0];
    (f.control, f.media.unwrap_or_else(|| unreachable!()))
}

/// Frame `k` of a talk: 882 distinct samples, little-endian.
fn frame(k: u16) -> Vec<u8> {
    (0..882u16)
        .flat_map(|i| (i.wrapping_mul(37) ^ k.wrapping_mul(1001)).to_le_bytes())
        .collect()
}

/// The rooms the router has: (name, kind, participants).
async fn rooms(r: &router::Router) -> Vec<(String, String, u32)> {
    let mut g = admin(r).await;
    let list = g
        .list_rooms(ListRoomsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    list.rooms
        .into_iter()
        .map(|r| (r.name, r.kind, r.participants))
        .collect()
}

/// Waits until the call rooms are `want`.
async fn rooms_become(r: &router::Router, want: &[(&str, u32)]) {
    let want: Vec<(String, String, u32)> = want
        .iter()
        .map(|(n, p)| ((*n).to_owned(), "voice".to_owned(), *p))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut now = rooms(r).await;
        now.retain(|(name, ..)| name.starts_with("call-"));
        now.sort();
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms are {now:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Talks `frames` frames starting at frame `from`, in real time, then ends.
async fn talk(c: &mut Seed001, from: u16, frames: u16) -> Vec<u8> {
    let mut sent = Vec::new();
    for k in from..from + frames {
        let f = frame(k);
        c.talk(&f).await;
        sent.extend_from_slice(&f);
        tokio::time::sleep(FRAME).await;
    }
    c.end_transmission().await;
    sent
}

/// What a receiver got of one talk: its audio sequence numbers, the audio,
/// and how many EOT datagrams closed it.
fn split(heard: &[(u32, Vec<u8>)]) -> (Vec<u32>, Vec<u8>, usize) {
    let eot: Vec<_> = heard.iter().filter(|(s, _)| *s == SEED001_EOT).collect();
    assert!(
        eot.iter().all(|(_, a)| a.iter().all(|b| *b == 0)),
        "EOT carries silence"
    );
    assert!(
        heard.last().is_some_and(|(s, _)| *s == SEED001_EOT),
        "the talk ends with EOT"
    );
    let audio: Vec<_> = heard.iter().filter(|(s, _)| *s != SEED001_EOT).collect();
    (
        audio.iter().map(|(s, _)| *s).collect(),
        audio.iter().flat_map(|(_, a)| a.clone()).collect(),
        eot.len(),
    )
}

#[tokio::test]
async fn seed_voip_callers_hear_each_other_and_only_each_other() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let (a, b, c) = (ip(11, 2), ip(11, 3), ip(11, 4));
    let (mut ann, w) = Seed001::register(control, media, a, b).await;
    assert_eq!(w, "WELCOME");
    let (mut bob, w) = Seed001::register(control, media, b, a).await;
    assert_eq!(w, "WELCOME");
    // The call is a two-person voice room of its own, in the room codec
    // the seed speaks.
    let call = "call-127.0.11.2-127.0.11.3";
    rooms_become(&r, &[(call, 2)]).await;
    let mut g = admin(&r).await;
    let people = g
        .list_participants(ListParticipantsRequest { room: call.into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut names: Vec<String> = people
        .participants
        .into_iter()
        .map(|p| p.nickname)
        .collect();
    names.sort();
    assert_eq!(names, ["127.0.11.2", "127.0.11.3"]);

    // ann talks: bob gets every sample, in 1,764-byte datagrams numbered
    // from 0 without a gap, then one EOT; ann hears nothing of herself.
    let sent = talk(&mut ann, 0, 10).await;
    let heard = bob.heard().await;
    let (seqs, audio, eots) = split(&heard);
    assert_eq!(seqs, (0..10).collect::<Vec<u32>>());
    assert_eq!(audio, sent, "bob hears what ann said");
    assert_eq!(eots, 1, "one EOT when ann stopped");
    assert!(ann.heard().await.is_empty(), "no echo");

    // bob answers: ann's numbering is her own.
    let sent = talk(&mut bob, 100, 5).await;
    let (seqs, audio, _) = split(&ann.heard().await);
    assert_eq!(seqs, (0..5).collect::<Vec<u32>>());
    assert_eq!(audio, sent);

    // cy calls ann: a room of its own; ann's audio stays in ann's call.
    let (cy, w) = Seed001::register(control, media, c, a).await;
    assert_eq!(w, "WELCOME");
    rooms_become(&r, &[(call, 2), ("call-127.0.11.2-127.0.11.4", 1)]).await;
    let sent = talk(&mut ann, 20, 4).await;
    let (seqs, audio, _) = split(&bob.heard().await);
    assert_eq!(
        seqs,
        (10..14).collect::<Vec<u32>>(),
        "consecutive per receiver"
    );
    assert_eq!(audio, sent);
    assert!(
        cy.heard().await.is_empty(),
        "audio goes only between the pair"
    );

    // HEARTBEAT keeps a registration; an unknown IP has none to keep.
    assert_eq!(ann.request(b"HEARTBEAT").await, "ALIVE");
    assert_eq!(
        seed001_request(control, ip(11, 9), b"HEARTBEAT").await,
        "INVALID"
    );
    // Registering again the same is a refresh; to another target, a move.
    assert_eq!(
        cy.request(&seed001_hello(
            cy.udp.local_addr().map(|x| x.port()).unwrap_or(0),
            b
        ))
        .await,
        "WELCOME"
    );
    rooms_become(&r, &[(call, 2), ("call-127.0.11.3-127.0.11.4", 1)]).await;

    // DISCONNECT ends a registration, and the call's room closes with its
    // last member.
    assert_eq!(bob.request(b"DISCONNECT").await, "BYE");
    assert_eq!(cy.request(b"DISCONNECT").await, "BYE");
    rooms_become(&r, &[(call, 1)]).await;
    assert_eq!(bob.request(b"HEARTBEAT").await, "INVALID");
    assert_eq!(ann.request(b"DISCONNECT").await, "BYE");
    rooms_become(&r, &[]).await;
    assert_eq!(ann.request(b"DISCONNECT").await, "BYE", "idempotent");
    r.shutdown().await;
}

#[tokio::test]
async fn seed_voip_peer_leaving_mid_talk_ends_with_eot_and_kick_ends_a_registration() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let (a, b) = (ip(13, 2), ip(13, 3));
    let (mut ann, _) = Seed001::register(control, media, a, b).await;
    let (bob, _) = Seed001::register(control, media, b, a).await;
    rooms_become(&r, &[("call-127.0.13.2-127.0.13.3", 2)]).await;
    // ann talks three frames and a half, and vanishes without EOT: bob
    // gets the half padded with silence to a whole frame, then EOT.
    let mut sent = Vec::new();
    for k in 0..3 {
        ann.talk(&frame(k)).await;
        sent.extend(frame(k));
        tokio::time::sleep(FRAME).await;
    }
    let half = &frame(3)[..882];
    ann.talk(half).await;
    sent.extend_from_slice(half);
    sent.resize(4 * 1764, 0);
    let heard = bob.heard().await;
    let (seqs, audio, eots) = split(&heard);
    assert_eq!((seqs, eots), (vec![0, 1, 2, 3], 1));
    assert_eq!(audio, sent);

    // An admin kicks bob: his registration is over.
    let mut g = admin(&r).await;
    g.kick_participant(KickParticipantRequest {
        room: "call-127.0.13.2-127.0.13.3".into(),
        participant: Some(ParticipantRef {
            who: Some(participant_ref::Who::Nickname("127.0.13.3".into())),
        }),
        reason: "enough".into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rooms_become(&r, &[("call-127.0.13.2-127.0.13.3", 1)]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bob.request(b"HEARTBEAT").await != "INVALID" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob still registered"
        );
        tokio::time::sleep(QUIET).await;
    }
    r.shutdown().await;
}

#[tokio::test]
async fn seed_voip_holds_ten_clients_and_answers_bad_requests_invalid() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let target = ip(12, 200);
    let mut clients = Vec::new();
    for i in 0..10 {
        let (c, w) = Seed001::register(control, media, ip(12, 2 + i), target).await;
        assert_eq!(w, "WELCOME", "client {i}");
        clients.push(c);
    }
    let (late, w) = Seed001::register(control, media, ip(12, 50), target).await;
    assert_eq!(w, "FULL", "the eleventh");
    assert_eq!(clients[0].request(b"DISCONNECT").await, "BYE");
    let port = late.udp.local_addr().map(|a| a.port()).unwrap_or(0);
    assert_eq!(late.request(&seed001_hello(port, target)).await, "WELCOME");

    let who = ip(12, 60);
    let mut long = seed001_hello(4000, target);
    long.extend(std::iter::repeat_n(b'7', 10_000));
    for bad in [
        b"HELLO\0\0".to_vec(),
        b"HELLO\0\0\x0f\xa0".to_vec(),
        b"HELLO\0\0\x0f\xa0not-an-ip".to_vec(),
        b"HELLO\x00\x00\x00\x00127.0.0.1".to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 100],
        long,
    ] {
        assert_eq!(
            seed001_request(control, who, &bad).await,
            "INVALID",
            "{bad:?}"
        );
    }
    // The registered clients kept theirs.
    assert_eq!(clients[1].request(b"HEARTBEAT").await, "ALIVE");
    r.shutdown().await;
}

#[tokio::test]
async fn seed_voip_registrations_end_without_heartbeats_and_heartbeats_keep_them() {
    let r = start_router(|c| {
        c.limits.voip_registration_timeout_ms = 800;
        c.compat.push(CompatConfig {
            seed: Seed::Voip,
            control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            media: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            room: None,
        });
    })
    .await;
    let (control, media) = addrs(&r);
    let (a, b) = (ip(14, 2), ip(14, 3));
    let (ann, w) = Seed001::register(control, media, a, b).await;
    assert_eq!(w, "WELCOME");
    let (bob, w) = Seed001::register(control, media, b, a).await;
    assert_eq!(w, "WELCOME");
    rooms_become(&r, &[("call-127.0.14.2-127.0.14.3", 2)]).await;
    // ann says HEARTBEAT well within the timeout, bob says nothing: after
    // three timeouts ann is still registered and bob is not.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(2400) {
        assert_eq!(ann.request(b"HEARTBEAT").await, "ALIVE");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rooms_become(&r, &[("call-127.0.14.2-127.0.14.3", 1)]).await;
    assert_eq!(bob.request(b"HEARTBEAT").await, "INVALID");
    assert_eq!(ann.request(b"HEARTBEAT").await, "ALIVE");
    r.shutdown().await;
}
