//! Seed 003, the voice communicator (docs/compat.md): JSON objects written
//! back to back on TCP, each with a `KEY` (0 ACK, 1 UNKNOWN_ERROR,
//! 2 SEND_NICKNAME, 3 SEND_NEW_USERS, 4 DISCONNECT, 5 SERVER_CLOSE, 6 SESSION,
//! 7 CLIENT_PORT); audio as raw 20 kHz PCM datagrams of 512 samples from and
//! to (the client's IP, its CLIENT_PORT), relayed to every other member. The
//! seed's clients do not mix, so the front-end sums the talkers for each
//! receiver ([`Mixer`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugin_api::Notice;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::{Instrument, info_span};

use super::gateway::{Leg, Mixer, SEED_DATAGRAM};
use super::{Bound, Context, Link, Paced, PortPool, ended};
use crate::engine::{Command, SessionCommand, SessionNotice, Told};

/// Samples in one seed datagram: 512 at 20 kHz, 25.6 ms.
pub const FRAME_SAMPLES: usize = 512;
pub const FRAME_TIME: Duration = Duration::from_micros(25_600);

/// The client's greeting datagram after CLIENT_PORT: 1,024 × `a`, not audio.
const GREETING: [u8; 1024] = [b'a'; 1024];

/// Largest message the client reads at once: each object is kept within.
pub const MAX_OBJECT_BYTES: usize = 1024;

/// Unparsed input a client may have waiting; beyond, it is closed.
pub const MAX_PENDING_BYTES: usize = 4096;

/// Bad objects a client may send before it is closed (each is answered
/// UNKNOWN_ERROR).
pub const MAX_BAD_OBJECTS: usize = 16;

/// Frames a talker's samples wait in a receiver's mixer at most (200 ms).
const MIX_FRAMES: usize = 8;

/// The seed's message keys.
pub mod key {
    pub const ACK: u64 = 0;
    pub const UNKNOWN_ERROR: u64 = 1;
    pub const SEND_NICKNAME: u64 = 2;
    pub const SEND_NEW_USERS: u64 = 3;
    pub const DISCONNECT: u64 = 4;
    pub const SERVER_CLOSE: u64 = 5;
    pub const SESSION: u64 = 6;
    pub const CLIENT_PORT: u64 = 7;
}

/// One object from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ack,
    Nickname(String),
    ClientPort(u16),
    Disconnect,
    /// Well-formed JSON that is not one of the seed's messages.
    Unknown,
}

fn message(v: &Value) -> Message {
    let Some(k) = v.get("KEY").and_then(Value::as_u64) else {
        return Message::Unknown;
    };
    match k {
        key::ACK => Message::Ack,
        key::SEND_NICKNAME => v
            .get("NAME")
            .and_then(Value::as_str)
            .map_or(Message::Unknown, |n| Message::Nickname(n.to_owned())),
        key::CLIENT_PORT => v
            .get("PORT")
            .and_then(|p| {
                p.as_u64()
                    .or_else(|| p.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .map_or(Message::Unknown, Message::ClientPort),
        key::DISCONNECT => Message::Disconnect,
        _ => Message::Unknown,
    }
}

/// Parses the stream of back-to-back objects (the original split on `}{`,
/// which broke on strings holding it).
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

/// One parsed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Message(Message),
    /// Bytes that are no JSON object (skipped to the next `{`).
    Garbage,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn next_input(&mut self) -> Option<Input> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.buf.drain(..skip);
        if self.buf.is_empty() {
            return None;
        }
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                let used = stream.byte_offset();
                self.buf.drain(..used);
                Some(Input::Message(if v.is_object() {
                    message(&v)
                } else {
                    Message::Unknown
                }))
            }
            Some(Err(e)) if e.is_eof() => None,
            _ => {
                let n = self.buf[1..]
                    .iter()
                    .position(|b| *b == b'{')
                    .map_or(self.buf.len(), |i| i + 1);
                self.buf.drain(..n);
                Some(Input::Garbage)
            }
        }
    }
}

struct Front {
    room: String,
    codec: &'static proto::codec::Codec,
    media: Arc<UdpSocket>,
    sources: Mutex<HashMap<SocketAddr, Source>>,
    numbers: PortPool,
}

/// A client's media address, as registered by CLIENT_PORT.
struct Source {
    leg: Arc<Leg>,
    /// Its first datagram may be the greeting.
    greeted: bool,
}

