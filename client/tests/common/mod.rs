//! Shared by the CLI tests.

use std::process::Stdio;

use router::{Config, Router};
use tokio::process::{Child, Command};

/// The CLI under test.
pub(crate) const EXE: &str = env!("CARGO_BIN_EXE_switchboard-client");

/// Starts the CLI with `args`, its stdout piped for the test to read, its
/// stderr to `stderr`; killed when dropped.
pub(crate) fn spawn_cli<'a>(args: impl IntoIterator<Item = &'a str>, stderr: Stdio) -> Child {
    Command::new(EXE)
        .args(args)
        // Routers of this run share one certificate; remember it apart
        // from the user's own routers.
        .env("SWITCHBOARD_KNOWN_HOSTS", scratch("known_hosts"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {EXE}: {e}"))
}

/// A path in this test process's scratch directory.
pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("sb-cli-tests-{}", std::process::id()))
        .join(name)
}

/// A router on loopback with ephemeral ports.
pub(crate) async fn router() -> Router {
    router_with(|_| {}).await
}

/// [`router`], with `tweak` applied to its config.
pub(crate) async fn router_with(tweak: impl FnOnce(&mut Config)) -> Router {
    let mut config = Config {
        control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        media: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        admin: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        state_dir: Some(scratch("state")),
        ..Config::default()
    };
    tweak(&mut config);
    match Router::start(config).await {
        Ok(r) => r,
        Err(e) => panic!("{e:#}"),
    }
}
