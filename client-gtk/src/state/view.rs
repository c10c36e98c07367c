//! From the models to what the pages bind to: `SbSession`'s properties
//! and list stores, brought up to date after every event, and the status
//! line ten times a second.

use std::time::Instant;

use gtk::gio;
use gtk::prelude::*;
use gtk::subclass::prelude::*;

use super::items::{self, SbNameItem};
use super::{SbSession, sync};
use crate::i18n::tr;
use crate::model::room::Tone;
use crate::model::session::Link;

/// A copy of what the view is made from (see [`SbSession::refresh`]).
struct View {
    session: crate::model::session::SessionModel,
    room: Option<crate::model::room::RoomModel>,
    chat_seen: (u64, u64),
    last_error: Option<String>,
    last_notice: Option<String>,
}

impl SbSession {
    /// Brings every property and list up to date with the models.
    pub fn refresh(&self) {
        let (toasts, chat_lines) = self.refresh_models();
        for line in chat_lines {
            tracing::info!(line = %line, "ui: chat shown");
        }
        for t in toasts {
            self.toast(&t);
        }
        self.tick();
    }

    /// Setting a property or changing a list runs its handlers at once, and
    /// they may send a command through the session: so the models are read
    /// from a copy, and no borrow of them is held while anything is set.
    fn refresh_models(&self) -> (Vec<String>, Vec<String>) {
        let stores = self.stores();
        let mut inner = {
            let i = self.inner();
            View {
                session: i.session.clone(),
                room: i.room.clone(),
                chat_seen: i.chat_seen,
                last_error: i.last_error.clone(),
                last_notice: i.last_notice.clone(),
            }
        };
        let (toasts, lines) = self.refresh_from(stores, &mut inner);
        let mut i = self.imp().inner.borrow_mut();
        i.chat_seen = inner.chat_seen;
        i.last_error = inner.last_error;
        i.last_notice = inner.last_notice;
        (toasts, lines)
    }

    fn refresh_from(&self, stores: &super::Stores, inner: &mut View) -> (Vec<String>, Vec<String>) {
        let s = &inner.session;
        items::set_if_changed!(self, link_text, set_link_text, s.link_text());
        let reason = match &s.link {
            Link::Disconnected { reason: Some(r) } => r.clone(),
            _ => String::new(),
        };
        items::set_if_changed!(self, disconnect_reason, set_disconnect_reason, reason);
        items::set_if_changed!(
            self,
            security_icon,
            set_security_icon,
            s.security_icon().to_owned()
        );
        items::set_if_changed!(self, security_title, set_security_title, s.security_title());
        items::set_if_changed!(
            self,
            security_fingerprint,
            set_security_fingerprint,
            s.security_fingerprint()
        );
        items::set_if_changed!(
            self,
            security_detail,
            set_security_detail,
            s.security_detail()
        );
        items::set_if_changed!(self, connected, set_connected, s.connected());
        sync::rooms(&stores.rooms, &s.rooms);
        items::set_if_changed!(self, rooms_empty, set_rooms_empty, s.rooms.is_empty());
        let page = if inner.room.is_some() {
            Some("room")
        } else if s.waiting.is_some() {
            Some("waiting")
        } else if s.connected() {
            Some("rooms")
        } else if matches!(s.link, Link::Reconnecting { .. }) {
            // Stay where we were; the status line says we are reconnecting.
            None
        } else {
            Some("connect")
        };
        if let Some(page) = page
            && self.page() != page
        {
            self.set_page(page);
            tracing::info!(page, "ui: page");
        }
        if let Some(w) = &s.waiting {
            let text = tr("Waiting for the host to let you in ({secs} s at most)…")
                .replace("{secs}", &(w.timeout_ms / 1000).to_string());
            items::set_if_changed!(self, waiting_text, set_waiting_text, text);
        }
        let mut toasts = Vec::new();
        if s.error != inner.last_error {
            inner.last_error = s.error.clone();
            toasts.extend(s.error.clone());
        }
        let mut chat_lines = Vec::new();
        match &inner.room {
            Some(room) => {
                let title = match &room.code {
                    Some(code) => tr("Meeting {code}").replace("{code}", code),
                    None => room.name.clone(),
                };
                items::set_if_changed!(self, room_title, set_room_title, title);
                items::set_if_changed!(self, has_floor, set_has_floor, room.has_floor());
                items::set_if_changed!(self, has_chat, set_has_chat, room.has_chat());
                items::set_if_changed!(self, is_meeting, set_is_meeting, room.is_meeting());
                let lobby = room.am_host() && !room.lobby.is_empty();
                items::set_if_changed!(self, lobby_visible, set_lobby_visible, lobby);
                sync::members(&stores.members, room);
                sync::lobby(&stores.lobby, room);
                sync::transfers(&stores.transfers, room);
                chat_lines = sync::chat(&stores.chat, room, &mut inner.chat_seen);
                sync_recipients(&stores.recipients, &room.others());
                if room.notice != inner.last_notice {
                    inner.last_notice = room.notice.clone();
                    toasts.extend(room.notice.clone());
                }
            }
            None => {
                for store in [
                    &stores.members,
                    &stores.lobby,
                    &stores.transfers,
                    &stores.chat,
                ] {
                    if store.n_items() > 0 {
                        store.remove_all();
                    }
                }
                inner.last_notice = None;
                items::set_if_changed!(self, lobby_visible, set_lobby_visible, false);
                sync_recipients(&stores.recipients, &[]);
            }
        }
        (toasts, chat_lines)
    }

    /// The status line (and a talk burst's countdown), ten times a second.
    pub fn tick(&self) {
        let key = self.talk_key_label();
        if let Some(r) = self.imp().inner.borrow_mut().room.as_mut()
            && r.talk_key != key
        {
            r.talk_key = key;
        }
        let status = {
            let inner = self.inner();
            match (&inner.room, inner.session.connected()) {
                (_, false) => crate::model::room::Status {
                    text: if matches!(inner.session.link, Link::Reconnecting { .. }) {
                        tr("Disconnected — reconnecting…")
                    } else {
                        tr("Disconnected")
                    },
                    tone: Tone::Grey,
                    countdown: None,
                },
                (Some(r), true) => r.status(Instant::now()),
                (None, true) => return,
            }
        };
        let tone = match status.tone {
            Tone::Green => "green",
            Tone::Red => "red",
            Tone::Grey => "grey",
            Tone::Neutral => "neutral",
        };
        items::set_if_changed!(self, status_tone, set_status_tone, tone.to_owned());
        let countdown = status
            .countdown
            .map(|left| {
                tr("{secs} s left in this talk burst")
                    .replace("{secs}", &format!("{:.0}", left.as_secs_f32().ceil()))
            })
            .unwrap_or_default();
        items::set_if_changed!(self, countdown_text, set_countdown_text, countdown);
        if self.status_text() != status.text {
            tracing::info!(status = %status.text, tone = ?status.tone, "ui: status");
            self.set_status_text(status.text);
        }
    }
}

fn sync_recipients(list: &gio::ListStore, others: &[String]) {
    let current: Vec<String> = (1..list.n_items())
        .filter_map(|i| list.item(i).and_downcast::<SbNameItem>())
        .map(|n| n.name())
        .collect();
    if current != others {
        let new: Vec<SbNameItem> = others.iter().map(|n| SbNameItem::new(n)).collect();
        list.splice(1, list.n_items() - 1, &new);
    }
}
