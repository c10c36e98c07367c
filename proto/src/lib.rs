//! Wire types shared by the Switchboard router and its clients (serde only;
//! the gRPC admin API lives in the `proto-grpc` crate).
//!
//! - [`codec`]: the audio codecs a room may declare, as wire facts.
//! - [`control`]: the newline-delimited JSON messages of the TCP control channel.
//! - [`framing`]: a sans-IO line framer with a hard line-size limit.
//! - [`media`]: demultiplexing (RFC 7983) and thin helpers over `rtp-types`,
//!   `rtcp-types` and `stun-types` for what the router and clients need.

pub mod codec;
pub mod control;
pub mod framing;
pub mod media;

/// Version of the control protocol spoken by this build (sent in HELLO/WELCOME).
pub const PROTOCOL_VERSION: u32 = 1;

/// Default TCP port of the control channel.
pub const DEFAULT_CONTROL_PORT: u16 = 7070;
/// Default UDP port of the first media worker.
pub const DEFAULT_MEDIA_PORT: u16 = 7071;
/// Default TCP port of the gRPC admin service.
pub const DEFAULT_ADMIN_PORT: u16 = 7072;
