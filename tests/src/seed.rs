//! Clients of the seed systems, written from ../shared/compat.md alone and
//! speaking only each seed's wire format, for the front-ends' tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// How long a seed client waits for what it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long it waits to be sure something does not come.
pub const QUIET: Duration = Duration::from_millis(300);

/// A seed-000 client as compat.md describes one: a thread (here a task)
/// that keeps calling `recv()` and takes each result as one message.
pub struct Seed000 {
    pub tcp: tokio::net::tcp::OwnedWriteHalf,
    pub heard: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub udp: UdpSocket,
    /// The server's UDP port.
    pub server: SocketAddr,
    pub port: u16,
}

impl Seed000 {
    /// Connects from `ip`, says `name`, and binds the port it is given.
    pub async fn join(control: SocketAddr, media: SocketAddr, ip: Ipv4Addr, name: &str) -> Seed000 {
        let sock = TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        if let Err(e) = sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)) {
            panic!("bind {ip}: {e}");
        }
        let mut tcp = sock
            .connect(control)
            .await
            .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        let _ = tcp.set_nodelay(true);
        tcp.write_all(name.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{name}: write: {e}"));
        let reply = recv_one(&mut tcp)
            .await
            .unwrap_or_else(|| panic!("{name}: no udp_port"));
        let v: serde_json::Value =
            serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{name}: {reply:?}: {e}"));
        let port = v["udp_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("{name}: {reply:?}"));
        let udp = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), port))
            .await
            .unwrap_or_else(|e| panic!("{name}: bind UDP {ip}:{port}: {e}"));
        let (mut rd, tcp) = tcp.into_split();
        let (tx, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            while let Ok(n @ 1..) = rd.read(&mut buf).await {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Seed000 {
            tcp,
            heard,
            udp,
            server: media,
            port,
        }
    }

    pub async fn say(&mut self, words: &str) {
        if let Err(e) = self.tcp.write_all(words.as_bytes()).await {
            panic!("write {words}: {e}");
        }
    }

    /// The next message: one whole `recv()`, as the seed client reads it.
    pub async fn hear(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.heard.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("closed"),
            Err(_) => panic!("nothing heard"),
        }
    }

    /// Nothing arrives for a while.
    pub async fn silent(&mut self) -> Option<String> {
        tokio::time::timeout(QUIET, self.heard.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn talk(&self, pcm: &[u8]) {
        if let Err(e) = self.udp.send_to(pcm, self.server).await {
            panic!("send audio: {e}");
        }
    }

    /// Every datagram until a quiet spell.
    pub async fn heard_audio(&self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(Ok(n)) = tokio::time::timeout(QUIET, self.udp.recv(&mut buf)).await {
            got.push(buf[..n].to_vec());
        }
        got
    }
}

pub async fn recv_one(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    match tcp.read(&mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
    }
}

/// One seed-000 datagram: 1,024 samples of a ramp, little-endian.
pub fn datagram(k: u16) -> Vec<u8> {
    (0..1024u16)
        .flat_map(|i| (i.wrapping_mul(31) ^ k).to_le_bytes())
        .collect()
}

/// A seed-004 client: a task reads lines as they come.
pub struct Seed004 {
    pub wr: tokio::net::tcp::OwnedWriteHalf,
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Seed004 {
    pub async fn join(control: SocketAddr, nick: &str) -> Seed004 {
        let tcp = TcpStream::connect(control)
            .await
            .unwrap_or_else(|e| panic!("{nick}: {e}"));
        let (rd, wr) = tcp.into_split();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut rd = BufReader::new(rd).lines();
            while let Ok(Some(l)) = rd.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut c = Seed004 { wr, lines };
        c.say(nick).await;
        c
    }

    pub async fn say(&mut self, line: &str) {
        if let Err(e) = self.wr.write_all(format!("{line}\n").as_bytes()).await {
            panic!("write {line}: {e}");
        }
    }

    pub async fn talk(&mut self, pcm: &[u8]) {
        let l = format!(
            "VOICE:{}",
            base64::engine::general_purpose::STANDARD.encode(pcm)
        );
        self.say(&l).await;
    }

    /// Lines up to and including the first `want` picks; panics with what
    /// came instead.
    pub async fn until(&mut self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.lines.recv()).await {
                Ok(Some(l)) => {
                    let done = want(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                other => panic!("waiting: {other:?}; saw {seen:?}"),
            }
        }
    }

    pub async fn expect(&mut self, line: &str) -> Vec<String> {
        self.until(|l| l == line).await
    }

    /// Every line until a quiet spell.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(Some(l)) = tokio::time::timeout(QUIET, self.lines.recv()).await {
            got.push(l);
        }
        got
    }
}

