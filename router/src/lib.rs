//! The Switchboard router.
//!
//! Three layers, as in quinn: [`engine`] is the pure core (sessions, rooms,
//! forwarding table, no I/O); [`driver`] holds the tokio tasks around it (the
//! control listener, one task per connection, the engine task); [`media`] is
//! the UDP worker thread, with [`media::mmsg`] owning batched socket I/O.
//! [`Router::start`] wires them together.

pub mod admin;
pub mod auth;
pub mod compat;
pub mod config;
pub mod driver;
pub mod engine;
pub mod events;
pub mod logging;
pub mod media;
pub mod native;
pub mod registry;

pub use config::Config;
pub use driver::Router;
