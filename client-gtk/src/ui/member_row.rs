//! One member of the room (`SbMemberRow`): an avatar with their initials
//! and a ring while they talk (the floor, or the level heard from them),
//! what they have on, and a volume and local mute for them alone. Bound
//! to its `SbMemberItem`, it lives as long as the member is in the room.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::i18n::tr;
use crate::state::SbSession;
use crate::state::items::SbMemberItem;

/// A level above this counts as talking, for the ring.
const TALKING_LEVEL: f64 = 0.12;

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "member_row.ui")]
    pub struct SbMemberRow {
        #[template_child]
        pub avatar: TemplateChild<adw::Avatar>,
        #[template_child]
        pub mic_off_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub camera_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub volume_button: TemplateChild<gtk::MenuButton>,
        #[template_child]
        pub volume_scale: TemplateChild<gtk::Scale>,
        #[template_child]
        pub silence_check: TemplateChild<gtk::CheckButton>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbMemberRow {
        const NAME: &'static str = "SbMemberRow";
        type Type = super::SbMemberRow;
        type ParentType = adw::ActionRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbMemberRow {}
    impl WidgetImpl for SbMemberRow {}
    impl ListBoxRowImpl for SbMemberRow {}
    impl PreferencesRowImpl for SbMemberRow {}
    impl ActionRowImpl for SbMemberRow {}
}

glib::wrapper! {
    pub struct SbMemberRow(ObjectSubclass<imp::SbMemberRow>)
        @extends adw::ActionRow, adw::PreferencesRow, gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Accessible, gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl SbMemberRow {
    pub fn new(item: &SbMemberItem, session: &SbSession) -> Self {
        let row: Self = glib::Object::new();
        let imp = row.imp();
        row.set_activatable(false);
        row.set_widget_name(&format!("member-{}", item.nickname()));
        item.bind_property("nickname", &row, "title")
            .sync_create()
            .build();
        item.bind_property("subtitle", &row, "subtitle")
            .sync_create()
            .build();
        item.bind_property("nickname", &*imp.avatar, "text")
            .sync_create()
            .build();
        item.bind_property("video", &*imp.camera_icon, "visible")
            .sync_create()
            .build();
        item.bind_property("audio", &*imp.mic_off_icon, "visible")
            .sync_create()
            .invert_boolean()
            .build();
        item.bind_property("me", &*imp.volume_button, "visible")
            .sync_create()
            .invert_boolean()
            .build();
        item.bind_property("volume", &imp.volume_scale.adjustment(), "value")
            .sync_create()
            .bidirectional()
            .build();
        item.bind_property("silenced", &*imp.silence_check, "active")
            .sync_create()
            .bidirectional()
            .build();
        imp.volume_button
            .update_property(&[gtk::accessible::Property::Label(
                &tr("Volume for {name}").replace("{name}", &item.nickname()),
            )]);
        let avatar = imp.avatar.clone();
        let ring = move |i: &SbMemberItem| {
            if i.talking() || i.level() > TALKING_LEVEL {
                avatar.add_css_class("sb-talking");
            } else {
                avatar.remove_css_class("sb-talking");
            }
        };
        ring(item);
        let r = ring.clone();
        item.connect_talking_notify(move |i| r(i));
        item.connect_level_notify(move |i| ring(i));
        // What is chosen here is played here: the session tells media.
        let s = session.clone();
        item.connect_volume_notify(move |i| s.member_volume_changed(i));
        let s = session.clone();
        item.connect_silenced_notify(move |i| {
            tracing::info!(nickname = %i.nickname(), silenced = i.silenced(), "ui: member silenced");
            s.member_volume_changed(i)
        });
        row
    }
}
