//! The `switchboard` binary: starts with no config, and on SIGINT/SIGTERM
//! sends SERVER_CLOSE to every client and exits within 2 s.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_ports() -> (u16, u16) {
    let t = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
    let u = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr());
    match (t, u) {
        (Ok(t), Ok(u)) => (t.port(), u.port()),
        _ => panic!("no free ports"),
    }
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("router never listened: {e}"),
        }
    }
}

fn run_and_signal(signal: libc::c_int) {
    let (tcp, udp) = free_ports();
    let mut child = match Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--control",
            &format!("127.0.0.1:{tcp}"),
            "--media",
            &format!("127.0.0.1:{udp}"),
            "--admin",
            "127.0.0.1:0",
        ])
        .env_remove("SWITCHBOARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let mut clients = Vec::new();
    for nick in ["a", "b", "c"] {
        let mut s = connect(tcp);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = writeln!(s, r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#);
        let _ = writeln!(s, r#"{{"type":"JOIN","room":"lobby"}}"#);
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // WELCOME, JOINED: the default lobby exists with no config file.
        for expect in ["WELCOME", "JOINED"] {
            line.clear();
            let _ = r.read_line(&mut line);
            assert!(line.contains(expect), "expected {expect}, got {line}");
        }
        clients.push(r);
    }
    let t0 = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill failed");
    for r in &mut clients {
        let mut saw_close = false;
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            saw_close |= line.contains("SERVER_CLOSE");
            line.clear();
        }
        assert!(saw_close, "a client got no SERVER_CLOSE on {signal}");
    }
    let exit = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("router still running 5 s after signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        t0.elapsed()
    );
}

#[test]
fn sigterm_closes_every_session_and_exits_within_two_seconds() {
    run_and_signal(libc::SIGTERM);
}

#[test]
fn sigint_closes_every_session_and_exits_within_two_seconds() {
    run_and_signal(libc::SIGINT);
}
