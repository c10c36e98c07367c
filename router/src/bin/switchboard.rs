//! `switchboard`: run the media router.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use router::{Config, Router};

/// Switchboard media router: push-to-talk, voice, chat and meeting rooms.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (see docs/operations.md); optional.
    #[arg(short, long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Control-channel TCP address (overrides the file).
    #[arg(long, env = "SWITCHBOARD_CONTROL")]
    control: Option<SocketAddr>,
    /// Media UDP address (overrides the file).
    #[arg(long, env = "SWITCHBOARD_MEDIA")]
    media: Option<SocketAddr>,
    /// Media workers, one thread and UDP port each (overrides the file;
    /// default 1).
    #[arg(long, env = "SWITCHBOARD_MEDIA_WORKERS")]
    media_workers: Option<usize>,
    /// gRPC admin address (overrides the file; default 127.0.0.1:7072).
    #[arg(long, env = "SWITCHBOARD_ADMIN")]
    admin: Option<SocketAddr>,
    /// Bearer token for the admin API; required to bind it beyond
    /// loopback. A flag shows in `ps`: prefer the environment or
    /// --admin-token-file there.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file whose first line is the admin token.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(router::logging::filter(
            std::env::var("RUST_LOG").ok().as_deref(),
            "info",
        ))
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(a) = args.control {
        config.control = a;
    }
    if let Some(a) = args.media {
        config.media = a;
    }
    if let Some(n) = args.media_workers {
        config.media_workers = n;
    }
    if let Some(a) = args.admin {
        config.admin = a;
    }
    if args.admin_token.is_some() {
        config.admin_token = args.admin_token;
    }
    if args.admin_token_file.is_some() {
        config.admin_token_file = args.admin_token_file;
    }
    let runtime = router::driver::runtime().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let router = Router::start(config).await?;
        let media: Vec<String> = router.media_addrs().iter().map(|a| a.to_string()).collect();
        println!(
            "switchboard: control tcp {} media udp {} admin grpc {} (Ctrl-C to stop)",
            router.control_addr(),
            media.join(","),
            router.admin_addr()
        );
        wait_for_signal().await?;
        tracing::info!("signal received; closing sessions");
        // Exit within 2 s whatever happens.
        let _ = tokio::time::timeout(Duration::from_millis(1900), router.shutdown()).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(50));
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
