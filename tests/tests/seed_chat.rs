//! Seed 004 (chat with exclusive voice) clients through the router's
//! front-end. The seed client here is written from ../shared/compat.md alone:
//! newline-terminated lines, the first its nickname, voice as `VOICE:` lines
//! of base64 PCM on the same connection.

use std::time::Duration;

use proto::control::ServerMessage;
use router::config::{CompatConfig, RoomConfig, Seed};
use switchboard_tests::seed::{QUIET, Seed004, WAIT, voice_of};
use switchboard_tests::{start_router, wait_for};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
/// Voice lines sent past a reader that never reads: 4 MB.
const LINES: u16 = 1500;

async fn router() -> router::Router {
    start_router(|c| {
        c.rooms.push(RoomConfig {
            name: "talk".into(),
            kind: "chat".into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("codec", serde_json::json!("l16-44k"))]),
        });
        c.compat.push(CompatConfig {
            seed: Seed::Chat,
            control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            media: None,
            room: Some("talk".into()),
        });
    })
    .await
}

fn pcm(k: u16) -> Vec<u8> {
    (0..1024u16)
        .flat_map(|i| (i.wrapping_mul(17) ^ k).to_le_bytes())
        .collect()
}

#[tokio::test]
async fn seed_chat_clients_chat_take_the_floor_and_talk() {
    let r = router().await;
    let control = r.front_addrs()[0].control;
    let mut ann = Seed004::join(control, "ann").await;
    ann.expect("USERLIST:ann").await;
    let mut bob = Seed004::join(control, "bob").await;
    bob.expect("USERLIST:ann,bob").await;
    // The new list, then the news (as the original sent them).
    ann.expect("USERLIST:ann,bob").await;
    ann.expect("SERVER: bob has joined the chatroom.").await;

    // Chat reaches everyone, its sender included.
    ann.say("MSG:hello: all").await;
    ann.expect("MSG:ann: hello: all").await;
    bob.expect("MSG:ann: hello: all").await;

    // The floor: granted to all, BUSY to a second asker only.
    ann.say("STATUS:START:ann").await;
    ann.expect("STATUS:START:ann").await;
    bob.expect("STATUS:START:ann").await;
    bob.say("STATUS:START:bob").await;
    bob.expect("STATUS:BUSY").await;
    // Only the holder's voice is relayed, to everyone but the holder, as
    // lines of 1,024 samples.
    let sent: Vec<Vec<u8>> = (0..6).map(pcm).collect();
    for p in &sent {
        ann.talk(p).await;
    }
    bob.talk(&pcm(99)).await;
    let heard = bob.rest().await;
    assert_eq!(voice_of(&heard), sent.concat(), "bob hears ann's voice");
    assert!(
        heard
            .iter()
            .filter_map(|l| l.strip_prefix("VOICE:"))
            .all(|b| b.len() == 2732),
        "2,048 bytes a line"
    );
    let own = ann.rest().await;
    assert!(
        voice_of(&own).is_empty(),
        "no echo, and bob is not relayed: {own:?}"
    );
    ann.say("STATUS:STOP:ann").await;
    ann.expect("STATUS:STOP:ann").await;
    bob.expect("STATUS:STOP:ann").await;

    // A leave is told, then the new list (the original deadlocked here).
    drop(bob);
    ann.expect("SERVER: bob has left the chatroom.").await;
    ann.expect("USERLIST:ann").await;
    r.shutdown().await;
}

#[tokio::test]
async fn seed_and_native_members_chat_both_ways_and_a_slow_reader_stalls_nobody() {
    let r = router().await;
    let control = r.front_addrs()[0].control;
    let mut ann = Seed004::join(control, "ann").await;
    ann.expect("USERLIST:ann").await;
    let (mut nat, nm) = switchboard_tests::member(r.control_addr(), "nat", "talk").await;
    ann.expect("USERLIST:ann,nat").await;
    // Native to seed, and seed to native.
    if let Err(e) = nat.chat("hi ann", None).await {
        panic!("{e}");
    }
    ann.expect("MSG:nat: hi ann").await;
    ann.say("MSG:hi nat").await;
    wait_for(&mut nat, WAIT, "ann's CHAT", |m| {
        matches!(m, ServerMessage::Chat { from, text, .. } if from == "ann" && text == "hi nat")
            .then_some(())
    })
    .await;

    // A seed client that never reads, while ann talks a long while: ann's
    // voice still reaches the native member, and chat still flows.
    let _slow = TcpStream::connect(control).await;
    let mut slow = match _slow {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let _ = slow.write_all(b"slow\n").await;
    ann.expect("USERLIST:ann,nat,slow").await;
    ann.say("STATUS:START:ann").await;
    ann.expect("STATUS:START:ann").await;
    let mut rtp = 0usize;
    for k in 0..LINES {
        ann.talk(&pcm(k)).await;
        while let Ok(Some(_)) = nm.recv(Duration::from_millis(0)).await {
            rtp += 1;
        }
    }
    ann.say("MSG:still here").await;
    ann.expect("MSG:ann: still here").await;
    wait_for(&mut nat, WAIT, "CHAT after the flood", |m| {
        matches!(m, ServerMessage::Chat { text, .. } if text == "still here").then_some(())
    })
    .await;
    while let Ok(Some(_)) = nm.recv(QUIET).await {
        rtp += 1;
    }
    // Lines of 1,024 samples, two RTP packets each (UDP on loopback may
    // drop some under load); far more than the slow reader's socket holds.
    let want = usize::from(LINES) * 2;
    assert!(
        rtp > want * 8 / 10,
        "the native member got {rtp} of {want} packets"
    );
    drop(slow);
    r.shutdown().await;
}
