//! The room page (`SbRoomPage`): who is in (one `SbMemberRow` each), the
//! lobby, the status line and the talk button, the meeting grid, files and
//! chat, all bound to the session.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use super::chat::SbChatPanel;
use super::files::SbFilesPanel;
use super::lobby::SbLobbyPanel;
use super::meeting_grid::SbMeetingGrid;
use super::member_row::SbMemberRow;
use crate::backend::Command;
use crate::i18n::tr;
use crate::state::SbSession;
use crate::state::items::SbMemberItem;

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "room_page.ui")]
    pub struct SbRoomPage {
        #[template_child]
        pub room_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub member_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub lobby_panel: TemplateChild<SbLobbyPanel>,
        #[template_child]
        pub mic_toggle: TemplateChild<gtk::ToggleButton>,
        #[template_child]
        pub cam_toggle: TemplateChild<gtk::ToggleButton>,
        #[template_child]
        pub status_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub status_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub countdown_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub talk_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub grid: TemplateChild<SbMeetingGrid>,
        #[template_child]
        pub files: TemplateChild<SbFilesPanel>,
        #[template_child]
        pub chat: TemplateChild<SbChatPanel>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbRoomPage {
        const NAME: &'static str = "SbRoomPage";
        type Type = super::SbRoomPage;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            SbLobbyPanel::ensure_type();
            SbMeetingGrid::ensure_type();
            SbFilesPanel::ensure_type();
            SbChatPanel::ensure_type();
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbRoomPage {}
    impl WidgetImpl for SbRoomPage {}
    impl BoxImpl for SbRoomPage {}
}

glib::wrapper! {
    pub struct SbRoomPage(ObjectSubclass<imp::SbRoomPage>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl Default for SbRoomPage {
    fn default() -> Self {
        Self::new()
    }
}

impl SbRoomPage {
    pub fn new() -> Self {
        glib::Object::new()
    }

    pub fn bind(&self, session: &SbSession) {
        let imp = self.imp();
        let s = session.clone();
        imp.member_list
            .bind_model(Some(&session.stores().members), move |item| match item
                .downcast_ref::<SbMemberItem>()
            {
                Some(i) => SbMemberRow::new(i, &s).upcast(),
                None => gtk::Label::new(None).upcast(),
            });
        imp.lobby_panel.bind(session);
        imp.grid.bind(session);
        imp.files.bind(session);
        imp.chat.bind(session);
        for (prop, widget, target) in [
            (
                "room-title",
                imp.room_title.upcast_ref::<glib::Object>(),
                "label",
            ),
            ("status-text", imp.status_label.upcast_ref(), "label"),
            ("countdown-text", imp.countdown_label.upcast_ref(), "label"),
            ("has-floor", imp.talk_button.upcast_ref(), "visible"),
            ("is-meeting", imp.cam_toggle.upcast_ref(), "visible"),
        ] {
            session
                .bind_property(prop, widget, target)
                .sync_create()
                .build();
        }
        session
            .bind_property("has-floor", &*imp.mic_toggle, "visible")
            .invert_boolean()
            .sync_create()
            .build();
        session
            .bind_property("countdown-text", &*imp.countdown_label, "visible")
            .transform_to(|_, t: String| Some(!t.is_empty()))
            .sync_create()
            .build();
        let status = imp.status_box.clone();
        let tone = move |s: &SbSession| {
            for t in ["green", "red", "grey", "neutral"] {
                status.remove_css_class(&format!("sb-{t}"));
            }
            status.add_css_class(&format!("sb-{}", s.status_tone()));
        };
        tone(session);
        session.connect_status_tone_notify(tone);
        let talk = imp.talk_button.clone();
        let label = move |s: &SbSession| {
            talk.set_label(&tr("Hold to talk ({key})").replace("{key}", &s.talk_key_label()))
        };
        label(session);
        session.connect_talk_key_label_notify(label);

        // The talk button: pressed and released, not clicked.
        let press = gtk::GestureClick::new();
        press.set_propagation_phase(gtk::PropagationPhase::Capture);
        let s = session.clone();
        press.connect_pressed(move |_, _, _, _| s.send(Command::Talk(true)));
        let s = session.clone();
        press.connect_released(move |_, _, _, _| s.send(Command::Talk(false)));
        let s = session.clone();
        press.connect_cancel(move |_, _| s.send(Command::Talk(false)));
        imp.talk_button.add_controller(press);
        let s = session.clone();
        imp.mic_toggle
            .connect_toggled(move |b| s.send(Command::Microphone(b.is_active())));
        let s = session.clone();
        imp.cam_toggle
            .connect_toggled(move |b| s.send(Command::Camera(b.is_active())));
    }

    pub fn toggle_mic(&self) {
        let t = &self.imp().mic_toggle;
        if t.is_visible() {
            t.set_active(!t.is_active());
        }
    }

    pub fn toggle_camera(&self) {
        let t = &self.imp().cam_toggle;
        if t.is_visible() {
            t.set_active(!t.is_active());
        }
    }

    /// Whom a file goes to: the person chosen for chat, or everyone.
    pub fn recipient(&self, session: &SbSession) -> Option<String> {
        self.imp().chat.recipient(session)
    }
}
