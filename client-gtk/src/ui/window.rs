//! The main window (`SbWindow`, from `window.ui`): pages for connecting,
//! the room list, a guest's wait and the room. It renders the view-models
//! and turns input into backend commands; it owns no network or media
//! state of its own.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, gio, glib};

use client_gtk::backend::{Backend, Command, Event, MediaChoice};
use client_gtk::model::room::{RoomModel, Tone, TransferState};
use client_gtk::model::session::{Link, SessionModel};
use client_gtk::model::settings::Settings;
use client_gtk::model::stats::StatsModel;
use proto::control::ServerMessage;

use super::devices::{self, Choice};
use super::stats_window::SbStatsWindow;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "window.ui")]
    pub struct SbWindow {
        #[template_child]
        pub link_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub stats_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub mic_choice: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub speaker_choice: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub camera_choice: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub audio_codec: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub video_codec: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub tones_check: TemplateChild<gtk::CheckButton>,
        #[template_child]
        pub pages: TemplateChild<gtk::Stack>,
        #[template_child]
        pub server_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub nick_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub connect_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub connect_error: TemplateChild<gtk::Label>,
        #[template_child]
        pub refresh_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub disconnect_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub room_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub new_room_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub new_room_kind: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub new_room_options: TemplateChild<gtk::Entry>,
        #[template_child]
        pub create_room_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub code_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub join_code_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub new_meeting_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub rooms_error: TemplateChild<gtk::Label>,
        #[template_child]
        pub waiting_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub cancel_wait_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub room_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub user_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub lobby_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub lobby_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub mic_toggle: TemplateChild<gtk::ToggleButton>,
        #[template_child]
        pub cam_toggle: TemplateChild<gtk::ToggleButton>,
        #[template_child]
        pub leave_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub status_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub status_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub countdown_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub talk_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub notice_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub video_scroller: TemplateChild<gtk::ScrolledWindow>,
        #[template_child]
        pub video_grid: TemplateChild<gtk::FlowBox>,
        #[template_child]
        pub files_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub send_file_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub file_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub chat_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub chat_scroller: TemplateChild<gtk::ScrolledWindow>,
        #[template_child]
        pub chat_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub chat_to: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub chat_entry: TemplateChild<gtk::Entry>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbWindow {
        const NAME: &'static str = "SbWindow";
        type Type = super::SbWindow;
        type ParentType = gtk::ApplicationWindow;

        fn class_init(klass: &mut Self::Class) {
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
}

glib::wrapper! {
    pub struct SbWindow(ObjectSubclass<imp::SbWindow>)
        @extends gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Accessible, gtk::Buildable,
            gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

/// A main-loop tick later than this, beyond what the machine itself made
/// every thread wait meanwhile, is reported as a stall.
const STALL: Duration = Duration::from_millis(400);

/// The longest a thread of this process waited past its wake-up time
/// since the main loop last looked, in µs: a probe thread sleeps 20 ms
/// again and again and records how late it woke. On a machine busy with
/// other work every thread wakes late, the main loop included; a main loop
/// late by much more than the probe was blocked by the window itself.
static SCHEDULING_DELAY_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn start_scheduling_probe() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("sched-probe".into())
            .spawn(|| {
                let nap = Duration::from_millis(20);
                loop {
                    let t = Instant::now();
                    std::thread::sleep(nap);
                    let late = t.elapsed().saturating_sub(nap).as_micros() as u64;
                    SCHEDULING_DELAY_US.fetch_max(late, std::sync::atomic::Ordering::Relaxed);
                }
            });
    });
}

/// What the window starts with (from the command line).
#[derive(Debug, Clone, Default)]
pub struct Startup {
    pub settings: Settings,
    pub connect: bool,
    pub join: Option<String>,
    pub meeting_code: Option<String>,
    pub create_meeting: bool,
    pub open_stats: bool,
    /// Extra sources and sinks to offer (test media).
    pub extra_choices: bool,
}

/// The window's state: models and the widgets made for them.
struct State {
    backend: Backend,
    settings: Settings,
    session: SessionModel,
    room: Option<RoomModel>,
    stats: StatsModel,
    stats_window: Option<SbStatsWindow>,
    started: Instant,
    tiles: BTreeMap<u32, gtk::Box>,
    preview: Option<gtk::Box>,
    choices: devices::Choices,
    pending: Startup,
    last_status: String,
    chat_shown: usize,
}

type Shared = Rc<RefCell<State>>;

