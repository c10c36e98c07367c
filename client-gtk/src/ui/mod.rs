//! The GTK side: libadwaita widgets from composite templates, one per page
//! and per row, bound to the `SbSession`; they turn input into commands.

pub mod chat;
pub mod connect_page;
pub mod devices;
pub mod files;
pub mod lobby;
pub mod meeting_grid;
pub mod member_row;
pub mod preferences;
pub mod room_page;
pub mod room_row;
pub mod rooms_page;
pub mod stall;
pub mod stats_window;
pub mod style;
pub mod window;

/// The application id, used for the desktop file, the icon and D-Bus.
pub const APP_ID: &str = "org.switchboard.Client";

/// The keyboard shortcuts window (`shortcuts.ui`).
pub fn shortcuts_window() -> gtk::ShortcutsWindow {
    let builder = gtk::Builder::from_string(include_str!("shortcuts.ui"));
    builder
        .object("help_overlay")
        .unwrap_or_else(|| unreachable!("shortcuts.ui defines help_overlay"))
}
