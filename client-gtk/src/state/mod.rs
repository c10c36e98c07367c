//! `SbSession`: the one owner of what the window shows. It takes the
//! backend's events, keeps the view-models ([`SessionModel`],
//! [`RoomModel`], [`StatsModel`]) and publishes them as GObject properties
//! and `gio::ListStore`s that the pages bind to; its items are updated in
//! place. Commands go out through it, so that where to go back to after a
//! reconnect (the session's target) is known in one place. No widget
//! here: it is tested without a display.

pub mod items;
mod sync;
#[cfg(test)]
mod tests;
mod tiles;
mod view;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use tiles::paintable_of;

use crate::backend::{Command, Event};
use crate::i18n::tr;
use crate::model::room::RoomModel;
use crate::model::session::{Link, SessionModel, Target};
use crate::model::stats::StatsModel;
use items::{SbChatItem, SbLobbyItem, SbMemberItem, SbRoomItem, SbTileItem, SbTransferItem};
use proto::control::ServerMessage;

pub use sync::kind_words;

/// What to do once connected, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub join: Option<String>,
    pub meeting_code: Option<String>,
    pub create_meeting: bool,
}

/// Where the session's commands go.
pub type CommandSink = Box<dyn Fn(Command)>;

#[derive(Default)]
pub struct Inner {
    pub session: SessionModel,
    pub room: Option<RoomModel>,
    pub stats: StatsModel,
    pending: Pending,
    /// (epoch, lines) of the room's chat already in the chat store.
    pub(super) chat_seen: (u64, u64),
    pub(super) last_notice: Option<String>,
    pub(super) last_error: Option<String>,
    started: Option<Instant>,
}

impl Inner {
    /// Seconds since the first statistics, for the plots.
    fn elapsed(&mut self) -> f64 {
        self.started
            .get_or_insert_with(Instant::now)
            .elapsed()
            .as_secs_f64()
    }
}

mod imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbSession)]
    pub struct SbSession {
        #[property(get, set)]
        link_text: RefCell<String>,
        /// Why the link ended on a refusal (the connect page shows it).
        #[property(get, set)]
        disconnect_reason: RefCell<String>,
        /// The header's lock icon (none while not connected).
        #[property(get, set)]
        security_icon: RefCell<String>,
        /// The opened lock: TLS or not, fingerprint, why it is trusted.
        #[property(get, set)]
        security_title: RefCell<String>,
        #[property(get, set)]
        security_fingerprint: RefCell<String>,
        #[property(get, set)]
        security_detail: RefCell<String>,
        #[property(get, set)]
        connected: Cell<bool>,
        /// The page to show: connect, rooms, waiting or room.
        #[property(get, set)]
        page: RefCell<String>,
        #[property(get, set)]
        waiting_text: RefCell<String>,
        #[property(get, set)]
        room_title: RefCell<String>,
        #[property(get, set)]
        has_floor: Cell<bool>,
        #[property(get, set)]
        has_chat: Cell<bool>,
        #[property(get, set)]
        is_meeting: Cell<bool>,
        #[property(get, set)]
        lobby_visible: Cell<bool>,
        #[property(get, set)]
        status_text: RefCell<String>,
        /// green, red, grey or neutral.
        #[property(get, set)]
        status_tone: RefCell<String>,
        #[property(get, set)]
        countdown_text: RefCell<String>,
        #[property(get, set)]
        rooms_empty: Cell<bool>,
        /// The talk key as people read it ("Space").
        #[property(get, set)]
        talk_key_label: RefCell<String>,
        /// Whether the talk key works from other windows, in words.
        #[property(get, set)]
        global_shortcut: RefCell<String>,
        /// The microphone's level during a test, 0 to 1.
        #[property(get, set, minimum = 0.0, maximum = 1.0)]
        mic_level: Cell<f64>,
        pub inner: RefCell<Inner>,
        pub sender: RefCell<Option<CommandSink>>,
        pub stores: OnceCell<Stores>,
        pub tiles_by_ssrc: RefCell<HashMap<u32, SbTileItem>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbSession {
        const NAME: &'static str = "SbSession";
        type Type = super::SbSession;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbSession {
        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // Something worth a toast: an error, a refusal, a notice.
                    Signal::builder("toast")
                        .param_types([String::static_type()])
                        .build(),
                    // New statistics (for the statistics window).
                    Signal::builder("stats").build(),
                ]
            })
        }
    }
}

