//! Seed 000, push-to-talk (docs/compat.md): a raw TCP stream (the first write
//! is the username, then bare `MIC_REQUEST` / `MIC_RELEASE`), answered with
//! `{"udp_port": P}`, `MIC_GRANTED:<holder>`, `MIC_DENIED`, `MIC_RELEASED`,
//! each in a TCP segment of its own; audio as raw 44.1 kHz PCM datagrams
//! from and to (the client's IP, P).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use plugin_api::{Notice, RoomCommand};
use proto::control::DenyReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::{Instrument, info_span};

use super::gateway::{Leg, SEED_DATAGRAM};
use super::{Bound, Context, Link, Paced, PortPool, ended};
use crate::engine::{Command, SessionNotice, Told};

/// The first port handed to clients, as the original did.
pub const FIRST_CLIENT_PORT: u16 = 10_000;

/// Bytes of the username the first read may carry; the rest is cut.
pub const MAX_USERNAME_BYTES: usize = 1024;

/// Bytes of unrecognised input a session may send in all before it is
/// closed (the seed has no error message to answer with).
pub const MAX_GARBAGE_BYTES: usize = 4096;

const REQUEST: &[u8] = b"MIC_REQUEST";
const RELEASE: &[u8] = b"MIC_RELEASE";

/// One input of the seed's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Request,
    Release,
    /// Bytes that are neither (skipped).
    Garbage(usize),
}

/// Splits the seed's unframed stream into its two words, which may come
/// coalesced or split across reads.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_input(&mut self) -> Option<Input> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || **b == 0)
            .count();
        self.buf.drain(..skip);
        if self.buf.is_empty() {
            return None;
        }
        for (word, input) in [(REQUEST, Input::Request), (RELEASE, Input::Release)] {
            if self.buf.starts_with(word) {
                self.buf.drain(..word.len());
                return Some(input);
            }
        }
        if [REQUEST, RELEASE].iter().any(|w| w.starts_with(&self.buf)) {
            return None; // the rest of a word is still to come
        }
        // Up to the next place a word could start.
        let n = self.buf[1..]
            .iter()
            .position(|b| *b == b'M')
            .map_or(self.buf.len(), |i| i + 1);
        self.buf.drain(..n);
        Some(Input::Garbage(n))
    }
}

/// What the front-end shares between its sessions.
struct Front {
    room: String,
    codec: &'static proto::codec::Codec,
    media: Arc<UdpSocket>,
    /// Each client's media address (its IP, its port) → its leg.
    sources: Mutex<HashMap<SocketAddr, Arc<Leg>>>,
    ports: PortPool,
}

/// Accepts seed-000 clients until the router drops the task.
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
        ports: PortPool::new(FIRST_CLIENT_PORT),
    });
    let media_task = tokio::spawn(media_in(front.clone()));
    let mut acceptor = crate::driver::accept::Acceptor::new(listener, "seed ptt");
    loop {
        let (stream, peer) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            session(stream, peer, front.clone(), ctx.clone())
                .instrument(info_span!("seed-ptt", %peer)),
        );
        if media_task.is_finished() {
            return;
        }
    }
}

/// Clients' audio, into their legs: only from a live client's address.
async fn media_in(front: Arc<Front>) {
    let mut buf = vec![0u8; SEED_DATAGRAM + 1];
    loop {
        let Ok((n, from)) = front.media.recv_from(&mut buf).await else {
            continue;
        };
        let leg = front
            .sources
            .lock()
            .ok()
            .and_then(|s| s.get(&from).cloned());
        if let Some(leg) = leg {
            leg.send_pcm(&buf[..n], Instant::now());
        }
    }
}

