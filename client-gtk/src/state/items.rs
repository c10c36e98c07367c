//! The objects the window's lists hold (`gio::ListStore` items): a room
//! in the router's list, a member, a chat line, a guest in the lobby, a
//! file transfer, a video tile. Each is updated in place when what it
//! shows changes (its properties notify; the row bound to it follows), so
//! a row lives as long as what it stands for.

use std::cell::{Cell, RefCell};

use gtk::gio::prelude::*;
use gtk::glib;
use gtk::glib::subclass::prelude::*;

/// Sets a property only when the value differs, so that bound widgets
/// hear of real changes only.
macro_rules! set_if_changed {
    ($obj:expr, $getter:ident, $setter:ident, $value:expr) => {{
        let v = $value;
        if $obj.$getter() != v {
            $obj.$setter(v);
        }
    }};
}
pub(crate) use set_if_changed;

mod room_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbRoomItem)]
    pub struct SbRoomItem {
        #[property(get, set)]
        name: RefCell<String>,
        #[property(get, set)]
        kind: RefCell<String>,
        /// "3 inside", "3 of 8 inside".
        #[property(get, set)]
        subtitle: RefCell<String>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbRoomItem {
        const NAME: &'static str = "SbRoomItem";
        type Type = super::SbRoomItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbRoomItem {}
}

glib::wrapper! {
    /// A room the router lists.
    pub struct SbRoomItem(ObjectSubclass<room_imp::SbRoomItem>);
}

impl SbRoomItem {
    pub fn new(name: &str) -> Self {
        glib::Object::builder().property("name", name).build()
    }
}

mod member_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbMemberItem)]
    pub struct SbMemberItem {
        #[property(get, set)]
        session_id: Cell<u64>,
        #[property(get, set)]
        nickname: RefCell<String>,
        /// Holds the floor (floor rooms) or is heard talking.
        #[property(get, set)]
        talking: Cell<bool>,
        /// Muted by the host or an operator.
        #[property(get, set)]
        muted: Cell<bool>,
        #[property(get, set)]
        audio: Cell<bool>,
        #[property(get, set)]
        video: Cell<bool>,
        #[property(get, set)]
        host: Cell<bool>,
        /// This member is us.
        #[property(get, set)]
        me: Cell<bool>,
        #[property(get, set)]
        audio_ssrc: Cell<u32>,
        /// The audio level heard from this member, 0 (silence) to 1.
        #[property(get, set, minimum = 0.0, maximum = 1.0)]
        level: Cell<f64>,
        /// Playback volume chosen here, 0 to 2 (1: as sent).
        #[property(get, set, minimum = 0.0, maximum = 2.0, default = 1.0)]
        volume: Cell<f64>,
        /// Not played here (a local choice; others still hear them).
        #[property(get, set)]
        silenced: Cell<bool>,
        /// "host · mic off · camera on", as the row's subtitle.
        #[property(get, set)]
        subtitle: RefCell<String>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbMemberItem {
        const NAME: &'static str = "SbMemberItem";
        type Type = super::SbMemberItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbMemberItem {}
}

glib::wrapper! {
    /// A member of the room we are in.
    pub struct SbMemberItem(ObjectSubclass<member_imp::SbMemberItem>);
}

impl SbMemberItem {
    pub fn new(session_id: u64) -> Self {
        glib::Object::builder()
            .property("session-id", session_id)
            .property("volume", 1.0f64)
            .build()
    }
}

mod chat_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbChatItem)]
    pub struct SbChatItem {
        #[property(get, set)]
        from: RefCell<String>,
        #[property(get, set)]
        text: RefCell<String>,
        /// "12:04", or "12:04 · private to bob".
        #[property(get, set)]
        meta: RefCell<String>,
        #[property(get, set)]
        private: Cell<bool>,
        #[property(get, set)]
        mine: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbChatItem {
        const NAME: &'static str = "SbChatItem";
        type Type = super::SbChatItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbChatItem {}
}

glib::wrapper! {
    /// One chat line.
    pub struct SbChatItem(ObjectSubclass<chat_imp::SbChatItem>);
}

impl SbChatItem {
    pub fn new() -> Self {
        glib::Object::new()
    }
}

impl Default for SbChatItem {
    fn default() -> Self {
        Self::new()
    }
}

mod name_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbNameItem)]
    pub struct SbNameItem {
        #[property(get, set)]
        name: RefCell<String>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbNameItem {
        const NAME: &'static str = "SbNameItem";
        type Type = super::SbNameItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbNameItem {}
}

glib::wrapper! {
    /// A name in a menu (whom a message goes to).
    pub struct SbNameItem(ObjectSubclass<name_imp::SbNameItem>);
}

impl SbNameItem {
    pub fn new(name: &str) -> Self {
        glib::Object::builder().property("name", name).build()
    }
}

mod lobby_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbLobbyItem)]
    pub struct SbLobbyItem {
        #[property(get, set)]
        session_id: Cell<u64>,
        #[property(get, set)]
        nickname: RefCell<String>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbLobbyItem {
        const NAME: &'static str = "SbLobbyItem";
        type Type = super::SbLobbyItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbLobbyItem {}
}

glib::wrapper! {
    /// A guest waiting in our meeting's lobby.
    pub struct SbLobbyItem(ObjectSubclass<lobby_imp::SbLobbyItem>);
}

impl SbLobbyItem {
    pub fn new(session_id: u64) -> Self {
        glib::Object::builder()
            .property("session-id", session_id)
            .build()
    }
}

mod transfer_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbTransferItem)]
    pub struct SbTransferItem {
        #[property(get, set)]
        transfer_id: Cell<u64>,
        #[property(get, set)]
        name: RefCell<String>,
        /// "to ann: 40%, window 6.0".
        #[property(get, set)]
        label: RefCell<String>,
        #[property(get, set, minimum = 0.0, maximum = 1.0)]
        fraction: Cell<f64>,
        #[property(get, set)]
        outgoing: Cell<bool>,
        #[property(get, set)]
        running: Cell<bool>,
        #[property(get, set)]
        failed: Cell<bool>,
        /// Where a received file was saved ("" until then).
        #[property(get, set)]
        path: RefCell<String>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbTransferItem {
        const NAME: &'static str = "SbTransferItem";
        type Type = super::SbTransferItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbTransferItem {}
}

glib::wrapper! {
    /// A file on its way, in or out.
    pub struct SbTransferItem(ObjectSubclass<transfer_imp::SbTransferItem>);
}

impl SbTransferItem {
    pub fn new(transfer_id: u64) -> Self {
        glib::Object::builder()
            .property("transfer-id", transfer_id)
            .build()
    }
}

mod tile_imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::SbTileItem)]
    pub struct SbTileItem {
        /// The sender's video SSRC (0: our own preview).
        #[property(get, set)]
        ssrc: Cell<u32>,
        #[property(get, set)]
        name: RefCell<String>,
        #[property(get, set, nullable)]
        paintable: RefCell<Option<gtk::gdk::Paintable>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbTileItem {
        const NAME: &'static str = "SbTileItem";
        type Type = super::SbTileItem;
    }

    #[glib::derived_properties]
    impl ObjectImpl for SbTileItem {}
}