/// The lists the pages show.
pub struct Stores {
    pub rooms: gio::ListStore,
    pub members: gio::ListStore,
    pub chat: gio::ListStore,
    pub lobby: gio::ListStore,
    pub transfers: gio::ListStore,
    pub tiles: gio::ListStore,
    /// "Everyone", then the others' nicknames: whom chat and files go to
    /// ([`items::SbNameItem`]s).
    pub recipients: gio::ListStore,
}

glib::wrapper! {
    pub struct SbSession(ObjectSubclass<imp::SbSession>);
}

impl Default for SbSession {
    fn default() -> Self {
        Self::new(|_| {})
    }
}

impl SbSession {
    /// A session whose commands go to `send` (the backend, or a test).
    pub fn new(send: impl Fn(Command) + 'static) -> Self {
        let obj: Self = glib::Object::builder()
            .property("page", "connect")
            .property("link-text", tr("Disconnected"))
            .property("rooms-empty", true)
            .property("talk-key-label", "Space")
            .property(
                "global-shortcut",
                tr("Only while Switchboard has the focus (asking the desktop…)"),
            )
            .build();
        obj.imp().sender.replace(Some(Box::new(send)));
        let _ = obj.imp().stores.set(Stores {
            rooms: gio::ListStore::new::<SbRoomItem>(),
            members: gio::ListStore::new::<SbMemberItem>(),
            chat: gio::ListStore::new::<SbChatItem>(),
            lobby: gio::ListStore::new::<SbLobbyItem>(),
            transfers: gio::ListStore::new::<SbTransferItem>(),
            tiles: gio::ListStore::new::<SbTileItem>(),
            recipients: {
                let l = gio::ListStore::new::<items::SbNameItem>();
                l.append(&items::SbNameItem::new(&tr("Everyone")));
                l
            },
        });
        obj.refresh();
        obj
    }

    pub fn stores(&self) -> &Stores {
        self.imp()
            .stores
            .get()
            .unwrap_or_else(|| unreachable!("set in new()"))
    }

