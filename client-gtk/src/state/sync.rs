//! From the view-models to the list stores: each item is found by what it
//! stands for (a session id, a room name, a transfer id), updated in place
//! and kept in the models' order; only new ones are made.

use std::collections::HashMap;

use gtk::gio;
use gtk::prelude::*;

use super::items::{
    SbChatItem, SbLobbyItem, SbMemberItem, SbRoomItem, SbTransferItem, set_if_changed, sync_store,
};
use crate::i18n::tr;
use crate::model::room::{ChatLine, Member, RoomModel, TransferState};
use proto::control::RoomInfo;

pub(crate) fn rooms(store: &gio::ListStore, rooms: &[RoomInfo]) {
    let mut old = by_key(store, |i: &SbRoomItem| i.name());
    let items: Vec<SbRoomItem> = rooms
        .iter()
        .map(|r| {
            let item = old
                .remove(&r.name)
                .unwrap_or_else(|| SbRoomItem::new(&r.name));
            set_if_changed!(item, kind, set_kind, r.kind.clone());
            let subtitle = if r.max_participants == 0 {
                tr("{kind} · {n} inside")
            } else {
                tr("{kind} · {n} of {max} inside")
            }
            .replace("{kind}", &kind_words(&r.kind))
            .replace("{n}", &r.participants.to_string())
            .replace("{max}", &r.max_participants.to_string());
            set_if_changed!(item, subtitle, set_subtitle, subtitle);
            item
        })
        .collect();
    sync_store(store, &items);
}

/// A room kind in words.
pub fn kind_words(kind: &str) -> String {
    match kind {
        "ptt" => tr("Push to talk"),
        "chat" => tr("Chat with voice"),
        "voice" => tr("Open voice"),
        "meeting" => tr("Meeting"),
        other => other.to_owned(),
    }
}

pub(crate) fn members(store: &gio::ListStore, room: &RoomModel) {
    let mut old = by_key(store, |i: &SbMemberItem| i.session_id());
    let items: Vec<SbMemberItem> = room
        .members
        .iter()
        .map(|m| {
            let item = old
                .remove(&m.session_id)
                .unwrap_or_else(|| SbMemberItem::new(m.session_id));
            member(&item, m, room);
            item
        })
        .collect();
    sync_store(store, &items);
}

fn member(item: &SbMemberItem, m: &Member, room: &RoomModel) {
    let me = m.session_id == room.me;
    let host = room.host == Some(m.session_id);
    set_if_changed!(item, nickname, set_nickname, m.nickname.clone());
    set_if_changed!(item, talking, set_talking, m.talking);
    set_if_changed!(item, muted, set_muted, m.muted);
    set_if_changed!(item, audio, set_audio, m.audio);
    set_if_changed!(item, video, set_video, m.video);
    set_if_changed!(item, host, set_host, host);
    set_if_changed!(item, me, set_me, me);
    set_if_changed!(item, audio_ssrc, set_audio_ssrc, m.audio_ssrc);
    let mut marks = Vec::new();
    if me {
        marks.push(tr("you"));
    }
    if host {
        marks.push(tr("host"));
    }
    if m.talking {
        marks.push(tr("talking"));
    }
    if m.muted {
        marks.push(tr("muted by the host"));
    }
    if room.is_meeting() {
        marks.push(if m.audio { tr("mic on") } else { tr("mic off") });
        marks.push(if m.video {
            tr("camera on")
        } else {
            tr("camera off")
        });
    }
    set_if_changed!(item, subtitle, set_subtitle, marks.join(" · "));
}

pub(crate) fn lobby(store: &gio::ListStore, room: &RoomModel) {
    let mut old = by_key(store, |i: &SbLobbyItem| i.session_id());
    let items: Vec<SbLobbyItem> = room
        .lobby
        .iter()
        .map(|e| {
            let item = old
                .remove(&e.session_id)
                .unwrap_or_else(|| SbLobbyItem::new(e.session_id));
            set_if_changed!(item, nickname, set_nickname, e.nickname.clone());
            item
        })
        .collect();
    sync_store(store, &items);
}

pub(crate) fn transfers(store: &gio::ListStore, room: &RoomModel) {
    let mut old = by_key(store, |i: &SbTransferItem| i.transfer_id());
    let items: Vec<SbTransferItem> = room
        .transfers
        .values()
        .map(|t| {
            let item = old
                .remove(&t.id)
                .unwrap_or_else(|| SbTransferItem::new(t.id));
            set_if_changed!(item, name, set_name, t.name.clone());
            set_if_changed!(item, label, set_label, t.label());
            set_if_changed!(item, fraction, set_fraction, t.fraction());
            set_if_changed!(item, outgoing, set_outgoing, t.outgoing);
            let running = t.state == TransferState::Running;
            set_if_changed!(item, running, set_running, running);
            let failed = matches!(t.state, TransferState::Failed(_));
            set_if_changed!(item, failed, set_failed, failed);
            let path = match &t.state {
                TransferState::Done(Some(p)) => p.to_string_lossy().into_owned(),
                _ => String::new(),
            };
            set_if_changed!(item, path, set_path, path);
            item
        })
        .collect();
    sync_store(store, &items);
}

/// Chat lines: the new ones appended, the oldest dropped past the
/// model's limit; all again when the model reordered them. Returns the
/// lines added.
pub(crate) fn chat(store: &gio::ListStore, room: &RoomModel, seen: &mut (u64, u64)) -> Vec<String> {
    let (epoch, total) = *seen;
    let mut shown = Vec::new();
    let fresh: &[ChatLine] = if epoch != room.chat_epoch {
        store.remove_all();
        &room.chat
    } else {
        let new = (room.chat_total - total.min(room.chat_total)) as usize;
        &room.chat[room.chat.len() - new.min(room.chat.len())..]
    };
    let items: Vec<SbChatItem> = fresh
        .iter()
        .map(|line| {
            shown.push(line.display(&room.my_nickname));
            chat_item(line, &room.my_nickname)
        })
        .collect();
    store.extend_from_slice(&items);
    let extra = store.n_items().saturating_sub(room.chat.len() as u32);
    if extra > 0 {
        store.splice(0, extra, &[] as &[gtk::glib::Object]);
    }
    *seen = (room.chat_epoch, room.chat_total);
    shown
}

fn chat_item(line: &ChatLine, me: &str) -> SbChatItem {
    let item = SbChatItem::new();
    let mine = line.from == me;
    let time = if line.ts_ms > 0 {
        gtk::glib::DateTime::from_unix_local((line.ts_ms / 1000) as i64)
            .and_then(|t| t.format("%H:%M"))
            .map(|s| s.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let meta = match (line.private, mine) {
        (false, _) => time,
        (true, true) => format!(
            "{time} · {}",
            tr("private to {name}").replace("{name}", line.to.as_deref().unwrap_or(""))
        ),
        (true, false) => format!("{time} · {}", tr("private")),
    };
    item.set_from(line.from.clone());
    item.set_text(line.text.clone());
    item.set_meta(meta.trim_start_matches(" · ").to_owned());
    item.set_private(line.private);
    item.set_mine(mine);
    item
}

/// The store's items by a key, to be taken out as they are reused.
fn by_key<T, K>(store: &gio::ListStore, key: impl Fn(&T) -> K) -> HashMap<K, T>
where
    T: IsA<gtk::glib::Object>,
    K: std::hash::Hash + Eq,
{
    (0..store.n_items())
        .filter_map(|i| store.item(i).and_downcast::<T>())
        .map(|t| (key(&t), t))
        .collect()
}
