//! `switchboard-gtk`: the Switchboard desktop client.

use std::path::PathBuf;

use adw::prelude::*;
use clap::Parser;

use client_gtk::backend::{Backend, Options};
use client_gtk::model::settings::Settings;
use client_gtk::state::Pending;
use client_gtk::ui;

/// Options; everything else is chosen in the window and remembered.
#[derive(Parser, Debug)]
#[command(version, about = "Switchboard desktop client")]
struct Args {
    /// Router control address (host:port); overrides the remembered one.
    #[arg(long)]
    server: Option<String>,
    /// Nickname; overrides the remembered one.
    #[arg(long)]
    nickname: Option<String>,
    /// Connect at once.
    #[arg(long)]
    connect: bool,
    /// After connecting, join this room.
    #[arg(long)]
    join: Option<String>,
    /// After connecting, ask to join the meeting with this code.
    #[arg(long)]
    meeting_code: Option<String>,
    /// After connecting, start a meeting.
    #[arg(long)]
    create_meeting: bool,
    /// Open the statistics window.
    #[arg(long)]
    stats: bool,
    /// Use test media: a tone for the microphone, a pattern for the camera,
    /// no speaker output (for demos and tests without devices).
    #[arg(long)]
    test_media: bool,
    /// The microphone (as the pipelines crate names sources: `mic`,
    /// `tone:660:0.3`, …); overrides the remembered one and test media.
    #[arg(long)]
    microphone: Option<String>,
    /// The speaker (`speakers`, `wav:heard.wav`, `discard`, …); overrides
    /// the remembered one and test media.
    #[arg(long)]
    speaker: Option<String>,
    /// Talk permit and end tones on (they are off with test media).
    #[arg(long)]
    tones: bool,
    /// Where received files go (default: ~/Downloads).
    #[arg(long)]
    downloads: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,client_gtk=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    client_gtk::i18n::init();
    gst::init()?;
    // gtk4paintablesink, linked in (Debian 12 has no package for it).
    gstgtk4::plugin_register_static()?;

    let mut settings = Settings::load();
    if let Some(s) = &args.server {
        settings.server = s.clone();
    }
    if let Some(n) = &args.nickname {
        settings.nickname = n.clone();
    }
    if args.test_media {
        settings.microphone = "tone:440:0.3".into();
        settings.camera = "pattern:ball".into();
        settings.speaker = "discard".into();
        settings.tones = false;
    }
    if let Some(m) = &args.microphone {
        settings.microphone = m.clone();
    }
    if let Some(s) = &args.speaker {
        settings.speaker = s.clone();
    }
    if args.tones {
        settings.tones = true;
    }
    let downloads = args.downloads.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("Downloads")
    });
    let startup = ui::window::Startup {
        settings,
        connect: args.connect,
        pending: Pending {
            join: args.join.clone(),
            meeting_code: args.meeting_code.clone(),
            create_meeting: args.create_meeting,
        },
        open_stats: args.stats,
        extra_choices: args.test_media,
    };

    let app = adw::Application::builder()
        .application_id(ui::APP_ID)
        .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
        .build();
    app.connect_activate(move |app| {
        let (backend, events) = match Backend::start(Options {
            downloads: downloads.clone(),
            video_sink: "gtk4paintablesink".into(),
        }) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot start the backend: {e}");
                app.quit();
                return;
            }
        };
        let win = ui::window::SbWindow::new(app, backend, events, startup.clone());
        win.present();
    });
    // GApplication would parse our arguments again.
    let code = app.run_with_args::<&str>(&[]);
    if code != gtk::glib::ExitCode::SUCCESS {
        anyhow::bail!("the application ended with {code:?}");
    }
    Ok(())
}
