//! What the session task does with a command from the window, and with
//! the server messages that need no waiting: each is a message to the
//! router or a change to local media, never a long await.

use client::Control;
use proto::control::{ClientMessage, ServerMessage};

use super::{Command, Emitter, Event, Shared, files, lock, mic_test, shortcut};

/// What needs no waiting: floor grants open the microphone, file chunks
/// are taken in.
pub(super) fn handle_sync(
    m: &ServerMessage,
    control: &Control,
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
            // Released here first (the key went up): already closed.
            if *session_id == l.me && l.holding {
                l.holding = false;
                if let Some(media) = &l.media {
                    media.talk(false);
                }
            }
        }
        ServerMessage::KeyframeRequest { .. } => {
            if let Some(media) = &lock(shared).media {
                media.keyframe();
            }
        }
        _ => files.on_message(m, control, out),
    }
}

pub(super) async fn on_command(cmd: Command, control: &Control, out: &Emitter, shared: &Shared) {
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
        Command::CreateMeeting { end_with_host } => ClientMessage::CreateMeeting {
            end_with_host,
            codec: None,
        },
        Command::JoinMeeting(code) => ClientMessage::RequestJoin { code },
        Command::Leave => ClientMessage::Leave,
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
        Command::GlobalTalk(down) => {
            // The desktop's key talks only where there is a floor.
            let floor = lock(shared).media.as_ref().is_some_and(|m| m.has_floor());
            if !floor {
                return;
            }
            return Box::pin(on_command(Command::Talk(down), control, out, shared)).await;
        }
        Command::Volume { .. }
        | Command::TestMicrophone(_)
        | Command::RegisterTalkKey(_)
        | Command::Media(_) => return,
        Command::Connect(_) | Command::Disconnect | Command::SendFile { .. } => return,
    };
    if control.send(msg).await.is_err() {
        out.emit(Event::MediaError("the connection is closed".into()));
    }
}

/// Commands that change local state only, whatever the connection's:
/// handled here; the others are given back.
pub(super) fn local(
    cmd: Command,
    shared: &Shared,
    out: &Emitter,
    me: &tokio::sync::mpsc::UnboundedSender<Command>,
) -> Option<Command> {
    let mut l = lock(shared);
    match cmd {
        Command::Media(c) => l.choice = c,
        Command::Volume { ssrc, volume } => {
            l.volumes.insert(ssrc, volume);
            if let Some(media) = &l.media {
                media.set_volume(ssrc, volume);
            }
        }
        Command::TestMicrophone(on) => {
            l.mic_test = None;
            if on {
                match mic_test::MicTest::start(&l.choice, out.clone()) {
                    Ok(t) => l.mic_test = Some(t),
                    Err(e) => out.emit(Event::MediaError(e)),
                }
            }
        }
        Command::RegisterTalkKey(key) => {
            if let Some(old) = l.shortcut.take() {
                old.abort();
            }
            l.shortcut = Some(tokio::spawn(shortcut::run(key, me.clone(), out.clone())));
        }
        other => return Some(other),
    }
    None
}
