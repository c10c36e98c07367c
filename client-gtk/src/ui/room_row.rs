//! One room of the router's list (`SbRoomRow`): its name, kind and how
//! many are inside, bound to its `SbRoomItem`.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::state::items::SbRoomItem;

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "room_row.ui")]
    pub struct SbRoomRow {
        #[template_child]
        pub kind_icon: TemplateChild<gtk::Image>,
        pub item: std::cell::RefCell<Option<SbRoomItem>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbRoomRow {
        const NAME: &'static str = "SbRoomRow";
        type Type = super::SbRoomRow;
        type ParentType = adw::ActionRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbRoomRow {}
    impl WidgetImpl for SbRoomRow {}
    impl ListBoxRowImpl for SbRoomRow {}
    impl PreferencesRowImpl for SbRoomRow {}
    impl ActionRowImpl for SbRoomRow {}
}

glib::wrapper! {
    pub struct SbRoomRow(ObjectSubclass<imp::SbRoomRow>)
        @extends adw::ActionRow, adw::PreferencesRow, gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Accessible, gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl SbRoomRow {
    pub fn new(item: &SbRoomItem) -> Self {
        let row: Self = glib::Object::new();
        item.bind_property("name", &row, "title")
            .sync_create()
            .build();
        item.bind_property("subtitle", &row, "subtitle")
            .sync_create()
            .build();
        // Found by name in tests and by assistive technologies.
        row.set_widget_name(&item.name());
        let icon = row.imp().kind_icon.clone();
        let set_icon = move |i: &SbRoomItem| {
            icon.set_icon_name(Some(match i.kind().as_str() {
                "meeting" => "camera-video-symbolic",
                "chat" => "user-available-symbolic",
                "voice" => "call-start-symbolic",
                _ => "audio-input-microphone-symbolic",
            }))
        };
        set_icon(item);
        item.connect_kind_notify(set_icon);
        row.imp().item.replace(Some(item.clone()));
        row
    }

    pub fn room_name(&self) -> String {
        self.imp()
            .item
            .borrow()
            .as_ref()
            .map(|i| i.name())
            .unwrap_or_default()
    }
}
