//! View-models: what the window shows, computed from what the router and
//! the media backend say. No GTK here; tested without a display.

pub mod chat;
pub mod room;
pub mod session;
pub mod settings;
pub mod stats;
pub mod transfers;

#[cfg(test)]
pub(crate) mod tests;
