//! View-models: what the window shows, computed from what the router and
//! the media backend say. No GTK here; tested without a display.

pub mod room;
pub mod session;
pub mod settings;
pub mod stats;

#[cfg(test)]
mod tests;
