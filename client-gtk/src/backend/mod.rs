//! The network and media side of the desktop client, on its own tokio
//! runtime thread. The window sends [`Command`]s and receives [`Event`]s;
//! nothing here touches a widget (GStreamer video sinks are handed over as
//! elements, whose paintables the window takes on its own thread).
//!
//! One task owns the control [`Session`]: it pumps server messages, starts
//! and stops media on JOINED/LEFT, answers floor grants by opening the
//! microphone and takes in received files. It never awaits a long
//! operation inside a command: a file being sent runs as its own task,
//! fed the messages that concern it, and reports progress as events.
//! When the connection is lost the task reconnects with back-off and
//! resumes the session (the router keeps it, room and floor queue
//! included, for a grace period); where the window is, and where to go
//! back to when a session could not be resumed, is the window's state
//! (`SbSession`), not the backend's.

mod commands;
mod files;
mod media;
mod mic_test;
mod shortcut;

pub use shortcut::GlobalShortcut;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::av::StatsSnapshot;
use client::{ConnectOptions, Session};
use proto::control::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;

use crate::model::session::{Backoff, Link};
use crate::model::settings::Settings;

pub use media::{
    END_TONE_HZ, MediaChoice, PERMIT_TONE_HZ, ROOM_CODEC, TONE_LENGTH, audio_definition,
};

/// What the window asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Connect (again) with these settings.
    Connect(Settings),
    Disconnect,
    ListRooms,
    Join(String),
    CreateRoom {
        name: String,
        kind: String,
        options: std::collections::BTreeMap<String, serde_json::Value>,
    },
    CreateMeeting {
        end_with_host: bool,
    },
    JoinMeeting(String),
    Leave,
    /// The talk key went down (true) or up (false).
    Talk(bool),
    Chat {
        text: String,
        to: Option<String>,
    },
    Allow(u64),
    Deny(u64),
    Microphone(bool),
    Camera(bool),
    SendFile {
        path: PathBuf,
        to: Option<String>,
    },
    /// Devices and codecs for the next room joined.
    Media(MediaChoice),
    /// Play one remote sender (by audio SSRC) at this volume (0: muted
    /// here, 1: as sent).
    Volume {
        ssrc: u32,
        volume: f64,
    },
    /// Register the talk key with the desktop (a GDK key name), replacing
    /// any earlier registration.
    RegisterTalkKey(String),
    /// The desktop's global talk key went down or up: talks in a floor
    /// room, whichever window has the focus.
    GlobalTalk(bool),
    /// Start or stop the microphone test: the microphone played back,
    /// its level reported as [`Event::MicLevel`].
    TestMicrophone(bool),
}

/// What the backend reports.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one event per router message, moved once through a channel: a box each would cost more than the bytes"
)]
pub enum Event {
    Link(Link),
    /// Everything the router says, for the models.
    Server(ServerMessage),
    /// A remote sender's video, shown by this element (a
    /// `gtk4paintablesink`), by its SSRC.
    Video {
        ssrc: u32,
        sink: gst::Element,
    },
    VideoGone {
        ssrc: u32,
    },
    /// Our own camera, as sent.
    Preview(gst::Element),
    Stats(StatsSnapshot),
    /// A file we offered was accepted: its transfer id and receivers.
    FileStarted {
        id: u64,
        name: String,
        receivers: Vec<String>,
        chunks: u64,
    },
    /// A file we offered was refused before it started.
    FileRefused {
        name: String,
        why: String,
    },
    FileProgress {
        id: u64,
        done: u64,
        total: u64,
        cwnd: Option<f64>,
    },
    FileDone {
        id: u64,
        result: Result<Option<PathBuf>, String>,
    },
    /// The microphone's level during a test, 0 to 1.
    MicLevel(f64),
    /// Whether the talk key works from other windows.
    GlobalShortcut(GlobalShortcut),
    /// The level heard from each remote sender, by audio SSRC, 0 to 1.
    Levels(Vec<(u32, f64)>),
    /// Media could not start or failed.
    MediaError(String),
}

/// Options fixed for the backend's life.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where received files go.
    pub downloads: PathBuf,
    /// The video sink factory for remote senders and the preview.
    pub video_sink: String,
}

/// The handle the window keeps.
#[derive(Clone, Debug)]
pub struct Backend {
    commands: mpsc::UnboundedSender<Command>,
}

