//! The Switchboard router.
//!
//! Three layers, as in quinn: [`engine`] is the pure core; [`control`] and
//! [`media`] are the tokio and thread drivers around it; [`media::mmsg`] owns
//! batched UDP I/O. [`Router::start`] wires them together.

pub mod config;
pub mod engine;
pub mod registry;
