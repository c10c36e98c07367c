//! `bindings`: how long a STUN binding takes, from the client's Binding
//! Request to the router's answer, against a bare UDP echo on the same
//! machine in the same run (the baseline: what loopback and the scheduler
//! cost anyway). Media cannot start before the binding, so this is the
//! wait between JOINED and the first packet.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::children::RouterArgs;
use crate::procfs::Child;

/// What a run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BindingsReport {
    pub(crate) sessions: usize,
    pub(crate) binding_p50_us: u64,
    pub(crate) binding_p99_us: u64,
    pub(crate) binding_max_us: u64,
    pub(crate) echo_p50_us: u64,
    pub(crate) echo_p99_us: u64,
    /// Binding p99 over echo p99.
    pub(crate) p99_ratio: f64,
    /// Bindings that needed a retransmission (no answer within 100 ms).
    pub(crate) retransmitted: u64,
}

fn hist() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// A UDP echo on its own thread: the baseline round trip.
fn echo_server() -> anyhow::Result<SocketAddr> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    let addr = s.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    Ok(addr)
}

/// `sessions` sessions say HELLO; then each binds its media address with
/// STUN, one after the other, timed; then as many echoes are timed.
pub(crate) async fn run(sessions: usize) -> anyhow::Result<BindingsReport> {
    let router = Child::spawn(
        &RouterArgs {
            kind: "ptt".into(),
            rooms: 1,
            workers: 1,
            max_sessions: sessions + 16,
            heartbeat_ms: 200_000,
        }
        .to_args(),
    )?;
    let (Some(ctl), Some(media)) = (router.ready.control, router.ready.media.first().copied())
    else {
        bail!("the router told no control or media address");
    };
    let mut held = Vec::with_capacity(sessions);
    let (mut binding, mut echo) = (hist()?, hist()?);
    let mut retransmitted = 0;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 1500];
    let started = Instant::now();
    for i in 0..sessions {
        let s = client::Session::connect(ctl, &format!("b{i}"))
            .await
            .context("HELLO")?;
        let token = s.welcome().media_token.clone();
        // Each binding from a fresh address, as a new client's would be.
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let t = Instant::now();
        let mut answered = false;
        for attempt in 0..5 {
            let (req, tid) = proto::media::binding_request(&token).map_err(anyhow::Error::msg)?;
            sock.send_to(&req, media)?;
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if proto::media::parse_binding_response(&buf[..n], tid).is_some() => {
                    answered = true;
                    break;
                }
                _ => {
                    if attempt == 0 {
                        retransmitted += 1;
                    }
                }
            }
        }
        if !answered {
            bail!("no STUN answer for session {i}");
        }
        binding.saturating_record(t.elapsed().as_micros() as u64);
        held.push(s);
        if (i + 1) % 250 == 0 {
            eprintln!(
                "  {} bindings in {:.1} s, p99 so far {} µs",
                i + 1,
                started.elapsed().as_secs_f64(),
                binding.value_at_quantile(0.99)
            );
        }
    }
    let server = echo_server()?;
    for _ in 0..sessions {
        let t = Instant::now();
        sock.send_to(b"echo", server)?;
        if sock.recv_from(&mut buf).is_ok() {
            echo.saturating_record(t.elapsed().as_micros() as u64);
        }
    }
    drop(held);
    let (bp99, ep99) = (
        binding.value_at_quantile(0.99),
        echo.value_at_quantile(0.99),
    );
    Ok(BindingsReport {
        sessions,
        binding_p50_us: binding.value_at_quantile(0.5),
        binding_p99_us: bp99,
        binding_max_us: binding.max(),
        echo_p50_us: echo.value_at_quantile(0.5),
        echo_p99_us: ep99,
        p99_ratio: bp99 as f64 / ep99.max(1) as f64,
        retransmitted,
    })
}
