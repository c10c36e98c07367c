//! WatchRoom under load: many streams see the same events in the same order,
//! and a stream that stops reading costs only itself.

use std::time::{Duration, Instant};

use client::Session;
use proto::control::ClientMessage;
use proto_grpc::admin::{RoomEvent, SendChatRequest, WatchRoomRequest};
use switchboard_tests::{admin, describe, start_router};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

const WATCHERS: usize = 100;
const CLIENTS: usize = 20;

async fn watch(
    a: &mut proto_grpc::admin::admin_client::AdminClient<Channel>,
    room: &str,
) -> Streaming<RoomEvent> {
    match a.watch_room(WatchRoomRequest { room: room.into() }).await {
        Ok(s) => s.into_inner(),
        Err(e) => panic!("watch: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_watchers_see_every_event_in_the_same_order() {
    let router = start_router(|_| {}).await;
    let mut a = admin(&router).await;
    let mut streams = Vec::new();
    for _ in 0..WATCHERS {
        let mut s = watch(&mut a, "lobby").await;
        // The snapshot arrives first: from here on the stream is subscribed.
        match tokio::time::timeout(Duration::from_secs(5), s.message()).await {
            Ok(Ok(Some(ev))) => assert_eq!(describe(&ev), "#0 snapshot []"),
            other => panic!("no snapshot: {other:?}"),
        }
        streams.push(s);
    }
    let expected_events = 2 * CLIENTS;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while seen.len() < expected_events {
                    match tokio::time::timeout_at(deadline, s.message()).await {
                        Ok(Ok(Some(ev))) => seen.push(describe(&ev)),
                        other => {
                            seen.push(format!("STOPPED {other:?}"));
                            break;
                        }
                    }
                }
                seen
            })
        })
        .collect();

    // 20 clients join and leave concurrently, half with LEAVE and half by
    // dropping the connection, so events interleave differently every run.
    let control = router.control_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = match Session::connect(control, &format!("c{i}")).await {
                    Ok(s) => s,
                    Err(e) => panic!("c{i}: {e}"),
                };
                if let Err(e) = s.join("lobby").await {
                    panic!("c{i} join: {e}");
                }
                tokio::time::sleep(Duration::from_millis(5 * (i as u64 % 4))).await;
                if i % 2 == 0 {
                    let _ = s.send(ClientMessage::Leave).await;
                    let _ = s
                        .expect("LEFT", |m| {
                            matches!(m, proto::control::ServerMessage::Left { .. }).then_some(())
                        })
                        .await;
                }
                drop(s);
            })
        })
        .collect();
    for c in clients {
        if let Err(e) = c.await {
            panic!("client task: {e}");
        }
    }

    let mut all = Vec::new();
    for r in readers {
        match r.await {
            Ok(seen) => all.push(seen),
            Err(e) => panic!("reader task: {e}"),
        }
    }
    let first = &all[0];
    assert_eq!(first.len(), expected_events, "{first:#?}");
    let seqs: Vec<String> = (1..=expected_events).map(|n| format!("#{n} ")).collect();
    for (line, prefix) in first.iter().zip(&seqs) {
        assert!(line.starts_with(prefix), "gap or reorder: {first:#?}");
    }
    for i in 0..CLIENTS {
        let joined = first
            .iter()
            .filter(|l| l.ends_with(&format!("joined c{i}")));
        let left = first.iter().filter(|l| l.contains(&format!("left c{i} ")));
        assert_eq!((joined.count(), left.count()), (1, 1), "c{i}: {first:#?}");
    }
    for (n, seen) in all.iter().enumerate() {
        assert_eq!(seen, first, "watcher {n} disagrees with watcher 0");
    }
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_is_told_it_lagged_and_stalls_nobody() {
    const BUFFER: usize = 32;
    const CHATS: usize = 300;
    let router = start_router(|c| c.limits.watch_buffer = BUFFER).await;
    let mut a = admin(&router).await;

    // The stalled watcher has its own HTTP/2 connection with a small window,
    // so the router's sends to it back up quickly; it never reads until the
    // end. (Streams sharing one connection share its window: that is HTTP/2,
    // not the router.)
    let url = format!("http://{}", router.admin_addr());
    let slow_channel = match Endpoint::from_shared(url) {
        Ok(e) => e
            .initial_stream_window_size(Some(16 * 1024))
            .initial_connection_window_size(Some(16 * 1024))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect: {e}")),
        Err(e) => panic!("{e}"),
    };
    let mut slow_client = proto_grpc::admin::admin_client::AdminClient::new(slow_channel);
    let mut stalled = watch(&mut slow_client, "lobby").await;
    let mut live = watch(&mut a, "lobby").await;

    // A client keeps heartbeating while the flood goes on.
    let mut hb = match Session::connect(router.control_addr(), "hb").await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };

    // 300 chat messages of 4000 characters: about 1.2 MB of events, far
    // beyond the stalled stream's 16 KiB window plus 32 buffered events.
    let text = "x".repeat(4000);
    let flood = {
        let mut a = a.clone();
        tokio::spawn(async move {
            for _ in 0..CHATS {
                let r = a
                    .send_chat(SendChatRequest {
                        room: "lobby".into(),
                        to: None,
                        text: text.clone(),
                    })
                    .await;
                if let Err(e) = r {
                    panic!("send_chat: {e}");
                }
            }
        })
    };
    let mut worst_rtt = Duration::ZERO;
    while !flood.is_finished() {
        let t = Instant::now();
        let _ = hb.send(ClientMessage::Heartbeat).await;
        let r = hb
            .expect("HEARTBEAT_ACK", |m| {
                matches!(m, proto::control::ServerMessage::HeartbeatAck).then_some(())
            })
            .await;
        assert!(r.is_ok(), "{r:?}");
        worst_rtt = worst_rtt.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Err(e) = flood.await {
        panic!("flood: {e}");
    }
    println!("worst heartbeat round trip during the flood: {worst_rtt:?}");
    assert!(
        worst_rtt < Duration::from_secs(1),
        "control plane stalled: {worst_rtt:?}"
    );

    // The live watcher got every event, in order.
    let mut got = 0;
    let mut last_seq = 0;
    while got <= CHATS {
        match tokio::time::timeout(Duration::from_secs(10), live.message()).await {
            Ok(Ok(Some(ev))) => {
                if got > 0 {
                    assert_eq!(ev.seq, last_seq + 1, "gap at {}", describe(&ev));
                }
                last_seq = ev.seq;
                got += 1;
            }
            other => panic!("live watcher stopped after {got}: {other:?}"),
        }
    }

    // The stalled watcher reads what fitted, then is told it lagged.
    let mut delivered = 0usize;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.message()).await {
            Ok(Ok(Some(_))) => delivered += 1,
            Ok(Ok(None)) => panic!("stream ended without a status after {delivered}"),
            Ok(Err(s)) => break s,
            Err(_) => panic!("stalled stream hung after {delivered} events"),
        }
    };
    println!("stalled watcher: {delivered} events, then {status:?}");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("fell behind") && status.message().contains("32 events"),
        "{}",
        status.message()
    );
    assert!(delivered < CHATS, "it should have missed some");
    router.shutdown().await;
}