pub async fn run(bound: Bound, ctx: Context) {
    let (config, listener, media) = bound.into_parts();
    let (Some(media), Some(room)) = (media, config.room) else {
        return;
    };
    let Some(codec) = proto::codec::audio(config.seed.codec()) else {
        return;
    };
    let front = Arc::new(Front {
        room,
        codec,
        media,
        sources: Mutex::new(HashMap::new()),
        numbers: PortPool::range(0, 999),
    });
    tokio::spawn(media_in(front.clone()));
    let mut acceptor = crate::driver::accept::Acceptor::new(listener, "seed tip");
    loop {
        let (stream, peer) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            session(stream, peer, front.clone(), ctx.clone())
                .instrument(info_span!("seed-tip", %peer)),
        );
    }
}

async fn media_in(front: Arc<Front>) {
    let mut buf = vec![0u8; SEED_DATAGRAM + 1];
    loop {
        let Ok((n, from)) = front.media.recv_from(&mut buf).await else {
            continue;
        };
        let data = &buf[..n];
        let leg = front.sources.lock().ok().and_then(|mut s| {
            let src = s.get_mut(&from)?;
            let greeting = !src.greeted && data == GREETING;
            src.greeted = true;
            (!greeting).then(|| src.leg.clone())
        });
        if let Some(leg) = leg {
            leg.send_pcm(data, Instant::now());
        }
    }
}

/// A message as the seed writes it.
fn object(v: Value) -> String {
    v.to_string()
}

/// SEND_NEW_USERS within [`MAX_OBJECT_BYTES`]: names that do not fit are
/// left out (the client reads 1,024 bytes at once).
fn users(names: &[String]) -> String {
    let mut n = names.len();
    loop {
        let m = object(json!({"KEY": key::SEND_NEW_USERS, "USERS": &names[..n]}));
        if m.len() <= MAX_OBJECT_BYTES || n == 0 {
            return m;
        }
        n -= 1;
    }
}

