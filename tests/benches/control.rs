//! The control channel over TLS beside plaintext, in one run on one router:
//! connecting (TCP, TLS handshake, HELLO to WELCOME), a command's round
//! trip (HEARTBEAT to HEARTBEAT_ACK), and a chat line's fan-out to a room
//! of members all on TLS or all on plaintext (TLS clients reach the engine
//! through a local socket pair and a relay task, router/src/driver/tls.rs).
//! Figures are ratios to plaintext measured in the same run.
//!
//!   cargo bench -p switchboard-tests --bench control -- [--rounds N] [--members N]

use std::time::{Duration, Instant};

use client::tls::{TlsOptions, Transport, Trust};
use client::{ConnectOptions, Session};
use proto::control::{ClientMessage, ServerMessage};
use switchboard_tests::start_router;

struct Args {
    rounds: usize,
    members: usize,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 2000,
        members: 100,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).and_then(|s| s.parse().ok());
        match (v[i].as_str(), next) {
            ("--rounds", Some(n)) => a.rounds = n,
            ("--members", Some(n)) => a.members = n,
            _ => {}
        }
        i += 1;
    }
    a
}

fn options(tls: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        heartbeat: false,
        tls: match tls {
            Some(fp) => TlsOptions {
                transport: Transport::Tls,
                trust: Trust::Fingerprint(fp.to_owned()),
                server_name: None,
            },
            None => TlsOptions::default(),
        },
        ..ConnectOptions::default()
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

async fn connect_times(addr: std::net::SocketAddr, tls: Option<&str>, n: usize) -> Vec<f64> {
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let s = Session::connect_with(addr, &format!("c{i}"), options(tls)).await;
        t.push(start.elapsed().as_secs_f64() * 1e6);
        drop(s);
    }
    t
}

async fn round_trips(addr: std::net::SocketAddr, tls: Option<&str>, n: usize) -> Vec<f64> {
    let Ok(mut s) = Session::connect_with(addr, "rt", options(tls)).await else {
        panic!("connect")
    };
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let _ = s.send(ClientMessage::Heartbeat).await;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.next_event()).await {
                Ok(Some(ServerMessage::HeartbeatAck)) => break,
                Ok(Some(_)) => {}
                _ => panic!("no HEARTBEAT_ACK"),
            }
        }
        t.push(start.elapsed().as_secs_f64() * 1e6);
    }
    t
}

/// Time from a chat line sent until the last of `members` has it.
async fn fan_out(
    addr: std::net::SocketAddr,
    room: &str,
    tls: Option<&str>,
    members: usize,
    lines: usize,
) -> Vec<f64> {
    let mut listeners = Vec::with_capacity(members);
    for i in 0..members {
        let Ok(mut s) = Session::connect_with(addr, &format!("m{i}"), options(tls)).await else {
            panic!("connect")
        };
        if s.join(room).await.is_err() {
            panic!("join")
        }
        listeners.push(s);
    }
    let Ok(mut talker) = Session::connect_with(addr, "talker", options(tls)).await else {
        panic!("connect")
    };
    if talker.join(room).await.is_err() {
        panic!("join")
    }
    // The joins' member lists first.
    for s in listeners.iter_mut() {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(20), s.next_event()).await
        {}
    }
    let mut t = Vec::with_capacity(lines);
    for i in 0..lines {
        let text = format!("line {i}");
        let start = Instant::now();
        let _ = talker.chat(&text, None).await;
        let waits = listeners.iter_mut().map(|s| {
            let text = text.clone();
            async move {
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), s.next_event()).await {
                        Ok(Some(ServerMessage::Chat { text: got, .. })) if got == text => return,
                        Ok(Some(_)) => {}
                        other => panic!("chat not delivered: {other:?}"),
                    }
                }
            }
        });
        futures_join_all(waits).await;
        t.push(start.elapsed().as_secs_f64() * 1e6);
        // Quiet between lines: each is timed alone.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    for f in set {
        f.await;
    }
}

fn row(name: &str, plain: &mut [f64], tls: &mut [f64]) {
    let (p50, t50) = (pct(plain, 0.5), pct(tls, 0.5));
    let (p99, t99) = (pct(plain, 0.99), pct(tls, 0.99));
    println!(
        "{name:<22} {p50:>9.0} {p99:>9.0} {t50:>9.0} {t99:>9.0} {:>7.2} {:>7.2}",
        t50 / p50,
        t99 / p99
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let router = start_router(|c| {
        for name in ["plain", "tls"] {
            c.rooms.push(router::config::RoomConfig {
                name: name.into(),
                kind: "chat".into(),
                max_participants: 0,
                // Room for the benchmark's lines within the chat rate.
                options: [
                    ("chat_burst".to_owned(), serde_json::json!(100)),
                    ("chat_per_minute".to_owned(), serde_json::json!(600)),
                ]
                .into_iter()
                .collect(),
            });
        }
        c.limits.max_connections_per_address = 100_000;
        c.limits.max_pending = 100_000;
        c.limits.ban_strikes = 0;
    })
    .await;
    let addr = router.control_addr();
    let Some(fp) = router.tls_fingerprint() else {
        panic!("no TLS")
    };
    let connects = (a.rounds / 20).max(5);
    let mut c_plain = connect_times(addr, None, connects).await;
    let mut c_tls = connect_times(addr, Some(&fp), connects).await;
    let mut r_plain = round_trips(addr, None, a.rounds).await;
    let mut r_tls = round_trips(addr, Some(&fp), a.rounds).await;
    let lines = 50;
    let mut f_plain = fan_out(addr, "plain", None, a.members, lines).await;
    let mut f_tls = fan_out(addr, "tls", Some(&fp), a.members, lines).await;
    println!("control channel, loopback, this machine: microseconds; ratio = TLS / plaintext");
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "", "plain p50", "plain p99", "TLS p50", "TLS p99", "x p50", "x p99"
    );
    row(&format!("connect ({connects})"), &mut c_plain, &mut c_tls);
    row(
        &format!("round trip ({})", a.rounds),
        &mut r_plain,
        &mut r_tls,
    );
    row(
        &format!("chat to {} ({lines})", a.members),
        &mut f_plain,
        &mut f_tls,
    );
    router.shutdown().await;
}
