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
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {EXE}: {e}"))
}

/// A router on loopback with ephemeral ports.
pub(crate) async fn router() -> Router {
    let config = Config {
        control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        media: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        admin: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        ..Config::default()
    };
    match Router::start(config).await {
        Ok(r) => r,
        Err(e) => panic!("{e:#}"),
    }
}
