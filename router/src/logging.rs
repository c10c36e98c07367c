//! What the router logs, and what input may not make it log.
//!
//! A client controls what it sends, so nothing it sends may make the
//! router write a line per datagram or per message: 20,000 malformed STUN
//! datagrams once wrote 3 MB of WARN lines, from the `stun-types` crate's
//! own logging of what it failed to parse. Libraries that log about their
//! input are held at ERROR unless the operator names them in `RUST_LOG`;
//! the router's own input-triggered warnings are rate-limited where they
//! are written.

use tracing_subscriber::EnvFilter;

/// Crates that log at WARN about input they were handed to parse.
pub const INPUT_LOGGING_CRATES: &[&str] = &["stun_types"];

/// The filter for `RUST_LOG` (`env`; `default` when unset or invalid),
/// with [`INPUT_LOGGING_CRATES`] at ERROR unless `env` names them.
pub fn filter(env: Option<&str>, default: &str) -> EnvFilter {
    let spec = env
        .filter(|e| EnvFilter::try_new(e).is_ok())
        .unwrap_or(default);
    let mut f = EnvFilter::new(spec);
    for c in INPUT_LOGGING_CRATES {
        if !spec.contains(c)
            && let Ok(d) = format!("{c}=error").parse()
        {
            f = f.add_directive(d);
        }
    }
    f
}

/// What `f` logs, through a subscriber with [`filter`] (tests).
#[cfg(test)]
pub(crate) fn capture(env: Option<&str>, f: impl FnOnce()) -> String {
    tests::logged(env, f)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub(super) fn logged(env: Option<&str>, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(filter(env, "info"))
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, f);
        let v = buf.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn malformed_stun_does_not_log_but_the_router_does() {
        let garbage = [
            0u8, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff,
            0xff, 0, 9,
        ];
        let out = logged(None, || {
            for _ in 0..1000 {
                let _ = proto::media::parse_binding_request(&garbage);
            }
            tracing::info!("router started");
        });
        assert!(out.contains("router started"), "{out}");
        assert!(
            !out.contains("stun_types"),
            "{} bytes: {out:.300}",
            out.len()
        );
        // An operator who asks for the crate's warnings gets them.
        let out = logged(Some("info,stun_types=warn"), || {
            let _ = proto::media::parse_binding_request(&garbage);
        });
        assert!(out.contains("stun_types"), "{out}");
        // A RUST_LOG that does not parse falls back to the default.
        assert!(logged(Some("=nonsense=="), || tracing::info!("x")).contains(" x"));
    }
}