impl SbWindow {
    pub fn new(
        app: &gtk::Application,
        backend: Backend,
        events: async_channel::Receiver<Event>,
        startup: Startup,
    ) -> Self {
        let win: Self = glib::Object::builder().property("application", app).build();
        let choices = devices::Choices::discover(startup.extra_choices);
        let state = Rc::new(RefCell::new(State {
            backend,
            settings: startup.settings.clone(),
            session: SessionModel::default(),
            room: None,
            stats: StatsModel::default(),
            stats_window: None,
            started: Instant::now(),
            tiles: BTreeMap::new(),
            preview: None,
            choices,
            pending: startup.clone(),
            last_status: String::new(),
            chat_shown: 0,
        }));
        win.install_css();
        win.setup_settings(&state);
        win.setup_connect(&state);
        win.setup_rooms(&state);
        win.setup_room(&state);
        win.setup_keys(&state);
        let imp = win.imp();
        imp.server_entry.set_text(&startup.settings.server);
        imp.nick_entry.set_text(&startup.settings.nickname);
        imp.pages.set_visible_child_name("connect");
        imp.nick_entry.grab_focus();

        // Backend events, on the GTK thread.
        let w = win.downgrade();
        let st = state.clone();
        glib::spawn_future_local(async move {
            while let Ok(ev) = events.recv().await {
                let Some(win) = w.upgrade() else { break };
                win.on_event(&st, ev);
            }
        });
        // The burst countdown, ten times a second; a tick that comes late
        // means the main loop was blocked, which must never happen: it is
        // logged (and the GUI tests fail on it).
        let w = win.downgrade();
        let st = state.clone();
        let last = std::cell::Cell::new(Instant::now());
        start_scheduling_probe();
        glib::timeout_add_local(Duration::from_millis(100), move || {
            let Some(win) = w.upgrade() else {
                return glib::ControlFlow::Break;
            };
            let gap = last.replace(Instant::now()).elapsed();
            let machine = Duration::from_micros(
                SCHEDULING_DELAY_US.swap(0, std::sync::atomic::Ordering::Relaxed),
            );
            if gap.saturating_sub(machine) > STALL {
                tracing::warn!(
                    ms = gap.as_millis() as u64,
                    machine_ms = machine.as_millis() as u64,
                    "ui: stall"
                );
            } else if gap > STALL {
                tracing::info!(
                    ms = gap.as_millis() as u64,
                    machine_ms = machine.as_millis() as u64,
                    "ui: late tick on a busy machine (not a stall)"
                );
            }
            win.render_status(&st);
            glib::ControlFlow::Continue
        });
        if startup.connect {
            win.connect(&state);
        }
        if startup.open_stats {
            win.open_stats(&state);
        }
        win
    }