glib::wrapper! {
    /// A video tile: a remote sender, or our own camera.
    pub struct SbTileItem(ObjectSubclass<tile_imp::SbTileItem>);
}

impl SbTileItem {
    pub fn new(ssrc: u32, name: &str, paintable: Option<&gtk::gdk::Paintable>) -> Self {
        glib::Object::builder()
            .property("ssrc", ssrc)
            .property("name", name)
            .property("paintable", paintable)
            .build()
    }
}

/// Brings `store` to hold `items`, in order, touching only what changed:
/// items no longer there are removed and new ones inserted where they
/// belong, each run of them in one change, so every other row stays as it
/// is (a member who joins at the end or leaves from the middle costs one
/// insertion or removal). Items that moved relative to each other are
/// replaced from the first that moved.
pub fn sync_store<T: IsA<glib::Object>>(store: &gtk::gio::ListStore, items: &[T]) {
    use std::collections::HashSet;
    let wanted: HashSet<glib::Object> = items.iter().map(|i| i.clone().upcast()).collect();
    // Removals, from the end, a run at a time.
    let mut i = store.n_items();
    while i > 0 {
        i -= 1;
        let gone = |k: u32| store.item(k).is_some_and(|o| !wanted.contains(&o));
        if gone(i) {
            let end = i + 1;
            while i > 0 && gone(i - 1) {
                i -= 1;
            }
            store.splice(i, end - i, &[] as &[glib::Object]);
        }
    }
    // Insertions, a run at a time; what is left keeps its relative order
    // unless something moved.
    let present: HashSet<glib::Object> =
        (0..store.n_items()).filter_map(|k| store.item(k)).collect();
    let mut pos = 0u32;
    let mut j = 0usize;
    while j < items.len() {
        let item: &glib::Object = items[j].upcast_ref();
        if store.item(pos).as_ref() == Some(item) {
            pos += 1;
            j += 1;
        } else if !present.contains(item) {
            let run: Vec<glib::Object> = items[j..]
                .iter()
                .map(|i| i.clone().upcast::<glib::Object>())
                .take_while(|o| !present.contains(o))
                .collect();
            store.splice(pos, 0, &run);
            pos += run.len() as u32;
            j += run.len();
        } else {
            // Moved: the rest again, in order.
            let rest: Vec<glib::Object> = items[j..].iter().map(|i| i.clone().upcast()).collect();
            store.splice(pos, store.n_items() - pos, &rest);
            return;
        }
    }
    if pos < store.n_items() {
        store.splice(pos, store.n_items() - pos, &[] as &[glib::Object]);
    }
}
