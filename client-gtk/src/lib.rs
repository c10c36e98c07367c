//! The Switchboard desktop client.
//!
//! - [`model`]: view-models (session, room, statistics, settings), plain
//!   Rust, tested without a display.
//! - [`backend`]: the network and media side on a tokio runtime: the
//!   control session with reconnects, GStreamer pipelines, files. It
//!   takes [`backend::Command`]s and reports [`backend::Event`]s over
//!   channels; it never touches a widget.
//! - [`state`]: `SbSession`, the one owner of what the window shows: the
//!   models published as GObject properties and list stores, updated in
//!   place; tested without a display.
//! - [`ui`]: libadwaita widgets from composite templates, one per page and
//!   per row, bound to the session; they turn input into commands.

pub mod backend;
pub mod i18n;
pub mod model;
pub mod state;
pub mod ui;
