//! `switchboard-client`: a headless client for people, scripts and tests.
//!
//! Every server event is printed to stdout as one JSON line; summaries too, as
//! `{"type":"SUMMARY",...}`. Progress goes to stderr.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use client::av::{Av, AvOptions, LaneConfig};
use client::{FloorAnswer, Media, Session, SyntheticTalker};
use pipelines::{Catalog, Sink, Source};
use proto::control::ServerMessage;

#[derive(Debug, Parser)]
#[command(version, about = "Headless Switchboard client")]
struct Args {
    /// Router control address: host:port (TLS when the router offers it),
    /// tls://host:port (TLS only) or tcp://host:port (plaintext).
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
    /// An access token for a router that takes tokens (`switchboard token
    /// mint`); the nickname then comes from it. Prefer the environment or
    /// --token-file: a flag shows in `ps`.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file whose first line is the access token.
    #[arg(long, env = "SWITCHBOARD_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Trust a router certificate signed by a CA in this PEM file.
    #[arg(long, conflicts_with = "tls_fingerprint")]
    tls_ca: Option<std::path::PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (the
    /// router prints it at start).
    #[arg(long)]
    tls_fingerprint: Option<String>,
    /// Otherwise: trust on first use, remembering routers in this file
    /// (default ~/.local/share/switchboard/known_hosts); a changed
    /// certificate is refused.
    #[arg(long, env = "SWITCHBOARD_KNOWN_HOSTS")]
    known_hosts: Option<std::path::PathBuf>,
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
    /// Join a room, take the floor and talk: from the microphone, a tone or
    /// a file, encoded with a pipeline definition (or synthetic RTP).
    Talk {
        #[arg(default_value = "lobby")]
        room: String,
        /// Stop after this many seconds (default: until Ctrl-C, the end of a
        /// file, or the floor is taken away).
        #[arg(long)]
        seconds: Option<f64>,
        /// mic, tone[:FREQ[:VOLUME]], file:PATH or silence.
        #[arg(long, default_value = "mic")]
        source: String,
        #[command(flatten)]
        codec: CodecArgs,
        /// Also send video with this definition (e.g. jpeg, vp8).
        #[arg(long)]
        video: Option<String>,
        /// camera, pattern:NAME or file:PATH.
        #[arg(long, default_value = "camera")]
        video_source: String,
        /// Floor priority (pre-empts lower-priority holders where allowed).
        #[arg(long, default_value_t = 0)]
        priority: u8,
        /// How long to wait in the floor queue.
        #[arg(long, default_value_t = 30.0)]
        queue_wait: f64,
        /// Send synthetic RTP (sequence numbers and send times, no codec)
        /// instead of real media: for load tests.
        #[arg(long)]
        synthetic: bool,
        /// Synthetic: packets per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Synthetic: RTP payload bytes.
        #[arg(long, default_value_t = 160)]
        size: usize,
    },
    /// Join a room and play what it hears: to the speakers or a WAV file,
    /// printing network statistics as it goes.
    Listen {
        #[arg(default_value = "lobby")]
        room: String,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
        /// speakers, wav:PATH or discard.
        #[arg(long, default_value = "speakers")]
        sink: String,
        #[command(flatten)]
        codec: CodecArgs,
        /// Also receive video with this definition, shown on screen.
        #[arg(long)]
        video: Option<String>,
        /// screen or discard.
        #[arg(long, default_value = "screen")]
        video_sink: String,
        /// Seconds between STATS lines.
        #[arg(long, default_value_t = 1.0)]
        stats_every: f64,
    },
    /// List the pipeline definitions (built in and from the user directory).
    Codecs {
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Join a room, bind a local UDP port at the router, then free the port
    /// for another program (e.g. gst-launch-1.0 with udpsink bind-port= or
    /// udpsrc port=) while this session holds the room (and the floor).
    Hold {
        #[arg(default_value = "lobby")]
        room: String,
        /// The local UDP port to hand over.
        #[arg(long)]
        media_port: u16,
        /// Take the floor and keep it.
        #[arg(long)]
        floor: bool,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Join a room and count the RTP it receives for N seconds.
    Count {
        #[arg(default_value = "lobby")]
        room: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

/// Which pipeline definition to use, and from where.
#[derive(Debug, clap::Args)]
struct CodecArgs {
    /// Audio pipeline definition (see `codecs`); by default the one that
    /// matches the room's codec (JOINED tells it).
    #[arg(long)]
    codec: Option<String>,
    /// Override a definition parameter, e.g. --param bitrate=16000.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Directory of definitions that add to or replace the built-ins
    /// (default: $SWITCHBOARD_PIPELINES, else ~/.config/switchboard/pipelines).
    #[arg(long)]
    pipelines: Option<std::path::PathBuf>,
}

impl CodecArgs {
    fn catalog(&self) -> anyhow::Result<Catalog> {
        let loaded = match &self.pipelines {
            Some(dir) => Catalog::load(Some(dir)),
            None => Catalog::load_default(),
        };
        loaded.map_err(|e| anyhow::anyhow!("pipeline definition rejected: {e}"))
    }

    /// The audio definition to use in the room `session` is in: the one
    /// asked for (with a warning when the room speaks another codec: members
    /// will not hear it, and a room shared with seed clients refuses it), or
    /// else the one matching the room's codec, or an error saying there is
    /// none.
    fn audio_for_room(&self, catalog: &Catalog, session: &Session) -> anyhow::Result<String> {
        let room = session.room_codec().unwrap_or(proto::codec::DEFAULT);
        match &self.codec {
            Some(asked) => {
                let fits = catalog
                    .for_room_codec(room)
                    .is_ok_and(|d| catalog.get(asked).is_some_and(|a| a.payload_type == d.payload_type));
                if !fits {
                    eprintln!(
                        "warning: the room speaks `{room}`; sending `{asked}`, which its other members may not hear"
                    );
                }
                Ok(asked.clone())
            }
            None => catalog
                .for_room_codec(room)
                .map(|d| d.name.clone())
                .map_err(|e| anyhow::anyhow!("{e}; add one (see `codecs`) or pass --codec")),
        }
        .inspect(|name| {
            print(&serde_json::json!({"type": "AUDIO", "room_codec": room, "definition": name}));
        })
    }

    fn lane(
        &self,
        catalog: &Catalog,
        name: &str,
        source: Option<Source>,
        sink: Sink,
        with_params: bool,
    ) -> anyhow::Result<LaneConfig> {
        let definition = catalog.require(name).map_err(anyhow::Error::msg)?.clone();
        let mut lane = LaneConfig::new(definition, source, sink);
        if with_params {
            lane.params = pipelines::parse_params(self.params.iter().map(String::as_str))
                .map_err(anyhow::Error::msg)?;
        }
        Ok(lane)
    }
}

fn print(msg: &impl serde::Serialize) {
    if let Ok(s) = serde_json::to_string(msg) {
        println!("{s}");
    }
}

/// Prints a server message, SRTP keys left out: they stay in this process
/// (logs of the output must not decrypt the room).
fn print_event(m: &ServerMessage) {
    let Ok(mut v) = serde_json::to_value(m) else {
        return;
    };
    if let Some(key) = v.pointer_mut("/srtp/key") {
        *key = "(hidden)".into();
    }
    if let Some(keys) = v.get_mut("keys").and_then(|k| k.as_array_mut()) {
        for k in keys {
            if let Some(key) = k.get_mut("key") {
                *key = "(hidden)".into();
            }
        }
    }
    print(&v);
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
    // Definitions are checked before anything connects: a broken file is
    // reported with its file, line and element, and nothing else happens.
    let catalog = match &args.cmd {
        Cmd::Codecs { codec } => {
            for d in codec.catalog()?.iter() {
                print(&serde_json::json!({
                    "type": "CODEC", "name": d.name, "media": d.media.to_string(),
                    "encoding": d.encoding_name, "payload_type": d.payload_type,
                    "clock_rate": d.clock_rate, "latency_ms": d.latency_ms,
                    "params": d.params, "description": d.description, "origin": d.origin,
                }));
            }
            return Ok(());
        }
        Cmd::Talk {
            codec,
            synthetic: false,
            ..
        }
        | Cmd::Listen { codec, .. } => Some(codec.catalog()?),
        _ => None,
    };
    let (transport, host_port, server_name) = client::tls::parse_address(&args.server);
    let server = resolve(host_port).await?;
    let trust = match (&args.tls_ca, &args.tls_fingerprint) {
        (Some(ca), _) => client::tls::Trust::Ca(ca.clone()),
        (None, Some(fp)) => client::tls::Trust::Fingerprint(fp.clone()),
        (None, None) => client::tls::Trust::KnownHosts(
            args.known_hosts
                .clone()
                .unwrap_or_else(client::tls::default_known_hosts),
        ),
    };
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        None => args.token.clone(),
    };
    let opts = client::ConnectOptions {
        token,
        // Bindings signed with the media token: a captured one replays
        // nowhere.
        // and, on TLS, SRTP keys for secure rooms.
        features: vec![
            proto::control::FEATURE_STUN_INTEGRITY.to_owned(),
            proto::control::FEATURE_SRTP.to_owned(),
        ],
        tls: client::tls::TlsOptions {
            transport,
            trust,
            server_name,
        },
        ..client::ConnectOptions::default()
    };
    let mut session = Session::connect_with(server, &args.nick, opts)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    match &session.trust().fingerprint {
        Some(fp) => eprintln!(
            "TLS: certificate SHA-256 {fp} ({})",
            session.trust().decision
        ),
        None => eprintln!("plaintext connection (no TLS)"),
    }
    eprintln!(
        "connected as {} (session {}, audio SSRC {})",
        session.welcome().nickname,
        session.welcome().session_id,
        session.welcome().ssrcs.audio
    );
    match args.cmd {
        Cmd::Codecs { .. } => {}
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
            print_events(&mut session, seconds).await?;
        }
        Cmd::Talk {
            room,
            seconds,
            source,
            codec,
            video,
            video_source,
            priority,
            queue_wait,
            synthetic,
            rate,
            size,
        } => {
            // Check sources before joining: a mistake fails without
            // bothering the room.
            if !synthetic {
                let _: Source = source.parse().map_err(anyhow::Error::msg)?;
                if video.is_some() {
                    let _: Source = video_source.parse().map_err(anyhow::Error::msg)?;
                }
            }
            session.join(&room).await?;
            // The audio definition follows the room's codec; parameters are
            // checked before taking the floor.
            let lanes = match &catalog {
                Some(catalog) if !synthetic => {
                    let source: Source = source.parse().map_err(anyhow::Error::msg)?;
                    let audio = codec.audio_for_room(catalog, &session)?;
                    let mut lanes =
                        vec![codec.lane(catalog, &audio, Some(source), Sink::Discard, true)?];
                    if let Some(v) = &video {
                        let vs: Source = video_source.parse().map_err(anyhow::Error::msg)?;
                        lanes.push(codec.lane(catalog, v, Some(vs), Sink::Discard, false)?);
                    }
                    lanes
                }
                _ => Vec::new(),
            };
            for lane in &lanes {
                if let Some(src) = &lane.source {
                    lane.definition
                        .send_description(src, &lane.params)
                        .map_err(anyhow::Error::msg)?;
                }
            }
            if lanes.is_empty() && session.room_secure() {
                bail!(
                    "{room} is a secure room: synthetic packets would be plain RTP (talk without --synthetic)"
                );
            }
            let media = session.bind_media().await?;
            take_floor(&mut session, priority, queue_wait).await?;
            // Media starts with the floor, so a file plays from its start.
            let av = if lanes.is_empty() {
                None
            } else {
                Some(Av::start(&media, lanes, av_options(&args.nick, &session))?)
            };
            print(&serde_json::json!({"type": "TALKING", "room": room}));
            let summary = match &av {
                Some(av) => talk_media(&mut session, av, seconds).await?,
                None => {
                    let sent =
                        talk(&mut session, &media, seconds.unwrap_or(5.0), rate, size).await?;
                    serde_json::json!({"sent": sent})
                }
            };
            session.release_floor().await?;
            let mut summary = summary;
            summary["type"] = "SUMMARY".into();
            // Whether what was sent is SRTP (a secure room).
            summary["srtp"] = av.as_ref().is_some_and(|a| a.secure()).into();
            print(&summary);
            if let Some(av) = av {
                tokio::task::block_in_place(|| av.stop(Duration::from_millis(500)));
            }
            // Let the release reach the router before the connection closes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Cmd::Listen {
            room,
            seconds,
            sink,
            codec,
            video,
            video_sink,
            stats_every,
        } => {
            let Some(catalog) = &catalog else {
                bail!("no pipeline definitions")
            };
            let sink: Sink = sink.parse().map_err(anyhow::Error::msg)?;
            let video_sink: Option<Sink> = match &video {
                Some(_) => Some(video_sink.parse().map_err(anyhow::Error::msg)?),
                None => None,
            };
            session.join(&room).await?;
            let audio = codec.audio_for_room(catalog, &session)?;
            let mut lanes = vec![codec.lane(catalog, &audio, None, sink, true)?];
            if let (Some(v), Some(vs)) = (&video, video_sink) {
                lanes.push(codec.lane(catalog, v, None, vs, false)?);
            }
            let media = session.bind_media().await?;
            let av = Arc::new(Av::start(&media, lanes, av_options(&args.nick, &session))?);
            listen(&mut session, &av, seconds, stats_every).await?;
            let mut summary = serde_json::to_value(av.stats())?;
            summary["type"] = "SUMMARY".into();
            summary["srtp"] = av.secure().into();
            print(&summary);
            tokio::task::block_in_place(|| av.stop(Duration::from_secs(2)));
            let errors = av.errors();
            if !errors.is_empty() {
                bail!("media errors: {}", errors.join("; "));
            }
        }
        Cmd::Hold {
            room,
            media_port,
            floor,
            seconds,
        } => {
            session.join(&room).await?;
            let media = session
                .bind_media_from(session.media_server(), media_port)
                .await
                .with_context(|| format!("binding UDP port {media_port}"))?;
            let ssrcs = media.ssrcs();
            let router_media = media.server();
            // Free the port for the other program.
            drop(media);
            if floor {
                take_floor(&mut session, 0, 30.0).await?;
            }
            print(&serde_json::json!({
                "type": "READY", "room": room, "media_port": media_port,
                "router_media": router_media.to_string(),
                "audio_ssrc": ssrcs.audio, "video_ssrc": ssrcs.video, "floor": floor,
            }));
            print_events(&mut session, seconds).await?;
            if floor {
                session.release_floor().await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
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

/// Prints every server event until `seconds` pass (or Ctrl-C).
async fn print_events(session: &mut Session, seconds: Option<f64>) -> anyhow::Result<()> {
    let stop = tokio::time::sleep(Duration::from_secs_f64(seconds.unwrap_or(1e9)));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            ev = session.next_event() => match ev {
                Some(ServerMessage::HeartbeatAck) => {}
                Some(m) => print_event(&m),
                None => bail!("the router closed the connection"),
            },
            _ = &mut stop => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// How long `talk` waits between closing its valve and releasing the floor.
const RELEASE_TAIL: Duration = Duration::from_millis(100);

fn av_options(nick: &str, session: &Session) -> AvOptions {
    AvOptions {
        cname: format!("{nick}@switchboard"),
        srtp: Some(session.keyring().clone()),
        ..AvOptions::default()
    }
}

/// Asks for the floor; waits in the queue if the room queues requests.
async fn take_floor(session: &mut Session, priority: u8, queue_wait: f64) -> anyhow::Result<()> {
    match session.request_floor(priority).await? {
        FloorAnswer::Granted { .. } => Ok(()),
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
            Ok(())
        }
        FloorAnswer::Denied { reason, holder, .. } => {
            bail!(
                "floor denied: {reason:?} (holder: {})",
                holder.unwrap_or_default()
            )
        }
    }
}

/// Transmits real media until the time is up, the source ends, Ctrl-C, or
/// the floor is revoked; returns the summary.
async fn talk_media(
    session: &mut Session,
    av: &Av,
    seconds: Option<f64>,
) -> anyhow::Result<serde_json::Value> {
    let me = session.welcome().session_id;
    let kinds = av.sending_kinds();
    for k in &kinds {
        av.transmit(*k, true);
    }
    let start = tokio::time::Instant::now();
    let stop = tokio::time::sleep(Duration::from_secs_f64(seconds.unwrap_or(1e9)));
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_progress = start;
    let mut reason = "time";
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => { reason = "interrupted"; break }
            _ = tick.tick() => {
                if kinds.iter().all(|k| av.source_ended(*k)) {
                    reason = "end of source";
                    break;
                }
                if let Some(e) = av.errors().first() {
                    bail!("media error: {e}");
                }
                if last_progress.elapsed() >= Duration::from_secs(1) {
                    last_progress = tokio::time::Instant::now();
                    let sent: u64 = av.stats().sent.iter().map(|s| s.packets_sent).sum();
                    match seconds {
                        Some(total) => eprintln!("talking: {:.0}/{total:.0} s, {sent} packets", start.elapsed().as_secs_f64()),
                        None => eprintln!("talking: {:.0} s, {sent} packets", start.elapsed().as_secs_f64()),
                    }
                }
            }
            ev = session.next_event() => match ev {
                Some(m @ ServerMessage::MicRevoked { session_id, .. }) if session_id == me => {
                    print(&m);
                    reason = "floor revoked";
                    break;
                }
                Some(ServerMessage::HeartbeatAck) => {}
                Some(m @ ServerMessage::KeyframeRequest { .. }) => {
                    av.request_keyframe(pipelines::Media::Video);
                    print_event(&m);
                }
                Some(m) => print_event(&m),
                None => bail!("the router closed the connection"),
            }
        }
    }
    for k in &kinds {
        av.transmit(*k, false);
    }
    // The router handles media and control on different threads: give the
    // last packets time to be forwarded before the caller releases the floor.
    tokio::time::sleep(RELEASE_TAIL).await;
    let stats = av.stats();
    Ok(serde_json::json!({
        "sent": stats.sent.iter().map(|s| s.packets_sent).sum::<u64>(),
        "seconds": start.elapsed().as_secs_f64(),
        "stopped_by": reason,
        "stats": stats,
    }))
}

/// Prints events and a STATS line every `every` seconds until the time is up
/// or Ctrl-C.
async fn listen(
    session: &mut Session,
    av: &Arc<Av>,
    seconds: Option<f64>,
    every: f64,
) -> anyhow::Result<()> {
    let mut stats = av.watch_stats(Duration::from_secs_f64(every.max(0.05)));
    let stop = tokio::time::sleep(Duration::from_secs_f64(seconds.unwrap_or(1e9)));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(snap) = stats.recv() => {
                let heard: u64 = snap.received.iter().map(|r| r.packets_received).sum();
                eprintln!("listening: {} senders, {heard} packets", snap.received.len());
                let mut line = serde_json::to_value(&snap)?;
                line["type"] = "STATS".into();
                print(&line);
            }
            ev = session.next_event() => match ev {
                Some(ServerMessage::HeartbeatAck) => {}
                Some(m) => print_event(&m),
                None => bail!("the router closed the connection"),
            }
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
                Some(m) => print_event(&m),
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
                Some(m) => print_event(&m),
                None => bail!("the router closed the connection"),
            }
        }
    }
    Ok(per_ssrc)
}
