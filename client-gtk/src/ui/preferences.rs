//! Preferences (`SbPreferencesWindow`): server and identity, appearance,
//! devices and codecs, the push-to-talk key (and whether it works from
//! other windows), and the talk tones. Every change is saved at once and
//! handed to `on_change`.

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{CompositeTemplate, gdk, glib};

use super::devices::{Choice, Choices};
use crate::i18n::tr;
use crate::model::settings::Settings;

mod imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "preferences.ui")]
    pub struct SbPreferencesWindow {
        #[template_child]
        pub server_row: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub nickname_row: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub style_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub mic_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub speaker_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub camera_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub audio_codec_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub video_codec_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub talk_key_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub talk_key_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub global_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub tones_switch: TemplateChild<gtk::Switch>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbPreferencesWindow {
        const NAME: &'static str = "SbPreferencesWindow";
        type Type = super::SbPreferencesWindow;
        type ParentType = adw::PreferencesWindow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbPreferencesWindow {}
    impl WidgetImpl for SbPreferencesWindow {}
    impl WindowImpl for SbPreferencesWindow {}
    impl AdwWindowImpl for SbPreferencesWindow {}
    impl PreferencesWindowImpl for SbPreferencesWindow {}
}

glib::wrapper! {
    pub struct SbPreferencesWindow(ObjectSubclass<imp::SbPreferencesWindow>)
        @extends adw::PreferencesWindow, adw::Window, gtk::Window, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Native,
            gtk::Root, gtk::ShortcutManager;
}

/// The styles of the appearance menu, in its order.
const STYLES: [&str; 3] = ["system", "light", "dark"];

/// A key's name as people read it ("Space", "F12").
pub fn key_label(name: &str) -> String {
    match gdk::Key::from_name(name) {
        Some(k) => gtk::accelerator_get_label(k, gdk::ModifierType::empty()).to_string(),
        None => name.to_owned(),
    }
}

impl SbPreferencesWindow {
    pub fn new(
        parent: &impl IsA<gtk::Window>,
        settings: Settings,
        choices: &Choices,
        global_shortcut: &str,
        on_change: impl Fn(&Settings) + 'static,
    ) -> Self {
        let win: Self = glib::Object::builder()
            .property("transient-for", parent)
            .build();
        let imp = win.imp();
        let settings = Rc::new(RefCell::new(settings));
        let on_change = Rc::new(on_change);
        let changed = {
            let (settings, on_change) = (settings.clone(), on_change.clone());
            move |f: &dyn Fn(&mut Settings)| {
                let snapshot = {
                    let mut s = settings.borrow_mut();
                    f(&mut s);
                    s.clone()
                };
                on_change(&snapshot);
            }
        };
        let s = settings.borrow().clone();
        imp.server_row.set_text(&s.server);
        imp.nickname_row.set_text(&s.nickname);
        let c = changed.clone();
        imp.server_row
            .connect_changed(move |r| c(&|s| s.server = r.text().trim().to_owned()));
        let c = changed.clone();
        imp.nickname_row
            .connect_changed(move |r| c(&|s| s.nickname = r.text().trim().to_owned()));
        imp.style_row
            .set_selected(STYLES.iter().position(|x| *x == s.appearance).unwrap_or(0) as u32);
        let c = changed.clone();
        imp.style_row.connect_selected_notify(move |r| {
            let style = STYLES
                .get(r.selected() as usize)
                .copied()
                .unwrap_or("system");
            c(&|s| s.appearance = style.into())
        });
        type Field = fn(&mut Settings) -> &mut String;
        let menus: [(&adw::ComboRow, &[Choice], Field); 5] = [
            (&imp.mic_row, &choices.microphones, |s| &mut s.microphone),
            (&imp.speaker_row, &choices.speakers, |s| &mut s.speaker),
            (&imp.camera_row, &choices.cameras, |s| &mut s.camera),
            (&imp.audio_codec_row, &choices.audio_codecs, |s| {
                &mut s.audio_codec
            }),
            (&imp.video_codec_row, &choices.video_codecs, |s| {
                &mut s.video_codec
            }),
        ];
        for (row, list, field) in menus {
            let labels: Vec<&str> = list.iter().map(|c| c.label.as_str()).collect();
            row.set_model(Some(&gtk::StringList::new(&labels)));
            let current = field(&mut settings.borrow_mut()).clone();
            if let Some(i) = list.iter().position(|c| c.value == current) {
                row.set_selected(i as u32);
            }
            let (c, list) = (changed.clone(), list.to_vec());
            row.connect_selected_notify(move |r| {
                if let Some(choice) = list.get(r.selected() as usize) {
                    tracing::info!(menu = %r.title(), value = %choice.value, "ui: chosen");
                    c(&|s| *field(s) = choice.value.clone())
                }
            });
        }
        imp.tones_switch.set_active(s.tones);
        let c = changed.clone();
        imp.tones_switch
            .connect_active_notify(move |sw| c(&|s| s.tones = sw.is_active()));
        imp.global_row.set_subtitle(global_shortcut);
        imp.talk_key_row.set_subtitle(&key_label(&s.talk_key));
        let w = win.downgrade();
        imp.talk_key_button.connect_clicked(move |_| {
            if let Some(w) = w.upgrade() {
                w.capture_talk_key(changed.clone());
            }
        });
        win
    }

    /// Shows, as it changes, whether the talk key works from other windows.
    pub fn follow_global_shortcut(&self, session: &crate::state::SbSession) {
        session
            .bind_property("global-shortcut", &*self.imp().global_row, "subtitle")
            .sync_create()
            .build();
    }

    /// The next key pressed becomes the talk key (Escape keeps the old).
    fn capture_talk_key(&self, changed: impl Fn(&dyn Fn(&mut Settings)) + 'static) {
        let imp = self.imp();
        tracing::info!("ui: waiting for the new talk key");
        let old = imp.talk_key_row.subtitle().unwrap_or_default().to_string();
        imp.talk_key_row
            .set_subtitle(&tr("Press the new talk key…"));
        let keys = gtk::EventControllerKey::new();
        keys.set_propagation_phase(gtk::PropagationPhase::Capture);
        let w = self.downgrade();
        keys.connect_key_pressed(move |ctl, key, _, _| {
            let Some(w) = w.upgrade() else {
                return glib::Propagation::Proceed;
            };
            let row = &w.imp().talk_key_row;
            if key == gdk::Key::Escape {
                row.set_subtitle(&old);
            } else if let Some(name) = key.name() {
                let name = name.to_string();
                tracing::info!(key = %name, "ui: talk key");
                row.set_subtitle(&key_label(&name));
                changed(&|s| s.talk_key = name.clone());
            }
            w.remove_controller(ctl);
            glib::Propagation::Stop
        });
        self.add_controller(keys);
    }
}