impl Backend {
    /// Starts the backend thread; events arrive on the returned channel.
    pub fn start(opts: Options) -> std::io::Result<(Backend, async_channel::Receiver<Event>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = async_channel::unbounded();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("sb-backend")
            .build()?;
        std::thread::Builder::new()
            .name("sb-backend".into())
            .spawn({
                let tx = tx.clone();
                move || runtime.block_on(run(rx, tx, Emitter(ev_tx), opts))
            })?;
        Ok((Backend { commands: tx }, ev_rx))
    }

    pub fn send(&self, cmd: Command) {
        if self.commands.send(cmd).is_err() {
            tracing::warn!("backend stopped");
        }
    }
}

/// Sends events to the window; a closed window is not an error here.
#[derive(Clone)]
pub(crate) struct Emitter(async_channel::Sender<Event>);

impl Emitter {
    pub(crate) fn emit(&self, ev: Event) {
        let _ = self.0.try_send(ev);
    }

    /// A server message for the window's models; file chunks (handled
    /// here, and shown as progress) and heartbeat answers are not.
    pub(crate) fn server(&self, m: &ServerMessage) {
        if !matches!(
            m,
            ServerMessage::FileChunk { .. } | ServerMessage::HeartbeatAck
        ) {
            self.emit(Event::Server(m.clone()));
        }
    }
}

/// The state the session task and the command path share.
#[derive(Default)]
pub(crate) struct Local {
    pub(crate) media: Option<media::Running>,
    /// The talk key is down.
    pub(crate) key_down: bool,
    pub(crate) holding: bool,
    pub(crate) mic_on: bool,
    pub(crate) cam_on: bool,
    pub(crate) me: u64,
    pub(crate) choice: MediaChoice,
    /// Volumes chosen here, by audio SSRC (kept across rooms and
    /// reconnects: SSRCs are per session).
    pub(crate) volumes: std::collections::HashMap<u32, f64>,
    pub(crate) mic_test: Option<mic_test::MicTest>,
    /// The task holding the talk key's registration with the desktop.
    pub(crate) shortcut: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) type Shared = Arc<Mutex<Local>>;

pub(crate) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Local> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

enum Ended {
    /// The window asked to disconnect (or closed).
    Asked,
    /// The window asked to connect again, with these settings.
    Reconnect(Settings),
    Lost(String),
}

async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    me: mpsc::UnboundedSender<Command>,
    out: Emitter,
    opts: Options,
) {
    let shared: Shared = Arc::new(Mutex::new(Local {
        mic_on: true,
        cam_on: true,
        ..Local::default()
    }));
    let mut settings: Option<Settings> = None;
    loop {
        // Disconnected: wait to be told where to connect.
        let Some(s) = settings.take() else {
            match commands.recv().await {
                None => return,
                Some(Command::Connect(s)) => settings = Some(s),
                Some(c) => {
                    commands::local(c, &shared, &out, &me);
                }
            }
            continue;
        };
        let mut backoff = Backoff::default();
        // The session to resume after a lost connection.
        let mut resume: Option<String> = None;
        out.emit(Event::Link(Link::Connecting));
        loop {
            let reason = match connect(&s, resume.take()).await {
                Ok(session) => {
                    backoff.reset();
                    let welcome = session.welcome().clone();
                    resume = welcome.resume_token.clone();
                    lock(&shared).me = welcome.session_id;
                    let trust = session.trust().clone();
                    out.emit(Event::Link(Link::Connected {
                        session_id: welcome.session_id,
                        nickname: welcome.nickname.clone(),
                        resumed: welcome.resumed,
                        security: crate::model::session::Security {
                            fingerprint: trust.fingerprint,
                            decision: trust.decision,
                        },
                    }));
                    match serve(session, &mut commands, &me, &out, &shared, &opts).await {
                        Ended::Asked => {
                            out.emit(Event::Link(Link::Disconnected { reason: None }));
                            break;
                        }
                        Ended::Reconnect(n) => {
                            settings = Some(n);
                            break;
                        }
                        Ended::Lost(r) => {
                            resume = resume.or(welcome.resume_token);
                            r
                        }
                    }
                }
                // A certificate that is not the one trusted is no outage to
                // wait out: say so and stop, as ssh does.
                Err(Failed::Untrusted(e)) => {
                    tracing::warn!(error = %e, "refusing the router's certificate");
                    out.emit(Event::Link(Link::Disconnected { reason: Some(e) }));
                    break;
                }
                Err(Failed::Other(e)) => e,
            };
            let (attempt, wait) = backoff.next_wait();
            tracing::info!(attempt, ?wait, %reason, "reconnecting");
            out.emit(Event::Link(Link::Reconnecting {
                attempt,
                retry_in: wait,
                reason,
            }));
            // Wait, but a new Connect or Disconnect cuts it short.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            let mut stop = false;
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Disconnect) => { stop = true; break; }
                        Some(Command::Connect(n)) => { settings = Some(n); stop = true; break; }
                        Some(c) => {
                            commands::local(c, &shared, &out, &me);
                        }
                    }
                }
            }
            if stop {
                if settings.is_none() {
                    out.emit(Event::Link(Link::Disconnected { reason: None }));
                }
                break;
            }
        }
    }
}

