//! The rooms page (`SbRoomsPage`): the router's rooms (one `SbRoomRow`
//! each, from the session's room list), a new room, and meetings by code.

use adw::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use super::room_row::SbRoomRow;
use crate::backend::Command;
use crate::i18n::tr;
use crate::state::items::SbRoomItem;
use crate::state::{SbSession, kind_words};

/// The kinds a person can create, in the menu's order.
const KINDS: [&str; 3] = ["ptt", "chat", "voice"];

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "rooms_page.ui")]
    pub struct SbRoomsPage {
        #[template_child]
        pub refresh_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub disconnect_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub rooms_stack: TemplateChild<gtk::Stack>,
        #[template_child]
        pub room_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub new_room_entry: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub new_room_kind: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub new_room_options: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub create_room_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub code_entry: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub join_code_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub new_meeting_button: TemplateChild<gtk::Button>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbRoomsPage {
        const NAME: &'static str = "SbRoomsPage";
        type Type = super::SbRoomsPage;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbRoomsPage {}
    impl WidgetImpl for SbRoomsPage {}
    impl BoxImpl for SbRoomsPage {}
}

glib::wrapper! {
    pub struct SbRoomsPage(ObjectSubclass<imp::SbRoomsPage>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbRoomsPage {
    pub fn bind(&self, session: &SbSession) {
        let imp = self.imp();
        imp.room_list
            .bind_model(Some(&session.stores().rooms), |item| {
                let item = item.downcast_ref::<SbRoomItem>();
                match item {
                    Some(i) => SbRoomRow::new(i).upcast(),
                    None => gtk::Label::new(None).upcast(),
                }
            });
        let s = session.clone();
        imp.room_list.connect_row_activated(move |_, row| {
            if let Some(r) = row.downcast_ref::<SbRoomRow>() {
                s.send(Command::Join(r.room_name()));
            }
        });
        let stack = imp.rooms_stack.clone();
        let show = move |s: &SbSession| {
            stack.set_visible_child_name(if s.rooms_empty() { "empty" } else { "list" })
        };
        show(session);
        session.connect_rooms_empty_notify(show);

        let kinds: Vec<String> = KINDS.iter().map(|k| kind_words(k)).collect();
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        imp.new_room_kind
            .set_model(Some(&gtk::StringList::new(&kinds)));

        let s = session.clone();
        imp.refresh_button
            .connect_clicked(move |_| s.send(Command::ListRooms));
        let s = session.clone();
        imp.disconnect_button
            .connect_clicked(move |_| s.send(Command::Disconnect));
        let s = session.clone();
        let page = self.downgrade();
        imp.create_room_button.connect_clicked(move |_| {
            let Some(page) = page.upgrade() else { return };
            let imp = page.imp();
            let name = imp.new_room_entry.text().trim().to_owned();
            let kind = KINDS
                .get(imp.new_room_kind.selected() as usize)
                .copied()
                .unwrap_or("ptt");
            match parse_options(&imp.new_room_options.text()) {
                Ok(options) if !name.is_empty() => {
                    tracing::info!(name, kind, ?options, "ui: create room");
                    s.send(Command::CreateRoom {
                        name,
                        kind: kind.into(),
                        options,
                    })
                }
                Ok(_) => s.notify_user(&tr("Name the room")),
                Err(e) => s.notify_user(&e),
            }
        });
        let s = session.clone();
        let page = self.downgrade();
        imp.join_code_button.connect_clicked(move |_| {
            let Some(page) = page.upgrade() else { return };
            let code = page.imp().code_entry.text().trim().to_owned();
            if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
                s.send(Command::JoinMeeting(code));
            } else {
                s.notify_user(&tr("A meeting code is 6 digits"));
            }
        });
        let b = imp.join_code_button.clone();
        imp.code_entry
            .connect_entry_activated(move |_| b.emit_clicked());
        let b = imp.create_room_button.clone();
        imp.new_room_entry
            .connect_entry_activated(move |_| b.emit_clicked());
        let s = session.clone();
        imp.new_meeting_button.connect_clicked(move |_| {
            s.send(Command::CreateMeeting {
                end_with_host: false,
            })
        });
    }
}

/// `key=value` pairs, space separated; numbers and booleans as such.
pub fn parse_options(
    text: &str,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, String> {
    text.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| tr("options are key=value, not `{text}`").replace("{text}", kv))?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(v));
            Ok((k.to_owned(), value))
        })
        .collect()
}
