//! What the GUI tests share: an X server and a session bus of their own,
//! the client with its log, the accessibility driver (`a11y.py`), and
//! router helpers.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto_grpc::admin::RoomEvent;
use switchboard_tests::describe;
use tokio_stream::StreamExt;

/// One GUI test at a time: two cores, each test runs a router, an X server,
/// the client and GStreamer pipelines.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An X server of our own.
pub struct Display {
    child: Child,
    bus: Child,
    pub name: String,
    pub bus_address: String,
}

impl Display {
    /// Xvfb, and a D-Bus session bus for the client (its accessibility
    /// tree is read over it, and a fake desktop portal may sit on it).
    pub fn start() -> Display {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("Xvfb: {e} (scripts/test installs xvfb)"));
        let num = first_line(&mut child, "Xvfb");
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("dbus-daemon: {e} (scripts/test installs dbus)"));
        let bus_address = first_line(&mut bus, "dbus-daemon");
        Display {
            child,
            bus,
            name: format!(":{}", num.trim()),
            bus_address: bus_address.trim().to_owned(),
        }
    }

    /// Drives the client through its accessibility tree (see
    /// `support/a11y.py`): `click NAME`, `text NAME VALUE`, `choose ROW
    /// ITEM`, `wait NAME`.
    pub fn a11y(&self, args: &[&str]) {
        self.a11y_out(args);
    }

    /// A fake desktop portal with global shortcuts on this display's bus
    /// (`support/portal.py`, a python-dbusmock template); stopped when
    /// dropped.
    pub fn portal(&self) -> Portal {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/portal.py");
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--template"])
            .arg(&template)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("dbusmock: {e} (scripts/test installs python3-dbusmock)"));
        let portal = Portal {
            child,
            bus_address: self.bus_address.clone(),
        };
        // Ready once it answers on the bus.
        let deadline = Instant::now() + Duration::from_secs(10);
        while portal.call("Press", "nothing").is_err() {
            assert!(Instant::now() < deadline, "the fake portal never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        portal
    }

    /// As [`Display::a11y`], returning what the driver printed.
    pub fn a11y_out(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/a11y.py");
        let out = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(args)
            .env("DISPLAY", &self.name)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .output()
            .unwrap_or_else(|e| panic!("a11y.py: {e} (scripts/test installs python3-pyatspi)"));
        assert!(
            out.status.success(),
            "a11y {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn tool(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("DISPLAY", &self.name)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The id of the first window whose title matches.
    pub fn window(&self, title: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("xdotool")
                .args(["search", "--name", title])
                .env("DISPLAY", &self.name)
                .output()
                .unwrap_or_else(|e| panic!("xdotool: {e}"));
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(id) = text.lines().next() {
                return id.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no window titled {title}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Puts the pointer and the keyboard focus on a window.
    pub fn focus(&self, window: &str) {
        self.tool("xdotool", &["mousemove", "--window", window, "400", "300"]);
        self.tool("xdotool", &["windowfocus", "--sync", window]);
    }

    /// Saves a screenshot of the whole screen or one window.
    pub fn screenshot(&self, window: Option<&str>, name: &str) -> PathBuf {
        // Tests never write into tracked files: the README's pictures are
        // refreshed only when asked for.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = match std::env::var_os("SWITCHBOARD_SCREENSHOT_DIR") {
            Some(d) => root.join(d),
            None => root.join("target/screenshots"),
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        // SWITCHBOARD_SCREENSHOT_THEME=dark: the dark style, as NAME-dark.png.
        let name = match dark() {
            true => name.replace(".png", "-dark.png"),
            false => name.to_owned(),
        };
        let path = dir.join(&name);
        let target = window.unwrap_or("root");
        // On a busy machine the server may not have drawn the window yet
        // (a near-empty picture): try again, until a deadline, instead of
        // failing on the first.
        // The pointer out of the way: no hover, no tooltip in the picture.
        self.tool("xdotool", &["mousemove", "1275", "795"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            self.tool("import", &["-window", target, &path.to_string_lossy()]);
            if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 5_000 {
                return path;
            }
            assert!(std::time::Instant::now() < deadline, "{name} is empty");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        for c in [&mut self.child, &mut self.bus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The first line a child prints (a display number, a bus address).
fn first_line(child: &mut Child, what: &str) -> String {
    let mut out = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("{what} stdout"));
    let mut line = String::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    assert!(!line.is_empty(), "{what} printed nothing");
    line
}

/// The desktop client, with its log collected.
pub struct Gui {
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub config: PathBuf,
}

impl Gui {
    pub fn start(display: &Display, args: &[&str]) -> Gui {
        let config =
            std::env::temp_dir().join(format!("sb-gui-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&config).unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-gtk"))
            .args(args)
            .env("DISPLAY", &display.name)
            .env("DBUS_SESSION_BUS_ADDRESS", &display.bus_address)
            .env("XDG_CONFIG_HOME", &config)
            // Routers it meets are remembered here, not in the user's files.
            .env("XDG_DATA_HOME", &config)
            .env(
                "ADW_DEBUG_COLOR_SCHEME",
                if dark() { "prefer-dark" } else { "default" },
            )
            .env("RUST_LOG", "info")
            .env_remove("WAYLAND_DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("switchboard-gtk: {e}"));
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("gui| {line}");
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Gui { child, log, config }
    }

    /// The client connecting at once to `server` as `nick`, with test media
    /// and `then` (what to do once connected).
    pub fn connected(display: &Display, server: &str, nick: &str, then: &[&str]) -> Gui {
        let mut args = vec![
            "--server",
            server,
            "--nickname",
            nick,
            "--connect",
            "--test-media",
        ];
        args.extend_from_slice(then);
        Gui::start(display, &args)
    }

    /// Waits until a log line contains every one of `parts`; returns it.
    pub async fn wait_log(&self, parts: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = 0;
        loop {
            {
                let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
                for line in &log[seen..] {
                    if parts.iter().all(|p| line.contains(p)) {
                        return line.clone();
                    }
                }
                seen = log.len();
            }
            assert!(
                Instant::now() < deadline,
                "the client never logged {parts:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Gui {
    /// The window never froze: no main-loop tick came late.
    pub fn assert_no_stalls(&self) {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let stalls: Vec<&String> = log.iter().filter(|l| l.contains("ui: stall")).collect();
        assert!(stalls.is_empty(), "the window froze: {stalls:?}");
    }
}

impl Drop for Gui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

pub const WAIT: Duration = Duration::from_secs(20);

/// The next room event that `f` picks, from a WatchRoom stream.
pub async fn next_event<T>(
    stream: &mut tonic::Streaming<RoomEvent>,
    what: &str,
    f: impl Fn(&RoomEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!("the router never showed {what}"),
            Ok(None) => panic!("WatchRoom ended before {what}"),
            Ok(Some(Err(e))) => panic!("WatchRoom: {e}"),
            Ok(Some(Ok(ev))) => {
                eprintln!("router| {}", describe(&ev));
                if let Some(t) = f(&ev) {
                    return t;
                }
            }
        }
    }
}

/// The level (dBFS) of `hz` in each 40 ms window of a WAV file, once the
/// file is complete (its writer finished it when media stopped).
pub async fn tone_windows(path: &Path, hz: f64) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (rate, samples) = loop {
        match switchboard_tests::audio::read_wav(path) {
            Ok((rate, s)) if !s.is_empty() => break (rate, s),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{} never became a WAV file: {other:?}",
                    path.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let n = (rate / 25) as usize;
    samples
        .chunks(n)
        .filter(|w| w.len() == n)
        .map(|w| switchboard_tests::audio::tone_level_dbfs(rate, w, hz))
        .collect()
}

/// The first window where `levels` rises above `db`.
pub fn first_above(levels: &[f64], db: f64) -> Option<usize> {
    levels.iter().position(|l| *l > db)
}

/// The fake portal (see [`Display::portal`]).
pub struct Portal {
    child: Child,
    bus_address: String,
}

impl Portal {
    /// Calls the mock's Press or Release for a shortcut id.
    pub fn call(&self, method: &str, id: &str) -> Result<String, String> {
        let out = Command::new("gdbus")
            .args([
                "call",
                "--session",
                "--dest",
                "org.freedesktop.portal.Desktop",
                "--object-path",
                "/org/freedesktop/portal/desktop",
                "--method",
            ])
            .arg(format!("org.switchboard.MockPortal.{method}"))
            .arg(id)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .output()
            .map_err(|e| format!("gdbus: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the screenshots are of the dark style (the client follows the
/// desktop's preference, which libadwaita's ADW_DEBUG_COLOR_SCHEME sets).
pub fn dark() -> bool {
    std::env::var("SWITCHBOARD_SCREENSHOT_THEME").is_ok_and(|t| t == "dark")
}
