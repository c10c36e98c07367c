//! Push-to-talk from anywhere: the talk key registered with the desktop's
//! global shortcut portal (`org.freedesktop.portal.GlobalShortcuts`,
//! through `ashpd`), so it works while other windows have the focus.
//! Where the desktop has no such portal (Debian 12's, X11 without one)
//! the key works while the window has the focus, and the preferences say
//! so ([`Event::GlobalShortcut`]).

use ashpd::desktop::CreateSessionOptions;
use ashpd::desktop::global_shortcuts::{BindShortcutsOptions, GlobalShortcuts, NewShortcut};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Command, Emitter, Event};

/// The portal's id for the talk shortcut.
pub(super) const TALK_ID: &str = "talk";

/// Where the global talk key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalShortcut {
    /// Registered: works from any window ("F8" as the desktop shows it).
    Bound { trigger: String },
    /// No portal, or it refused: only while the window has the focus.
    Unavailable { why: String },
}

/// Registers the talk key (`trigger`, a GDK key name, is the preferred
/// trigger; the desktop may let the user choose another) and turns its
/// presses into [`Command::GlobalTalk`] until the portal goes away.
pub(crate) async fn run(trigger: String, commands: mpsc::UnboundedSender<Command>, out: Emitter) {
    let why = match serve(&trigger, &commands, &out).await {
        Ok(()) => "the desktop's shortcut portal went away".to_owned(),
        Err(e) => e,
    };
    tracing::info!(why, "global shortcut: unavailable");
    out.emit(Event::GlobalShortcut(GlobalShortcut::Unavailable { why }));
}

async fn serve(
    trigger: &str,
    commands: &mpsc::UnboundedSender<Command>,
    out: &Emitter,
) -> Result<(), String> {
    let portal = GlobalShortcuts::new()
        .await
        .map_err(|e| format!("no global shortcut portal: {e}"))?;
    let session = portal
        .create_session(CreateSessionOptions::default())
        .await
        .map_err(|e| format!("global shortcut session: {e}"))?;
    let shortcut = NewShortcut::new(TALK_ID, "Talk (hold)").preferred_trigger(trigger);
    let bound = portal
        .bind_shortcuts(&session, &[shortcut], None, BindShortcutsOptions::default())
        .await
        .and_then(|r| r.response())
        .map_err(|e| format!("binding the talk key: {e}"))?;
    let trigger = bound
        .shortcuts()
        .iter()
        .find(|s| s.id() == TALK_ID)
        .map(|s| s.trigger_description().to_owned())
        .ok_or_else(|| "the desktop did not bind the talk key".to_string())?;
    tracing::info!(trigger, "global shortcut: bound");
    out.emit(Event::GlobalShortcut(GlobalShortcut::Bound { trigger }));
    let mut down = portal
        .receive_activated()
        .await
        .map_err(|e| e.to_string())?;
    let mut up = portal
        .receive_deactivated()
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let pressed = tokio::select! {
            a = down.next() => match a {
                Some(a) if a.shortcut_id() == TALK_ID => true,
                Some(_) => continue,
                None => return Ok(()),
            },
            d = up.next() => match d {
                Some(d) if d.shortcut_id() == TALK_ID => false,
                Some(_) => continue,
                None => return Ok(()),
            },
        };
        tracing::info!(pressed, "global shortcut: talk");
        if commands.send(Command::GlobalTalk(pressed)).is_err() {
            return Ok(());
        }
    }
}
