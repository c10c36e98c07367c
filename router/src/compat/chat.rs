//! Seed 004, chat with exclusive voice (docs/compat.md): newline-terminated
//! UTF-8 lines on one TCP connection, the first the nickname; `MSG:`,
//! `STATUS:START:` / `STATUS:STOP:` and `VOICE:<base64 PCM>` in, `USERLIST:`,
//! `SERVER: ...`, `MSG:<nick>: <text>`, `STATUS:START:<holder>`,
//! `STATUS:BUSY`, `STATUS:STOP:<holder>` and `VOICE:` out. Voice is 44.1 kHz
//! PCM, 1,024 samples a line, re-framed into the room's RTP L16 and back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use plugin_api::{Notice, RoomCommand};
use proto::control::DenyReason;
use proto::framing::{Frame, LineFramer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span};

use super::gateway::Rechunk;
use super::{Bound, Context, Link, ended};
use crate::engine::{Command, SessionCommand, SessionNotice, Told};

/// Longest line a client may send (a `VOICE:` line is 2,738 bytes); a
/// longer one closes the connection, the seed having no error to answer.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Bytes of PCM in one `VOICE:` line: 1,024 samples.
pub const VOICE_BYTES: usize = 2048;

/// `VOICE:` lines a client may have waiting to be written; beyond, the
/// oldest is dropped (a slow reader loses voice, it stalls nobody).
pub const VOICE_QUEUE: usize = 8;

/// Other lines a client may have waiting; beyond, it is closed as a slow
/// consumer.
pub const LINE_QUEUE: usize = 1024;

/// Lines that mean nothing to the seed a client may send before it is
/// closed.
pub const MAX_BAD_LINES: usize = 64;

/// One line from a client, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Msg(String),
    /// `STATUS:START:<nick>`: the nickname is the client's and is ignored.
    Start,
    Stop,
    /// Voice PCM (base64 decoded, little-endian samples).
    Voice(Vec<u8>),
    /// Not the seed's (or voice that is not base64).
    Bad,
}

pub fn parse(line: &[u8]) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(b64) = line.strip_prefix(b"VOICE:") {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_or(Line::Bad, Line::Voice);
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Bad;
    };
    if let Some(m) = text.strip_prefix("MSG:") {
        Line::Msg(m.to_owned())
    } else if text.starts_with("STATUS:START:") || text == "STATUS:START" {
        Line::Start
    } else if text.starts_with("STATUS:STOP:") || text == "STATUS:STOP" {
        Line::Stop
    } else {
        Line::Bad
    }
}

/// What the front-end shares between its sessions.
struct Front {
    room: String,
    codec: &'static proto::codec::Codec,
}

/// Accepts seed-004 clients until the router drops the task.
pub async fn run(bound: Bound, ctx: Context) {
    let (config, listener, _) = bound.into_parts();
    let Some(room) = config.room else { return };
    let Some(codec) = proto::codec::audio(config.seed.codec()) else {
        return;
    };
    let front = Arc::new(Front { room, codec });
    let mut acceptor = crate::driver::accept::Acceptor::new(listener, "seed chat");
    loop {
        let (stream, peer) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            session(stream, peer, front.clone(), ctx.clone())
                .instrument(info_span!("seed-chat", %peer)),
        );
    }
}

/// Lines to one client: control lines in order, voice lines lossy.
#[derive(Default)]
struct Out {
    lines: VecDeque<Vec<u8>>,
    voice: VecDeque<Vec<u8>>,
    /// What is left of the line being written.
    current: Vec<u8>,
    voice_dropped: u64,
}

impl Out {
    fn line(&mut self, text: &str) {
        let mut l = Vec::with_capacity(text.len() + 1);
        l.extend_from_slice(text.as_bytes());
        l.push(b'\n');
        self.lines.push_back(l);
    }

