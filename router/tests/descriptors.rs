//! The `switchboard` binary out of file descriptors: it neither spins on
//! the connections it cannot accept (control and admin) nor floods its log,
//! and it serves them once descriptors are free again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

fn free_tcp_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("{e}"),
    }
}

fn free_udp_port() -> u16 {
    match UdpSocket::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("{e}"),
    }
}

/// A client that said HELLO; `Ok` once WELCOME came within `wait`.
fn hello(port: u16, wait: Duration) -> (BufReader<TcpStream>, bool) {
    let mut s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let _ = s.set_read_timeout(Some(wait));
    let _ = writeln!(s, r#"{{"type":"HELLO","version":1,"nickname":"n"}}"#);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let welcomed = r.read_line(&mut line).is_ok() && line.contains("WELCOME");
    (r, welcomed)
}

/// CPU time (user + system) the process has used.
fn cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        panic!("no /proc/{pid}/stat")
    };
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime the 14th and stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(f.iter().sum::<u64>() * 1000 / hz)
}

#[test]
fn out_of_descriptors_the_router_backs_off_and_recovers() {
    let (control, media, admin) = (free_tcp_port(), free_udp_port(), free_tcp_port());
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("descriptors.log");
    let (Ok(log_file), Ok(out_file)) = (
        std::fs::File::create(&log),
        std::fs::File::create(log.with_extension("out")),
    ) else {
        panic!("log file")
    };
    let mut child = match Command::new("prlimit")
        .args(["--nofile=64:64", env!("CARGO_BIN_EXE_switchboard")])
        .args(["--control", &format!("127.0.0.1:{control}")])
        .args(["--media", &format!("127.0.0.1:{media}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .env_remove("SWITCHBOARD_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(out_file)
        .stderr(log_file)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("prlimit: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", control)).is_err() {
        assert!(Instant::now() < deadline, "router never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Sessions until one is not welcomed: the router is out of descriptors.
    let mut held = Vec::new();
    let pending = loop {
        let (c, welcomed) = hello(control, Duration::from_millis(1500));
        if !welcomed {
            break c;
        }
        held.push(c);
        assert!(held.len() < 64, "64 sessions on 64 descriptors?");
    };
    // And one waiting at the admin port too.
    let Ok(admin_pending) = TcpStream::connect(("127.0.0.1", admin)) else {
        panic!("admin connect")
    };
    let pid = child.id();
    let before = cpu(pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu(pid) - before;
    let share = used.as_secs_f64() / t.elapsed().as_secs_f64();
    // Spinning on both listeners used 80-117% of a core; backing off, well
    // under 1%. 25% leaves room for a busy machine's accounting.
    assert!(
        share < 0.25,
        "the router used {share:.2} of a core while out of descriptors"
    );

    // Descriptors free again: the waiting session is served.
    drop(held.drain(..4).collect::<Vec<_>>());
    let mut pending = pending;
    let _ = pending
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let _ = pending.read_line(&mut line);
    assert!(
        line.contains("WELCOME"),
        "after descriptors were freed: {line:?}"
    );
    drop(admin_pending);

    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    for path in [log.clone(), log.with_extension("out")] {
        let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    }
    let warnings = text.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        (1..=4).contains(&warnings),
        "{warnings} accept warnings in {}s:\n{text}",
        t.elapsed().as_secs()
    );
    assert!(
        text.contains("open-file limit") || text.contains("file"),
        "the low limit is told at start:\n{text}"
    );
}
