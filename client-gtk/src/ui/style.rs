//! The few styles of our own, on top of libadwaita's: the status line's
//! colours, the talk button, video tiles, the talking ring.

use gtk::gdk;

const CSS: &str = "
.sb-status { padding: 18px; border-radius: 12px; }
.sb-green { background: @success_bg_color; color: @success_fg_color; }
.sb-red { background: @error_bg_color; color: @error_fg_color; }
.sb-grey { background: alpha(currentColor, 0.25); }
.sb-neutral { background: alpha(currentColor, 0.08); }
.sb-talk { font-size: 20px; font-weight: bold; }
.sb-tile { background: black; border-radius: 12px; }
.sb-tile-name { color: white; background: alpha(black, 0.55); padding: 2px 8px; border-radius: 6px; }
.sb-avatar { border-radius: 9999px; transition: box-shadow 120ms ease-out; }
.sb-avatar.sb-talking { box-shadow: 0 0 0 3px @success_color; }
.sb-chat { background: transparent; }
.sb-private { background: alpha(@accent_bg_color, 0.12); border-radius: 6px; }
";

/// Where the application's icon is found when it is not installed: the
/// crate's `data/icons` (or `$SWITCHBOARD_DATADIR/icons`).
fn icon_dir() -> std::path::PathBuf {
    match std::env::var_os("SWITCHBOARD_DATADIR") {
        Some(d) => std::path::PathBuf::from(d).join("icons"),
        None => std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/icons")),
    }
}

pub fn install() {
    let css = gtk::CssProvider::new();
    css.load_from_data(CSS);
    if let Some(display) = gdk::Display::default() {
        let icons = icon_dir();
        if icons.is_dir() {
            gtk::IconTheme::for_display(&display).add_search_path(icons);
        }
        gtk::style_context_add_provider_for_display(
            &display,
            &css,
            gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
        );
    }
}
