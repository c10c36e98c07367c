//! The processes under test: the router and the bare relay run as children
//! of this binary (hidden subcommands), so their CPU time and resident
//! memory are theirs alone, read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What a child prints on its first line of stdout once it listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ready {
    /// The router's control address (none for the bare relay).
    pub(crate) control: Option<SocketAddr>,
    /// Media sockets: one per router worker, or the relay's.
    pub(crate) media: Vec<SocketAddr>,
    /// The router's gRPC admin address.
    pub(crate) admin: Option<SocketAddr>,
}

/// A child process, killed when dropped.
pub(crate) struct Child {
    child: std::process::Child,
    pub(crate) ready: Ready,
}

impl Child {
    /// Runs this binary with `args` and waits (at most 20 s) for its
    /// [`Ready`] line.
    pub(crate) fn spawn(args: &[String]) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("finding this program")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a child process")?;
        let Some(stdout) = child.stdout.take() else {
            bail!("child has no stdout");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                return Err(e).context("reading the child's ready line");
            }
            Err(_) => {
                let _ = child.kill();
                bail!("child {args:?} did not start within 20 s");
            }
        };
        let ready: Ready = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                bail!("child {args:?} said {line:?}: {e}");
            }
        };
        Ok(Child { child, ready })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A sample of the child's CPU and memory.
    pub(crate) fn sample(&self) -> Sample {
        Sample::of(self.pid())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// User plus system CPU seconds of the whole process.
    pub(crate) cpu: f64,
    /// CPU seconds of each thread whose name starts with `media-`, by name.
    pub(crate) media_threads: Vec<(String, f64)>,
    /// Resident set size in bytes.
    pub(crate) rss: u64,
}

impl Sample {
    pub(crate) fn of(pid: u32) -> Sample {
        let dir = format!("/proc/{pid}");
        let cpu = std::fs::read_to_string(format!("{dir}/stat"))
            .ok()
            .and_then(|s| stat_cpu(&s))
            .unwrap_or(0.0);
        let rss = std::fs::read_to_string(format!("{dir}/status"))
            .ok()
            .and_then(|s| status_rss(&s))
            .unwrap_or(0);
        let mut media_threads = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) {
            for t in tasks.flatten() {
                let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                    continue;
                };
                let Some(name) = stat_name(&stat) else {
                    continue;
                };
                if name.starts_with("media-")
                    && let Some(c) = stat_cpu(&stat)
                {
                    media_threads.push((name.to_owned(), c));
                }
            }
        }
        media_threads.sort_by(|a, b| a.0.cmp(&b.0));
        Sample {
            cpu,
            media_threads,
            rss,
        }
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The name in a `/proc/*/stat` line (between the first `(` and last `)`).
pub(crate) fn stat_name(stat: &str) -> Option<&str> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    stat.get(open + 1..close)
}

/// utime + stime of a `/proc/*/stat` line, in seconds.
pub(crate) fn stat_cpu(stat: &str) -> Option<f64> {
    // After ") " come the fields from 3 (state) on; utime is 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// VmRSS of a `/proc/*/status` file, in bytes.
pub(crate) fn status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Kernel UDP counters (`/proc/net/snmp`): datagrams dropped because a
/// socket's receive buffer was full, and send buffer errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UdpDrops {
    pub(crate) rcvbuf_errors: u64,
    pub(crate) sndbuf_errors: u64,
}

impl UdpDrops {
    pub(crate) fn now() -> UdpDrops {
        std::fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|s| parse_snmp_udp(&s))
            .unwrap_or_default()
    }

    pub(crate) fn since(self, earlier: UdpDrops) -> UdpDrops {
        UdpDrops {
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

pub(crate) fn parse_snmp_udp(s: &str) -> Option<UdpDrops> {
    let mut udp = s.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some(UdpDrops {
        rcvbuf_errors: get("RcvbufErrors")?,
        sndbuf_errors: get("SndbufErrors")?,
    })
}

/// Raises this process's open-file limit to the hard limit (thousands of
/// sockets); children inherit it.
pub(crate) fn raise_fd_limit() -> u64 {
    // The router's own, without its warning about max_sessions.
    router::driver::raise_fd_limit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse() {
        let stat = "1234 (media-0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(stat_name(stat), Some("media-0"));
        let cpu = stat_cpu(stat).unwrap_or(0.0);
        assert!((cpu - 300.0 / clock_ticks()).abs() < 1e-9, "{cpu}");
        // A name with spaces and parentheses.
        let odd = "9 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 1 2 0";
        assert_eq!(stat_name(odd), Some("a (b) c"));
        assert!(stat_cpu(odd).is_some());
        assert_eq!(
            status_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 0 3 9 7 1\n";
        assert_eq!(
            parse_snmp_udp(snmp),
            Some(UdpDrops {
                rcvbuf_errors: 7,
                sndbuf_errors: 1
            })
        );
    }

    #[test]
    fn this_process_is_sampled() {
        let s = Sample::of(std::process::id());
        assert!(s.rss > 1 << 20, "{s:?}");
        assert!(s.cpu >= 0.0);
    }
}