    pub fn inner(&self) -> std::cell::Ref<'_, Inner> {
        self.imp().inner.borrow()
    }

    /// What to do once connected (once).
    pub fn set_pending(&self, p: Pending) {
        self.imp().inner.borrow_mut().pending = p;
    }

    /// Sends a command, noting where it takes us.
    pub fn send(&self, cmd: Command) {
        {
            let mut inner = self.imp().inner.borrow_mut();
            match &cmd {
                Command::JoinMeeting(code) => {
                    inner.session.target = Some(Target::Meeting { code: code.clone() })
                }
                Command::Leave | Command::Disconnect => inner.session.target = None,
                _ => {}
            }
        }
        if let Some(send) = &*self.imp().sender.borrow() {
            send(cmd);
        }
    }

    /// The nickname a private message or file goes to, from the position
    /// chosen in [`Stores::recipients`] (0: everyone).
    pub fn recipient(&self, position: u32) -> Option<String> {
        (position > 0)
            .then(|| self.stores().recipients.item(position))
            .flatten()
            .and_downcast::<items::SbNameItem>()
            .map(|n| n.name())
    }

    pub fn connect_toast(&self, f: impl Fn(&Self, String) + 'static) {
        self.connect_closure(
            "toast",
            false,
            glib::closure_local!(move |s: &Self, text: String| f(s, text)),
        );
    }

    pub fn connect_stats(&self, f: impl Fn(&Self) + 'static) {
        self.connect_closure("stats", false, glib::closure_local!(move |s: &Self| f(s)));
    }

    /// Tells the user something (a toast).
    pub fn notify_user(&self, text: &str) {
        self.toast(text);
    }

    /// A member's volume or local mute changed here: tell media.
    pub fn member_volume_changed(&self, item: &SbMemberItem) {
        let volume = if item.silenced() { 0.0 } else { item.volume() };
        self.send(Command::Volume {
            ssrc: item.audio_ssrc(),
            volume,
        });
    }

    fn toast(&self, text: &str) {
        tracing::info!(text, "ui: toast");
        self.emit_by_name::<()>("toast", &[&text.to_owned()]);
    }

    /// Takes in one event from the backend.
    pub fn apply(&self, ev: Event) {
        match ev {
            Event::Link(link) => self.on_link(link),
            Event::Server(m) => self.on_server(&m),
            Event::Video { ssrc, sink } => self.add_tile(ssrc, paintable_of(&sink)),
            Event::VideoGone { ssrc } => {
                if let Some(t) = self.imp().tiles_by_ssrc.borrow_mut().remove(&ssrc) {
                    let tiles = &self.stores().tiles;
                    if let Some(i) = tiles.find(&t) {
                        tiles.remove(i);
                    }
                }
            }
            Event::Preview(sink) => {
                self.add_tile(0, paintable_of(&sink));
                tracing::info!("ui: preview");
            }
            Event::Stats(snap) => {
                {
                    let mut inner = self.imp().inner.borrow_mut();
                    let t = inner.elapsed();
                    inner.stats.push(t, &snap);
                }
                self.emit_by_name::<()>("stats", &[]);
                return;
            }
            Event::FileStarted {
                id,
                name,
                receivers,
                chunks,
            } => {
                if let Some(r) = self.imp().inner.borrow_mut().room.as_mut() {
                    r.sending(id, Some(&name), &receivers, chunks);
                }
            }
            Event::FileRefused { name, why } => {
                self.toast(
                    &tr("{name} was not sent: {why}")
                        .replace("{name}", &name)
                        .replace("{why}", &why),
                );
            }
            Event::FileProgress {
                id,
                done,
                total: _,
                cwnd,
            } => {
                let mut inner = self.imp().inner.borrow_mut();
                if let Some(c) = cwnd {
                    let t = inner.elapsed();
                    inner.stats.push_cwnd(t, c);
                }
                if let Some(r) = inner.room.as_mut() {
                    r.progress(id, done, cwnd);
                }
            }
            Event::FileDone { id, result } => {
                if let Some(r) = self.imp().inner.borrow_mut().room.as_mut() {
                    r.finished(id, result);
                    if let Some(t) = r.transfers.get(&id) {
                        tracing::info!(id, file = %t.label(), "ui: file done");
                    }
                }
            }
            Event::GlobalShortcut(g) => {
                let text = match g {
                    crate::backend::GlobalShortcut::Bound { trigger } => {
                        tr("From any window, with {key} (the desktop's global shortcut)")
                            .replace("{key}", &trigger)
                    }
                    crate::backend::GlobalShortcut::Unavailable { why } => tr(
                        "Only while Switchboard has the focus: this desktop offers no global shortcuts ({why})",
                    )
                    .replace("{why}", &why),
                };
                tracing::info!(text, "ui: global shortcut");
                self.set_global_shortcut(text);
                return;
            }
            Event::MicLevel(level) => {
                let level = level.clamp(0.0, 1.0);
                // Logged when it crosses half scale, for the tests.
                if (level > 0.5) != (self.mic_level() > 0.5) {
                    tracing::info!(level, "ui: microphone level");
                }
                self.set_mic_level(level);
                return;
            }
            Event::Levels(levels) => {
                let stores = self.stores();
                for i in 0..stores.members.n_items() {
                    let Some(m) = stores.members.item(i).and_downcast::<SbMemberItem>() else {
                        continue;
                    };
                    let level = levels
                        .iter()
                        .find(|(ssrc, _)| *ssrc == m.audio_ssrc())
                        .map(|(_, l)| l.clamp(0.0, 1.0))
                        .unwrap_or(0.0);
                    items::set_if_changed!(m, level, set_level, level);
                }
                return;
            }
            Event::MediaError(e) => {
                tracing::warn!(error = %e, "ui");
                self.toast(&e);
            }
        }
        self.refresh();
    }

    fn on_link(&self, link: Link) {
        let connected = matches!(link, Link::Connected { .. });
        let resumed = matches!(link, Link::Connected { resumed: true, .. });
        let gone = matches!(link, Link::Disconnected { .. });
        let (pending, target) = {
            let mut inner = self.imp().inner.borrow_mut();
            inner.session.link = link;
            if gone {
                inner.room = None;
                inner.session.waiting = None;
            }
            tracing::info!(link = %inner.session.link_text(), "ui");
            inner.session.log_security();
            if connected {
                (
                    std::mem::take(&mut inner.pending),
                    inner.session.target.clone(),
                )
            } else {
                (Pending::default(), None)
            }
        };
        if !connected {
            // Media stopped with the connection; a resumed session starts
            // it again on JOINED.
            self.clear_tiles();
        }
        if !connected {
            return;
        }
        // A session the router could not resume (it restarted, or the
        // grace ran out): go back where we were, as a new member.
        match (resumed, target) {
            (false, Some(Target::Room { name })) => self.send(Command::Join(name)),
            (false, Some(Target::Meeting { code })) => self.send(Command::JoinMeeting(code)),
            _ => {}
        }
        if let Some(room) = pending.join {
            self.send(Command::Join(room));
        } else if let Some(code) = pending.meeting_code {
            self.send(Command::JoinMeeting(code));
        } else if pending.create_meeting {
            self.send(Command::CreateMeeting {
                end_with_host: false,
            });
        }
    }

    fn on_server(&self, m: &ServerMessage) {
        let mut left = false;
        {
            let mut inner = self.imp().inner.borrow_mut();
            let inner = &mut *inner;
            inner.session.apply(m);
            match m {
                ServerMessage::Joined { room, kind, .. } => {
                    let (me, nick) = match &inner.session.link {
                        Link::Connected {
                            session_id,
                            nickname,
                            ..
                        } => (*session_id, nickname.clone()),
                        _ => (0, String::new()),
                    };
                    let mut model = RoomModel::new(room, kind, me, &nick);
                    // A meeting's room is named after its code.
                    if let Some(code) = room.strip_prefix("meeting-")
                        && kind == "meeting"
                    {
                        model.code = Some(code.to_owned());
                    }
                    inner.room = Some(model);
                    inner.chat_seen = (u64::MAX, 0);
                    tracing::info!(room, kind, "ui: joined");
                }
                ServerMessage::Left { room, .. } => {
                    inner.room = None;
                    left = true;
                    tracing::info!(room, "ui: left");
                }
                ServerMessage::MeetingCreated { code, .. } => {
                    tracing::info!(code, "ui: meeting created");
                }
                ServerMessage::Lobby { waiting, .. } => {
                    let names: Vec<&str> = waiting.iter().map(|w| w.nickname.as_str()).collect();
                    tracing::info!(?names, "ui: lobby");
                }
                _ => {}
            }
            if let Some(r) = inner.room.as_mut() {
                r.apply(m, Instant::now());
            }
        }
        if left || matches!(m, ServerMessage::Joined { .. }) {
            self.clear_tiles();
        }
        if left {
            self.send(Command::ListRooms);
        }
    }
}