async fn session(stream: TcpStream, peer: SocketAddr, front: Arc<Front>, ctx: Context) {
    let Some(mut link) = Link::open(&ctx.engine, peer).await else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    // The first write is the username.
    let mut first = vec![0u8; MAX_USERNAME_BYTES];
    let n = tokio::select! {
        r = rd.read(&mut first) => match r {
            Ok(n) if n > 0 => n,
            _ => {
                link.close().await;
                return ended("closed before its username");
            }
        },
        // The router closed it first (banned, no name in time, stopping).
        _ = link.next() => {
            link.close().await;
            return ended("closed by the router before its username");
        }
    };
    let mut parser = Parser::default();
    let first = &first[..n];
    // A name sent with a word at once: the word is input.
    let cut = first
        .windows(4)
        .position(|w| w == b"MIC_")
        .unwrap_or(first.len());
    parser.push(&first[cut..]);
    let name = String::from_utf8_lossy(&first[..cut]).into_owned();
    let (mut link, welcome, udp_port) = match link.enter(peer, &name, &front.room).await {
        Ok(entered) => entered,
        Err(r) => return ended(&r.message),
    };
    let leg = ctx.leg(&link, &welcome, udp_port, front.codec).await;
    let (Some(leg), Some(port)) = (leg.map(Arc::new), front.ports.take()) else {
        link.close().await;
        return ended("no media leg or client port");
    };
    let client = SocketAddr::new(peer.ip(), port);
    if let Ok(mut s) = front.sources.lock() {
        s.insert(client, leg.clone());
    }
    let mut out = Paced::new();
    out.push(format!("{{\"udp_port\": {port}}}"));
    let mut floor = FloorState::default();
    let mut heartbeat = tokio::time::interval(welcome.heartbeat_interval);
    let mut read = vec![0u8; 4096];
    let mut heard = vec![0u8; 2048];
    let mut garbage = 0usize;
    let why = loop {
        // What was read, including what came with the username.
        while let Some(input) = parser.next_input() {
            let (name, command) = match input {
                Input::Request => {
                    floor.asking = true;
                    ("MIC_REQUEST", RoomCommand::FloorRequest { priority: 0 })
                }
                Input::Release => ("MIC_RELEASE", RoomCommand::FloorRelease),
                Input::Garbage(n) => {
                    garbage += n;
                    continue;
                }
            };
            let _ = link.send(name, Command::Room(command)).await;
        }
        if garbage > MAX_GARBAGE_BYTES {
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
                match render(&told, &mut floor) {
                    Rendered::Say(words) => out.push(words),
                    Rendered::Withdraw => {
                        let _ = link.send("MIC_RELEASE", Command::Room(RoomCommand::FloorRelease)).await;
                        out.push("MIC_DENIED".into());
                    }
                    Rendered::Nothing => {}
                    Rendered::End => break "told to leave",
                }
            }
            r = rd.read(&mut read) => match r {
                Ok(n) if n > 0 => parser.push(&read[..n]),
                _ => break "the client closed",
            },
            h = leg.recv(&mut heard) => {
                if let Ok(h) = h {
                    let _ = front.media.try_send_to(&h.pcm, client);
                }
            }
            _ = heartbeat.tick() => {
                let _ = link.send("HEARTBEAT", Command::Session(crate::engine::SessionCommand::Heartbeat)).await;
            }
        }
    };
    if let Ok(mut s) = front.sources.lock() {
        s.remove(&client);
    }
    front.ports.give_back(port);
    link.close().await;
    out.flush(&mut wr).await;
    let _ = wr.shutdown().await;
    ended(why);
}

/// The one floor fact the seed's rendering needs: whether this client asked
/// and has had no answer yet.
#[derive(Debug, Default)]
struct FloorState {
    asking: bool,
}

/// What one thing told becomes for a seed-000 client.
#[derive(Debug, PartialEq, Eq)]
enum Rendered {
    Say(String),
    /// Queued: seed-000 clients give up after a denial, so the request is
    /// withdrawn and denied (a later grant would hold the floor silent).
    Withdraw,
    Nothing,
    End,
}

