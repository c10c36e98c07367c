//! `switchboard-client`: a headless client for people, scripts and tests.
//!
//! Every server event is printed to stdout as one JSON line; summaries too, as
//! `{"type":"SUMMARY",...}`. Progress goes to stderr.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use client::{FloorAnswer, Media, Session, SyntheticTalker};
use proto::control::ServerMessage;

#[derive(Debug, Parser)]
#[command(version, about = "Headless Switchboard client")]
struct Args {
    /// Router control address.
    #[arg(
        short,
        long,
        default_value = "127.0.0.1:7070",
        env = "SWITCHBOARD_SERVER"
    )]
    server: String,
    /// Nickname (1-32 letters, digits, space, _ - .).
    #[arg(short, long, default_value = "bot")]
    nick: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the router's rooms.
    Rooms,
    /// Join a room and print every event as it happens, until Ctrl-C.
    Events {
        #[arg(default_value = "lobby")]
        room: String,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Join a room, take the floor and send synthetic RTP for N seconds.
    Talk {
        #[arg(default_value = "lobby")]
        room: String,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Floor priority (pre-empts lower-priority holders where allowed).
        #[arg(long, default_value_t = 0)]
        priority: u8,
        /// Packets per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// RTP payload bytes.
        #[arg(long, default_value_t = 160)]
        size: usize,
        /// How long to wait in the floor queue.
        #[arg(long, default_value_t = 30.0)]
        queue_wait: f64,
    },
    /// Join a room and count the RTP it receives for N seconds.
    Count {
        #[arg(default_value = "lobby")]
        room: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

fn print(msg: &impl serde::Serialize) {
    if let Ok(s) = serde_json::to_string(msg) {
        println!("{s}");
    }
}

async fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(server)
        .await
        .with_context(|| format!("resolving {server}"))?
        .next()
        .with_context(|| format!("{server} has no address"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let server = resolve(&args.server).await?;
    let mut session = Session::connect(server, &args.nick)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    eprintln!(
        "connected as {} (session {}, audio SSRC {})",
        session.welcome().nickname,
        session.welcome().session_id,
        session.welcome().ssrcs.audio
    );
    match args.cmd {
        Cmd::Rooms => {
            session
                .send(proto::control::ClientMessage::ListRooms)
                .await?;
            let rooms = session
                .expect("ROOMS", |m| {
                    matches!(m, ServerMessage::Rooms { .. }).then(|| m.clone())
                })
                .await?;
            print(&rooms);
        }
        Cmd::Events { room, seconds } => {
            session.join(&room).await?;
            let _media = session.bind_media().await?;
            let stop = tokio::time::sleep(Duration::from_secs_f64(seconds.unwrap_or(1e9)));
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    ev = session.next_event() => match ev {
                        Some(ServerMessage::HeartbeatAck) => {}
                        Some(m) => print(&m),
                        None => bail!("the router closed the connection"),
                    },
                    _ = &mut stop => break,
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
        Cmd::Talk {
            room,
            seconds,
            priority,
            rate,
            size,
            queue_wait,
        } => {
            session.join(&room).await?;
            let media = session.bind_media().await?;
            match session.request_floor(priority).await? {
                FloorAnswer::Granted { .. } => {}
                FloorAnswer::Denied {
                    reason: proto::control::DenyReason::Queued,
                    queue_position,
                    holder,
                } => {
                    eprintln!(
                        "floor busy ({}); queued at position {}",
                        holder.unwrap_or_default(),
                        queue_position.unwrap_or(0)
                    );
                    session
                        .wait_for_grant(Duration::from_secs_f64(queue_wait))
                        .await?;
                }
                FloorAnswer::Denied { reason, holder, .. } => {
                    bail!(
                        "floor denied: {reason:?} (holder: {})",
                        holder.unwrap_or_default()
                    )
                }
            }
            print(&serde_json::json!({"type": "TALKING", "room": room}));
            let sent = talk(&mut session, &media, seconds, rate, size).await?;
            session.release_floor().await?;
            print(&serde_json::json!({"type": "SUMMARY", "sent": sent}));
            // Let the release reach the router before the connection closes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Cmd::Count { room, seconds } => {
            session.join(&room).await?;
            let media = session.bind_media().await?;
            let per_ssrc = count(&mut session, &media, seconds).await?;
            let packets: u64 = per_ssrc.values().map(|(p, _)| p).sum();
            let bytes: u64 = per_ssrc.values().map(|(_, b)| b).sum();
            print(&serde_json::json!({
                "type": "SUMMARY",
                "packets": packets,
                "bytes": bytes,
                "per_ssrc": per_ssrc.iter().map(|(s, (p, b))| (s.to_string(), serde_json::json!({"packets": p, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
            }));
        }
    }
    Ok(())
}

/// Sends synthetic RTP while printing events; stops early if the floor is
/// revoked.
async fn talk(
    session: &mut Session,
    media: &Media,
    seconds: f64,
    rate: u32,
    size: usize,
) -> anyhow::Result<u64> {
    let me = session.welcome().session_id;
    let mut talker = SyntheticTalker::new(rate, size);
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if tokio::time::Instant::now() >= end { break; }
                let p = talker.next_packet(media.ssrcs().audio, start.elapsed().as_micros() as u64);
                media.send_raw(&p).await?;
                sent += 1;
            }
            _ = progress.tick() => {
                eprintln!("talking: {:.0}/{seconds:.0} s, {sent} packets", start.elapsed().as_secs_f64());
            }
            ev = session.next_event() => match ev {
                Some(m @ ServerMessage::MicRevoked { session_id, .. }) if session_id == me => {
                    print(&m);
                    break;
                }
                Some(ServerMessage::HeartbeatAck) => {}
                Some(m) => print(&m),
                None => bail!("the router closed the connection"),
            }
        }
    }
    Ok(sent)
}

async fn count(
    session: &mut Session,
    media: &Media,
    seconds: f64,
) -> anyhow::Result<BTreeMap<u32, (u64, u64)>> {
    let mut per_ssrc: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let mut buf = vec![0u8; proto::media::MAX_DATAGRAM];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            r = media.socket().recv_from(&mut buf) => {
                let (n, _) = r?;
                if let Some((_, ssrc)) = proto::media::media_ssrc(&buf[..n]) {
                    let e = per_ssrc.entry(ssrc).or_default();
                    e.0 += 1;
                    e.1 += n as u64;
                }
            }
            _ = progress.tick() => {
                let total: u64 = per_ssrc.values().map(|(p, _)| p).sum();
                eprintln!("received {total} packets from {} streams", per_ssrc.len());
            }
            ev = session.next_event() => match ev {
                Some(ServerMessage::HeartbeatAck) => {}
                Some(m) => print(&m),
                None => bail!("the router closed the connection"),
            }
        }
    }
    Ok(per_ssrc)
}
