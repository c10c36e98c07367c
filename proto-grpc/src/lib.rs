//! The gRPC admin API, generated from `switchboard/v1/*.proto`.
//!
//! Kept apart from `proto` (the control channel's wire types) so that
//! plugins and the headless client build without tonic, hyper or h2.

/// Generated gRPC types and services of `switchboard/v1/*.proto`.
#[allow(unreachable_pub, clippy::all)]
pub mod admin {
    tonic::include_proto!("switchboard.v1");
    /// Encoded file descriptors, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("switchboard_v1");
}
