//! The whole engine, fed a sequence of connections, control lines (well
//! formed commands and raw bytes), STUN bindings, disconnections and the
//! passing of time, as the drivers would feed it, with its invariants
//! checked after every step (each room's members know they are in it;
//! routes go between members; at most one floor holder per floor room, and
//! only its media routed). Outputs are drained as the drivers would.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use plugin_api::{Options, WallClock};
use proto::control::{self, ClientMessage};
use router::engine::{Engine, EngineConfig, Input, Output, RoomSpec, SessionNotice, Start, Told};
use router::registry::Registry;

/// Sessions 1..=SESSIONS.
const SESSIONS: u8 = 8;
const ROOMS: [&str; 4] = ["walkie", "talk", "call", "nope"];
const NICKS: [&str; 4] = ["ann", "bob", "Ann", "server"];

#[derive(Arbitrary, Debug)]
enum Op {
    Connect(u8),
    Disconnect(u8),
    Send(u8, Cmd, Option<u16>),
    Raw(u8, Vec<u8>),
    Stun(u8, bool),
    Advance(u16),
}

#[derive(Arbitrary, Debug)]
enum Cmd {
    Hello(u8),
    Join(u8),
    Leave,
    Heartbeat,
    ListRooms,
    ListMembers(u16, Option<u16>),
    MicRequest(u8),
    MicRelease,
    Chat(bool, u8),
    CreateMeeting(bool),
    JoinMeeting(u8),
    Allow(u8),
    Deny(u8),
    MediaState(bool, bool),
    Mute(u8, bool),
    Remove(u8),
    CreateRoom(u8, u8),
    FileOffer(u32, u16),
    FileChunk(u8, u8, bool),
    Bye,
}

struct Run {
    engine: Engine,
    now: Instant,
    tokens: Vec<(u8, String)>,
    codes: Vec<String>,
}

