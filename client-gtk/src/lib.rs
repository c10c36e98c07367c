//! The Switchboard desktop client.
//!
//! - [`model`]: view-models (session, room, statistics, settings), plain
//!   Rust, tested without a display.
//! - [`backend`]: the network and media side on a tokio runtime: the
//!   control session with reconnects, GStreamer pipelines, files. It
//!   takes [`backend::Command`]s and reports [`backend::Event`]s over
//!   channels; it never touches a widget.
//! - `ui` (the binary): GTK4 widgets from composite templates, which only
//!   render models and turn input into commands.

pub mod backend;
pub mod model;
