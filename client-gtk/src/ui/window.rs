//! The main window (`SbWindow`, an `AdwApplicationWindow` from
//! `window.ui`): a header bar whose subtitle is the link, toasts, and the
//! pages (connect, rooms, a guest's wait, the room), each a widget of its
//! own bound to the one `SbSession`. The window owns the settings, the
//! actions and their shortcuts, and the talk key.

use std::cell::{OnceCell, RefCell};

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{CompositeTemplate, gdk, gio, glib};

use super::connect_page::SbConnectPage;
use super::devices::Choices;
use super::preferences::{SbPreferencesWindow, key_label};
use super::room_page::SbRoomPage;
use super::rooms_page::SbRoomsPage;
use super::stats_window::SbStatsWindow;
use crate::backend::{Backend, Command, Event, MediaChoice};
use crate::i18n::tr;
use crate::model::settings::Settings;
use crate::state::{Pending, SbSession};

/// What the window starts with (from the command line).
#[derive(Debug, Clone, Default)]
pub struct Startup {
    pub settings: Settings,
    pub connect: bool,
    pub pending: Pending,
    pub open_stats: bool,
    /// Extra sources and sinks to offer (test media).
    pub extra_choices: bool,
}

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "window.ui")]
    pub struct SbWindow {
        #[template_child]
        pub window_title: TemplateChild<adw::WindowTitle>,
        #[template_child]
        pub security_button: TemplateChild<gtk::MenuButton>,
        #[template_child]
        pub security_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub security_fingerprint: TemplateChild<gtk::Label>,
        #[template_child]
        pub security_detail: TemplateChild<gtk::Label>,
        #[template_child]
        pub toasts: TemplateChild<adw::ToastOverlay>,
        #[template_child]
        pub pages: TemplateChild<gtk::Stack>,
        #[template_child]
        pub connect_page: TemplateChild<SbConnectPage>,
        #[template_child]
        pub rooms_page: TemplateChild<SbRoomsPage>,
        #[template_child]
        pub waiting_page: TemplateChild<adw::StatusPage>,
        #[template_child]
        pub cancel_wait_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub room_page: TemplateChild<SbRoomPage>,
        pub session: OnceCell<SbSession>,
        pub backend: OnceCell<Backend>,
        pub settings: RefCell<Settings>,
        pub choices: RefCell<Choices>,
        pub stats_window: RefCell<Option<SbStatsWindow>>,
        /// The talk key was registered with the desktop once.
        pub registered: std::cell::Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbWindow {
        const NAME: &'static str = "SbWindow";
        type Type = super::SbWindow;
        type ParentType = adw::ApplicationWindow;

        fn class_init(klass: &mut Self::Class) {
            SbConnectPage::ensure_type();
            SbRoomsPage::ensure_type();
            SbRoomPage::ensure_type();
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbWindow {}
    impl WidgetImpl for SbWindow {}
    impl WindowImpl for SbWindow {}
    impl ApplicationWindowImpl for SbWindow {}
    impl AdwApplicationWindowImpl for SbWindow {}
}

glib::wrapper! {
    pub struct SbWindow(ObjectSubclass<imp::SbWindow>)
        @extends adw::ApplicationWindow, gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Accessible, gtk::Buildable,
            gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

impl SbWindow {
    pub fn new(
        app: &adw::Application,
        backend: Backend,
        events: async_channel::Receiver<Event>,
        startup: Startup,
    ) -> Self {
        let win: Self = glib::Object::builder().property("application", app).build();
        let imp = win.imp();
        let b = backend.clone();
        let session = SbSession::new(move |cmd| b.send(cmd));
        session.set_pending(startup.pending.clone());
        let _ = imp.session.set(session.clone());
        let _ = imp.backend.set(backend);
        imp.settings.replace(startup.settings.clone());
        imp.choices
            .replace(Choices::discover(startup.extra_choices));
        super::style::install();
        win.apply_settings();

        let settings = startup.settings.clone();
        let w = win.downgrade();
        imp.connect_page.bind(
            &session,
            &settings.server,
            &settings.nickname,
            move |server, nickname| {
                if let Some(w) = w.upgrade() {
                    w.connect(server, nickname);
                }
            },
        );
        imp.rooms_page.bind(&session);
        imp.room_page.bind(&session);
        let s = session.clone();
        imp.cancel_wait_button
            .connect_clicked(move |_| s.send(Command::Leave));
        session
            .bind_property("waiting-text", &*imp.waiting_page, "description")
            .sync_create()
            .build();
        session
            .bind_property("link-text", &*imp.window_title, "subtitle")
            .sync_create()
            .build();
        let page = imp.connect_page.clone();
        session.connect_disconnect_reason_notify(move |s| page.show_error(&s.disconnect_reason()));
        // The lock: secure or not once connected, and what it means.
        session
            .bind_property("security-icon", &*imp.security_button, "icon-name")
            .sync_create()
            .build();
        session
            .bind_property("security-icon", &*imp.security_button, "visible")
            .transform_to(|_, icon: String| Some(!icon.is_empty()))
            .sync_create()
            .build();
        for (property, label) in [
            ("security-title", &*imp.security_title),
            ("security-fingerprint", &*imp.security_fingerprint),
            ("security-detail", &*imp.security_detail),
        ] {
            session
                .bind_property(property, label, "label")
                .sync_create()
                .build();
        }
        session
            .bind_property(
                "security-fingerprint",
                &*imp.security_fingerprint,
                "visible",
            )
            .transform_to(|_, fp: String| Some(!fp.is_empty()))
            .sync_create()
            .build();
        let pages = imp.pages.clone();
        let connect_page = imp.connect_page.clone();
        session.connect_page_notify(move |s| {
            pages.set_visible_child_name(&s.page());
            if s.page() == "connect" {
                connect_page.focus_nickname();
            }
        });
        imp.pages.set_visible_child_name("connect");
        imp.connect_page.focus_nickname();
        let toasts = imp.toasts.clone();
        session.connect_toast(move |_, text| {
            toasts.add_toast(adw::Toast::new(&glib::markup_escape_text(&text)));
        });
        let w = win.downgrade();
        session.connect_stats(move |s| {
            if let Some(w) = w.upgrade()
                && let Some(stats) = &*w.imp().stats_window.borrow()
                && stats.is_visible()
            {
                stats.update(&s.inner().stats);
            }
        });
        win.setup_actions(app);
        win.setup_talk_key();
        win.set_help_overlay(Some(&super::shortcuts_window()));

        // Backend events, on the GTK thread.
        let s = session.clone();
        glib::spawn_future_local(async move {
            while let Ok(ev) = events.recv().await {
                s.apply(ev);
            }
        });
        let s = session.downgrade();
        super::stall::every_100ms(move || {
            let Some(s) = s.upgrade() else { return false };
            s.tick();
            true
        });
        if startup.connect {
            win.connect(settings.server.clone(), settings.nickname.clone());
        }
        if startup.open_stats {
            win.open_stats();
        }
        win
    }

    pub fn session(&self) -> &SbSession {
        self.imp()
            .session
            .get()
            .unwrap_or_else(|| unreachable!("set in new()"))
    }

    fn connect(&self, server: String, nickname: String) {
        let settings = {
            let mut s = self.imp().settings.borrow_mut();
            s.server = server;
            s.nickname = nickname;
            s.clone()
        };
        if let Err(e) = settings.server_addr() {
            self.imp().connect_page.show_error(&e);
            return;
        }
        if let Err(e) = settings.save() {
            tracing::warn!(error = %e, "saving settings");
        }
        self.session().send(Command::Connect(settings));
    }

    /// After the settings changed: media choices to the backend, the talk
    /// key, the style.
    fn apply_settings(&self) {
        let s = self.imp().settings.borrow().clone();
        self.session()
            .send(Command::Media(MediaChoice::from_settings(&s)));
        let label = key_label(&s.talk_key);
        if label != self.session().talk_key_label() || !self.imp().registered.get() {
            self.imp().registered.set(true);
            self.session().set_talk_key_label(label);
            self.session()
                .send(Command::RegisterTalkKey(s.talk_key.clone()));
        }
        adw::StyleManager::default().set_color_scheme(match s.appearance.as_str() {
            "light" => adw::ColorScheme::ForceLight,
            "dark" => adw::ColorScheme::ForceDark,
            _ => adw::ColorScheme::Default,
        });
    }

    fn setup_actions(&self, app: &adw::Application) {
        let entry = |name: &str, f: fn(&Self)| {
            gio::ActionEntry::builder(name)
                .activate(move |w: &Self, _, _| f(w))
                .build()
        };
        self.add_action_entries([
            entry("preferences", Self::open_preferences),
            entry("stats", Self::open_stats),
            entry("send-file", Self::choose_file),
            entry("leave", Self::leave),
            entry("toggle-mic", |w| w.imp().room_page.toggle_mic()),
            entry("toggle-camera", |w| w.imp().room_page.toggle_camera()),
            entry("about", Self::about),
        ]);
        for (action, keys) in [
            ("win.preferences", "<Ctrl>comma"),
            ("win.stats", "<Ctrl>i"),
            ("win.send-file", "<Ctrl>o"),
            ("win.toggle-mic", "<Ctrl>m"),
            ("win.toggle-camera", "<Ctrl>k"),
            ("window.close", "<Ctrl>q"),
        ] {
            app.set_accels_for_action(action, &[keys]);
        }
        // Room actions only in a room; files only in meetings.
        let w = self.downgrade();
        let enable = move |s: &SbSession| {
            let Some(w) = w.upgrade() else { return };
            let in_room = s.page() == "room";
            for (name, on) in [
                ("leave", in_room),
                ("toggle-mic", in_room),
                ("toggle-camera", in_room),
                ("send-file", in_room && s.is_meeting()),
            ] {
                if let Some(a) = w.lookup_action(name).and_downcast::<gio::SimpleAction>() {
                    a.set_enabled(on);
                }
            }
        };
        enable(self.session());
        let e = enable.clone();
        self.session().connect_page_notify(move |s| e(s));
        self.session().connect_is_meeting_notify(move |s| enable(s));
    }

    /// The talk key works anywhere in the window but in a text field.
    fn setup_talk_key(&self) {
        let keys = gtk::EventControllerKey::new();
        keys.set_propagation_phase(gtk::PropagationPhase::Capture);
        let w = self.downgrade();
        keys.connect_key_pressed(move |_, key, _, _| match w.upgrade() {
            Some(w) if w.talk_key(key, true) => glib::Propagation::Stop,
            _ => glib::Propagation::Proceed,
        });
        let w = self.downgrade();
        keys.connect_key_released(move |_, key, _, _| {
            if let Some(w) = w.upgrade() {
                w.talk_key(key, false);
            }
        });
        self.add_controller(keys);
    }

    fn talk_key(&self, key: gdk::Key, down: bool) -> bool {
        let s = self.session();
        let wanted = gdk::Key::from_name(&self.imp().settings.borrow().talk_key);
        if s.page() != "room"
            || !s.has_floor()
            || Some(key.to_lower()) != wanted.map(|k| k.to_lower())
        {
            return false;
        }
        let typing = gtk::prelude::GtkWindowExt::focus(self)
            .is_some_and(|f| f.is::<gtk::Text>() || f.is::<gtk::Entry>());
        if typing && key == gdk::Key::space {
            return false;
        }
        s.send(Command::Talk(down));
        true
    }

    fn open_preferences(&self) {
        let settings = self.imp().settings.borrow().clone();
        let w = self.downgrade();
        let prefs = SbPreferencesWindow::new(
            self,
            settings,
            &self.imp().choices.borrow(),
            &self.session().global_shortcut(),
            move |s| {
                let Some(w) = w.upgrade() else { return };
                w.imp().settings.replace(s.clone());
                if let Err(e) = s.save() {
                    tracing::warn!(error = %e, "saving settings");
                }
                w.apply_settings();
            },
        );
        prefs.follow_global_shortcut(self.session());
        prefs.present();
    }

    fn open_stats(&self) {
        let win = self
            .imp()
            .stats_window
            .borrow_mut()
            .get_or_insert_with(|| {
                let w = SbStatsWindow::new();
                w.set_transient_for(Some(self));
                w.set_hide_on_close(true);
                w
            })
            .clone();
        win.present();
        win.update(&self.session().inner().stats);
    }

    fn choose_file(&self) {
        let dialog = gtk::FileChooserNative::new(
            Some(&tr("Send a file")),
            Some(self),
            gtk::FileChooserAction::Open,
            Some(&tr("_Send")),
            Some(&tr("_Cancel")),
        );
        let w = self.downgrade();
        dialog.connect_response(move |d, resp| {
            if resp == gtk::ResponseType::Accept
                && let Some(path) = d.file().and_then(|f| f.path())
                && let Some(w) = w.upgrade()
            {
                let to = w.imp().room_page.recipient(w.session());
                tracing::info!(path = %path.display(), ?to, "ui: send file");
                w.session().send(Command::SendFile { path, to });
            }
        });
        dialog.show();
        // Kept alive by GTK until it answers.
        std::mem::forget(dialog);
    }

    /// Leaving a meeting is confirmed; other rooms are left at once.
    fn leave(&self) {
        if !self.session().is_meeting() {
            self.session().send(Command::Leave);
            return;
        }
        let dialog = adw::MessageDialog::new(
            Some(self),
            Some(&tr("Leave the Meeting?")),
            Some(&tr("You can come back with its code while it lasts.")),
        );
        dialog.add_response("cancel", &tr("_Stay"));
        dialog.add_response("leave", &tr("_Leave"));
        dialog.set_response_appearance("leave", adw::ResponseAppearance::Destructive);
        dialog.set_default_response(Some("cancel"));
        let s = self.session().clone();
        dialog.connect_response(None, move |_, r| {
            if r == "leave" {
                s.send(Command::Leave);
            }
        });
        dialog.present();
    }

    fn about(&self) {
        let about = adw::AboutWindow::builder()
            .transient_for(self)
            .application_name("Switchboard")
            .application_icon(super::APP_ID)
            .developer_name(tr("The Switchboard developers"))
            .version(env!("CARGO_PKG_VERSION"))
            .comments(tr(
                "Push-to-talk, calls, chat and meetings through your own router",
            ))
            .license_type(gtk::License::MitX11)
            .build();
        about.present();
    }
}