    fn voice(&mut self, pcm: &[u8]) {
        let mut l = b"VOICE:".to_vec();
        l.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(pcm)
                .as_bytes(),
        );
        l.push(b'\n');
        if self.voice.len() >= VOICE_QUEUE {
            self.voice.pop_front();
            self.voice_dropped += 1;
        }
        self.voice.push_back(l);
    }

    fn pending(&self) -> bool {
        !self.current.is_empty() || !self.lines.is_empty() || !self.voice.is_empty()
    }

    /// Writes what the socket takes now; false when the client is gone.
    fn write(&mut self, wr: &tokio::net::tcp::OwnedWriteHalf) -> bool {
        loop {
            if self.current.is_empty() {
                match self.lines.pop_front().or_else(|| self.voice.pop_front()) {
                    Some(l) => self.current = l,
                    None => return true,
                }
            }
            match wr.try_write(&self.current) {
                Ok(n) => {
                    self.current.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
}

async fn session(stream: TcpStream, peer: SocketAddr, front: Arc<Front>, ctx: Context) {
    let Some(mut link) = Link::open(&ctx.engine, peer).await else {
        return;
    };
    let (mut rd, wr) = stream.into_split();
    let mut framer = LineFramer::new(MAX_LINE_BYTES);
    let mut read = vec![0u8; 16 * 1024];
    // The first line is the nickname.
    let name = loop {
        if let Some(frame) = framer.next_frame() {
            match frame {
                Frame::Line(l) => break String::from_utf8_lossy(&l).into_owned(),
                Frame::TooLong => {
                    link.close().await;
                    return ended("a nickname line too long");
                }
            }
        }
        tokio::select! {
            r = rd.read(&mut read) => match r {
                Ok(n) if n > 0 => framer.push(&read[..n]),
                _ => {
                    link.close().await;
                    return ended("closed before its nickname");
                }
            },
            _ = link.next() => {
                link.close().await;
                return ended("closed by the router before its nickname");
            }
        }
    };
    let (mut link, welcome, udp_port) = match link.enter(peer, &name, &front.room).await {
        Ok(entered) => entered,
        Err(r) => return ended(&r.message),
    };
    let leg = ctx.leg(&link, &welcome, udp_port, front.codec).await;
    let Some(leg) = leg else {
        link.close().await;
        return ended("no media leg");
    };
    let mut out = Out::default();
    let mut chunks = Rechunk::new(VOICE_BYTES, VOICE_QUEUE);
    let mut view = View::new(link.session);
    let mut bad = 0usize;
    let mut heartbeat = tokio::time::interval(welcome.heartbeat_interval);
    let mut heard = vec![0u8; 2048];
    let why = loop {
        // What was read, including what came with the nickname.
        let mut too_long = false;
        while let Some(frame) = framer.next_frame() {
            let line = match frame {
                Frame::Line(l) => parse(&l),
                Frame::TooLong => {
                    too_long = true;
                    break;
                }
            };
            let (name, command) = match line {
                Line::Msg(text) => ("MSG", RoomCommand::Chat { text, to: None }),
                Line::Start => {
                    view.asking = true;
                    ("STATUS:START", RoomCommand::FloorRequest { priority: 0 })
                }
                Line::Stop => ("STATUS:STOP", RoomCommand::FloorRelease),
                Line::Voice(pcm) => {
                    // The media worker forwards it only while this session
                    // holds the floor.
                    leg.send_pcm(&pcm, Instant::now());
                    continue;
                }
                Line::Bad => {
                    bad += 1;
                    continue;
                }
            };
            let _ = link.send(name, Command::Room(command)).await;
        }
        if too_long {
            break "a line too long";
        }
        if bad > MAX_BAD_LINES {
            break "too many lines that are not the seed's";
        }
        if out.lines.len() > LINE_QUEUE {
            break "too slow to read its lines";
        }
        tokio::select! {
            biased;
            r = wr.writable(), if out.pending() => {
                if r.is_err() || !out.write(&wr) {
                    break "its connection failed";
                }
            }
            told = link.next() => {
                let Some(told) = told else { break "closed by the router" };
                match render(&told, &mut view) {
                    Rendered::Lines(lines) => {
                        for l in lines {
                            out.line(&l);
                        }
                    }
                    Rendered::Withdraw => {
                        let _ = link.send("STATUS:STOP", Command::Room(RoomCommand::FloorRelease)).await;
                        out.line("STATUS:BUSY");
                    }
                    Rendered::Nothing => {}
                    Rendered::End => break "told to leave",
                }
                if !out.write(&wr) {
                    break "its connection failed";
                }
            }
            r = rd.read(&mut read) => match r {
                Ok(n) if n > 0 => framer.push(&read[..n]),
                _ => break "the client closed",
            },
            h = leg.recv(&mut heard) => {
                if let Ok(h) = h {
                    chunks.push(&h.pcm);
                    while let Some(frame) = chunks.pop() {
                        out.voice(&frame);
                    }
                    if !out.write(&wr) {
                        break "its connection failed";
                    }
                }
            }
            _ = heartbeat.tick() => {
                let _ = link.send("HEARTBEAT", Command::Session(SessionCommand::Heartbeat)).await;
            }
        }
    };
    if out.voice_dropped > 0 {
        debug!(
            dropped = out.voice_dropped,
            "voice lines dropped for a slow reader"
        );
    }
    link.close().await;
    drop(wr);
    ended(why);
}

/// What one thing told becomes for a seed-004 client.
#[derive(Debug, PartialEq, Eq)]
enum Rendered {
    Lines(Vec<String>),
    /// Queued: the seed has no queue; the request is withdrawn, and BUSY.
    Withdraw,
    Nothing,
    End,
}

fn one(l: String) -> Rendered {
    Rendered::Lines(vec![l])
}

/// What a session's rendering remembers.
struct View {
    me: plugin_api::SessionId,
    asking: bool,
    /// The member list last told, `None` before the first.
    members: Option<Vec<String>>,
}

impl View {
    fn new(me: plugin_api::SessionId) -> Self {
        Self {
            me,
            asking: false,
            members: None,
        }
    }

    /// A new member list as the seed tells it: who left, the list, who
    /// joined (on its own join, itself).
    fn members(&mut self, now: Vec<String>, own: Option<&str>) -> Vec<String> {
        let mut lines = Vec::new();
        // Lists that change only who talks or is muted are not the seed's news.
        if self.members.as_ref() == Some(&now) {
            return lines;
        }
        let before = self.members.take();
        if let Some(before) = &before {
            for gone in before.iter().filter(|n| !now.contains(n)) {
                lines.push(format!("SERVER: {gone} has left the chatroom."));
            }
        }
        lines.push(format!("USERLIST:{}", now.join(",")));
        match &before {
            Some(before) => {
                for new in now.iter().filter(|n| !before.contains(n)) {
                    lines.push(format!("SERVER: {new} has joined the chatroom."));
                }
            }
            None => {
                if let Some(own) = own {
                    lines.push(format!("SERVER: {own} has joined the chatroom."));
                }
            }
        }
        self.members = Some(now);
        lines
    }
}

fn render(told: &Told, view: &mut View) -> Rendered {
    let me = view.me;
    let asking = &mut view.asking;
    match told {
        Told::Room { notice, .. } => match notice {
            Notice::ChatPosted { line, to } => match to {
                None => one(format!("MSG:{}: {}", line.from, line.text)),
                // The seed has no private messages: the one it is for (and
                // its sender) see it marked.
                Some(_) => one(format!("MSG:{} (private): {}", line.from, line.text)),
            },
            Notice::FloorGranted { nickname, .. } => {
                *asking = false;
                one(format!("STATUS:START:{nickname}"))
            }
            Notice::FloorDenied {
                session, reason, ..
            } if *session == me => {
                *asking = false;
                match reason {
                    DenyReason::Queued => Rendered::Withdraw,
                    DenyReason::AlreadyHolder => Rendered::Nothing,
                    _ => one("STATUS:BUSY".into()),
                }
            }
            Notice::FloorQueued { .. } if *asking => {
                *asking = false;
                Rendered::Withdraw
            }
            Notice::FloorReleased { nickname, .. } | Notice::FloorRevoked { nickname, .. } => {
                one(format!("STATUS:STOP:{nickname}"))
            }
            Notice::RoomClosed { .. } => Rendered::End,
            _ => Rendered::Nothing,
        },
        Told::Session(n) => match n {
            SessionNotice::Members { users, .. } => {
                let now: Vec<String> = users.iter().map(|u| u.nickname.clone()).collect();
                let own = users
                    .iter()
                    .find(|u| u.session_id == me)
                    .map(|u| u.nickname.clone());
                Rendered::Lines(view.members(now, own.as_deref()))
            }
            SessionNotice::Left { .. }
            | SessionNotice::ServerClose { .. }
            | SessionNotice::Goodbye => Rendered::End,
            SessionNotice::Refused { .. } if *asking => {
                *asking = false;
                one("STATUS:BUSY".into())
            }
            _ => Rendered::Nothing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_become_the_seeds_news_and_lists() {
        let mut v = View::new(1);
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            v.members(names(&["ann", "bob"]), Some("bob")),
            ["USERLIST:ann,bob", "SERVER: bob has joined the chatroom."]
        );
        assert_eq!(
            v.members(names(&["ann", "bob", "cy"]), Some("bob")),
            ["USERLIST:ann,bob,cy", "SERVER: cy has joined the chatroom."]
        );
        assert!(
            v.members(names(&["ann", "bob", "cy"]), Some("bob"))
                .is_empty()
        );
        assert_eq!(
            v.members(names(&["bob", "cy"]), Some("bob")),
            ["SERVER: ann has left the chatroom.", "USERLIST:bob,cy"]
        );
    }

    #[test]
    fn lines_parse_as_the_seed_writes_them() {
        assert_eq!(parse(b"MSG:hello: there"), Line::Msg("hello: there".into()));
        assert_eq!(parse(b"STATUS:START:ann\r"), Line::Start);
        assert_eq!(parse(b"STATUS:STOP:ann"), Line::Stop);
        assert_eq!(parse(b"VOICE:AAEC"), Line::Voice(vec![0, 1, 2]));
        assert_eq!(parse(b"VOICE:!!"), Line::Bad);
        assert_eq!(parse(b"HELLO"), Line::Bad);
        assert_eq!(parse(b"\xff\xfe"), Line::Bad);
        assert_eq!(parse(b""), Line::Bad);
    }
}
