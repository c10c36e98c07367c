//! Shared by the CLI tests.

use router::{Config, Router};

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