impl Run {
    fn new() -> Run {
        let now = Instant::now();
        let rooms = vec![
            spec("walkie", "ptt"),
            spec("talk", "chat"),
            spec("call", "voice"),
        ];
        let cfg = EngineConfig {
            max_per_address: 1_000,
            max_pending: 1_000,
            max_sessions: 6,
            max_rooms: 6,
            ..EngineConfig::default()
        };
        let start = Start {
            clock: WallClock {
                origin: now,
                origin_unix_ms: 1_767_225_600_000,
            },
            seed: [1; 32],
        };
        let Ok(engine) = Engine::new(cfg, Registry::builtin(), rooms, start) else {
            panic!("engine")
        };
        Run {
            engine,
            now,
            tokens: Vec::new(),
            codes: Vec::new(),
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Connect(s) => self.input(Input::Connected {
                session: id(s),
                peer: SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(s % SESSIONS))),
            }),
            Op::Disconnect(s) => self.input(Input::Disconnected { session: id(s) }),
            Op::Send(s, cmd, request) => {
                let mut line = control::to_line(&self.message(cmd));
                if let Some(r) = request {
                    // The optional request id, as the last field.
                    line.truncate(line.len().saturating_sub(2));
                    line.extend_from_slice(format!(",\"id\":{r}}}").as_bytes());
                }
                self.input(Input::Line {
                    session: id(s),
                    line,
                });
            }
            Op::Raw(s, line) => self.input(Input::Line {
                session: id(s),
                line,
            }),
            Op::Stun(s, valid) => {
                let token = if valid {
                    self.tokens
                        .iter()
                        .rev()
                        .find(|(t, _)| *t == s % SESSIONS)
                        .map_or("no-such".to_owned(), |(_, t)| t.clone())
                } else {
                    "guess".to_owned()
                };
                let Ok((request, _)) = proto::media::binding_request(&token) else {
                    return;
                };
                self.input(Input::StunBinding {
                    worker: 0,
                    from: SocketAddr::from(([127, 0, 0, 1], 40000 + u16::from(s % SESSIONS))),
                    username: Some(token),
                    request,
                });
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms) * 7);
                self.engine.handle_timeout(self.now);
                self.drain();
                self.check();
            }
        }
    }

    fn message(&self, cmd: Cmd) -> ClientMessage {
        let room = |i: u8| ROOMS[usize::from(i) % ROOMS.len()].to_owned();
        let nick = |i: u8| NICKS[usize::from(i) % NICKS.len()].to_owned();
        match cmd {
            Cmd::Hello(n) => ClientMessage::Hello {
                version: 1,
                nickname: nick(n),
                token: None,
                resume: None,
                features: match n % 3 {
                    0 => vec![],
                    1 => vec![control::FEATURE_MEMBER_DELTAS.into()],
                    _ => vec![control::FEATURE_MEMBER_PAGES.into()],
                },
            },
            Cmd::Join(r) => ClientMessage::Join { room: room(r) },
            Cmd::Leave => ClientMessage::Leave,
            Cmd::Heartbeat => ClientMessage::Heartbeat,
            Cmd::ListRooms => ClientMessage::ListRooms,
            Cmd::ListMembers(offset, limit) => ClientMessage::ListMembers {
                offset: u32::from(offset),
                limit: limit.map(u32::from),
            },
            Cmd::MicRequest(p) => ClientMessage::MicRequest { priority: p % 9 },
            Cmd::MicRelease => ClientMessage::MicRelease,
            Cmd::Chat(private, n) => ClientMessage::Chat {
                text: "hello".repeat(usize::from(n % 4) + 1),
                to: private.then(|| nick(n)),
            },
            Cmd::CreateMeeting(end) => ClientMessage::CreateMeeting {
                end_with_host: end,
                codec: None,
            },
            Cmd::JoinMeeting(i) => ClientMessage::RequestJoin {
                code: self
                    .codes
                    .get(usize::from(i) % self.codes.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| "123456".into()),
            },
            Cmd::Allow(s) => ClientMessage::AllowJoin { session_id: id(s) },
            Cmd::Deny(s) => ClientMessage::DenyJoin {
                session_id: id(s),
                reason: None,
            },
            Cmd::MediaState(audio, video) => ClientMessage::MediaState { audio, video },
            Cmd::Mute(n, muted) => ClientMessage::Mute {
                nickname: nick(n),
                muted,
            },
            Cmd::Remove(n) => ClientMessage::Remove {
                nickname: nick(n),
                reason: None,
            },
            Cmd::CreateRoom(r, k) => ClientMessage::CreateRoom {
                room: format!("new{}", r % 3),
                kind: ["ptt", "chat", "voice", "meeting", "bogus"][usize::from(k) % 5].into(),
                max_participants: u32::from(k % 4),
                options: Default::default(),
            },
            Cmd::FileOffer(size, chunk) => ClientMessage::FileOffer {
                to: None,
                name: "f.bin".into(),
                size: u64::from(size),
                sha256: "0".repeat(64),
                chunk_size: u32::from(chunk),
            },
            Cmd::FileChunk(t, seq, good) => ClientMessage::FileChunk {
                transfer_id: u64::from(t % 4),
                seq: u64::from(seq),
                data: if good {
                    "aGVsbG8=".into()
                } else {
                    "not base64!".into()
                },
            },
            Cmd::Bye => ClientMessage::Bye { reason: None },
        }
    }

    fn input(&mut self, input: Input) {
        self.engine.handle_input(self.now, input);
        self.drain();
        self.check();
    }

    /// Takes every output, as the drivers would, and remembers what later
    /// steps may use (media tokens, meeting codes).
    fn drain(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            let (session, told): (u64, Option<Arc<Told>>) = match out {
                Output::Send { session, told }
                | Output::SendBulk { session, told }
                | Output::Answer { session, told, .. } => (session, Some(told)),
                _ => (0, None),
            };
            let Some(told) = told else { continue };
            // Every message renders into a line of valid JSON.
            let mut renderer = router::native::Renderer::default();
            if let Some(line) = renderer.line(&told) {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&line).is_ok(),
                    "unparseable line {}",
                    String::from_utf8_lossy(&line)
                );
            }
            match &*told {
                Told::Session(SessionNotice::Welcome { media_token, .. }) => {
                    self.tokens
                        .push(((session % u64::from(SESSIONS)) as u8, media_token.clone()));
                }
                Told::Session(SessionNotice::MeetingCreated { code, .. }) => {
                    self.codes.push(code.clone());
                }
                _ => {}
            }
        }
    }

    fn check(&self) {
        if let Err(e) = self.engine.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }
}

fn spec(name: &str, kind: &str) -> RoomSpec {
    RoomSpec {
        name: name.into(),
        kind: kind.into(),
        max_participants: 4,
        options: Options::new(),
    }
}

fn id(s: u8) -> u64 {
    u64::from(s % SESSIONS) + 1
}

fuzz_target!(|ops: Vec<Op>| {
    let mut run = Run::new();
    for op in ops.into_iter().take(256) {
        run.step(op);
    }
});
