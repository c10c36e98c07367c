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
        objects_until(&mut self.objects, want, "seed-003 client").await
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

/// A seed-002 client as compat.md describes one: TCP frames of a 4-byte
/// big-endian length and a JSON object; media sent from an unbound socket
/// to the server's UDP port (known by IP only), received on its registered
/// video and audio ports.
pub struct Seed002 {
    pub name: String,
    pub wr: tokio::net::tcp::OwnedWriteHalf,
    pub objects: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    pub video: UdpSocket,
    pub audio: UdpSocket,
    pub send: UdpSocket,
    pub server: SocketAddr,
    pub audio_id: u32,
    pub frame_id: u32,
}

/// One video datagram a seed-002 client received.
#[derive(Debug, Clone)]
pub struct SeedVideo {
    pub frame_id: u32,
    pub sequence: u32,
    pub width: u16,
    pub height: u16,
    pub sender: String,
    pub jpeg: Vec<u8>,
}

impl Seed002 {
    pub async fn connect(
        control: SocketAddr,
        media: SocketAddr,
        ip: Ipv4Addr,
        name: &str,
    ) -> Seed002 {
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
            loop {
                let mut len = [0u8; 4];
                if rd.read_exact(&mut len).await.is_err() {
                    break;
                }
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                if rd.read_exact(&mut body).await.is_err() {
                    break;
                }
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("a frame that is no JSON: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let bind = || UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0));
        let (video, audio, send) = (bind().await, bind().await, bind().await);
        let ok = |s: std::io::Result<UdpSocket>| s.unwrap_or_else(|e| panic!("{name}: UDP: {e}"));
        Seed002 {
            name: name.into(),
            wr,
            objects,
            video: ok(video),
            audio: ok(audio),
            send: ok(send),
            server: media,
            audio_id: 0,
            frame_id: 0,
        }
    }

    pub async fn send(&mut self, v: serde_json::Value) {
        let body = v.to_string();
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body.as_bytes());
        if let Err(e) = self.wr.write_all(&f).await {
            panic!("{}: write: {e}", self.name);
        }
    }

    /// Objects up to and including the first `want` picks.
    pub async fn until(
        &mut self,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        objects_until(&mut self.objects, want, &self.name).await
    }

    /// The next object of `kind`.
    pub async fn expect(&mut self, kind: &str) -> serde_json::Value {
        self.until(|v| v["type"] == kind)
            .await
            .pop()
            .unwrap_or_default()
    }

    /// Everything that arrives before a quiet spell.
    pub async fn rest(&mut self) -> Vec<serde_json::Value> {
        let mut got = Vec::new();
        while let Ok(Some(v)) = tokio::time::timeout(QUIET, self.objects.recv()).await {
            got.push(v);
        }
        got
    }

    /// CREATE_MEETING: its code.
    pub async fn create(&mut self) -> String {
        let name = self.name.clone();
        self.send(serde_json::json!({"type": "CREATE_MEETING", "name": name}))
            .await;
        let m = self.expect("MEETING_CREATED").await;
        m["meeting_code"]
            .as_str()
            .unwrap_or_else(|| panic!("{m}"))
            .to_owned()
    }

    pub async fn request_join(&mut self, code: &str) {
        let name = self.name.clone();
        self.send(serde_json::json!({"type": "REQUEST_JOIN", "meeting_code": code, "name": name}))
            .await;
    }

    pub async fn register_udp(&mut self) {
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        let (v, a) = (port(&self.video), port(&self.audio));
        self.send(serde_json::json!({"type": "REGISTER_UDP", "video_port": v, "audio_port": a}))
            .await;
    }

    /// One audio datagram: 1,024 samples at 16 kHz.
    pub async fn talk(&mut self, pcm: &[u8]) {
        let mut d = self.audio_id.to_be_bytes().to_vec();
        d.extend_from_slice(&0u64.to_be_bytes());
        d.extend_from_slice(&16_000u16.to_be_bytes());
        d.push(1);
        d.extend_from_slice(&(pcm.len() as i32).to_be_bytes());
        d.extend_from_slice(pcm);
        self.audio_id += 1;
        if let Err(e) = self.send.send_to(&d, self.server).await {
            panic!("send audio: {e}");
        }
    }

    /// One video datagram: a JPEG frame of `w` × `h`.
    pub async fn show(&mut self, jpeg: &[u8], w: u16, h: u16) {
        let mut d = self.frame_id.to_be_bytes().to_vec();
        d.extend_from_slice(&0u64.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(&w.to_be_bytes());
        d.extend_from_slice(&h.to_be_bytes());
        d.extend_from_slice(&(jpeg.len() as i32).to_be_bytes());
        let mut name = [0u8; 16];
        let n = self.name.len().min(16);
        name[..n].copy_from_slice(&self.name.as_bytes()[..n]);
        d.extend_from_slice(&name);
        d.extend_from_slice(jpeg);
        self.frame_id += 1;
        if let Err(e) = self.send.send_to(&d, self.server).await {
            panic!("send video: {e}");
        }
    }

    /// Audio datagrams until a quiet spell: (audio_id, samples as sent).
    pub async fn heard_audio(&self) -> Vec<(u32, Vec<u8>)> {
        collect(&self.audio, None, parse_audio).await
    }

    /// Audio datagrams for `d`.
    pub async fn audio_for(&self, d: Duration) -> Vec<(u32, Vec<u8>)> {
        collect(&self.audio, Some(d), parse_audio).await
    }

    /// Video datagrams until a quiet spell.
    pub async fn seen_video(&self) -> Vec<SeedVideo> {
        collect(&self.video, None, parse_video).await
    }

    /// Video datagrams for `d`.
    pub async fn video_for(&self, d: Duration) -> Vec<SeedVideo> {
        collect(&self.video, Some(d), parse_video).await
    }

    /// Sends `data` as `filename` to `target` ("Everyone" for all), one
    /// 8,192-byte chunk after another, each acknowledged, then the MD5.
    pub async fn send_file(&mut self, target: &str, filename: &str, data: &[u8]) {
        use base64::Engine as _;
        use md5::Digest as _;
        self.send(serde_json::json!({
            "type": "FILE_START", "filename": filename, "filesize": data.len(),
            "chunk_size": 8192, "target_name": target,
        }))
        .await;
        for (i, chunk) in data.chunks(8192).enumerate() {
            let b = base64::engine::general_purpose::STANDARD.encode(chunk);
            self.send(serde_json::json!({
                "type": "FILE_CHUNK", "chunk_id": i, "data": b, "target_name": target,
            }))
            .await;
            let ack = self.expect("FILE_ACK").await;
            assert_eq!(ack["chunk_id"], i, "{ack}");
        }
        let md5: String = md5::Md5::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.send(serde_json::json!({"type": "FILE_END", "checksum": md5, "target_name": target}))
            .await;
    }

    /// Receives one file as the seed's receiver does: chunk i at i × 8,192,
    /// until FILE_END_NOTIFY, whose MD5 it checks. (sender, name, bytes)
    pub async fn receive_file(&mut self) -> (String, String, Vec<u8>) {
        use base64::Engine as _;
        use md5::Digest as _;
        let start = self.expect("FILE_START_NOTIFY").await;
        let size = start["filesize"]
            .as_u64()
            .unwrap_or_else(|| panic!("{start}")) as usize;
        let mut data = vec![0u8; size];
        loop {
            let v = self
                .until(|v| v["type"] == "FILE_CHUNK_FORWARD" || v["type"] == "FILE_END_NOTIFY")
                .await
                .pop()
                .unwrap_or_default();
            if v["type"] == "FILE_END_NOTIFY" {
                let md5: String = md5::Md5::digest(&data)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(v["checksum"], md5, "the MD5 checks out");
                break;
            }
            let at = v["chunk_id"].as_u64().unwrap_or_else(|| panic!("{v}")) as usize * 8192;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["data"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
            data[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        (
            start["sender_name"].as_str().unwrap_or_default().to_owned(),
            start["filename"].as_str().unwrap_or_default().to_owned(),
            data,
        )
    }
}

/// A baseline JPEG of `w` × `h` (4:2:0, standard Huffman tables, as the
/// seed's encoder makes), one colour on the left half, another on the right.
pub fn jpeg_frame(w: u16, h: u16, left: [u8; 3], right: [u8; 3]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
    for _ in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(if x < w / 2 { &left } else { &right });
        }
    }
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 80);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    e.encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap_or_else(|e| panic!("encode: {e}"));
    out
}

/// Decodes a JPEG: (width, height, RGB pixels).
pub fn decode_jpeg(jpeg: &[u8]) -> (u16, u16, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    let pixels = d.decode().unwrap_or_else(|e| panic!("decode: {e}"));
    let info = d.info().unwrap_or_else(|| panic!("no info"));
    (info.width, info.height, pixels)
}

/// The RGB pixel at (x, y) of a decoded frame `w` wide.
pub fn pixel(pixels: &[u8], w: u16, x: u16, y: u16) -> [u8; 3] {
    let i = (usize::from(y) * usize::from(w) + usize::from(x)) * 3;
    [pixels[i], pixels[i + 1], pixels[i + 2]]
}

/// Datagrams on `udp` for `within` (or until a quiet spell), parsed.
async fn collect<T>(udp: &UdpSocket, within: Option<Duration>, parse: fn(&[u8]) -> T) -> Vec<T> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let until = within.map(|d| tokio::time::Instant::now() + d);
    loop {
        let deadline = until.unwrap_or_else(|| tokio::time::Instant::now() + QUIET);
        match tokio::time::timeout_at(deadline, udp.recv(&mut buf)).await {
            Ok(Ok(n)) => got.push(parse(&buf[..n])),
            _ => return got,
        }
    }
}

fn parse_audio(d: &[u8]) -> (u32, Vec<u8>) {
    assert!(d.len() >= 19, "an audio datagram of {} bytes", d.len());
    assert_eq!(u16::from_be_bytes([d[12], d[13]]), 16_000);
    assert_eq!(d[14], 1);
    let size = i32::from_be_bytes([d[15], d[16], d[17], d[18]]);
    assert_eq!(size as usize, d.len() - 19);
    (
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        d[19..].to_vec(),
    )
}

fn parse_video(d: &[u8]) -> SeedVideo {
    assert!(d.len() > 40, "a video datagram of {} bytes", d.len());
    let size = i32::from_be_bytes([d[20], d[21], d[22], d[23]]);
    assert_eq!(size as usize, d.len() - 40);
    SeedVideo {
        frame_id: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        sequence: u32::from_be_bytes([d[12], d[13], d[14], d[15]]),
        width: u16::from_be_bytes([d[16], d[17]]),
        height: u16::from_be_bytes([d[18], d[19]]),
        sender: String::from_utf8_lossy(&d[24..40])
            .trim_end_matches('\0')
            .to_owned(),
        jpeg: d[40..].to_vec(),
    }
}

/// The objects a seed client received, up to and including the first `want`
/// picks; the test fails after [`WAIT`] without one.
async fn objects_until(
    objects: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    want: impl Fn(&serde_json::Value) -> bool,
    who: &str,
) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, objects.recv()).await {
            Ok(Some(v)) => {
                let done = want(&v);
                seen.push(v);
                if done {
                    return seen;
                }
            }
            other => panic!("{who}: waiting: {other:?}; saw {seen:?}"),
        }
    }
}
