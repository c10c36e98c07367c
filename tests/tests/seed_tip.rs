//! Seed 003 (voice communicator) clients through the router's front-end,
//! with a seed client written from ../shared/compat.md alone: back-to-back
//! JSON objects with a `KEY`, 512-sample 20 kHz datagrams from its
//! CLIENT_PORT. Talkers are summed for each receiver (the seed's clients do
//! not mix).

use std::time::Duration;

use router::config::{CompatConfig, RoomConfig, Seed};
use switchboard_tests::seed::{QUIET, Seed003, constant, ip, samples};
use switchboard_tests::start_router;

/// 512 samples at 20 kHz.
const FRAME: Duration = Duration::from_micros(25_600);

async fn router() -> router::Router {
    start_router(|c| {
        c.rooms.push(RoomConfig {
            name: "tip".into(),
            kind: "voice".into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("codec", serde_json::json!("l16-20k"))]),
        });
        c.compat.push(CompatConfig {
            seed: Seed::Tip,
            control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            media: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            room: Some("tip".into()),
        });
    })
    .await
}

fn addrs(r: &router::Router) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let f = r.front_addrs()[0];
    (f.control, f.media.unwrap_or_else(|| unreachable!()))
}

/// Every sample received, frame by frame.
async fn frames(c: &Seed003) -> Vec<Vec<i16>> {
    c.heard_audio().await.iter().map(|d| samples(d)).collect()
}

#[tokio::test]
async fn seed_tip_clients_get_lists_numbers_and_each_others_voice_summed() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let (mut ann, n_ann) = Seed003::join(control, media, ip(3, 2), "ann").await;
    let (mut bob, n_bob) = Seed003::join(control, media, ip(3, 3), "bob").await;
    assert_eq!((n_ann, n_bob), (0, 1), "the lowest free numbers");
    assert_eq!(ann.users().await, ["ann", "bob"]);
    let (mut cy, _) = Seed003::join(control, media, ip(3, 4), "cy").await;
    assert_eq!(bob.users().await, ["ann", "bob", "cy"]);

    // One talker: the others hear it as sent (the greeting was no audio),
    // and it hears nothing of itself.
    let sent: Vec<Vec<u8>> = (0..5i16).map(|k| constant(100 + k, 512)).collect();
    for d in &sent {
        ann.talk(d).await;
        tokio::time::sleep(FRAME).await;
    }
    let heard = bob.heard_audio().await;
    assert_eq!(heard.concat(), sent.concat(), "bob hears ann's frames");
    assert!(heard.iter().all(|d| d.len() == 1024));
    assert_eq!(cy.heard_audio().await.concat(), sent.concat());
    assert!(ann.heard_audio().await.is_empty(), "no echo");

    // Two talking at once: cy hears their sum, sample by sample, and at
    // full scale the sum saturates instead of wrapping.
    for (a, b, sum) in [(1000, 2000, 3000), (30_000, 30_000, i16::MAX)] {
        for _ in 0..20 {
            ann.talk(&constant(a, 512)).await;
            bob.talk(&constant(b, 512)).await;
            tokio::time::sleep(FRAME).await;
        }
        let got = frames(&cy).await;
        let summed = got.iter().filter(|f| f.iter().all(|s| *s == sum)).count();
        assert!(
            got.iter().flatten().all(|s| [a, b, sum].contains(s)),
            "only {a}, {b} or their sum {sum}"
        );
        assert!(
            summed * 2 >= got.len(),
            "most frames are the sum: {summed} of {}",
            got.len()
        );
        let _ = frames(&ann).await;
        let _ = frames(&bob).await;
    }

    // A client that says DISCONNECT leaves; its number is free again.
    bob.send(serde_json::json!({"KEY": 4, "REASON": "bye"}))
        .await;
    ann.users_become(&["ann", "cy"]).await;
    let (_dee, n_dee) = Seed003::join(control, media, ip(3, 5), "dee").await;
    assert_eq!(n_dee, 1, "bob's number, reused");

    // The server stops: SERVER_CLOSE.
    r.shutdown().await;
    ann.until(|v| v["KEY"] == 5).await;
    cy.until(|v| v["KEY"] == 5).await;
}

#[tokio::test]
async fn seed_tip_and_native_members_hear_each_other() {
    let r = router().await;
    let (control, media) = addrs(&r);
    let (ann, _) = Seed003::join(control, media, ip(4, 2), "ann").await;
    let (_nat, nm) = switchboard_tests::member(r.control_addr(), "nat", "tip").await;
    tokio::time::sleep(QUIET).await;
    // Seed to native: RTP L16 at 20 kHz (PT 114), big-endian, as sent.
    let d = constant(1234, 512);
    ann.talk(&d).await;
    let mut pcm = Vec::new();
    while let Ok(Some(p)) = nm.recv(QUIET).await {
        if let Some((_, pt, payload)) = proto::media::rtp_payload(&p) {
            assert_eq!(pt, 114);
            pcm.extend(payload.chunks_exact(2).flat_map(|s| [s[1], s[0]]));
        }
    }
    assert_eq!(pcm, d);
    // Native to seed: 10 ms packets (200 samples) are summed into the
    // seed's 512-sample frames.
    for seq in 0..40u16 {
        let payload: Vec<u8> = std::iter::repeat_n(777i16.to_be_bytes(), 200)
            .flatten()
            .collect();
        let p = proto::media::build_rtp(
            114,
            seq,
            u32::from(seq) * 200,
            nm.ssrcs().audio,
            seq == 0,
            &payload,
        );
        if let Err(e) = nm.send_raw(&p).await {
            panic!("{e}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = frames(&ann).await;
    let all: Vec<i16> = got.iter().flatten().copied().collect();
    assert!(got.iter().all(|f| f.len() == 512), "whole seed frames");
    let voiced = all.iter().filter(|s| **s == 777).count();
    assert!(
        voiced >= 40 * 200 * 8 / 10,
        "ann hears nat: {voiced} of 8000 samples"
    );
    assert!(all.iter().all(|s| *s == 777 || *s == 0), "nothing else");
    r.shutdown().await;
}
