//! `switchboard token` end to end: a key made with `keygen`, tokens minted
//! with `mint`, a router in token mode taking them over real sockets, and
//! a revocation taking effect on SIGHUP.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.env_remove("SWITCHBOARD_CONFIG");
    c
}

fn run(args: &[&str]) -> String {
    let out = match bin().args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert!(
        out.status.success(),
        "switchboard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    let t = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
    let u = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr());
    match (t, u) {
        (Ok(t), Ok(_)) => t.port(),
        _ => panic!("no free ports"),
    }
}

struct Line(BufReader<TcpStream>);

impl Line {
    fn connect(port: u16) -> Line {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    return Line(BufReader::new(s));
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("router never listened: {e}"),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let _ = writeln!(self.0.get_mut(), "{line}");
    }

    /// The next line that contains `what` (others are skipped).
    fn expect(&mut self, what: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            match self.0.read_line(&mut line) {
                Ok(0) => panic!("the connection ended before {what}"),
                Ok(_) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    fn hello(&mut self, token: &str) -> String {
        self.send(&format!(
            r#"{{"type":"HELLO","version":1,"nickname":"x","token":"{token}"}}"#
        ));
        self.expect(r#""type":"#)
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mint(key: &Path, args: &[&str]) -> String {
    let key = key.display().to_string();
    let mut all = vec!["token", "mint", "--key", &key, "--kid", "k1"];
    all.extend_from_slice(args);
    run(&all).trim().to_owned()
}

#[test]
fn minted_tokens_open_a_token_router_and_a_revocation_lands_on_sighup() {
    let dir = std::env::temp_dir().join(format!("sb-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let key = dir.join("issuer.pem");
    let table = run(&[
        "token",
        "keygen",
        "--out",
        &key.display().to_string(),
        "--id",
        "k1",
    ]);
    assert!(table.contains("[[auth.keys]]"), "{table}");
    let mode =
        std::fs::metadata(&key).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(
        mode.ok().map(|m| m & 0o777),
        Some(0o600),
        "the private key is the owner's"
    );
    // keygen does not overwrite a key.
    assert!(
        bin()
            .args(["token", "keygen", "--out", &key.display().to_string()])
            .output()
            .is_ok_and(|o| !o.status.success())
    );
    let control = free_port();
    let media = free_port();
    let revoked = dir.join("revoked");
    assert!(std::fs::write(&revoked, "# revoked tokens\n").is_ok());
    let config = format!(
        "control = \"127.0.0.1:{control}\"\nmedia = \"127.0.0.1:{media}\"\nadmin = \"127.0.0.1:0\"\n\
         [auth]\nmode = \"token\"\nrevoked_file = \"{}\"\n{table}\n\
         [[rooms]]\nname = \"ops-1\"\nkind = \"ptt\"\n[[rooms]]\nname = \"secret\"\nkind = \"ptt\"\n",
        revoked.display()
    );
    let config_path = dir.join("router.toml");
    assert!(std::fs::write(&config_path, config).is_ok());
    let alice = mint(
        &key,
        &[
            "--sub", "alice", "--name", "Alice", "--join", "ops-*", "--talk", "ops-*",
        ],
    );
    let bob = mint(&key, &["--sub", "bob", "--join", "ops-*"]);
    let child = bin()
        .args(["--config", &config_path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        panic!("{child:?}")
    };
    let router = Running(child);

    let mut a = Line::connect(control);
    a.send(r#"{"type":"HELLO","version":1,"nickname":"alice"}"#);
    assert!(a.expect("ERROR").contains("TOKEN_REQUIRED"));
    let w = a.hello(&alice);
    assert!(
        w.contains("WELCOME") && w.contains(r#""nickname":"Alice""#),
        "{w}"
    );
    a.send(r#"{"type":"JOIN","room":"secret"}"#);
    assert!(a.expect("ERROR").contains("FORBIDDEN"));
    a.send(r#"{"type":"JOIN","room":"ops-1"}"#);
    a.expect("JOINED");
    a.send(r#"{"type":"MIC_REQUEST"}"#);
    a.expect("MIC_GRANTED");
    a.send(r#"{"type":"MIC_RELEASE"}"#);

    let mut b = Line::connect(control);
    assert!(b.hello(&bob).contains("WELCOME"));
    b.send(r#"{"type":"JOIN","room":"ops-1"}"#);
    b.expect("JOINED");
    b.send(r#"{"type":"MIC_REQUEST"}"#);
    assert!(
        b.expect("ERROR").contains("FORBIDDEN"),
        "bob may listen only"
    );

    // Revoke bob and tell the router.
    assert!(std::fs::write(&revoked, "# revoked tokens\nsub:bob\n").is_ok());
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(router.0.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0);
    assert!(b.expect("ERROR").contains("TOKEN_REVOKED"));
    a.send(r#"{"type":"HEARTBEAT"}"#);
    a.expect("HEARTBEAT_ACK");
    let mut c = Line::connect(control);
    assert!(c.hello(&bob).contains("TOKEN_REVOKED"));
    drop(router);
    let _ = std::fs::remove_dir_all(&dir);
}