/// A loopback address of its own for a seed client (seed clients are told
/// apart by IP).
pub fn ip(a: u8, b: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, a, b)
}

/// The voice in `VOICE:` lines, concatenated.
pub fn voice_of(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("VOICE:"))
        .flat_map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// A seed-003 client as compat.md describes one: JSON objects with a `KEY`
/// written back to back; each `recv()` of at most 1,024 bytes parsed as what
/// it holds; audio of 512 samples at 20 kHz from its own UDP port.
pub struct Seed003 {
    pub wr: tokio::net::tcp::OwnedWriteHalf,
    /// Every object received, each from one `recv()` (a `recv()` holding
    /// anything but one object fails the test).
    pub objects: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    pub udp: UdpSocket,
    pub server: SocketAddr,
}

impl Seed003 {
    /// Connects from `ip` and says its nickname; CLIENT_PORT and the
    /// greeting datagram follow once the session number came.
    pub async fn join(
        control: SocketAddr,
        media: SocketAddr,
        ip: Ipv4Addr,
        name: &str,
    ) -> (Seed003, u64) {
        let sock = TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        if let Err(e) = sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)) {
            panic!("bind {ip}: {e}");
        }
        let tcp = sock
            .connect(control)
            .await
            .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        let (mut rd, wr) = tcp.into_split();
        let (tx, objects) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            while let Ok(n @ 1..) = rd.read(&mut buf).await {
                let v: serde_json::Value = match serde_json::from_slice(&buf[..n]) {
                    Ok(v) => v,
                    Err(e) => panic!(
                        "one recv() is not one object ({e}): {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    ),
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let udp = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .unwrap_or_else(|e| panic!("{name}: bind UDP: {e}"));
        let mut c = Seed003 {
            wr,
            objects,
            udp,
            server: media,
        };
        c.send(serde_json::json!({"KEY": 2, "NAME": name})).await;
        let session = c
            .until(|v| v["KEY"] == 6)
            .await
            .pop()
            .and_then(|v| v["SESSION"].as_u64())
            .unwrap_or_else(|| panic!("{name}: no SESSION"));
        let port = c.udp.local_addr().map(|a| a.port()).unwrap_or_default();
        c.send(serde_json::json!({"KEY": 7, "PORT": port})).await;
        // The seed's greeting: not audio.
        c.talk(&[b'a'; 1024]).await;
        (c, session)
    }

    pub async fn send(&mut self, v: serde_json::Value) {
        if let Err(e) = self.wr.write_all(v.to_string().as_bytes()).await {
            panic!("write: {e}");
        }
    }

    /// Objects up to and including the first `want` picks.
    pub async fn until(
        &mut self,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.objects.recv()).await {
                Ok(Some(v)) => {
                    let done = want(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                other => panic!("waiting: {other:?}; saw {seen:?}"),
            }
        }
    }

    /// The next user list.
    pub async fn users(&mut self) -> Vec<String> {
        let v = self
            .until(|v| v["KEY"] == 3)
            .await
            .pop()
            .unwrap_or_default();
        v["USERS"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for the user list to be `names`.
    pub async fn users_become(&mut self, names: &[&str]) {
        let want = serde_json::json!(names);
        self.until(|v| v["KEY"] == 3 && v["USERS"] == want).await;
    }

    pub async fn talk(&self, pcm: &[u8]) {
        if let Err(e) = self.udp.send_to(pcm, self.server).await {
            panic!("send audio: {e}");
        }
    }

    /// Every datagram until a quiet spell.
    pub async fn heard_audio(&self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(Ok(n)) = tokio::time::timeout(QUIET, self.udp.recv(&mut buf)).await {
            got.push(buf[..n].to_vec());
        }
        got
    }
}

/// `n` samples of value `v`, little-endian.
pub fn constant(v: i16, n: usize) -> Vec<u8> {
    std::iter::repeat_n(v.to_le_bytes(), n).flatten().collect()
}

/// Little-endian samples.
pub fn samples(pcm: &[u8]) -> Vec<i16> {
    pcm.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A seed-001 client as compat.md describes one: each request on a TCP
/// connection of its own (write, read the reply, close), known to the
/// server by its IP; audio as a 4-byte big-endian sequence number + 1,764
/// bytes, sent from an unbound socket and received on its registered port.
pub struct Seed001 {
    pub ip: Ipv4Addr,
    pub control: SocketAddr,
    /// Where it receives (its registered port).
    pub udp: UdpSocket,
    /// Where it sends from: another port (the server goes by IP).
    pub send: UdpSocket,
    pub server: SocketAddr,
    /// Its next sequence number.
    pub seq: u32,
}

/// The sequence number of an end-of-transmission datagram.
pub const SEED001_EOT: u32 = 99_999_999;

/// One request from `ip` on a connection of its own: the server's reply.
pub async fn seed001_request(control: SocketAddr, ip: Ipv4Addr, request: &[u8]) -> String {
    let sock = TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
    if let Err(e) = sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)) {
        panic!("bind {ip}: {e}");
    }
    let mut tcp = sock
        .connect(control)
        .await
        .unwrap_or_else(|e| panic!("{ip}: connect: {e}"));
    if let Err(e) = tcp.write_all(request).await {
        panic!("{ip}: write: {e}");
    }
    let mut reply = Vec::new();
    match tokio::time::timeout(WAIT, tcp.read_to_end(&mut reply)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&reply).into_owned(),
        other => panic!("{ip}: no reply and close: {other:?}"),
    }
}

/// `HELLO` + the port as 4 bytes big-endian + the target's IP.
pub fn seed001_hello(port: u16, target: Ipv4Addr) -> Vec<u8> {
    let mut r = b"HELLO".to_vec();
    r.extend_from_slice(&u32::from(port).to_be_bytes());
    r.extend_from_slice(target.to_string().as_bytes());
    r
}

impl Seed001 {
    /// Binds its port and registers a call to `target`: the reply.
    pub async fn register(
        control: SocketAddr,
        media: SocketAddr,
        ip: Ipv4Addr,
        target: Ipv4Addr,
    ) -> (Seed001, String) {
        let udp = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .unwrap_or_else(|e| panic!("{ip}: bind UDP: {e}"));
        let send = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .unwrap_or_else(|e| panic!("{ip}: bind UDP: {e}"));
        let port = udp.local_addr().map(|a| a.port()).unwrap_or_default();
        let reply = seed001_request(control, ip, &seed001_hello(port, target)).await;
        (
            Seed001 {
                ip,
                control,
                udp,
                send,
                server: media,
                seq: 0,
            },
            reply,
        )
    }

    pub async fn request(&self, request: &[u8]) -> String {
        seed001_request(self.control, self.ip, request).await
    }

    /// Sends 882 samples with its next sequence number.
    pub async fn talk(&mut self, pcm: &[u8]) {
        let mut d = self.seq.to_be_bytes().to_vec();
        d.extend_from_slice(pcm);
        self.seq += 1;
        if let Err(e) = self.send.send_to(&d, self.server).await {
            panic!("send audio: {e}");
        }
    }

    /// Ends its transmission.
    pub async fn end_transmission(&self) {
        let mut d = SEED001_EOT.to_be_bytes().to_vec();
        d.extend_from_slice(&[0u8; 1764]);
        if let Err(e) = self.send.send_to(&d, self.server).await {
            panic!("send EOT: {e}");
        }
    }

    /// Every datagram until a quiet spell, as (sequence, audio); the test
    /// fails on one whose audio is not exactly 1,764 bytes (the client
    /// drops those).
    pub async fn heard(&self) -> Vec<(u32, Vec<u8>)> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(Ok(n)) = tokio::time::timeout(QUIET, self.udp.recv(&mut buf)).await {
            assert_eq!(n, 4 + 1764, "a datagram of {n} bytes");
            let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            got.push((seq, buf[4..n].to_vec()));
        }
        got
    }
}
