//! The connect page (`SbConnectPage`): the server and nickname, Connect,
//! and a microphone test (the level, and the microphone played back).

use adw::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::backend::Command;
use crate::i18n::tr;
use crate::state::SbSession;

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "connect_page.ui")]
    pub struct SbConnectPage {
        #[template_child]
        pub server_entry: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub nick_entry: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub connect_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub connect_error: TemplateChild<gtk::Label>,
        #[template_child]
        pub mic_test: TemplateChild<gtk::Switch>,
        #[template_child]
        pub mic_level: TemplateChild<gtk::LevelBar>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbConnectPage {
        const NAME: &'static str = "SbConnectPage";
        type Type = super::SbConnectPage;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbConnectPage {}
    impl WidgetImpl for SbConnectPage {}
    impl BoxImpl for SbConnectPage {}
}

glib::wrapper! {
    pub struct SbConnectPage(ObjectSubclass<imp::SbConnectPage>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbConnectPage {
    /// Wires the page to the session; `connect` is asked with the server
    /// and nickname typed.
    pub fn bind(
        &self,
        session: &SbSession,
        server: &str,
        nickname: &str,
        connect: impl Fn(String, String) + Clone + 'static,
    ) {
        let imp = self.imp();
        imp.server_entry.set_text(server);
        imp.nick_entry.set_text(nickname);
        let go = {
            let page = self.downgrade();
            move || {
                let Some(page) = page.upgrade() else { return };
                let imp = page.imp();
                let server = imp.server_entry.text().trim().to_owned();
                let nickname = imp.nick_entry.text().trim().to_owned();
                if nickname.is_empty() {
                    page.show_error(&tr("Choose a nickname"));
                    return;
                }
                page.show_error("");
                connect(server, nickname);
            }
        };
        let g = go.clone();
        imp.connect_button.connect_clicked(move |_| g());
        let g = go.clone();
        imp.nick_entry.connect_entry_activated(move |_| g());
        imp.server_entry.connect_entry_activated(move |_| go());
        let s = session.clone();
        imp.mic_test
            .connect_active_notify(move |sw| s.send(Command::TestMicrophone(sw.is_active())));
        let level = imp.mic_level.clone();
        session.connect_mic_level_notify(move |s| level.set_value(s.mic_level()));
        let page = self.downgrade();
        session.connect_page_notify(move |s| {
            // Leaving the page ends the test.
            if let Some(page) = page.upgrade()
                && s.page() != "connect"
            {
                page.imp().mic_test.set_active(false);
            }
        });
    }

    pub fn show_error(&self, text: &str) {
        let label = &self.imp().connect_error;
        label.set_text(text);
        label.set_visible(!text.is_empty());
    }

    pub fn focus_nickname(&self) {
        self.imp().nick_entry.grab_focus();
    }
}