fn render(told: &Told, floor: &mut FloorState) -> Rendered {
    match told {
        Told::Room { notice, .. } => match notice {
            Notice::FloorGranted { nickname, .. } => {
                floor.asking = false;
                Rendered::Say(format!("MIC_GRANTED:{nickname}"))
            }
            Notice::FloorDenied {
                reason: DenyReason::Queued,
                ..
            } => {
                floor.asking = false;
                Rendered::Withdraw
            }
            // Asked again while holding: nothing changed.
            Notice::FloorDenied {
                reason: DenyReason::AlreadyHolder,
                ..
            } => {
                floor.asking = false;
                Rendered::Nothing
            }
            Notice::FloorDenied { .. } => {
                floor.asking = false;
                Rendered::Say("MIC_DENIED".into())
            }
            Notice::FloorQueued { .. } if floor.asking => {
                floor.asking = false;
                Rendered::Withdraw
            }
            Notice::FloorReleased { .. } | Notice::FloorRevoked { .. } => {
                Rendered::Say("MIC_RELEASED".into())
            }
            Notice::RoomClosed { .. } => Rendered::End,
            _ => Rendered::Nothing,
        },
        Told::Session(n) => match n {
            SessionNotice::Left { .. }
            | SessionNotice::ServerClose { .. }
            | SessionNotice::Goodbye => Rendered::End,
            // A refused MIC_REQUEST (rate limited, muted) is a denial.
            SessionNotice::Refused { .. } if floor.asking => {
                floor.asking = false;
                Rendered::Say("MIC_DENIED".into())
            }
            _ => Rendered::Nothing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser) -> Vec<Input> {
        std::iter::from_fn(|| p.next_input()).collect()
    }

    #[test]
    fn words_coalesced_split_or_among_garbage_are_found() {
        let mut p = Parser::default();
        p.push(b"MIC_REQUESTMIC_RELEASE");
        assert_eq!(all(&mut p), [Input::Request, Input::Release]);
        p.push(b"MIC_REQ");
        assert_eq!(all(&mut p), []);
        p.push(b"UEST\n");
        assert_eq!(all(&mut p), [Input::Request]);
        p.push(b"hello MIC_RELEASE");
        assert_eq!(all(&mut p), [Input::Garbage(6), Input::Release]);
        p.push(b"MIC_RELAX");
        assert_eq!(all(&mut p), [Input::Garbage(9)]);
        p.push(b"MMMIC_REQUEST");
        assert_eq!(
            all(&mut p),
            [Input::Garbage(1), Input::Garbage(1), Input::Request]
        );
    }

    fn granted(nick: &str) -> Told {
        Told::Room {
            room: "w".into(),
            notice: Notice::FloorGranted {
                session: 1,
                nickname: nick.into(),
                ssrc: 1,
                priority: 0,
                burst_limit_ms: 0,
            },
        }
    }

    #[test]
    fn notices_render_as_the_seed_says_them() {
        let mut f = FloorState { asking: true };
        assert_eq!(
            render(&granted("ann"), &mut f),
            Rendered::Say("MIC_GRANTED:ann".into())
        );
        assert!(!f.asking);
        let queued = Told::Room {
            room: "w".into(),
            notice: Notice::FloorQueued { queue_position: 1 },
        };
        assert_eq!(render(&queued, &mut f), Rendered::Nothing, "not asked");
        f.asking = true;
        assert_eq!(render(&queued, &mut f), Rendered::Withdraw);
        let denied = |reason| Told::Room {
            room: "w".into(),
            notice: Notice::FloorDenied {
                session: 1,
                nickname: "ann".into(),
                reason,
                holder: Some("bob".into()),
                queue_position: None,
            },
        };
        assert_eq!(
            render(&denied(DenyReason::Queued), &mut f),
            Rendered::Withdraw
        );
        assert_eq!(
            render(&denied(DenyReason::FloorBusy), &mut f),
            Rendered::Say("MIC_DENIED".into())
        );
        let refused = Told::Session(SessionNotice::Refused {
            code: proto::control::ErrorCode::RateLimited,
            message: "slow down".into(),
        });
        assert_eq!(render(&refused, &mut f), Rendered::Nothing);
        f.asking = true;
        assert_eq!(render(&refused, &mut f), Rendered::Say("MIC_DENIED".into()));
        let close = Told::Session(SessionNotice::ServerClose {
            reason: "bye".into(),
        });
        assert_eq!(render(&close, &mut f), Rendered::End);
    }
}