/// Why a connection could not be made.
enum Failed {
    /// The router's certificate is not the one trusted (changed, not the
    /// pinned one, or a pinned router answered in plaintext).
    Untrusted(String),
    /// Anything else: worth trying again.
    Other(String),
}

async fn connect(s: &Settings, resume: Option<String>) -> Result<Session, Failed> {
    let addr = s.server_addr().map_err(Failed::Other)?;
    let tls = s.tls_options();
    Session::connect_with(
        addr,
        &s.nickname,
        ConnectOptions {
            heartbeat: true,
            timeout: Duration::from_secs(5),
            // The member list by delta: the window's model applies them.
            // Signed STUN bindings (a captured one replays nowhere), and
            // on TLS the keys of secure rooms (SRTP).
            features: vec![
                proto::control::FEATURE_MEMBER_DELTAS.to_owned(),
                proto::control::FEATURE_STUN_INTEGRITY.to_owned(),
                proto::control::FEATURE_SRTP.to_owned(),
            ],
            resume,
            tls,
            ..ConnectOptions::default()
        },
    )
    .await
    .map_err(|e| {
        use client::tls::TlsError;
        match e {
            client::ClientError::Tls(
                t @ (TlsError::Changed { .. }
                | TlsError::WrongFingerprint { .. }
                | TlsError::Downgrade { .. }),
            ) => Failed::Untrusted(t.to_string()),
            e => Failed::Other(e.to_string()),
        }
    })
}

/// Runs one connection until it is lost or the window disconnects.
async fn serve(
    mut session: Session,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    me: &mpsc::UnboundedSender<Command>,
    out: &Emitter,
    shared: &Shared,
    opts: &Options,
) -> Ended {
    let control = session.control();
    let _ = control.send(ClientMessage::ListRooms).await;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut levels = tokio::time::interval(client::av::LEVEL_INTERVAL);
    levels.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut files = files::Files::new(opts.downloads.clone());
    let ended = loop {
        tokio::select! {
            ev = session.next_tagged() => match ev {
                None => break Ended::Lost("the router closed the connection".into()),
                Some(t) => {
                    files.give_to_senders(&t);
                    if let Err(e) = on_message(&session, t.message, out, shared, opts, &mut files).await {
                        tracing::warn!(error = %e, "media");
                        out.emit(Event::MediaError(e));
                    }
                }
            },
            cmd = commands.recv() => match cmd {
                None | Some(Command::Disconnect) => {
                    let _ = control.send(ClientMessage::Bye { reason: Some("bye".into()) }).await;
                    break Ended::Asked;
                }
                Some(Command::Connect(n)) => break Ended::Reconnect(n),
                Some(Command::SendFile { path, to }) => files.send(&control, path, to, out),
                Some(cmd) => {
                    if let Some(cmd) = commands::local(cmd, shared, out, me) {
                        commands::on_command(cmd, &control, out, shared).await;
                    }
                }
            },
            _ = tick.tick() => media::tick(out, shared, &control).await,
            _ = levels.tick() => media::levels(out, shared),
        }
    };
    media::stop(shared);
    ended
}

/// A server message: to the window, and whatever it means for media.
async fn on_message(
    session: &Session,
    m: ServerMessage,
    out: &Emitter,
    shared: &Shared,
    opts: &Options,
    files: &mut files::Files,
) -> Result<(), String> {
    out.server(&m);
    match &m {
        ServerMessage::Joined { kind, settings, .. } => {
            let room_codec = settings
                .get("codec")
                .and_then(|c| c.as_str())
                .unwrap_or(proto::codec::DEFAULT);
            let media = session
                .bind_media()
                .await
                .map_err(|e| format!("media: {e}"))?;
            media::start(kind, room_codec, media, out, shared, opts, session).await?;
        }
        ServerMessage::Left { .. } => media::stop(shared),
        _ => commands::handle_sync(&m, &session.control(), out, shared, files),
    }
    Ok(())
}