async fn session(stream: TcpStream, peer: SocketAddr, front: Arc<Front>, ctx: Context) {
    let Some(mut link) = Link::open(&ctx.engine, peer).await else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut out = Paced::new();
    let mut parser = Parser::default();
    let mut read = vec![0u8; 4096];
    let mut bad = 0usize;
    // The first message is the nickname.
    let name = 'name: loop {
        while let Some(input) = parser.next_input() {
            match input {
                Input::Message(Message::Nickname(n)) => break 'name n,
                _ => {
                    bad += 1;
                    out.push(object(json!({"KEY": key::UNKNOWN_ERROR})));
                }
            }
        }
        if bad > MAX_BAD_OBJECTS || parser.pending() > MAX_PENDING_BYTES {
            link.close().await;
            out.flush(&mut wr).await;
            return ended("no nickname, only garbage");
        }
        tokio::select! {
            r = out.ready(), if out.pending() => {
                if r.is_some() && !out.write_next(&mut wr).await {
                    link.close().await;
                    return ended("its writes stalled");
                }
            }
            r = rd.read(&mut read) => match r {
                Ok(n) if n > 0 => parser.push(&read[..n]),
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
        Err(r) => {
            out.push(object(json!({"KEY": key::DISCONNECT, "REASON": r.message})));
            out.flush(&mut wr).await;
            return ended("refused");
        }
    };
    let leg = ctx.leg(&link, &welcome, udp_port, front.codec).await;
    let (Some(leg), Some(number)) = (leg.map(Arc::new), front.numbers.take()) else {
        link.close().await;
        out.push(object(
            json!({"KEY": key::DISCONNECT, "REASON": "the server is full"}),
        ));
        out.flush(&mut wr).await;
        return ended("no media leg or session number");
    };
    let mut client: Option<SocketAddr> = None;
    let mut names: Option<Vec<String>> = None;
    let mut mixer = Mixer::new(FRAME_SAMPLES, FRAME_TIME, MIX_FRAMES);
    let mut frames = tokio::time::interval(FRAME_TIME);
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(welcome.heartbeat_interval);
    let mut heard = vec![0u8; 2048];
    let why = loop {
        while let Some(input) = parser.next_input() {
            match input {
                Input::Message(Message::ClientPort(p)) => {
                    let addr = SocketAddr::new(peer.ip(), p);
                    if let Ok(mut s) = front.sources.lock() {
                        if let Some(old) = client.replace(addr) {
                            s.remove(&old);
                        }
                        s.insert(
                            addr,
                            Source {
                                leg: leg.clone(),
                                greeted: false,
                            },
                        );
                    }
                }
                Input::Message(Message::Ack) => {}
                Input::Message(Message::Disconnect) => {
                    bad = usize::MAX;
                    break;
                }
                Input::Message(Message::Nickname(_) | Message::Unknown) | Input::Garbage => {
                    bad += 1;
                    out.push(object(json!({"KEY": key::UNKNOWN_ERROR})));
                }
            }
        }
        if bad == usize::MAX {
            break "it said DISCONNECT";
        }
        if bad > MAX_BAD_OBJECTS || parser.pending() > MAX_PENDING_BYTES {
            break "too much garbage";
        }
        tokio::select! {
            biased;
            r = out.ready(), if out.pending() => {
                if r.is_some() && !out.write_next(&mut wr).await {
                    break "its writes stalled";
                }
            }
            told = link.next() => {
                let Some(told) = told else { break "closed by the router" };
                match &*told {
                    Told::Session(SessionNotice::Members { users: list, .. }) => {
                        let now: Vec<String> = list.iter().map(|u| u.nickname.clone()).collect();
                        if names.as_ref() != Some(&now) {
                            out.push(users(&now));
                            if names.is_none() {
                                out.push(object(json!({"KEY": key::SESSION, "SESSION": number})));
                            }
                            names = Some(now);
                        }
                    }
                    Told::Session(SessionNotice::Left { reason, message, .. }) => {
                        let why = message.clone().unwrap_or_else(|| format!("{reason:?}"));
                        out.push(object(json!({"KEY": key::DISCONNECT, "REASON": why})));
                        break "told to leave";
                    }
                    Told::Session(SessionNotice::ServerClose { .. })
                    | Told::Room { notice: Notice::RoomClosed { .. }, .. } => {
                        out.push(object(json!({"KEY": key::SERVER_CLOSE})));
                        break "the server closes";
                    }
                    Told::Session(SessionNotice::Goodbye) => break "goodbye",
                    _ => {}
                }
            }
            r = rd.read(&mut read) => match r {
                Ok(n) if n > 0 => parser.push(&read[..n]),
                _ => break "the client closed",
            },
            h = leg.recv(&mut heard) => {
                if let Ok(h) = h {
                    mixer.push(h.ssrc, &h.pcm, Instant::now());
                }
            }
            _ = frames.tick() => {
                if let (Some(frame), Some(to)) = (mixer.tick(Instant::now()), client) {
                    let _ = front.media.try_send_to(&frame, to);
                }
            }
            _ = heartbeat.tick() => {
                let _ = link.send("HEARTBEAT", Command::Session(SessionCommand::Heartbeat)).await;
            }
        }
    };
    if let (Some(addr), Ok(mut s)) = (client, front.sources.lock()) {
        s.remove(&addr);
    }
    front.numbers.give_back(number);
    link.close().await;
    out.flush(&mut wr).await;
    let _ = wr.shutdown().await;
    ended(why);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser) -> Vec<Input> {
        std::iter::from_fn(|| p.next_input()).collect()
    }

    #[test]
    fn back_to_back_objects_parse_whatever_their_strings_hold() {
        let mut p = Parser::default();
        p.push(br#"{"KEY":2,"NAME":"a}{b"}{"KEY":7,"PORT":5000}{"KEY":0}"#);
        assert_eq!(
            all(&mut p),
            [
                Input::Message(Message::Nickname("a}{b".into())),
                Input::Message(Message::ClientPort(5000)),
                Input::Message(Message::Ack),
            ]
        );
        p.push(br#"{"KEY":7,"PO"#);
        assert_eq!(all(&mut p), []);
        p.push(br#"RT":"6000"}"#);
        assert_eq!(all(&mut p), [Input::Message(Message::ClientPort(6000))]);
        p.push(br#"junk{"KEY":9}[1]{"KEY":7,"PORT":0}{"KEY":4,"REASON":"bye"}"#);
        assert_eq!(
            all(&mut p),
            [
                Input::Garbage,
                Input::Message(Message::Unknown),
                Input::Message(Message::Unknown),
                Input::Message(Message::Unknown),
                Input::Message(Message::Disconnect),
            ]
        );
    }

    #[test]
    fn a_user_list_stays_within_what_the_client_reads_at_once() {
        let few = users(&["ann".into(), "bob".into()]);
        assert_eq!(few, r#"{"KEY":3,"USERS":["ann","bob"]}"#);
        let many: Vec<String> = (0..200).map(|i| format!("member number {i}")).collect();
        let m = users(&many);
        assert!(m.len() <= MAX_OBJECT_BYTES, "{}", m.len());
        assert!(m.contains("member number 0"));
    }
}
