//! The network and media side of the desktop client, on its own tokio
//! runtime thread. The window sends [`Command`]s and receives [`Event`]s;
//! nothing here touches a widget (GStreamer video sinks are handed over as
//! elements, whose paintables the window takes on its own thread).
//!
//! One task owns the control [`Session`]: it pumps server messages, starts
//! and stops media on JOINED/LEFT, answers floor grants by opening the
//! microphone, receives files and sends them. Commands that only say
//! something to the router go straight to the session's writer, so a file
//! being sent never delays a press of the talk key. When the connection is
//! lost the task reconnects with back-off and goes back to its room.

mod files;
mod media;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::av::StatsSnapshot;
use client::{ConnectOptions, Session};
use proto::control::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;

use crate::model::session::{Backoff, Link, SessionModel, Target};
use crate::model::settings::Settings;

pub use media::MediaChoice;

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
}

/// What the backend reports.
#[derive(Debug, Clone)]
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
#[derive(Clone)]
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
            .spawn(move || runtime.block_on(run(rx, Emitter(ev_tx), opts)))?;
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
    /// Where we are, to go back there after a reconnect (its `target`).
    pub(crate) session: SessionModel,
    pub(crate) choice: MediaChoice,
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

async fn run(mut commands: mpsc::UnboundedReceiver<Command>, out: Emitter, opts: Options) {
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
                Some(Command::Media(c)) => lock(&shared).choice = c,
                Some(_) => {}
            }
            continue;
        };
        let mut backoff = Backoff::default();
        out.emit(Event::Link(Link::Connecting));
        loop {
            let reason = match connect(&s).await {
                Ok(session) => {
                    backoff.reset();
                    let welcome = session.welcome().clone();
                    lock(&shared).me = welcome.session_id;
                    out.emit(Event::Link(Link::Connected {
                        session_id: welcome.session_id,
                        nickname: welcome.nickname.clone(),
                    }));
                    match serve(session, &mut commands, &out, &shared, &opts).await {
                        Ended::Asked => {
                            out.emit(Event::Link(Link::Disconnected { reason: None }));
                            break;
                        }
                        Ended::Reconnect(n) => {
                            settings = Some(n);
                            break;
                        }
                        Ended::Lost(r) => r,
                    }
                }
                Err(e) => e,
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
                        Some(Command::Media(c)) => lock(&shared).choice = c,
                        Some(_) => {}
                    }
                }
            }
            if stop {
                if settings.is_none() {
                    lock(&shared).session.target = None;
                    out.emit(Event::Link(Link::Disconnected { reason: None }));
                }
                break;
            }
        }
    }
}

