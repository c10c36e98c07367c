//! Packet captures of the loopback interface with `tcpdump` (which
//! scripts/test installs), read back as the bytes on the wire.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `tcpdump -i lo` writing a classic pcap file.
pub struct Capture {
    child: Child,
    pub path: PathBuf,
}

impl Capture {
    /// Starts capturing what `filter` (tcpdump's expression, word by word)
    /// selects into `path`; returns once tcpdump listens.
    pub async fn start(path: PathBuf, filter: &[&str]) -> Capture {
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-n", "-w"])
            .arg(&path)
            .args(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("tcpdump: {e} (scripts/test installs it)"));
        // tcpdump says "listening on lo" once it captures.
        let Some(err) = child.stderr.take() else {
            panic!("tcpdump has no stderr")
        };
        let mut err = BufReader::new(err).lines();
        loop {
            match err.next_line().await {
                Ok(Some(l)) if l.contains("listening on") => break,
                Ok(Some(_)) => {}
                other => panic!("tcpdump cannot capture on lo (needs CAP_NET_RAW): {other:?}"),
            }
        }
        Capture { child, path }
    }

    /// Captures the UDP datagrams from port `src` to port `dst`.
    pub async fn udp(path: PathBuf, src: u16, dst: u16) -> Capture {
        let (src, dst) = (src.to_string(), dst.to_string());
        let filter = [
            "udp", "and", "src", "port", &src, "and", "dst", "port", &dst,
        ];
        Capture::start(path, &filter).await
    }

    /// Stops the capture (tcpdump flushes its file on SIGINT).
    pub async fn stop(mut self) -> PathBuf {
        interrupt(&self.child);
        wait_exit(&mut self.child, "tcpdump").await;
        self.path
    }
}

/// SIGINT: `gst-launch-1.0 -e` sends EOS (a WAV gets its header); tcpdump
/// flushes its file.
pub fn interrupt(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
}

/// Waits up to 10 s for `child` to exit successfully.
pub async fn wait_exit(child: &mut Child, what: &str) {
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(s)) if s.success() => {}
        other => panic!("{what} did not finish cleanly: {other:?}"),
    }
}

/// The IP payload (transport header and data) of every frame in a classic
/// pcap file of the loopback interface, with its protocol number (6 TCP,
/// 17 UDP).
fn ip_payloads(path: &Path) -> Vec<(u8, Vec<u8>)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(data.len() >= 24, "pcap too short");
    let le = data[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let l2 = match u32_at(&data[20..24]) {
        1 => 14,   // Ethernet (Linux loopback)
        113 => 16, // Linux cooked
        276 => 20, // Linux cooked v2
        other => panic!("link type {other}"),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32_at(&data[at + 8..at + 12]) as usize;
        let frame = &data[at + 16..(at + 16 + caplen).min(data.len())];
        at += 16 + caplen;
        let Some(ip) = frame.get(l2..) else { continue };
        let Some(&v_ihl) = ip.first() else { continue };
        let ihl = usize::from(v_ihl & 0x0f) * 4;
        if let (Some(&proto), Some(payload)) = (ip.get(9), ip.get(ihl..)) {
            out.push((proto, payload.to_vec()));
        }
    }
    out
}

/// Every UDP datagram's payload in the capture.
pub fn udp_payloads(path: &Path) -> Vec<Vec<u8>> {
    ip_payloads(path)
        .into_iter()
        .filter(|(p, d)| *p == 17 && d.len() >= 8)
        .map(|(_, d)| d[8..].to_vec())
        .collect()
}

/// Every TCP segment's data in the capture, in capture order.
pub fn tcp_data(path: &Path) -> Vec<Vec<u8>> {
    ip_payloads(path)
        .into_iter()
        .filter(|(p, d)| *p == 6 && d.len() >= 20)
        .filter_map(|(_, d)| {
            let offset = usize::from(d[12] >> 4) * 4;
            d.get(offset..).map(<[u8]>::to_vec)
        })
        .filter(|d| !d.is_empty())
        .collect()
}
