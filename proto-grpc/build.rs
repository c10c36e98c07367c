//! Generates the gRPC code with a vendored protoc: no system protobuf needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("switchboard_v1.bin"))
        .compile_with_config(config, &["switchboard/v1/admin.proto"], &["."])?;
    println!("cargo:rerun-if-changed=switchboard");
    Ok(())
}