    fn install_css(&self) {
        let css = gtk::CssProvider::new();
        css.load_from_data(
            ".sb-status { padding: 18px; border-radius: 12px; }
             .sb-green { background: #2e7d32; color: white; }
             .sb-red { background: #c62828; color: white; }
             .sb-grey { background: #757575; color: white; }
             .sb-neutral { background: alpha(currentColor, 0.08); }
             .sb-talk { font-size: 20px; font-weight: bold; }
             .sb-tile { background: black; border-radius: 8px; }
             .sb-tile-name { color: white; background: alpha(black, 0.5); padding: 2px 6px; }",
        );
        if let Some(display) = gdk::Display::default() {
            gtk::style_context_add_provider_for_display(
                &display,
                &css,
                gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
            );
        }
    }

    fn send(state: &Shared, cmd: Command) {
        state.borrow().backend.send(cmd);
    }

    fn setup_settings(&self, state: &Shared) {
        let imp = self.imp();
        let st = state.borrow();
        let s = &st.settings;
        let c = &st.choices;
        fill(&imp.mic_choice, &c.microphones, &s.microphone);
        fill(&imp.speaker_choice, &c.speakers, &s.speaker);
        fill(&imp.camera_choice, &c.cameras, &s.camera);
        fill(&imp.audio_codec, &c.audio_codecs, &s.audio_codec);
        fill(&imp.video_codec, &c.video_codecs, &s.video_codec);
        imp.tones_check.set_active(s.tones);
        drop(st);
        for dd in [
            &*imp.mic_choice,
            &*imp.speaker_choice,
            &*imp.camera_choice,
            &*imp.audio_codec,
            &*imp.video_codec,
        ] {
            let w = self.downgrade();
            let st = state.clone();
            dd.connect_selected_notify(move |_| {
                if let Some(w) = w.upgrade() {
                    w.settings_changed(&st);
                }
            });
        }
        let w = self.downgrade();
        let st = state.clone();
        imp.tones_check.connect_toggled(move |_| {
            if let Some(w) = w.upgrade() {
                w.settings_changed(&st);
            }
        });
        Self::send(
            state,
            Command::Media(MediaChoice::from_settings(&state.borrow().settings)),
        );
    }

    fn settings_changed(&self, state: &Shared) {
        let imp = self.imp();
        let mut st = state.borrow_mut();
        let pick = |dd: &gtk::DropDown, list: &[Choice]| {
            list.get(dd.selected() as usize).map(|c| c.value.clone())
        };
        if let Some(v) = pick(&imp.mic_choice, &st.choices.microphones) {
            st.settings.microphone = v;
        }
        if let Some(v) = pick(&imp.speaker_choice, &st.choices.speakers) {
            st.settings.speaker = v;
        }
        if let Some(v) = pick(&imp.camera_choice, &st.choices.cameras) {
            st.settings.camera = v;
        }
        if let Some(v) = pick(&imp.audio_codec, &st.choices.audio_codecs) {
            st.settings.audio_codec = v;
        }
        if let Some(v) = pick(&imp.video_codec, &st.choices.video_codecs) {
            st.settings.video_codec = v;
        }
        st.settings.tones = imp.tones_check.is_active();
        if let Err(e) = st.settings.save() {
            tracing::warn!(error = %e, "saving settings");
        }
        st.backend
            .send(Command::Media(MediaChoice::from_settings(&st.settings)));
    }

    fn setup_connect(&self, state: &Shared) {
        let imp = self.imp();
        let w = self.downgrade();
        let st = state.clone();
        imp.connect_button.connect_clicked(move |_| {
            if let Some(w) = w.upgrade() {
                w.connect(&st);
            }
        });
        let b = imp.connect_button.clone();
        imp.nick_entry.connect_activate(move |_| b.emit_clicked());
        let b = imp.connect_button.clone();
        imp.server_entry.connect_activate(move |_| b.emit_clicked());
    }

    fn connect(&self, state: &Shared) {
        let imp = self.imp();
        let server = imp.server_entry.text().trim().to_owned();
        let nickname = imp.nick_entry.text().trim().to_owned();
        if nickname.is_empty() {
            imp.connect_error.set_text("Choose a nickname");
            return;
        }
        let mut st = state.borrow_mut();
        st.settings.server = server;
        st.settings.nickname = nickname;
        if let Err(e) = st.settings.server_addr() {
            imp.connect_error.set_text(&e);
            return;
        }
        if let Err(e) = st.settings.save() {
            tracing::warn!(error = %e, "saving settings");
        }
        imp.connect_error.set_text("");
        st.backend.send(Command::Connect(st.settings.clone()));
    }

    fn setup_rooms(&self, state: &Shared) {
        let imp = self.imp();
        let st = state.clone();
        imp.refresh_button
            .connect_clicked(move |_| Self::send(&st, Command::ListRooms));
        let st = state.clone();
        imp.disconnect_button
            .connect_clicked(move |_| Self::send(&st, Command::Disconnect));
        let st = state.clone();
        imp.room_list.connect_row_activated(move |_, row| {
            let name = row.widget_name().to_string();
            Self::send(&st, Command::Join(name));
        });
        let w = self.downgrade();
        let st = state.clone();
        imp.create_room_button.connect_clicked(move |_| {
            let Some(w) = w.upgrade() else { return };
            let imp = w.imp();
            let name = imp.new_room_entry.text().trim().to_owned();
            let kind = ["ptt", "chat", "voice"]
                .get(imp.new_room_kind.selected() as usize)
                .copied()
                .unwrap_or("ptt");
            match parse_options(&imp.new_room_options.text()) {
                Ok(options) if !name.is_empty() => Self::send(
                    &st,
                    Command::CreateRoom {
                        name,
                        kind: kind.into(),
                        options,
                    },
                ),
                Ok(_) => imp.rooms_error.set_text("Name the room"),
                Err(e) => imp.rooms_error.set_text(&e),
            }
        });
        let w = self.downgrade();
        let st = state.clone();
        imp.join_code_button.connect_clicked(move |_| {
            let Some(w) = w.upgrade() else { return };
            let code = w.imp().code_entry.text().trim().to_owned();
            if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
                Self::send(&st, Command::JoinMeeting(code));
            } else {
                w.imp().rooms_error.set_text("A meeting code is 6 digits");
            }
        });
        let b = imp.join_code_button.clone();
        imp.code_entry.connect_activate(move |_| b.emit_clicked());
        let st = state.clone();
        imp.new_meeting_button.connect_clicked(move |_| {
            Self::send(
                &st,
                Command::CreateMeeting {
                    end_with_host: false,
                },
            )
        });
        let st = state.clone();
        imp.cancel_wait_button
            .connect_clicked(move |_| Self::send(&st, Command::Leave));
    }

    fn setup_room(&self, state: &Shared) {
        let imp = self.imp();
        let st = state.clone();
        imp.leave_button
            .connect_clicked(move |_| Self::send(&st, Command::Leave));
        // The talk button: pressed and released, not clicked.
        let press = gtk::GestureClick::new();
        press.set_propagation_phase(gtk::PropagationPhase::Capture);
        let st = state.clone();
        press.connect_pressed(move |_, _, _, _| Self::send(&st, Command::Talk(true)));
        let st = state.clone();
        press.connect_released(move |_, _, _, _| Self::send(&st, Command::Talk(false)));
        let st = state.clone();
        press.connect_cancel(move |_, _| Self::send(&st, Command::Talk(false)));
        imp.talk_button.add_controller(press);

        let st = state.clone();
        imp.mic_toggle
            .connect_toggled(move |b| Self::send(&st, Command::Microphone(b.is_active())));
        let st = state.clone();
        imp.cam_toggle
            .connect_toggled(move |b| Self::send(&st, Command::Camera(b.is_active())));

        let w = self.downgrade();
        let st = state.clone();
        imp.chat_entry.connect_activate(move |e| {
            let Some(w) = w.upgrade() else { return };
            let text = e.text().trim().to_owned();
            if text.is_empty() {
                return;
            }
            let to = {
                let s = st.borrow();
                let others = s.room.as_ref().map(RoomModel::others).unwrap_or_default();
                let i = w.imp().chat_to.selected() as usize;
                (i > 0).then(|| others.get(i - 1).cloned()).flatten()
            };
            tracing::info!(private = to.is_some(), "ui: chat sent");
            Self::send(&st, Command::Chat { text, to });
            e.set_text("");
        });

        let w = self.downgrade();
        let st = state.clone();
        imp.send_file_button.connect_clicked(move |_| {
            if let Some(w) = w.upgrade() {
                w.choose_file(&st);
            }
        });
        let w = self.downgrade();
        let st = state.clone();
        imp.stats_button.connect_clicked(move |_| {
            if let Some(w) = w.upgrade() {
                w.open_stats(&st);
            }
        });
    }

    /// Space is the talk key unless a text field has the focus; Ctrl+M and
    /// Ctrl+K toggle microphone and camera, Ctrl+I shows statistics, Ctrl+O
    /// sends a file.
    fn setup_keys(&self, state: &Shared) {
        let keys = gtk::EventControllerKey::new();
        keys.set_propagation_phase(gtk::PropagationPhase::Capture);
        let w = self.downgrade();
        let st = state.clone();
        keys.connect_key_pressed(move |_, key, _, mods| {
            let Some(w) = w.upgrade() else {
                return glib::Propagation::Proceed;
            };
            w.on_key(&st, key, mods, true)
        });
        let w = self.downgrade();
        let st = state.clone();
        keys.connect_key_released(move |_, key, _, mods| {
            if let Some(w) = w.upgrade() {
                w.on_key(&st, key, mods, false);
            }
        });
        self.add_controller(keys);
    }

    fn on_key(
        &self,
        state: &Shared,
        key: gdk::Key,
        mods: gdk::ModifierType,
        down: bool,
    ) -> glib::Propagation {
        let imp = self.imp();
        let in_room = imp.pages.visible_child_name().as_deref() == Some("room");
        if !in_room {
            return glib::Propagation::Proceed;
        }
        if mods.contains(gdk::ModifierType::CONTROL_MASK) && down {
            match key {
                gdk::Key::m => imp.mic_toggle.set_active(!imp.mic_toggle.is_active()),
                gdk::Key::k => imp.cam_toggle.set_active(!imp.cam_toggle.is_active()),
                gdk::Key::i => self.open_stats(state),
                gdk::Key::o if imp.files_box.is_visible() => self.choose_file(state),
                _ => return glib::Propagation::Proceed,
            }
            return glib::Propagation::Stop;
        }
        if key != gdk::Key::space {
            return glib::Propagation::Proceed;
        }
        let typing = gtk::prelude::GtkWindowExt::focus(self)
            .is_some_and(|f| f.is::<gtk::Text>() || f.is::<gtk::Entry>());
        let floor = state
            .borrow()
            .room
            .as_ref()
            .is_some_and(RoomModel::has_floor);
        if typing || !floor {
            return glib::Propagation::Proceed;
        }
        Self::send(state, Command::Talk(down));
        glib::Propagation::Stop
    }

    fn choose_file(&self, state: &Shared) {
        let dialog = gtk::FileChooserNative::new(
            Some("Send a file"),
            Some(self),
            gtk::FileChooserAction::Open,
            Some("_Send"),
            Some("_Cancel"),
        );
        let st = state.clone();
        let w = self.downgrade();
        dialog.connect_response(move |d, resp| {
            if resp == gtk::ResponseType::Accept
                && let Some(path) = d.file().and_then(|f| f.path())
                && let Some(w) = w.upgrade()
            {
                w.send_file(&st, path);
            }
        });
        dialog.show();
        // Kept alive by GTK until it answers.
        std::mem::forget(dialog);
    }

    /// Sends `path` to everyone, or to the person chosen in the chat's
    /// recipient list.
    fn send_file(&self, state: &Shared, path: std::path::PathBuf) {
        let to = {
            let mut s = state.borrow_mut();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let others = s.room.as_ref().map(RoomModel::others).unwrap_or_default();
            let i = self.imp().chat_to.selected() as usize;
            if let Some(r) = s.room.as_mut() {
                r.offered(&name);
            }
            (i > 0).then(|| others.get(i - 1).cloned()).flatten()
        };
        Self::send(state, Command::SendFile { path, to });
        self.render_files(state);
    }

    fn open_stats(&self, state: &Shared) {
        let mut st = state.borrow_mut();
        let win = st
            .stats_window
            .get_or_insert_with(|| {
                let w = SbStatsWindow::new();
                w.set_transient_for(Some(self));
                w.set_hide_on_close(true);
                w
            })
            .clone();
        win.present();
        win.update(&st.stats);
    }

    // ----- events -----

    fn on_event(&self, state: &Shared, ev: Event) {
        match ev {
            Event::Link(link) => {
                let connected = matches!(link, Link::Connected { .. });
                let gone = matches!(link, Link::Disconnected { .. });
                {
                    let mut st = state.borrow_mut();
                    st.session.link = link;
                    if !connected {
                        st.room = None;
                    }
                }
                tracing::info!(link = %state.borrow().session.link_text(), "ui");
                if connected {
                    self.after_connect(state);
                }
                if !connected {
                    self.clear_video(state);
                }
                if gone {
                    self.imp().pages.set_visible_child_name("connect");
                }
                self.render(state);
            }
            Event::Server(m) => self.on_server(state, m),
            Event::Video { ssrc, sink } => self.add_tile(state, ssrc, &sink),
            Event::VideoGone { ssrc } => {
                if let Some(tile) = state.borrow_mut().tiles.remove(&ssrc) {
                    self.remove_tile(&tile);
                }
            }
            Event::Preview(sink) => self.add_preview(state, &sink),
            Event::Stats(snap) => {
                let mut st = state.borrow_mut();
                let t = st.started.elapsed().as_secs_f64();
                st.stats.push(t, &snap);
                if let Some(w) = &st.stats_window
                    && w.is_visible()
                {
                    w.update(&st.stats);
                }
            }
            Event::FileProgress {
                id,
                done,
                total,
                cwnd,
            } => {
                {
                    let mut st = state.borrow_mut();
                    let t = st.started.elapsed().as_secs_f64();
                    if let Some(c) = cwnd {
                        st.stats.push_cwnd(t, c);
                    }
                    if let Some(r) = st.room.as_mut() {
                        r.progress(id, done, total, cwnd);
                    }
                }
                self.render_files(state);
            }
            Event::FileDone { id, result } => {
                if let Some(r) = state.borrow_mut().room.as_mut() {
                    r.finished(id, result);
                    if let Some(t) = r.transfers.get(&id) {
                        tracing::info!(id, file = %t.label(), "ui: file done");
                    }
                }
                self.render_files(state);
            }
            Event::MediaError(e) => {
                tracing::warn!(error = %e, "ui");
                self.imp().notice_label.set_text(&e);
                self.imp().rooms_error.set_text(&e);
            }
        }
    }

    /// Right after connecting: what the command line asked for, once.
    fn after_connect(&self, state: &Shared) {
        let pending = std::mem::take(&mut state.borrow_mut().pending);
        if let Some(room) = pending.join {
            Self::send(state, Command::Join(room));
        } else if let Some(code) = pending.meeting_code {
            Self::send(state, Command::JoinMeeting(code));
        } else if pending.create_meeting {
            Self::send(
                state,
                Command::CreateMeeting {
                    end_with_host: false,
                },
            );
        }
    }

    fn on_server(&self, state: &Shared, m: ServerMessage) {
        let now = Instant::now();
        let mut room_changed = false;
        {
            let mut st = state.borrow_mut();
            let mut changed = st.session.apply(&m);
            match &m {
                ServerMessage::Joined { room, kind, .. } => {
                    let (me, nick) = match &st.session.link {
                        Link::Connected {
                            session_id,
                            nickname,
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
                    st.room = Some(model);
                    st.chat_shown = 0;
                    room_changed = true;
                    tracing::info!(room, kind, "ui: joined");
                }
                ServerMessage::Left { room, .. } => {
                    st.room = None;
                    room_changed = true;
                    tracing::info!(room, "ui: left");
                    st.backend.send(Command::ListRooms);
                }
                ServerMessage::MeetingCreated { code, .. } => {
                    tracing::info!(code, "ui: meeting created");
                }
                _ => {}
            }
            if let Some(r) = st.room.as_mut() {
                changed |= r.apply(&m, now);
            }
            changed |= room_changed;
            if !changed {
                return;
            }
        }
        if room_changed {
            self.clear_video(state);
        }
        if let ServerMessage::Lobby { waiting, .. } = &m {
            let names: Vec<&str> = waiting.iter().map(|w| w.nickname.as_str()).collect();
            tracing::info!(?names, "ui: lobby");
        }
        self.render(state);
    }

    // ----- rendering -----

    fn render(&self, state: &Shared) {
        let imp = self.imp();
        let st = state.borrow();
        imp.link_label.set_text(&st.session.link_text());
        let page = if st.room.is_some() {
            Some("room")
        } else if st.session.waiting.is_some() {
            Some("waiting")
        } else if st.session.connected() {
            Some("rooms")
        } else if matches!(st.session.link, Link::Reconnecting { .. }) {
            // Stay where we were; the status line says we are reconnecting.
            None
        } else {
            Some("connect")
        };
        if let Some(page) = page
            && imp.pages.visible_child_name().as_deref() != Some(page)
        {
            imp.pages.set_visible_child_name(page);
            tracing::info!(page, "ui: page");
        }
        let err = st.session.error.clone().unwrap_or_default();
        imp.rooms_error.set_text(&err);
        if let Link::Disconnected { reason: Some(r) } = &st.session.link {
            imp.connect_error.set_text(r);
        }
        if let Some(w) = &st.session.waiting {
            imp.waiting_label.set_text(&format!(
                "Waiting for the host to let you in ({} s at most)…",
                w.timeout_ms / 1000
            ));
        }
        self.render_rooms(&st);
        drop(st);
        self.render_room(state);
        self.render_status(state);
    }

    fn render_rooms(&self, st: &State) {
        let list = &self.imp().room_list;
        while let Some(c) = list.first_child() {
            list.remove(&c);
        }
        for r in &st.session.rooms {
            let cap = if r.max_participants == 0 {
                String::new()
            } else {
                format!(" of {}", r.max_participants)
            };
            let row = gtk::ListBoxRow::new();
            row.set_widget_name(&r.name);
            let label = gtk::Label::new(Some(&format!(
                "{}  ·  {}  ·  {}{cap} inside",
                r.name, r.kind, r.participants
            )));
            label.set_xalign(0.0);
            label.set_margin_top(8);
            label.set_margin_bottom(8);
            label.set_margin_start(8);
            row.set_child(Some(&label));
            list.append(&row);
        }
    }

    fn render_room(&self, state: &Shared) {
        let imp = self.imp();
        let mut st = state.borrow_mut();
        let Some(room) = st.room.clone() else {
            return;
        };
        let title = match &room.code {
            Some(code) => format!("Meeting {code}"),
            None => format!("{} ({})", room.name, room.kind),
        };
        imp.room_title.set_text(&title);
        imp.talk_button.set_visible(room.has_floor());
        imp.chat_box.set_visible(room.has_chat());
        imp.cam_toggle.set_visible(room.is_meeting());
        imp.mic_toggle.set_visible(!room.has_floor());
        imp.video_scroller.set_visible(room.is_meeting());
        imp.files_box.set_visible(room.is_meeting());
        imp.notice_label
            .set_text(room.notice.as_deref().unwrap_or_default());

        // People.
        let list = &imp.user_list;
        while let Some(c) = list.first_child() {
            list.remove(&c);
        }
        for m in &room.members {
            let mut marks = Vec::new();
            if m.talking {
                marks.push("● talking");
            }
            if m.muted {
                marks.push("muted");
            }
            if room.is_meeting() {
                marks.push(if m.audio { "mic on" } else { "mic off" });
                marks.push(if m.video { "cam on" } else { "cam off" });
            }
            if room.host == Some(m.session_id) {
                marks.push("host");
            }
            let me = if m.session_id == room.me {
                " (you)"
            } else {
                ""
            };
            let text = if marks.is_empty() {
                format!("{}{me}", m.nickname)
            } else {
                format!("{}{me} — {}", m.nickname, marks.join(", "))
            };
            let label = gtk::Label::new(Some(&text));
            label.set_xalign(0.0);
            if m.talking {
                label.add_css_class("heading");
            }
            list.append(&label);
        }

        // The host's lobby.
        imp.lobby_box
            .set_visible(room.am_host() && !room.lobby.is_empty());
        let lobby = &imp.lobby_list;
        while let Some(c) = lobby.first_child() {
            lobby.remove(&c);
        }
        for entry in &room.lobby {
            let row = gtk::Box::new(gtk::Orientation::Horizontal, 6);
            row.set_margin_start(6);
            row.set_margin_end(6);
            row.set_margin_top(4);
            row.set_margin_bottom(4);
            let name = gtk::Label::new(Some(&entry.nickname));
            name.set_hexpand(true);
            name.set_xalign(0.0);
            let allow = gtk::Button::with_label("Allow");
            allow.add_css_class("suggested-action");
            let deny = gtk::Button::with_label("Deny");
            let (id, s1, s2) = (entry.session_id, state.clone(), state.clone());
            allow.connect_clicked(move |_| Self::send(&s1, Command::Allow(id)));
            deny.connect_clicked(move |_| Self::send(&s2, Command::Deny(id)));
            row.append(&name);
            row.append(&allow);
            row.append(&deny);
            lobby.append(&row);
        }

        // Chat: append what is new; the recipients list follows the room.
        if st.chat_shown > room.chat.len() {
            st.chat_shown = 0;
        }
        if st.chat_shown == 0 {
            while let Some(c) = imp.chat_list.first_child() {
                imp.chat_list.remove(&c);
            }
        }
        for line in &room.chat[st.chat_shown..] {
            tracing::info!(line = %line.display(&room.my_nickname), "ui: chat shown");
            let label = gtk::Label::new(Some(&line.display(&room.my_nickname)));
            label.set_xalign(0.0);
            label.set_wrap(true);
            label.set_selectable(true);
            if line.private {
                label.add_css_class("accent");
            }
            imp.chat_list.append(&label);
        }
        if st.chat_shown != room.chat.len() {
            st.chat_shown = room.chat.len();
            let adj = imp.chat_scroller.vadjustment();
            glib::idle_add_local_once(move || adj.set_value(adj.upper()));
        }
        let mut to = vec!["Everyone".to_owned()];
        to.extend(room.others());
        let model = imp.chat_to.model();
        let current: Vec<String> = model
            .as_ref()
            .map(|m| {
                (0..m.n_items())
                    .filter_map(|i| {
                        m.item(i)
                            .and_downcast::<gtk::StringObject>()
                            .map(|s| s.string().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if current != to {
            let refs: Vec<&str> = to.iter().map(String::as_str).collect();
            imp.chat_to.set_model(Some(&gtk::StringList::new(&refs)));
        }
        drop(st);
        self.render_files(state);
        self.label_tiles(state);
    }

    fn render_files(&self, state: &Shared) {
        let imp = self.imp();
        let st = state.borrow();
        let Some(room) = &st.room else { return };
        let list = &imp.file_list;
        while let Some(c) = list.first_child() {
            list.remove(&c);
        }
        for t in room.transfers.values() {
            let row = gtk::Box::new(gtk::Orientation::Vertical, 2);
            let label = gtk::Label::new(Some(&t.label()));
            label.set_xalign(0.0);
            let bar = gtk::ProgressBar::new();
            bar.set_fraction(t.fraction());
            row.append(&label);
            row.append(&bar);
            if let TransferState::Done(Some(path)) = &t.state {
                let save = gtk::Button::with_label("Save as…");
                let path = path.clone();
                let w = self.downgrade();
                save.connect_clicked(move |_| {
                    if let Some(w) = w.upgrade() {
                        w.save_as(path.clone());
                    }
                });
                row.append(&save);
            }
            list.append(&row);
        }
    }

    fn save_as(&self, from: std::path::PathBuf) {
        let dialog = gtk::FileChooserNative::new(
            Some("Save the file"),
            Some(self),
            gtk::FileChooserAction::Save,
            Some("_Save"),
            Some("_Cancel"),
        );
        if let Some(name) = from.file_name() {
            dialog.set_current_name(&name.to_string_lossy());
        }
        let w = self.downgrade();
        dialog.connect_response(move |d, resp| {
            if resp == gtk::ResponseType::Accept
                && let Some(to) = d.file().and_then(|f| f.path())
                && let Err(e) = std::fs::copy(&from, &to)
                && let Some(w) = w.upgrade()
            {
                w.imp()
                    .notice_label
                    .set_text(&format!("Could not save {}: {e}", to.display()));
            }
        });
        dialog.show();
        std::mem::forget(dialog);
    }

    fn render_status(&self, state: &Shared) {
        let imp = self.imp();
        let mut st = state.borrow_mut();
        let status = match (&st.room, st.session.connected()) {
            (_, false) => client_gtk::model::room::Status {
                text: if matches!(st.session.link, Link::Reconnecting { .. }) {
                    "Disconnected — reconnecting…".into()
                } else {
                    "Disconnected".into()
                },
                tone: Tone::Grey,
                countdown: None,
            },
            (Some(r), true) => r.status(Instant::now()),
            (None, true) => return,
        };
        for c in ["sb-green", "sb-red", "sb-grey", "sb-neutral"] {
            imp.status_box.remove_css_class(c);
        }
        imp.status_box.add_css_class(match status.tone {
            Tone::Green => "sb-green",
            Tone::Red => "sb-red",
            Tone::Grey => "sb-grey",
            Tone::Neutral => "sb-neutral",
        });
        imp.status_label.set_text(&status.text);
        match status.countdown {
            Some(left) => {
                imp.countdown_label.set_visible(true);
                imp.countdown_label.set_text(&format!(
                    "{:.0} s left in this talk burst",
                    left.as_secs_f32().ceil()
                ));
            }
            None => imp.countdown_label.set_visible(false),
        }
        if st.last_status != status.text {
            tracing::info!(status = %status.text, tone = ?status.tone, "ui: status");
            st.last_status = status.text;
        }
    }

    // ----- video -----

    fn paintable_of(sink: &gst::Element) -> Option<gdk::Paintable> {
        use gst::prelude::ObjectExt as _;
        sink.find_property("paintable")?;
        Some(sink.property::<gdk::Paintable>("paintable"))
    }

    fn tile(paintable: &gdk::Paintable, name: &str) -> gtk::Box {
        let tile = gtk::Box::new(gtk::Orientation::Vertical, 0);
        tile.add_css_class("sb-tile");
        let picture = gtk::Picture::for_paintable(paintable);
        picture.set_size_request(240, 180);
        picture.set_vexpand(true);
        let label = gtk::Label::new(Some(name));
        label.add_css_class("sb-tile-name");
        label.set_xalign(0.0);
        tile.append(&picture);
        tile.append(&label);
        tile
    }

    fn add_tile(&self, state: &Shared, ssrc: u32, sink: &gst::Element) {
        let Some(p) = Self::paintable_of(sink) else {
            return;
        };
        let name = state
            .borrow()
            .room
            .as_ref()
            .and_then(|r| r.by_video_ssrc(ssrc).map(|m| m.nickname.clone()))
            .unwrap_or_else(|| format!("SSRC {ssrc:08x}"));
        let tile = Self::tile(&p, &name);
        tile.set_widget_name(&ssrc.to_string());
        self.imp().video_grid.append(&tile);
        state.borrow_mut().tiles.insert(ssrc, tile);
        let n = state.borrow().tiles.len();
        tracing::info!(ssrc, name, tiles = n, "ui: video tile");
    }

    fn add_preview(&self, state: &Shared, sink: &gst::Element) {
        let Some(p) = Self::paintable_of(sink) else {
            return;
        };
        let tile = Self::tile(&p, "You");
        self.imp().video_grid.insert(&tile, 0);
        if let Some(old) = state.borrow_mut().preview.replace(tile) {
            self.remove_tile(&old);
        }
        tracing::info!("ui: preview");
    }

    /// Names tiles once the user list says whose SSRC it is.
    fn label_tiles(&self, state: &Shared) {
        let st = state.borrow();
        let Some(room) = &st.room else { return };
        for (ssrc, tile) in &st.tiles {
            if let Some(m) = room.by_video_ssrc(*ssrc)
                && let Some(label) = tile.last_child().and_downcast::<gtk::Label>()
            {
                let text = if m.video {
                    m.nickname.clone()
                } else {
                    format!("{} (camera off)", m.nickname)
                };
                label.set_text(&text);
            }
        }
    }

    fn remove_tile(&self, tile: &gtk::Box) {
        // A FlowBox wraps each child in a FlowBoxChild.
        if let Some(child) = tile.parent() {
            self.imp().video_grid.remove(&child);
        }
    }

    fn clear_video(&self, state: &Shared) {
        let (tiles, preview) = {
            let mut st = state.borrow_mut();
            (std::mem::take(&mut st.tiles), st.preview.take())
        };
        for t in tiles.values().chain(preview.iter()) {
            self.remove_tile(t);
        }
    }
}

fn fill(dd: &gtk::DropDown, list: &[Choice], current: &str) {
    let labels: Vec<&str> = list.iter().map(|c| c.label.as_str()).collect();
    dd.set_model(Some(&gtk::StringList::new(&labels)));
    if let Some(i) = list.iter().position(|c| c.value == current) {
        dd.set_selected(i as u32);
    }
}

/// `key=value` pairs, space separated; numbers and booleans as such.
fn parse_options(
    text: &str,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, String> {
    text.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("options are key=value, not `{kv}`"))?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(v));
            Ok((k.to_owned(), value))
        })
        .collect()
}