async fn connect(s: &Settings) -> Result<Session, String> {
    let addr = s.server_addr()?;
    Session::connect_with(
        addr,
        &s.nickname,
        ConnectOptions {
            heartbeat: true,
            timeout: Duration::from_secs(5),
            // The member list by delta: the window's model applies them.
            features: vec![proto::control::FEATURE_MEMBER_DELTAS.to_owned()],
            ..ConnectOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// Runs one connection until it is lost or the window disconnects.
async fn serve(
    mut session: Session,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    out: &Emitter,
    shared: &Shared,
    opts: &Options,
) -> Ended {
    let control = session.control();
    let _ = control.send(ClientMessage::ListRooms).await;
    // Back to where we were.
    let target = lock(shared).session.target.clone();
    match target {
        Some(Target::Room { name }) => {
            let _ = control.send(ClientMessage::Join { room: name }).await;
        }
        Some(Target::Meeting { code }) => {
            let _ = control.send(ClientMessage::RequestJoin { code }).await;
        }
        None => {}
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut files = files::Files::new(opts.downloads.clone());
    let ended = loop {
        tokio::select! {
            ev = session.next_event() => match ev {
                None => break Ended::Lost("the router closed the connection".into()),
                Some(m) => {
                    if let Err(e) = on_message(&session, m, out, shared, opts, &mut files).await {
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
                Some(Command::SendFile { path, to }) => {
                    if let Err(e) = files.send(&mut session, &path, to.as_deref(), out, shared, opts).await {
                        out.emit(Event::MediaError(format!("sending {}: {e}", path.display())));
                    }
                }
                Some(cmd) => on_command(cmd, &control, out, shared).await,
            },
            _ = tick.tick() => media::tick(out, shared, &control).await,
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
    lock(shared).session.apply(&m);
    match &m {
        ServerMessage::Joined { kind, .. } => {
            let media = session
                .bind_media()
                .await
                .map_err(|e| format!("media: {e}"))?;
            media::start(kind, media, out, shared, opts, &session.control()).await?;
        }
        ServerMessage::Left { .. } => media::stop(shared),
        _ => handle_sync(&m, &session.control(), out, shared, files),
    }
    Ok(())
}

/// What needs no waiting: floor grants open the microphone, file chunks
/// are taken in. Also called while a file is being sent.
pub(crate) fn handle_sync(
    m: &ServerMessage,
    control: &client::Control,
    out: &Emitter,
    shared: &Shared,
    files: &mut files::Files,
) {
    match m {
        ServerMessage::MicGranted { session_id, .. } => {
            let mut l = lock(shared);
            if *session_id != l.me {
                return;
            }
            // Released before the grant came: our MIC_RELEASE follows it
            // on the wire and gives it back.
            if l.key_down {
                l.holding = true;
                if let Some(media) = &l.media {
                    media.talk(true);
                }
            }
        }
        ServerMessage::MicReleased { session_id, .. }
        | ServerMessage::MicRevoked { session_id, .. } => {
            let mut l = lock(shared);
            if *session_id == l.me {
                l.holding = false;
                if let Some(media) = &l.media {
                    media.talk(false);
                }
            }
        }
        _ => files.on_message(m, control, out),
    }
}

async fn on_command(cmd: Command, control: &client::Control, out: &Emitter, shared: &Shared) {
    let msg = match cmd {
        Command::ListRooms => ClientMessage::ListRooms,
        Command::Join(room) => ClientMessage::Join { room },
        Command::CreateRoom {
            name,
            kind,
            options,
        } => ClientMessage::CreateRoom {
            room: name,
            kind,
            max_participants: 0,
            options,
        },
        Command::CreateMeeting { end_with_host } => ClientMessage::CreateMeeting { end_with_host },
        Command::JoinMeeting(code) => {
            lock(shared).session.target = Some(Target::Meeting { code: code.clone() });
            ClientMessage::RequestJoin { code }
        }
        Command::Leave => {
            lock(shared).session.target = None;
            ClientMessage::Leave
        }
        Command::Talk(down) => {
            let mut l = lock(shared);
            if l.key_down == down {
                return; // key repeat
            }
            l.key_down = down;
            if down {
                ClientMessage::MicRequest { priority: 0 }
            } else {
                if l.holding {
                    l.holding = false;
                    if let Some(media) = &l.media {
                        media.talk(false);
                    }
                }
                ClientMessage::MicRelease
            }
        }
        Command::Chat { text, to } => ClientMessage::Chat { text, to },
        Command::Allow(session_id) => ClientMessage::AllowJoin { session_id },
        Command::Deny(session_id) => ClientMessage::DenyJoin {
            session_id,
            reason: None,
        },
        Command::Microphone(on) | Command::Camera(on) => {
            let is_mic = matches!(cmd, Command::Microphone(_));
            let mut l = lock(shared);
            if is_mic {
                l.mic_on = on;
            } else {
                l.cam_on = on;
            }
            let (audio, video) = (l.mic_on, l.cam_on);
            let Some(media) = &l.media else { return };
            media.apply_toggles(audio, video);
            if !media.is_meeting() {
                return;
            }
            ClientMessage::MediaState { audio, video }
        }
        Command::Media(c) => {
            lock(shared).choice = c;
            return;
        }
        Command::Connect(_) | Command::Disconnect | Command::SendFile { .. } => return,
    };
    if control.send(msg).await.is_err() {
        out.emit(Event::MediaError("the connection is closed".into()));
    }
}
