//! Helpers shared by the end-to-end tests and benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use client::{Media, Session};
use proto::control::ServerMessage;
use router::{Config, Router};

/// A router on loopback with ephemeral ports, and `config` tweaks applied.
/// A path in this test process's scratch directory (under the system's
/// temporary directory, never in the tree).
pub fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("sb-tests-{}", std::process::id()))
        .join(name)
}

pub async fn start_router(tweak: impl FnOnce(&mut Config)) -> Router {
    let mut config = Config {
        control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        media: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        admin: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        // One self-signed certificate for the routers of this process.
        state_dir: Some(scratch("state")),
        ..Config::default()
    };
    tweak(&mut config);
    match Router::start_with(config, router::registry::Registry::builtin(), Some(1)).await {
        Ok(r) => r,
        Err(e) => panic!("router failed to start: {e:#}"),
    }
}

/// A `ptt` room with default options, for `Config::rooms`.
pub fn ptt_room(name: &str, max_participants: u32) -> router::config::RoomConfig {
    router::config::RoomConfig {
        name: name.into(),
        kind: "ptt".into(),
        max_participants,
        options: Default::default(),
    }
}

/// A client that joined `room` and bound its media.
pub async fn member(router: SocketAddr, nick: &str, room: &str) -> (Session, Media) {
    let mut s = match Session::connect(router, nick).await {
        Ok(s) => s,
        Err(e) => panic!("{nick}: connect: {e}"),
    };
    if let Err(e) = s.join(room).await {
        panic!("{nick}: join: {e}");
    }
    let m = match s.bind_media().await {
        Ok(m) => m,
        Err(e) => panic!("{nick}: bind: {e}"),
    };
    (s, m)
}

/// A `ptt` room whose media is SRTP (option `secure`).
pub fn secure_room(name: &str) -> router::config::RoomConfig {
    let mut room = ptt_room(name, 0);
    room.options.insert("secure".into(), true.into());
    room
}

/// Options that can join a secure room: TLS pinned to `router`'s
/// certificate, and the features `stun_integrity` and `srtp`.
pub fn secure_options(router: &Router) -> client::ConnectOptions {
    let Some(fp) = router.tls_fingerprint() else {
        panic!("the router offers no TLS")
    };
    client::ConnectOptions {
        features: vec![
            proto::control::FEATURE_STUN_INTEGRITY.into(),
            proto::control::FEATURE_SRTP.into(),
        ],
        tls: client::tls::TlsOptions {
            transport: client::tls::Transport::Tls,
            trust: client::tls::Trust::Fingerprint(fp),
            server_name: None,
        },
        ..client::ConnectOptions::default()
    }
}

/// A client on TLS that joined the secure room `room` (its key in the
/// session's keyring) and bound its media with a signed binding.
pub async fn secure_member(router: &Router, nick: &str, room: &str) -> (Session, Media) {
    let mut s =
        match Session::connect_with(router.control_addr(), nick, secure_options(router)).await {
            Ok(s) => s,
            Err(e) => panic!("{nick}: connect: {e}"),
        };
    if let Err(e) = s.join(room).await {
        panic!("{nick}: join: {e}");
    }
    assert!(s.room_secure(), "{nick}: {room} is not secure");
    let m = match s.bind_media().await {
        Ok(m) => m,
        Err(e) => panic!("{nick}: bind: {e}"),
    };
    (s, m)
}

/// Alice and Bob in `lobby`, media bound, Alice holding the floor: the
/// innocent members that bad-input tests keep talking beside the abuse.
pub async fn alice_talks_to_bob(router: SocketAddr) -> ((Session, Media), (Session, Media)) {
    let (mut alice, ma) = member(router, "alice", "lobby").await;
    let bob = member(router, "bob", "lobby").await;
    match alice.request_floor(0).await {
        Ok(client::FloorAnswer::Granted { .. }) => {}
        other => panic!("alice: floor {other:?}"),
    }
    ((alice, ma), bob)
}

/// Every datagram arriving within `quiet` of the previous one.
pub async fn drain_media(m: &Media, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Ok(Some(d)) = m.recv(quiet).await {
        got.push(d);
    }
    got
}

/// Waits for a message matching `pick`, panicking with what was seen instead.
pub async fn wait_for<T>(
    s: &mut Session,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(&ServerMessage) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, s.next_event()).await {
            Ok(Some(m)) => {
                if let Some(t) = pick(&m) {
                    return t;
                }
                seen.push(m);
            }
            Ok(None) => panic!("connection closed while waiting for {what}; saw {seen:?}"),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:?}"),
        }
    }
}

/// A tonic client of the router's admin API.
pub async fn admin(
    router: &Router,
) -> proto_grpc::admin::admin_client::AdminClient<tonic::transport::Channel> {
    let url = format!("http://{}", router.admin_addr());
    match proto_grpc::admin::admin_client::AdminClient::connect(url).await {
        Ok(c) => c,
        Err(e) => panic!("admin connect: {e}"),
    }
}

/// One line per room event, for comparing streams and readable failures.
pub fn describe(ev: &proto_grpc::admin::RoomEvent) -> String {
    use proto_grpc::admin::room_event::Event;
    let what = match &ev.event {
        Some(Event::Snapshot(s)) => {
            let names: Vec<_> = s.participants.iter().map(|p| p.nickname.as_str()).collect();
            format!("snapshot [{}]", names.join(","))
        }
        Some(Event::Joined(j)) => format!("joined {}", j.nickname),
        Some(Event::Left(l)) => format!("left {} {} {}", l.nickname, l.reason, l.message),
        Some(Event::FloorGranted(g)) => format!("granted {} p{}", g.nickname, g.priority),
        Some(Event::FloorDenied(d)) => {
            format!("denied {} {} {}", d.nickname, d.reason, d.queue_position)
        }
        Some(Event::FloorReleased(r)) => format!("released {} {}", r.nickname, r.reason),
        Some(Event::FloorRevoked(r)) => format!("revoked {} {}", r.nickname, r.reason),
        Some(Event::Chat(c)) => format!("chat {}->{} {}", c.from, c.to_nickname, c.text),
        Some(Event::Muted(m)) => format!("muted {} {}", m.nickname, m.muted),
        Some(Event::Closed(c)) => format!("closed {}", c.reason),
        None => "empty".into(),
    };
    format!("#{} {what}", ev.seq)
}

pub mod audio;
pub mod capture;
pub mod seed;
pub mod shim;
