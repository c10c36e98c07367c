//! Engine tests on virtual time: inputs in, outputs out, no sockets.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;
use proto::control::{DenyReason, ReleaseReason, ServerMessage, Ssrcs};

use crate::events::RoomEventKind;

mod access;
mod secure;
mod stun;

struct Sim {
    engine: Engine,
    now: Instant,
    /// Messages per session, in order.
    inbox: HashMap<SessionId, Vec<ServerMessage>>,
    closed: HashSet<SessionId>,
    media: Vec<(WorkerId, MediaCommand)>,
    /// The media workers' tables (all workers together), rebuilt from the
    /// commands, with each route's group resolved to its addresses.
    table: HashMap<u32, Resolved>,
    bound: HashMap<SocketAddr, SessionId>,
    /// The same, per worker.
    worker_table: HashMap<(WorkerId, u32), Resolved>,
    /// The routes and groups as the workers hold them.
    raw: HashMap<(WorkerId, u32), Route>,
    groups: HashMap<(WorkerId, GroupId), Vec<SocketAddr>>,
    worker_bound: HashMap<(WorkerId, SocketAddr), SessionId>,
    events: Vec<RoomEvent>,
    /// Sessions whose whole-list lines are not parsed (a join storm's
    /// members: debug-build JSON of thousands of lists is slow).
    quiet: HashSet<SessionId>,
    /// The last rendering, reused while the same Arc is told again.
    last_told: Option<(Arc<Told>, Option<ServerMessage>)>,
    /// Messages told as answers, with the request id they answer.
    answers: Vec<(SessionId, RequestId, ServerMessage)>,
}

/// A route with its fan-out resolved to addresses, as the worker would
/// send to them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    source: SocketAddr,
    media: Vec<SocketAddr>,
    rtcp: Vec<SocketAddr>,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Sim {
    /// The default configuration, but for the limits per address: the
    /// simulated sessions all come from 127.0.0.1 (the tests of those
    /// limits set them).
    fn new() -> Self {
        Self::with(Self::one_address_config(), vec![])
    }

    /// The default configuration with one `chat` room named `lobby`.
    fn chat_lobby() -> Self {
        Self::with(
            EngineConfig::default(),
            vec![RoomSpec {
                name: "lobby".into(),
                kind: "chat".into(),
                max_participants: 0,
                options: Options::new(),
            }],
        )
    }

    fn one_address_config() -> EngineConfig {
        EngineConfig {
            max_per_address: 1_000_000,
            max_pending: 1_000_000,
            ..EngineConfig::default()
        }
    }

    fn with(cfg: EngineConfig, rooms: Vec<RoomSpec>) -> Self {
        Self::seeded(cfg, rooms, [7; 32])
    }

    fn seeded(cfg: EngineConfig, mut rooms: Vec<RoomSpec>, seed: [u8; 32]) -> Self {
        let now = Instant::now();
        let start = Start {
            clock: WallClock {
                origin: now,
                origin_unix_ms: 1_767_225_600_000,
            },
            seed,
        };
        if rooms.is_empty() {
            rooms.push(RoomSpec {
                name: "lobby".into(),
                kind: "ptt".into(),
                max_participants: 0,
                options: Options::new(),
            });
        }
        let engine = match Engine::new(cfg, Registry::builtin(), rooms, start) {
            Ok(e) => e,
            Err(e) => panic!("engine: {e}"),
        };
        Self {
            engine,
            now,
            inbox: HashMap::new(),
            closed: HashSet::new(),
            media: Vec::new(),
            table: HashMap::new(),
            bound: HashMap::new(),
            worker_table: HashMap::new(),
            raw: HashMap::new(),
            groups: HashMap::new(),
            worker_bound: HashMap::new(),
            events: Vec::new(),
            quiet: HashSet::new(),
            last_told: None,
            answers: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.engine.poll_output() {
            match o {
                // What the native front-end would write (its renderer is
                // checked against serde in native.rs); a join storm's own
                // members' lists are not rendered (slow in debug builds).
                Output::Send { session, told }
                    if self.quiet.contains(&session)
                        && matches!(*told, Told::Session(SessionNotice::Members { .. })) => {}
                Output::Send { session, told } | Output::SendBulk { session, told } => {
                    if let Some(m) = self.render(&told) {
                        self.inbox.entry(session).or_default().push(m)
                    }
                }
                Output::Answer {
                    session,
                    told,
                    request,
                } => {
                    if let Some(m) = self.render(&told) {
                        self.answers.push((session, request, m.clone()));
                        self.inbox.entry(session).or_default().push(m)
                    }
                }
                Output::SendAll { sessions, told } => {
                    if let Some(m) = self.render(&told) {
                        for session in sessions {
                            self.inbox.entry(session).or_default().push(m.clone())
                        }
                    }
                }
                Output::Close { session } => {
                    self.closed.insert(session);
                }
                Output::RoomEvent(ev) => self.events.push((*ev).clone()),
                Output::Media { worker, cmd } => {
                    match &cmd {
                        MediaCommand::SetRoute { ssrc, route } => {
                            self.raw.insert((worker, *ssrc), route.clone());
                        }
                        MediaCommand::RemoveRoute { ssrc } => {
                            self.raw.remove(&(worker, *ssrc));
                        }
                        MediaCommand::GroupAdd { group, addr } => {
                            let g = self.groups.entry((worker, *group)).or_default();
                            assert!(!g.contains(addr), "{addr} added twice to group {group}");
                            g.push(*addr);
                        }
                        MediaCommand::GroupRemove { group, addr } => {
                            let g = self.groups.entry((worker, *group)).or_default();
                            assert!(
                                g.contains(addr),
                                "{addr} removed from group {group} it is not in"
                            );
                            g.retain(|a| a != addr);
                        }
                        MediaCommand::Bind { addr, session } => {
                            self.bound.insert(*addr, *session);
                            self.worker_bound.insert((worker, *addr), *session);
                        }
                        MediaCommand::Unbind { addr } => {
                            if self.worker_bound.remove(&(worker, *addr)).is_some()
                                && !self.worker_bound.keys().any(|(_, a)| a == addr)
                            {
                                self.bound.remove(addr);
                            }
                        }
                        MediaCommand::Reply { .. } => {}
                    }
                    self.media.push((worker, cmd));
                }
            }
        }
        self.resolve();
    }

    /// Rebuilds the resolved tables from the routes and groups.
    fn resolve(&mut self) {
        let fan = |w: WorkerId, f: &Fanout, source: SocketAddr| -> Vec<SocketAddr> {
            match f {
                Fanout::Nobody => Vec::new(),
                Fanout::List(l) => l.to_vec(),
                Fanout::Group(g) => self
                    .groups
                    .get(&(w, *g))
                    .map(|v| v.iter().copied().filter(|a| *a != source).collect())
                    .unwrap_or_default(),
            }
        };
        let mut worker_table = HashMap::new();
        for (&(w, ssrc), r) in &self.raw {
            let resolved = Resolved {
                source: r.source,
                media: fan(w, &r.media, r.source),
                rtcp: fan(w, &r.rtcp, r.source),
            };
            worker_table.insert((w, ssrc), resolved);
        }
        self.table = worker_table
            .iter()
            .map(|((_, ssrc), r)| (*ssrc, r.clone()))
            .collect();
        self.worker_table = worker_table;
    }

    fn render(&mut self, told: &Arc<Told>) -> Option<ServerMessage> {
        if let Some((t, m)) = &self.last_told
            && Arc::ptr_eq(t, told)
        {
            return m.clone();
        }
        let m = crate::native::message(told);
        self.last_told = Some((told.clone(), m.clone()));
        m
    }

    fn input(&mut self, i: Input) {
        self.engine.handle_input(self.now, i);
        self.drain();
        if let Err(e) = self.engine.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    fn line(&mut self, s: SessionId, json: &str) {
        self.input(Input::Line {
            session: s,
            line: json.as_bytes().to_vec(),
        });
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.engine.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn take(&mut self, s: SessionId) -> Vec<ServerMessage> {
        self.inbox.remove(&s).unwrap_or_default()
    }

    /// Connects, says HELLO, returns the WELCOME's ssrcs and token.
    fn hello(&mut self, s: SessionId, nick: &str) -> (Ssrcs, String) {
        self.input(Input::Connected {
            session: s,
            peer: addr(1),
        });
        self.line(
            s,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
        );
        match self.take(s).pop() {
            Some(ServerMessage::Welcome {
                ssrcs, media_token, ..
            }) => (ssrcs, media_token),
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    fn stun(&mut self, from: SocketAddr, token: &str) -> proto::media::BindingResponse {
        self.stun_at(0, from, token)
    }

    /// A STUN Binding Request arriving at media worker `worker`.
    fn stun_at(
        &mut self,
        worker: WorkerId,
        from: SocketAddr,
        token: &str,
    ) -> proto::media::BindingResponse {
        let Ok((req, tid)) = proto::media::binding_request(token) else {
            panic!("stun request")
        };
        self.input(Input::StunBinding {
            worker,
            from,
            username: Some(token.to_owned()),
            request: req,
        });
        match self.media.iter().rev().find_map(|(w, c)| match c {
            MediaCommand::Reply { to, bytes } if *to == from && *w == worker => {
                proto::media::parse_binding_response(bytes, tid)
            }
            _ => None,
        }) {
            Some(b) => b,
            None => panic!("no STUN reply"),
        }
    }

    /// A client that said HELLO, joined `lobby` and bound media at port `s`.
    fn member(&mut self, s: SessionId, nick: &str) -> Ssrcs {
        let (ssrcs, token) = self.hello(s, nick);
        self.line(s, r#"{"type":"JOIN","room":"lobby"}"#);
        self.stun(addr(s as u16 + 40000), &token);
        ssrcs
    }

    /// Session `s`'s connection drops and nobody resumes it: the session
    /// ends when its grace period has passed.
    fn gone(&mut self, s: SessionId) {
        self.input(Input::Disconnected { session: s });
        let grace = self.engine.config().resume_grace;
        self.advance(grace + Duration::from_millis(1));
    }

    fn errors(&mut self, s: SessionId) -> Vec<ErrorCode> {
        self.take(s)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Error { code, .. } => Some(code),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn hello_join_and_userlist() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    let m = s.take(1);
    assert!(
        matches!(&m[0], ServerMessage::Joined { room, kind, .. } if room == "lobby" && kind == "ptt")
    );
    s.hello(2, "bob");
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    let m = s.take(1);
    let Some(ServerMessage::Userlist { users, .. }) = m.last() else {
        panic!("{m:?}")
    };
    let names: Vec<_> = users.iter().map(|u| u.nickname.as_str()).collect();
    assert_eq!(names, ["ann", "bob"]);
    // SSRCs are distinct across sessions and kinds.
    let all: HashSet<u32> = users.iter().flat_map(|u| u.ssrcs.iter()).collect();
    assert_eq!(all.len(), 4);
    s.line(2, r#"{"type":"LEAVE"}"#);
    assert!(matches!(
        s.take(2).last(),
        Some(ServerMessage::Left {
            reason: LeaveReason::Left,
            ..
        })
    ));
    assert!(
        matches!(s.take(1).last(), Some(ServerMessage::Userlist { users, .. }) if users.len() == 1)
    );
}

#[test]
fn floor_drives_the_forwarding_table() {
    let mut s = Sim::new();
    let a = s.member(1, "a");
    let b = s.member(2, "b");
    let _c = s.member(3, "c");
    // Nobody holds the floor: entries exist but forward to nobody.
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(0));
    assert_eq!(s.table.get(&a.audio).map(|r| r.rtcp.len()), Some(2));
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    let r = s.table.get(&a.audio).cloned();
    let Some(r) = r else { panic!("no route") };
    assert_eq!(r.source, addr(40001));
    assert_eq!(
        &r.media[..],
        &[addr(40002), addr(40003)],
        "holder's media to the others, not back"
    );
    assert_eq!(s.table.get(&b.audio).map(|r| r.media.len()), Some(0));
    // The route change is emitted before the MIC_GRANTED that allows sending.
    let m = s.take(2);
    assert!(
        m.iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { session_id: 1, .. }))
    );
    assert!(
        m.iter()
            .any(|m| matches!(m, ServerMessage::Userlist { users, .. } if users[0].talking))
    );
    s.line(2, r#"{"type":"MIC_REQUEST"}"#);
    assert!(s.take(2).iter().any(|m| matches!(
        m,
        ServerMessage::MicDenied {
            reason: DenyReason::Queued,
            queue_position: Some(1),
            ..
        }
    )));
    s.line(1, r#"{"type":"MIC_RELEASE"}"#);
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(0));
    assert_eq!(s.table.get(&b.audio).map(|r| r.media.len()), Some(2));
    // B's process goes away: its entries and binding disappear.
    s.gone(2);
    assert!(!s.table.contains_key(&b.audio));
    assert!(!s.bound.values().any(|v| *v == 2));
    let m = s.take(1);
    assert!(m.iter().any(|m| matches!(
        m,
        ServerMessage::MicReleased {
            session_id: 2,
            reason: ReleaseReason::Disconnected,
            ..
        }
    )));
}

#[test]
fn members_joining_later_receive_the_holder() {
    let mut s = Sim::new();
    let a = s.member(1, "a");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(0));
    s.member(2, "b");
    assert_eq!(
        s.table.get(&a.audio).map(|r| r.media.to_vec()),
        Some(vec![addr(40002)])
    );
}

#[test]
fn stun_with_a_wrong_token_is_refused() {
    let mut s = Sim::new();
    s.hello(1, "a");
    let reply = s.stun(addr(5000), "not-a-token");
    assert!(matches!(
        reply,
        proto::media::BindingResponse::Error(401, _)
    ));
    assert!(s.bound.is_empty());
    assert_eq!(s.engine.stats().stun_refused, 1);
}

#[test]
fn rebinding_moves_the_address() {
    let mut s = Sim::new();
    let (a, tok) = s.hello(1, "a");
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    s.stun(addr(6000), &tok);
    let r = s.stun(addr(6001), &tok);
    assert_eq!(r, proto::media::BindingResponse::Success(addr(6001)));
    assert_eq!(s.bound.get(&addr(6001)), Some(&1));
    assert!(!s.bound.contains_key(&addr(6000)));
    assert_eq!(s.table.get(&a.audio).map(|r| r.source), Some(addr(6001)));
}

#[test]
fn silent_session_is_dropped_and_its_floor_released() {
    let cfg = EngineConfig {
        silence_timeout: Duration::from_secs(15),
        ..Default::default()
    };
    let mut s = Sim::with(cfg, vec![]);
    s.member(1, "a");
    s.member(2, "b");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.take(2);
    // B keeps heartbeating; A goes silent.
    for _ in 0..3 {
        s.advance(Duration::from_secs(5));
        s.line(2, r#"{"type":"HEARTBEAT"}"#);
    }
    assert!(s.closed.contains(&1), "A is dropped after 15 s");
    assert!(!s.closed.contains(&2));
    let m = s.take(2);
    assert!(m.contains(&ServerMessage::HeartbeatAck));
    assert!(m.iter().any(|m| matches!(
        m,
        ServerMessage::MicReleased {
            session_id: 1,
            reason: ReleaseReason::TimedOut,
            ..
        }
    )));
    assert!(s.take(1).iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::TimedOut,
            ..
        }
    )));
    assert_eq!(s.engine.stats().sessions, 1);
}

#[test]
fn bad_inputs_get_documented_errors() {
    let mut s = Sim::new();
    s.input(Input::Connected {
        session: 1,
        peer: addr(1),
    });
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    s.line(1, r#"{"type":"HELLO","version":9,"nickname":"a"}"#);
    s.line(1, r#"{"type":"HELLO","version":1,"nickname":"a\nb"}"#);
    assert_eq!(
        s.errors(1),
        [
            ErrorCode::HelloRequired,
            ErrorCode::UnsupportedVersion,
            ErrorCode::BadNickname
        ]
    );
    s.line(1, r#"{"type":"HELLO","version":1,"nickname":"Ann"}"#);
    s.take(1);
    s.line(1, r#"{"type":"HELLO","version":1,"nickname":"Ann"}"#);
    s.line(1, r#"{"type":"JOIN","room":"nowhere"}"#);
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.line(1, r#"{"type":"LEAVE"}"#);
    s.input(Input::LineTooLong { session: 1 });
    assert_eq!(
        s.errors(1),
        [
            ErrorCode::AlreadyWelcomed,
            ErrorCode::UnknownRoom,
            ErrorCode::NotInRoom,
            ErrorCode::NotInRoom,
            ErrorCode::LineTooLong
        ]
    );
    s.advance(Duration::from_secs(10)); // refill the error budget
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    s.hello(2, "ann");
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    assert_eq!(s.errors(1), [ErrorCode::AlreadyInRoom]);
    assert_eq!(
        s.errors(2),
        [ErrorCode::NicknameTaken],
        "nicknames are unique per room, case-insensitively"
    );
    assert!(s.closed.is_empty());
}

#[test]
fn look_alike_and_reserved_nicknames_are_refused() {
    let mut s = Sim::new();
    s.hello(1, "anna");
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    s.take(1);
    // Cyrillic а (U+0430) for Latin a, and a fullwidth Ａ: the same name.
    for (i, nick) in ["\u{430}nna", "\u{ff21}nna", "ANNA"].iter().enumerate() {
        let id = 10 + i as u64;
        s.input(Input::Connected {
            session: id,
            peer: addr(id as u16),
        });
        s.line(
            id,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
        );
        s.take(id);
        s.line(id, r#"{"type":"JOIN","room":"lobby"}"#);
        assert_eq!(s.errors(id), [ErrorCode::NicknameTaken], "{nick}");
    }
    // A name that merely shares letters is another name.
    s.hello(20, "anne");
    s.line(20, r#"{"type":"JOIN","room":"lobby"}"#);
    assert_eq!(s.errors(20), []);
    // The operator's name and look-alikes of it are nobody's.
    for (i, nick) in ["server", "Server", "\u{455}erver", "operator", "Admin"]
        .iter()
        .enumerate()
    {
        let id = 30 + i as u64;
        s.input(Input::Connected {
            session: id,
            peer: addr(id as u16),
        });
        s.line(
            id,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
        );
        assert_eq!(s.errors(id), [ErrorCode::BadNickname], "{nick}");
    }
    assert!(crate::engine::is_reserved_nickname("ѕerver"));
    assert!(!crate::engine::is_reserved_nickname("servers"));
}

#[test]
fn garbage_flood_closes_only_the_offender() {
    let mut s = Sim::new();
    s.member(1, "a");
    s.input(Input::Connected {
        session: 2,
        peer: addr(2),
    });
    for _ in 0..10 {
        s.line(2, "garbage");
    }
    assert!(!s.closed.contains(&2), "ten bad lines are tolerated");
    s.line(2, "garbage");
    assert!(s.closed.contains(&2));
    assert_eq!(s.errors(2).last(), Some(&ErrorCode::TooManyErrors));
    // A slow trickle is forgiven.
    s.hello(3, "c");
    for _ in 0..50 {
        s.line(3, "{");
        s.advance(Duration::from_millis(1500));
        s.line(3, r#"{"type":"HEARTBEAT"}"#);
        s.line(1, r#"{"type":"HEARTBEAT"}"#);
    }
    assert!(!s.closed.contains(&3));
    assert!(!s.closed.contains(&1));
}

#[test]
fn server_and_room_limits_answer_full() {
    let cfg = EngineConfig {
        max_sessions: 2,
        ..Default::default()
    };
    let room = RoomSpec {
        name: "pair".into(),
        kind: "ptt".into(),
        max_participants: 1,
        options: Options::new(),
    };
    let mut s = Sim::with(cfg, vec![room]);
    s.hello(1, "a");
    s.hello(2, "b");
    // The third may connect (it counts among those waiting for HELLO),
    // and is told FULL when it says HELLO.
    s.input(Input::Connected {
        session: 3,
        peer: addr(3),
    });
    assert!(s.take(3).is_empty() && !s.closed.contains(&3));
    s.line(3, r#"{"type":"HELLO","version":1,"nickname":"c"}"#);
    assert!(matches!(
        s.take(3)[..],
        [ServerMessage::Full {
            scope: FullScope::Server,
            ..
        }]
    ));
    assert!(s.closed.contains(&3));
    s.line(1, r#"{"type":"JOIN","room":"pair"}"#);
    s.line(2, r#"{"type":"JOIN","room":"pair"}"#);
    assert!(matches!(
        s.take(2)[..],
        [ServerMessage::Full {
            scope: FullScope::Room,
            ..
        }]
    ));
    assert!(!s.closed.contains(&2));
}

#[test]
fn shutdown_tells_everyone() {
    let mut s = Sim::new();
    s.member(1, "a");
    s.hello(2, "b");
    s.engine.shutdown("maintenance");
    s.drain();
    for id in [1, 2] {
        assert!(
            matches!(s.take(id).last(), Some(ServerMessage::ServerClose { reason }) if reason == "maintenance")
        );
        assert!(s.closed.contains(&id));
    }
}

#[test]
fn bye_closes_cleanly() {
    let mut s = Sim::new();
    s.member(1, "a");
    s.member(2, "b");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.line(1, r#"{"type":"BYE"}"#);
    assert!(s.closed.contains(&1));
    assert!(s.take(2).iter().any(|m| matches!(
        m,
        ServerMessage::MicReleased {
            reason: ReleaseReason::Left,
            ..
        }
    )));
}

#[test]
fn burst_limit_on_engine_timers() {
    let mut opts = Options::new();
    opts.insert("burst_limit_secs".into(), serde_json::json!(2));
    let room = RoomSpec {
        name: "lobby".into(),
        kind: "ptt".into(),
        max_participants: 0,
        options: opts,
    };
    let cfg = EngineConfig {
        silence_timeout: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut s = Sim::with(cfg, vec![room]);
    let a = s.member(1, "a");
    s.member(2, "b");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.advance(Duration::from_millis(1999));
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(1));
    s.advance(Duration::from_millis(1));
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(0));
    assert!(s.take(2).iter().any(|m| matches!(
        m,
        ServerMessage::MicRevoked {
            reason: proto::control::RevokeReason::BurstLimit,
            ..
        }
    )));
}

#[test]
fn thousands_of_steps_run_fast_on_virtual_time() {
    let cfg = EngineConfig {
        max_sessions: 10_000,
        ..Default::default()
    };
    let mut s = Sim::with(cfg, vec![]);
    for id in 1..=50 {
        s.member(id, &format!("u{id}"));
    }
    for round in 0..500u64 {
        let id = round % 50 + 1;
        s.line(id, r#"{"type":"MIC_REQUEST"}"#);
        s.advance(Duration::from_millis(100));
        s.line(id, r#"{"type":"MIC_RELEASE"}"#);
        if round % 20 == 0 {
            for h in 1..=50 {
                s.line(h, r#"{"type":"HEARTBEAT"}"#);
            }
        }
        s.inbox.clear();
    }
    assert!(s.closed.is_empty());
}

// ----- operator verbs -------------------------------------------------------

impl Sim {
    fn event_kinds(&mut self) -> Vec<RoomEventKind> {
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

#[test]
fn room_events_are_numbered_in_order() {
    let mut s = Sim::new();
    s.member(1, "a");
    s.member(2, "b");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.line(2, r#"{"type":"MIC_REQUEST"}"#);
    s.line(1, r#"{"type":"MIC_RELEASE"}"#);
    s.line(2, r#"{"type":"LEAVE"}"#);
    let seqs: Vec<u64> = s.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let kinds = s.event_kinds();
    let short: Vec<String> = kinds
        .iter()
        .map(|k| match k {
            RoomEventKind::Joined { nickname, .. } => format!("join {nickname}"),
            RoomEventKind::Left { nickname, .. } => format!("left {nickname}"),
            RoomEventKind::FloorGranted { nickname, .. } => format!("granted {nickname}"),
            RoomEventKind::FloorDenied {
                nickname, reason, ..
            } => format!("denied {nickname} {reason:?}"),
            RoomEventKind::FloorReleased { nickname, .. } => format!("released {nickname}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        short,
        [
            "join a",
            "join b",
            "granted a",
            "denied b Queued",
            "released a",
            "granted b",
            "left b",
            "released b"
        ]
    );
}

#[test]
fn kick_tells_the_reason_and_ends_the_session() {
    let mut s = Sim::new();
    s.member(1, "a");
    s.member(2, "b");
    s.line(2, r#"{"type":"MIC_REQUEST"}"#);
    s.take(1);
    s.take(2);
    let who = Who::Nickname("B".into());
    assert_eq!(s.engine.kick(s.now, "lobby", &who, "  spamming  "), Ok(()));
    s.drain();
    assert_eq!(
        s.take(2),
        vec![ServerMessage::Left {
            room: "lobby".into(),
            reason: LeaveReason::Kicked,
            message: Some("spamming".into())
        }]
    );
    assert!(s.closed.contains(&2));
    // The floor it held is free, and the others are told.
    assert!(s.take(1).iter().any(|m| matches!(
        m,
        ServerMessage::MicReleased {
            session_id: 2,
            reason: ReleaseReason::Left,
            ..
        }
    )));
    assert!(matches!(
        s.engine.kick(s.now, "lobby", &who, ""),
        Err(OpError::NoParticipant { .. })
    ));
    assert!(matches!(
        s.engine.kick(s.now, "nowhere", &Who::Session(1), ""),
        Err(OpError::NoRoom(_))
    ));
    assert!(matches!(
        s.engine
            .kick(s.now, "lobby", &Who::Session(1), &"x".repeat(300)),
        Err(OpError::Invalid {
            field: "reason",
            ..
        })
    ));
}

#[test]
fn close_room_ends_every_session_or_keeps_them_connected() {
    let mut s = Sim::new();
    let a = s.member(1, "a");
    s.member(2, "b");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    assert_eq!(s.engine.close_room(s.now, "lobby", "", false), Ok(2));
    s.drain();
    for id in [1, 2] {
        assert!(s.take(id).iter().any(|m| matches!(
            m,
            ServerMessage::Left { reason: LeaveReason::RoomClosed, message: Some(t), .. }
                if t.contains("closed")
        )));
        assert!(s.closed.contains(&id), "session {id} still open");
    }
    assert!(s.table.is_empty(), "routes left behind: {:?}", s.table);
    assert!(!s.table.contains_key(&a.audio));
    assert!(matches!(
        s.event_kinds().last(),
        Some(RoomEventKind::Closed { .. })
    ));
    assert_eq!(s.engine.room_info("lobby"), None);
    assert!(matches!(
        s.engine.close_room(s.now, "lobby", "", false),
        Err(OpError::NoRoom(_))
    ));

    // keep_connected: the members stay, outside any room, and may join again.
    let spec = RoomSpec {
        name: "lobby".into(),
        kind: "ptt".into(),
        max_participants: 0,
        options: Options::new(),
    };
    assert_eq!(s.engine.create_room(spec), Ok(()));
    s.member(3, "c");
    assert_eq!(s.engine.close_room(s.now, "lobby", "bye", true), Ok(1));
    s.drain();
    assert!(!s.closed.contains(&3));
    s.take(3);
    s.line(3, r#"{"type":"HEARTBEAT"}"#);
    assert_eq!(s.take(3), vec![ServerMessage::HeartbeatAck]);
}

#[test]
fn mute_empties_the_route_and_shows_in_userlist() {
    let mut s = Sim::new();
    let a = s.member(1, "a");
    s.member(2, "b");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(1));
    s.take(1);
    s.take(2);
    assert_eq!(
        s.engine.mute(s.now, "lobby", &Who::Session(1), true),
        Ok(())
    );
    s.drain();
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(0));
    assert_eq!(s.table.get(&a.audio).map(|r| r.rtcp.len()), Some(1));
    let m = s.take(1);
    assert!(m.contains(&ServerMessage::Muted {
        room: "lobby".into(),
        muted: true
    }));
    let Some(ServerMessage::Userlist { users, .. }) = m
        .iter()
        .rev()
        .find(|m| matches!(m, ServerMessage::Userlist { .. }))
    else {
        panic!("{m:?}")
    };
    assert!(
        users
            .iter()
            .any(|u| u.session_id == 1 && u.muted && !u.talking)
    );
    // Muting twice changes nothing; unmuting lets it ask again.
    assert_eq!(
        s.engine.mute(s.now, "lobby", &Who::Session(1), true),
        Ok(())
    );
    s.drain();
    assert!(s.take(1).is_empty());
    assert_eq!(
        s.engine.mute(s.now, "lobby", &Who::Session(1), false),
        Ok(())
    );
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    assert_eq!(s.table.get(&a.audio).map(|r| r.media.len()), Some(1));
}

#[test]
fn operator_chat_goes_to_the_room_or_one_member() {
    let mut s = Sim::new();
    s.member(1, "a");
    s.member(2, "b");
    s.take(1);
    s.take(2);
    let now = s.now;
    assert_eq!(s.engine.send_chat(now, "lobby", None, "hello all"), Ok(()));
    assert_eq!(
        s.engine
            .send_chat(now, "lobby", Some(&Who::Nickname("a".into())), "psst"),
        Ok(())
    );
    s.drain();
    let chat = |text: &str, to: Option<&str>| ServerMessage::Chat {
        room: "lobby".into(),
        id: 0,
        ts_ms: 0,
        from: "server".into(),
        session_id: None,
        text: text.into(),
        private: to.is_some(),
        to: to.map(str::to_owned),
        operator: true,
    };
    // A ptt room keeps no log: no id; the time stamp is the server's.
    let unstamped = |msgs: Vec<ServerMessage>| -> Vec<ServerMessage> {
        msgs.into_iter()
            .map(|m| match m {
                ServerMessage::Chat { ts_ms, .. } if ts_ms < 1_700_000_000_000 => {
                    panic!("not a server time stamp: {ts_ms}")
                }
                ServerMessage::Chat {
                    room,
                    id,
                    from,
                    session_id,
                    text,
                    private,
                    to,
                    operator,
                    ..
                } => ServerMessage::Chat {
                    room,
                    id,
                    ts_ms: 0,
                    from,
                    session_id,
                    text,
                    private,
                    to,
                    operator,
                },
                other => other,
            })
            .collect()
    };
    assert_eq!(
        unstamped(s.take(1)),
        vec![chat("hello all", None), chat("psst", Some("a"))]
    );
    assert_eq!(unstamped(s.take(2)), vec![chat("hello all", None)]);
    let events = s.event_kinds();
    assert!(matches!(
        events.last(),
        Some(RoomEventKind::Chat { to: Some((1, n)), .. }) if n == "a"
    ));
    for bad in ["", "   ", &"x".repeat(proto::control::CHAT_MAX_CHARS + 1)] {
        assert!(matches!(
            s.engine.send_chat(now, "lobby", None, bad),
            Err(OpError::Invalid { field: "text", .. })
        ));
    }
}

#[test]
fn floor_verbs_need_a_floor_and_lobby_verbs_a_lobby() {
    let mut s = Sim::new();
    s.member(1, "a");
    assert!(matches!(
        s.engine.revoke_floor(s.now, "lobby"),
        Err(OpError::Precondition(_))
    ));
    assert_eq!(
        s.engine.grant_floor(s.now, "lobby", &Who::Session(1)),
        Ok(())
    );
    // Nobody waits to enter a ptt room: a member is not a lobby request.
    assert!(matches!(
        s.engine.lobby_decision(s.now, "lobby", &Who::Session(1), true, ""),
        Err(OpError::NoParticipant { who, .. }) if who.contains("waiting in the lobby")
    ));
}

#[test]
fn room_limit_is_enforced() {
    let cfg = EngineConfig {
        max_rooms: 2,
        ..EngineConfig::default()
    };
    let mut s = Sim::with(cfg, vec![]);
    let spec = |n: &str| RoomSpec {
        name: n.into(),
        kind: "ptt".into(),
        max_participants: 0,
        options: Options::new(),
    };
    assert_eq!(s.engine.create_room(spec("two")), Ok(()));
    assert_eq!(
        s.engine.create_room(spec("three")),
        Err(RoomError::TooMany(2))
    );
    assert_eq!(s.engine.close_room(s.now, "two", "", false), Ok(0));
    assert_eq!(s.engine.create_room(spec("three")), Ok(()));
}

#[test]
fn create_meeting_on_a_router_full_of_rooms_is_full_and_keeps_the_session() {
    let cfg = EngineConfig {
        max_rooms: 1,
        ..EngineConfig::default()
    };
    let mut s = Sim::with(cfg, vec![]);
    s.hello(1, "host");
    s.line(1, r#"{"type":"CREATE_MEETING"}"#);
    let got = s.take(1);
    assert!(
        matches!(&got[..], [ServerMessage::Full { scope: FullScope::Server, message }] if message.contains("at most 1 rooms")),
        "{got:?}"
    );
    assert!(
        s.closed.is_empty(),
        "a refused CREATE_MEETING keeps the session"
    );
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    assert!(
        s.take(1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { .. }))
    );
}

// ----- meetings ------------------------------------------------------------

impl Sim {
    fn hello_from(&mut self, s: SessionId, nick: &str, ip: [u8; 4]) {
        self.input(Input::Connected {
            session: s,
            peer: SocketAddr::from((ip, 5000)),
        });
        self.line(
            s,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
        );
        self.take(s);
    }

    /// `s` creates a meeting; returns (room, code).
    fn create_meeting(&mut self, s: SessionId, end_with_host: bool) -> (String, String) {
        self.line(
            s,
            &format!(r#"{{"type":"CREATE_MEETING","end_with_host":{end_with_host}}}"#),
        );
        let got = self.take(s);
        let created = got.iter().find_map(|m| match m {
            ServerMessage::MeetingCreated { room, code, .. } => Some((room.clone(), code.clone())),
            _ => None,
        });
        let Some((room, code)) = created else {
            panic!("no MEETING_CREATED: {got:?}")
        };
        assert!(
            got.iter()
                .any(|m| matches!(m, ServerMessage::Joined { kind, .. } if kind == "meeting")),
            "{got:?}"
        );
        (room, code)
    }

    fn request_join(&mut self, s: SessionId, code: &str) -> Vec<ServerMessage> {
        self.line(s, &format!(r#"{{"type":"REQUEST_JOIN","code":"{code}"}}"#));
        self.take(s)
    }

    fn lobby(&mut self, host: SessionId) -> Option<Vec<String>> {
        self.take(host).into_iter().rev().find_map(|m| match m {
            ServerMessage::Lobby { waiting, .. } => {
                Some(waiting.into_iter().map(|w| w.nickname).collect())
            }
            _ => None,
        })
    }
}

#[test]
fn a_meeting_is_made_with_a_code_and_entered_through_the_hosts_lobby() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    let (room, code) = s.create_meeting(1, false);
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(room, format!("meeting-{code}"));
    s.hello(2, "bob");
    let got = s.request_join(2, &code);
    assert!(
        matches!(&got[..], [ServerMessage::JoinPending { room: r, timeout_ms: 120_000 }] if *r == room),
        "{got:?}"
    );
    assert_eq!(s.lobby(1), Some(vec!["bob".to_owned()]));
    // While waiting: no room commands, no second request, nothing to others.
    s.line(2, r#"{"type":"CHAT","text":"let me in"}"#);
    s.line(2, &format!(r#"{{"type":"REQUEST_JOIN","code":"{code}"}}"#));
    assert_eq!(
        s.errors(2),
        [ErrorCode::NotInRoom, ErrorCode::AlreadyInRoom]
    );
    // The host lets bob in: JOIN_ACCEPTED, then JOINED, then the room.
    s.line(1, r#"{"type":"ALLOW_JOIN","session_id":2}"#);
    let got = s.take(2);
    assert!(
        matches!(&got[0], ServerMessage::JoinAccepted { .. }),
        "{got:?}"
    );
    assert!(matches!(&got[1], ServerMessage::Joined { kind, .. } if kind == "meeting"));
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::HostChanged { host, .. } if host == "ann"))
    );
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::Userlist { users, .. } if users.len() == 2))
    );
    assert_eq!(s.lobby(1), Some(vec![]));
    // What GetStats shows of each.
    let infos = s.engine.participants(s.now, &room).unwrap_or_default();
    assert_eq!(infos.len(), 2);
    assert!(infos[0].room_state.contains(&("host", "true".to_owned())));
    assert!(
        infos[1]
            .room_state
            .contains(&("video_level", "360p".to_owned()))
    );
    // A wrong code is an error.
    s.hello(3, "cat");
    let other = if code == "000000" { "000001" } else { "000000" };
    let got = s.request_join(3, other);
    assert!(
        matches!(
            &got[..],
            [ServerMessage::Error {
                code: ErrorCode::UnknownMeeting,
                ..
            }]
        ),
        "{got:?}"
    );
    let got = s.request_join(3, "12ab56");
    assert!(
        matches!(
            &got[..],
            [ServerMessage::Error {
                code: ErrorCode::UnknownMeeting,
                ..
            }]
        ),
        "{got:?}"
    );
}

#[test]
fn join_attempts_are_rate_limited_per_address() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    let (_, code) = s.create_meeting(1, false);
    s.hello_from(2, "mallory", [10, 0, 0, 66]);
    let wrong = if code == "999999" { "999998" } else { "999999" };
    for _ in 0..5 {
        let got = s.request_join(2, wrong);
        assert!(matches!(
            &got[..],
            [ServerMessage::Error {
                code: ErrorCode::UnknownMeeting,
                ..
            }]
        ));
    }
    let got = s.request_join(2, &code);
    assert!(
        matches!(&got[..], [ServerMessage::Error { code: ErrorCode::RateLimited, message }] if message.contains("10.0.0.66") && message.contains("retry in 2.0 s")),
        "even the right code is refused once the budget is spent: {got:?}"
    );
    // Another address is not affected; the first earns one attempt per 2 s.
    s.hello_from(3, "bob", [10, 0, 0, 7]);
    assert!(matches!(
        &s.request_join(3, &code)[..],
        [ServerMessage::JoinPending { .. }]
    ));
    s.advance(Duration::from_millis(1999));
    assert!(matches!(
        &s.request_join(2, &code)[..],
        [ServerMessage::Error {
            code: ErrorCode::RateLimited,
            ..
        }]
    ));
    s.advance(Duration::from_millis(1));
    assert!(matches!(
        &s.request_join(2, &code)[..],
        [ServerMessage::JoinPending { .. }]
    ));
    assert_eq!(s.engine.stats().join_attempts_limited, 2);
}

#[test]
fn a_meeting_ends_when_everyone_left_and_its_waiting_guests_are_told() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    let (room, code) = s.create_meeting(1, false);
    s.hello(2, "bob");
    s.request_join(2, &code);
    s.line(1, r#"{"type":"LEAVE"}"#);
    let got = s.take(2);
    assert!(
        matches!(
            &got[..],
            [ServerMessage::JoinRejected {
                reason: RejectReason::MeetingEnded,
                ..
            }]
        ),
        "{got:?}"
    );
    assert!(s.engine.room_info(&room).is_none());
    // The code is free again; bob is connected and can make his own.
    s.hello(3, "cat");
    assert!(matches!(
        &s.request_join(3, &code)[..],
        [ServerMessage::Error {
            code: ErrorCode::UnknownMeeting,
            ..
        }]
    ));
    s.create_meeting(2, false);
    assert!(matches!(
        s.events.last().map(|e| &e.kind),
        Some(RoomEventKind::Joined { .. })
    ));
}

#[test]
fn a_meeting_made_to_end_with_its_host_closes_when_the_host_leaves() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    let (room, code) = s.create_meeting(1, true);
    for (id, nick) in [(2, "bob"), (3, "cat")] {
        s.hello(id, nick);
        s.request_join(id, &code);
        s.line(1, &format!(r#"{{"type":"ALLOW_JOIN","session_id":{id}}}"#));
    }
    s.take(2);
    s.gone(1);
    for id in [2, 3] {
        let got = s.take(id);
        assert!(
            got.iter().any(|m| matches!(m, ServerMessage::Left { reason: LeaveReason::RoomClosed, message: Some(m), .. } if m == "the host ended the meeting")),
            "{got:?}"
        );
        assert!(!s.closed.contains(&id), "guests stay connected");
    }
    assert!(s.engine.room_info(&room).is_none());
    assert!(matches!(
        s.events.last().map(|e| &e.kind),
        Some(RoomEventKind::Closed { .. })
    ));
}

#[test]
fn the_host_removes_and_mutes_and_an_operator_decides_the_lobby() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    let (room, code) = s.create_meeting(1, false);
    s.hello(2, "bob");
    s.request_join(2, &code);
    // The operator approves by nickname (gRPC ApproveJoin).
    assert_eq!(
        s.engine
            .lobby_decision(s.now, &room, &Who::Nickname("BOB".into()), true, ""),
        Ok(())
    );
    s.drain();
    assert!(matches!(
        s.take(2).first(),
        Some(ServerMessage::JoinAccepted { .. })
    ));
    s.hello(3, "cat");
    s.request_join(3, &code);
    assert_eq!(
        s.engine
            .lobby_decision(s.now, &room, &Who::Session(3), false, "no guests today"),
        Ok(())
    );
    s.drain();
    assert!(matches!(
        &s.take(3)[..],
        [ServerMessage::JoinRejected { reason: RejectReason::Denied, message, .. }] if message == "no guests today"
    ));
    // Host mute: MUTED to bob, USERLIST shows it.
    s.line(1, r#"{"type":"MUTE","nickname":"bob","muted":true}"#);
    let got = s.take(2);
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::Muted { muted: true, .. })),
        "{got:?}"
    );
    assert!(got.iter().any(|m| matches!(m, ServerMessage::Userlist { users, .. } if users.iter().any(|u| u.nickname == "bob" && u.muted))));
    // A guest may not.
    s.line(2, r#"{"type":"REMOVE","nickname":"ann"}"#);
    assert_eq!(s.errors(2), [ErrorCode::NotHost]);
    s.line(
        1,
        r#"{"type":"REMOVE","nickname":"bob","reason":"off topic"}"#,
    );
    let got = s.take(2);
    assert!(
        got.iter().any(|m| matches!(m, ServerMessage::Left { reason: LeaveReason::Kicked, message: Some(m), .. } if m == "off topic")),
        "{got:?}"
    );
    assert!(
        !s.closed.contains(&2),
        "removed from the meeting, not disconnected"
    );
    assert_eq!(s.engine.participants(s.now, &room).map(|p| p.len()), Ok(1));
}

#[test]
fn a_guest_who_disconnects_while_waiting_leaves_the_lobby() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    let (_, code) = s.create_meeting(1, false);
    s.hello(2, "bob");
    s.hello(3, "cat");
    s.request_join(2, &code);
    s.request_join(3, &code);
    assert_eq!(s.lobby(1), Some(vec!["bob".to_owned(), "cat".to_owned()]));
    s.input(Input::Disconnected { session: 2 });
    assert_eq!(s.lobby(1), Some(vec!["cat".to_owned()]));
    s.line(3, r#"{"type":"LEAVE"}"#);
    assert!(matches!(&s.take(3)[..], [ServerMessage::Left { .. }]));
    assert_eq!(s.lobby(1), Some(vec![]));
}

#[test]
fn a_client_creates_a_room_that_closes_when_it_empties() {
    let mut s = Sim::new();
    s.hello(1, "ann");
    s.line(
        1,
        r#"{"type":"CREATE_ROOM","room":"team","kind":"chat","options":{"history":5}}"#,
    );
    assert!(
        s.take(1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { room, kind, .. } if room == "team" && kind == "chat"))
    );
    let info = s
        .engine
        .room_info("team")
        .map(|i| (i.participants, i.max_participants));
    assert_eq!(info, Some((1, 50)), "the router's limit for client rooms");
    // Others join it by name; taken names, bad kinds and bad options are refused.
    s.hello(2, "bob");
    s.line(2, r#"{"type":"CREATE_ROOM","room":"team","kind":"ptt"}"#);
    assert_eq!(s.errors(2), [ErrorCode::RoomExists]);
    for bad in [
        r#"{"type":"CREATE_ROOM","room":"x","kind":"karaoke"}"#,
        r#"{"type":"CREATE_ROOM","room":"x","kind":"meeting"}"#,
        r#"{"type":"CREATE_ROOM","room":"x y","kind":"ptt"}"#,
        r#"{"type":"CREATE_ROOM","room":"x","kind":"ptt","options":{"colour":"red"}}"#,
        r#"{"type":"CREATE_ROOM","room":"x","kind":"ptt","max_participants":51}"#,
    ] {
        s.line(2, bad);
        assert_eq!(s.errors(2), [ErrorCode::BadField], "{bad}");
    }
    assert!(s.engine.room_info("x").is_none());
    s.line(2, r#"{"type":"JOIN","room":"team"}"#);
    s.line(1, r#"{"type":"LEAVE"}"#);
    assert!(s.engine.room_info("team").is_some(), "bob is still in it");
    s.line(2, r#"{"type":"LEAVE"}"#);
    assert!(s.engine.room_info("team").is_none(), "closed when empty");
    // Configured rooms stay when empty.
    assert!(s.engine.room_info("lobby").is_some());
    // Creating costs a join attempt of the address (as does a refused
    // attempt, so names cannot be probed fast): the sixth at once waits.
    s.advance(Duration::from_secs(10));
    s.take(2);
    for i in 0..5 {
        s.line(
            2,
            &format!(r#"{{"type":"CREATE_ROOM","room":"r{i}","kind":"ptt"}}"#),
        );
        s.line(2, r#"{"type":"LEAVE"}"#);
    }
    assert!(s.errors(2).is_empty());
    s.line(2, r#"{"type":"CREATE_ROOM","room":"r5","kind":"ptt"}"#);
    assert_eq!(s.errors(2), [ErrorCode::RateLimited]);
}

#[test]
fn a_router_may_refuse_client_rooms() {
    let cfg = EngineConfig {
        client_rooms: false,
        ..EngineConfig::default()
    };
    let mut s = Sim::with(cfg, vec![]);
    s.hello(1, "ann");
    s.line(1, r#"{"type":"CREATE_ROOM","room":"team","kind":"ptt"}"#);
    assert_eq!(s.errors(1), [ErrorCode::NotSupported]);
}

fn ptt_room(name: &str) -> RoomSpec {
    RoomSpec {
        name: name.into(),
        kind: "ptt".into(),
        max_participants: 0,
        options: Options::new(),
    }
}

/// Two media workers on ports 7100 and 7101, with rooms `a`, `b`, `c`.
fn two_workers() -> Sim {
    let cfg = EngineConfig {
        media_ports: vec![7100, 7101],
        ..EngineConfig::default()
    };
    Sim::with(cfg, vec![ptt_room("a"), ptt_room("b"), ptt_room("c")])
}

fn joined_port(m: &[ServerMessage]) -> Option<u16> {
    m.iter().find_map(|m| match m {
        ServerMessage::Joined { udp_port, .. } => Some(*udp_port),
        _ => None,
    })
}

#[test]
fn rooms_are_placed_across_workers_and_joined_tells_the_port() {
    let mut s = two_workers();
    let (_, _) = s.hello(1, "ann");
    let mut ports = Vec::new();
    for room in ["a", "b", "c"] {
        s.line(1, &format!(r#"{{"type":"JOIN","room":"{room}"}}"#));
        ports.push(joined_port(&s.take(1)));
        s.line(1, r#"{"type":"LEAVE"}"#);
    }
    // Fewest rooms first, the lowest worker on a tie: a→0, b→1, c→0.
    assert_eq!(ports, [Some(7100), Some(7101), Some(7100)]);
    // WELCOME tells the first worker.
    s.input(Input::Connected {
        session: 2,
        peer: addr(1),
    });
    s.line(2, r#"{"type":"HELLO","version":1,"nickname":"bob"}"#);
    assert!(matches!(
        s.take(2).first(),
        Some(ServerMessage::Welcome { udp_port: 7100, .. })
    ));
    // A room created later goes to the worker with fewer rooms (1), and
    // closing a room frees its place.
    s.line(2, r#"{"type":"CREATE_ROOM","room":"d","kind":"ptt"}"#);
    assert_eq!(joined_port(&s.take(2)), Some(7101));
    s.line(2, r#"{"type":"LEAVE"}"#); // d is empty and closes
    s.line(2, r#"{"type":"CREATE_ROOM","room":"e","kind":"ptt"}"#);
    assert_eq!(joined_port(&s.take(2)), Some(7101));
}

#[test]
fn media_is_routed_only_at_the_rooms_worker() {
    let mut s = two_workers();
    let from = |s: SessionId| addr(40000 + s as u16);
    let mut ssrcs = Vec::new();
    for (id, nick) in [(1, "ann"), (2, "bob")] {
        let (ss, token) = s.hello(id, nick);
        // Bound at worker 0 first (WELCOME's port), then joins room b,
        // which is on worker 1.
        s.stun_at(0, from(id), &token);
        s.line(id, r#"{"type":"JOIN","room":"b"}"#);
        assert_eq!(joined_port(&s.take(id)), Some(7101));
        ssrcs.push((ss, token));
    }
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    // Not bound at the room's worker: no routes anywhere yet.
    assert!(s.table.is_empty(), "{:?}", s.table);
    for (id, (_, token)) in [(1, ssrcs[0].clone()), (2, ssrcs[1].clone())] {
        s.stun_at(1, from(id), &token);
        // Moved: unbound at worker 0, bound at worker 1.
        assert!(!s.worker_bound.contains_key(&(0, from(id))));
        assert_eq!(s.worker_bound.get(&(1, from(id))), Some(&id));
    }
    let route = s.worker_table.get(&(1, ssrcs[0].0.audio)).cloned();
    let Some(route) = route else {
        panic!("no route at worker 1: {:?}", s.worker_table)
    };
    assert_eq!(route.source, from(1));
    assert_eq!(&route.media[..], &[from(2)]);
    assert!(!s.worker_table.keys().any(|(w, _)| *w == 0));
    // Every command for the room went to worker 1; STUN replies went to the
    // worker that was asked.
    assert!(s.media.iter().all(|(w, c)| match c {
        MediaCommand::SetRoute { .. } | MediaCommand::RemoveRoute { .. } => *w == 1,
        _ => true,
    }));
    // Closing the room removes its routes from worker 1.
    s.gone(1);
    s.gone(2);
    assert!(s.worker_table.is_empty());
    assert!(s.worker_bound.is_empty());
}

// ----- member lists by delta ---------------------------------------------

/// A client's view of the member list, kept from USERLIST and
/// MEMBERS_CHANGED as a client following docs/protocol.md would.
#[derive(Default)]
struct RosterView {
    users: BTreeMap<u64, UserInfo>,
    lists: usize,
    deltas: usize,
    /// `MEMBER_COUNT`s, and the last one.
    counts: usize,
    count: Option<u32>,
}

impl RosterView {
    fn absorb(&mut self, msgs: Vec<ServerMessage>) {
        for m in msgs {
            match m {
                ServerMessage::Userlist { users, .. } => {
                    self.lists += 1;
                    self.users = users.into_iter().map(|u| (u.session_id, u)).collect();
                }
                ServerMessage::MembersChanged {
                    joined,
                    changed,
                    left,
                    ..
                } => {
                    self.deltas += 1;
                    for u in joined.into_iter().chain(changed) {
                        self.users.insert(u.session_id, u);
                    }
                    for g in left {
                        self.users.remove(&g.session_id);
                    }
                }
                ServerMessage::MemberCount { count, .. } => {
                    self.counts += 1;
                    self.count = Some(count);
                }
                _ => {}
            }
        }
    }
}

impl Sim {
    /// HELLO asking for `asked`; WELCOME must grant exactly `granted`.
    fn hello_asking(&mut self, s: SessionId, nick: &str, asked: &[&str], granted: &[&str]) {
        self.input(Input::Connected {
            session: s,
            peer: addr(1),
        });
        let features = serde_json::to_string(asked).unwrap_or_default();
        self.line(
            s,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}","features":{features}}}"#),
        );
        match self.take(s).pop() {
            Some(ServerMessage::Welcome { features, .. }) => {
                assert_eq!(features, granted, "unknown features are ignored")
            }
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    fn hello_with_pages(&mut self, s: SessionId, nick: &str) {
        self.hello_asking(s, nick, &["member_pages"], &["member_pages"]);
    }

    fn hello_with_deltas(&mut self, s: SessionId, nick: &str) {
        self.hello_asking(s, nick, &["member_deltas", "teleport"], &["member_deltas"]);
    }

    /// The whole list as a fresh joiner of `lobby` gets it.
    fn truth(&mut self, probe: SessionId) -> BTreeMap<u64, UserInfo> {
        self.hello(probe, &format!("probe{probe}"));
        self.line(probe, r#"{"type":"JOIN","room":"lobby"}"#);
        let mut v = RosterView::default();
        v.absorb(self.take(probe));
        self.line(probe, r#"{"type":"LEAVE"}"#);
        v.users.remove(&probe);
        v.users
    }
}

#[test]
fn a_delta_client_gets_the_list_once_then_one_small_change_per_event() {
    let mut h = Sim::new();
    h.hello_with_deltas(1, "ann");
    h.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    let mut ann = RosterView::default();
    ann.absorb(h.take(1));
    assert_eq!((ann.lists, ann.deltas), (1, 0), "the whole list on joining");
    // An old client beside her still gets USERLIST on every change.
    h.hello(2, "bob");
    h.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    let m = h.take(1);
    assert!(
        matches!(&m[..], [ServerMessage::MembersChanged { joined, changed, left, .. }]
            if joined.len() == 1 && joined[0].nickname == "bob" && changed.is_empty() && left.is_empty()),
        "{m:?}"
    );
    ann.absorb(m);
    h.take(2);
    h.line(2, r#"{"type":"MIC_REQUEST"}"#);
    let m = h.take(1);
    assert!(
        m.iter().any(
            |x| matches!(x, ServerMessage::MembersChanged { changed, .. }
            if changed.len() == 1 && changed[0].talking)
        ),
        "{m:?}"
    );
    ann.absorb(m);
    assert!(h.take(2).iter().any(
        |x| matches!(x, ServerMessage::Userlist { users, .. } if users.iter().any(|u| u.talking))
    ));
    h.line(2, r#"{"type":"LEAVE"}"#);
    let m = h.take(1);
    assert!(
        m.iter()
            .any(|x| matches!(x, ServerMessage::MembersChanged { left, .. }
            if left.len() == 1 && left[0].nickname == "bob")),
        "{m:?}"
    );
    ann.absorb(m);
    assert_eq!(ann.users, h.truth(9));
    assert_eq!(ann.lists, 1);
}

#[test]
fn a_join_storm_in_a_large_room_is_coalesced_and_every_view_ends_right() {
    let mut h = Sim::with(
        EngineConfig {
            max_sessions: 5000,
            ..Sim::one_address_config()
        },
        Vec::new(),
    );
    // Two watchers: one with deltas, one without.
    h.hello_with_deltas(1, "delta");
    h.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    h.hello(2, "legacy");
    h.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    let (mut d, mut l) = (RosterView::default(), RosterView::default());
    d.absorb(h.take(1));
    l.absorb(h.take(2));
    let (d0, l0) = (d.lists + d.deltas, l.lists);
    // 600 join within one second; a tenth of them leave again.
    let n = 600u64;
    for i in 0..n {
        let s = 100 + i;
        h.quiet.insert(s);
        h.hello_with_deltas(s, &format!("m{i}"));
        h.line(s, r#"{"type":"JOIN","room":"lobby"}"#);
        h.inbox.remove(&s);
        if i % 10 == 9 {
            h.line(s - 5, r#"{"type":"LEAVE"}"#);
            h.inbox.remove(&(s - 5));
        }
        h.advance(Duration::from_micros(1_000_000 / n));
        d.absorb(h.take(1));
        l.absorb(h.take(2));
    }
    // Everything still pending goes out within the legacy interval.
    h.advance(roster::legacy_interval(600) + Duration::from_millis(1));
    d.absorb(h.take(1));
    l.absorb(h.take(2));
    let truth = h.truth(9);
    assert_eq!(truth.len(), 2 + 540);
    assert_eq!(d.users, truth, "the delta client's view");
    assert_eq!(l.users, truth, "the old client's view");
    let (dm, lm) = (d.lists + d.deltas - d0, l.lists - l0);
    // One message per change would be 660. Up to 64 members every change is
    // told at once (about 70 of them here); past that, one per 100 ms over
    // the second left of the storm, and the last ones.
    assert!(
        dm <= 70 + 10 + 5,
        "delta client got {dm} member-list messages"
    );
    // Old clients: the same 70 at once, then one list per max(100 ms, N² µs)
    // (ten or so in the rest of the second).
    assert!(lm <= 70 + 12, "old client got {lm} whole lists");
    assert_eq!(d.lists, 1, "the delta client got the whole list once");
}

#[test]
fn another_front_end_drives_the_engine_with_typed_commands() {
    let mut s = Sim::new();
    s.input(Input::Connected {
        session: 1,
        peer: addr(1),
    });
    let cmd = |s: &mut Sim, name: &'static str, command: Command| {
        s.input(Input::Command {
            session: 1,
            name,
            command,
        })
    };
    cmd(
        &mut s,
        "floor",
        Command::Room(RoomCommand::FloorRequest { priority: 0 }),
    );
    assert!(
        matches!(&s.take(1)[..], [ServerMessage::Error { code: ErrorCode::HelloRequired, message }] if message.contains("before floor")),
        "the front-end's own name for the command"
    );
    cmd(
        &mut s,
        "hello",
        Command::Session(SessionCommand::Hello {
            version: 1,
            nickname: "seed".into(),
            features: vec![],
            resume: None,
            token: None,
            legacy: false,
        }),
    );
    cmd(
        &mut s,
        "join",
        Command::Session(SessionCommand::Join {
            room: "lobby".into(),
        }),
    );
    cmd(
        &mut s,
        "talk",
        Command::Room(RoomCommand::FloorRequest { priority: 0 }),
    );
    let got = s.take(1);
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::Joined { room, .. } if room == "lobby"))
    );
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { .. }))
    );
    cmd(&mut s, "untalk", Command::Room(RoomCommand::FloorRelease));
    cmd(&mut s, "untalk", Command::Room(RoomCommand::FloorRelease));
    assert!(s.take(1).iter().any(|m| matches!(m, ServerMessage::Error { code: ErrorCode::NotFloorHolder, message } if message.starts_with("untalk: "))));
}

#[test]
fn a_paging_client_hears_counts_in_a_large_room_and_asks_for_pages() {
    use proto::control::{LARGE_ROOM, LARGE_ROOM_UNTIL, MEMBER_PAGE_MAX};
    let mut h = Sim::new();
    h.hello_with_pages(1, "pager");
    h.line(1, r#"{"type":"LIST_MEMBERS"}"#);
    assert!(
        matches!(
            &h.take(1)[..],
            [ServerMessage::Error {
                code: ErrorCode::NotInRoom,
                ..
            }]
        ),
        "LIST_MEMBERS outside a room"
    );
    h.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    h.hello_with_deltas(2, "delta");
    h.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    let (mut p, mut d) = (RosterView::default(), RosterView::default());
    p.absorb(h.take(1));
    d.absorb(h.take(2));
    assert_eq!((p.lists, p.counts), (1, 0), "a listed room: the whole list");
    let mut next = 100u64;
    let mut join = |h: &mut Sim, p: &mut RosterView, d: &mut RosterView| {
        let s = next;
        next += 1;
        h.quiet.insert(s);
        h.hello_with_deltas(s, &format!("m{s}"));
        h.line(s, r#"{"type":"JOIN","room":"lobby"}"#);
        h.inbox.remove(&s);
        h.advance(Duration::from_millis(1));
        p.absorb(h.take(1));
        d.absorb(h.take(2));
        s
    };
    // Up to LARGE_ROOM members the pager is a delta client.
    let mut joined = Vec::new();
    while joined.len() + 2 < LARGE_ROOM {
        joined.push(join(&mut h, &mut p, &mut d));
    }
    h.advance(Duration::from_millis(200));
    p.absorb(h.take(1));
    assert_eq!(p.counts, 0);
    assert_eq!(p.users.len(), LARGE_ROOM, "deltas up to LARGE_ROOM");
    // One more and the room is large: a count, and no lists or deltas.
    let (lists, deltas) = (p.lists, p.deltas);
    joined.push(join(&mut h, &mut p, &mut d));
    assert_eq!(p.count, Some(LARGE_ROOM as u32 + 1), "the count at once");
    // 200 more within a second: counts coalesced, the last one right.
    for _ in 0..200 {
        joined.push(join(&mut h, &mut p, &mut d));
        h.advance(Duration::from_millis(4));
        p.absorb(h.take(1));
    }
    h.advance(roster::COUNT_MAX_INTERVAL);
    p.absorb(h.take(1));
    d.absorb(h.take(2));
    let n = joined.len() + 2;
    assert_eq!(p.count, Some(n as u32));
    assert!(p.counts <= 1 + 12, "{} counts for 200 joins", p.counts);
    assert_eq!(
        (p.lists, p.deltas),
        (lists, deltas),
        "no lists in a large room"
    );
    assert_eq!(d.users.len(), n, "delta clients keep the whole list");
    // A pager joining a large room gets the count, not the list.
    h.hello_with_pages(3, "late");
    h.line(3, r#"{"type":"JOIN","room":"lobby"}"#);
    let got = h.take(3);
    assert!(
        matches!(&got[..], [ServerMessage::Joined { .. }, ServerMessage::MemberCount { count, .. }] if *count as usize == n + 1),
        "{got:?}"
    );
    // Pages, in joining order, capped.
    h.line(1, r#"{"type":"LIST_MEMBERS","offset":1,"limit":2}"#);
    let got = h.take(1);
    let [
        ServerMessage::MemberPage {
            count,
            offset: 1,
            members,
            ..
        },
    ] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!(*count as usize, n + 1);
    let names: Vec<&str> = members.iter().map(|m| m.nickname.as_str()).collect();
    assert_eq!(names, ["delta", "m100"]);
    h.line(1, r#"{"type":"LIST_MEMBERS","limit":100000}"#);
    assert!(
        matches!(&h.take(1)[..], [ServerMessage::MemberPage { members, .. }] if members.len() == MEMBER_PAGE_MAX as usize)
    );
    h.line(1, r#"{"type":"LIST_MEMBERS","offset":100000}"#);
    assert!(
        matches!(&h.take(1)[..], [ServerMessage::MemberPage { members, offset: 100000, .. }] if members.is_empty())
    );
    // Shrinking to LARGE_ROOM_UNTIL gives the pager the whole list again,
    // then deltas.
    h.line(3, r#"{"type":"LEAVE"}"#);
    while joined.len() + 2 > LARGE_ROOM_UNTIL {
        let Some(s) = joined.pop() else { break };
        h.line(s, r#"{"type":"LEAVE"}"#);
        h.inbox.remove(&s);
        h.advance(Duration::from_millis(1));
        p.absorb(h.take(1));
    }
    assert_eq!(
        p.lists,
        lists + 1,
        "the whole list when the room is listed again"
    );
    h.line(joined[0], r#"{"type":"LEAVE"}"#);
    h.advance(Duration::from_millis(200));
    p.absorb(h.take(1));
    d.absorb(h.take(2));
    assert!(p.deltas > deltas, "deltas again");
    let truth = h.truth(9);
    assert_eq!(p.users, truth, "the pager's view");
    assert_eq!(d.users, truth, "the delta client's view");
}

#[test]
fn a_nickname_is_free_again_once_its_holder_left_or_withdrew() {
    let mut s = Sim::new();
    s.member(1, "Ann");
    s.hello(2, "ann");
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    assert_eq!(s.errors(2), [ErrorCode::NicknameTaken]);
    s.line(1, r#"{"type":"LEAVE"}"#);
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    assert!(s.errors(2).is_empty(), "free once Ann left");
    // Taken by a member now, whatever the case.
    s.hello(3, "ANN");
    s.line(3, r#"{"type":"JOIN","room":"lobby"}"#);
    assert_eq!(s.errors(3), [ErrorCode::NicknameTaken]);
    // A meeting guest waiting in the lobby holds its nickname until it
    // withdraws.
    s.hello(10, "host");
    s.line(10, r#"{"type":"CREATE_MEETING"}"#);
    let code = s
        .take(10)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::MeetingCreated { code, .. } => Some(code),
            _ => None,
        })
        .unwrap_or_default();
    s.hello(11, "guest");
    s.line(11, &format!(r#"{{"type":"REQUEST_JOIN","code":"{code}"}}"#));
    s.hello(12, "Guest");
    s.line(12, &format!(r#"{{"type":"REQUEST_JOIN","code":"{code}"}}"#));
    assert_eq!(s.errors(12), [ErrorCode::NicknameTaken]);
    s.line(11, r#"{"type":"LEAVE"}"#);
    s.line(12, &format!(r#"{{"type":"REQUEST_JOIN","code":"{code}"}}"#));
    assert!(
        s.errors(12).is_empty(),
        "free once the first guest withdrew"
    );
}

#[test]
fn list_rooms_shows_a_meeting_to_its_members_only() {
    let mut s = Sim::new();
    s.hello(1, "host");
    s.line(1, r#"{"type":"CREATE_MEETING"}"#);
    s.take(1);
    s.hello(2, "other");
    let names = |s: &mut Sim, who: SessionId| -> Vec<String> {
        s.line(who, r#"{"type":"LIST_ROOMS"}"#);
        s.take(who)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::Rooms { rooms } => Some(rooms.into_iter().map(|r| r.name).collect()),
                _ => None,
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names(&mut s, 2),
        ["lobby"],
        "no meeting, no code, to a stranger"
    );
    let host = names(&mut s, 1);
    assert_eq!(host.len(), 2, "{host:?}");
    assert!(host.iter().any(|n| n.starts_with("meeting-")));
    // The operator still sees every room.
    assert_eq!(s.engine.room_infos().len(), 2);
}

#[test]
fn an_eager_user_is_refused_but_never_disconnected() {
    let mut s = Sim::chat_lobby();
    s.member(1, "ann");
    s.member(2, "bob");
    s.take(1);
    // 15 chats at once: beyond the room's burst they are RATE_LIMITED.
    for i in 0..15 {
        s.line(1, &format!(r#"{{"type":"CHAT","text":"hi {i}"}}"#));
    }
    let errors = s.errors(1);
    assert!(
        !errors.is_empty() && errors.iter().all(|e| *e == ErrorCode::RateLimited),
        "{errors:?}"
    );
    // Eleven quick releases of a floor it does not hold (ptt rooms) or a
    // command its room does not take: refusals, not bad lines.
    for _ in 0..11 {
        s.line(1, r#"{"type":"MIC_RELEASE"}"#);
    }
    assert!(!s.closed.contains(&1), "refusals closed the connection");
    assert_eq!(s.errors(1).len(), 11);
    // Bob heard every chat that was taken, and nothing else went amiss.
    assert!(
        s.take(2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Chat { .. }))
    );
}

#[test]
fn commands_have_per_session_rates_and_sustained_abuse_is_closed() {
    let rates = crate::config::CommandRates::default();
    let mut s = Sim::new();
    s.member(1, "ann");
    s.member(2, "bob");
    s.take(1);
    // The floor: `burst` requests and releases at once, then RATE_LIMITED,
    // and the command has no effect.
    for _ in 0..rates.floor.burst / 2 {
        s.line(1, r#"{"type":"MIC_REQUEST"}"#);
        s.line(1, r#"{"type":"MIC_RELEASE"}"#);
    }
    assert!(s.errors(1).is_empty());
    s.take(2);
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    let got = s.take(1);
    assert!(
        matches!(&got[..], [ServerMessage::Error { code: ErrorCode::RateLimited, message }] if message.starts_with("MIC_REQUEST: at most 20 at once") && message.contains("retry in")),
        "{got:?}"
    );
    assert!(
        !s.take(2)
            .iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { .. })),
        "a limited request took the floor"
    );
    // One token back per refill interval.
    s.advance(rates.floor.interval());
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    assert!(
        s.take(1)
            .iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { .. }))
    );
    // JOIN and LEAVE share theirs.
    s.member(3, "cy");
    for _ in 0..rates.membership.burst {
        s.line(3, r#"{"type":"LEAVE"}"#);
    }
    s.line(3, r#"{"type":"JOIN","room":"lobby"}"#);
    assert_eq!(s.errors(3).last(), Some(&ErrorCode::RateLimited));
    assert!(!s.closed.contains(&3));
    // Refusal upon refusal, far beyond any user's pace: closed.
    s.member(4, "dee");
    for _ in 0..rates.refusals.burst {
        s.line(4, r#"{"type":"MIC_RELEASE"}"#);
    }
    assert!(
        !s.closed.contains(&4),
        "{} refusals are tolerated",
        rates.refusals.burst
    );
    s.line(4, r#"{"type":"MIC_RELEASE"}"#);
    assert!(s.closed.contains(&4));
    assert_eq!(s.errors(4).last(), Some(&ErrorCode::TooManyErrors));
    assert!(!s.closed.contains(&1) && !s.closed.contains(&2) && !s.closed.contains(&3));
    let st = s.engine.stats();
    assert!(
        st.rate_limited >= 3 && st.refusals > st.rate_limited,
        "{st:?}"
    );
}

#[test]
fn connections_need_a_hello_in_time_and_are_limited_per_address_and_waiting() {
    let cfg = EngineConfig {
        max_per_address: 3,
        max_pending: 4,
        max_sessions: 10,
        ..EngineConfig::default()
    };
    let hello_timeout = cfg.hello_timeout;
    let mut s = Sim::with(cfg, vec![]);
    let from = |ip: [u8; 4]| SocketAddr::from((ip, 4000));
    let connect = |s: &mut Sim, id: SessionId, ip: [u8; 4]| {
        s.input(Input::Connected {
            session: id,
            peer: from(ip),
        })
    };
    // Three from one address, the fourth refused; another address is fine.
    for id in 1..=3 {
        connect(&mut s, id, [10, 0, 0, 1]);
    }
    connect(&mut s, 4, [10, 0, 0, 1]);
    assert!(
        matches!(&s.take(4)[..], [ServerMessage::Full { scope: FullScope::Server, message }] if message.contains("at most 3 connections from one address"))
    );
    assert!(s.closed.contains(&4));
    // Four waiting for HELLO at once: the fifth waits its turn elsewhere.
    connect(&mut s, 5, [10, 0, 0, 2]);
    connect(&mut s, 6, [10, 0, 0, 3]);
    assert!(
        matches!(&s.take(6)[..], [ServerMessage::Full { message, .. }] if message.contains("waiting to say HELLO"))
    );
    // Saying HELLO frees a waiting slot (and max_sessions counts it).
    s.line(1, r#"{"type":"HELLO","version":1,"nickname":"a"}"#);
    connect(&mut s, 7, [10, 0, 0, 3]);
    assert!(s.take(7).is_empty() && !s.closed.contains(&7));
    // Those that never say HELLO are closed at the deadline; the welcomed
    // one is not.
    s.advance(hello_timeout + Duration::from_millis(1));
    for id in [2, 3, 5, 7] {
        assert!(s.closed.contains(&id), "{id} still open");
        assert!(
            matches!(s.take(id).last(), Some(ServerMessage::Error { code: ErrorCode::HelloRequired, message }) if message.contains("no HELLO within 5.0 s"))
        );
    }
    assert!(!s.closed.contains(&1));
    let st = s.engine.stats();
    assert_eq!(
        (
            st.hello_timeouts,
            st.refused_per_address,
            st.refused_pending
        ),
        (4, 1, 1)
    );
    // The slots are free again.
    connect(&mut s, 8, [10, 0, 0, 1]);
    assert!(s.take(8).is_empty() && !s.closed.contains(&8));
}

#[test]
fn an_address_that_keeps_abusing_the_protocol_is_banned_for_a_while() {
    let cfg = EngineConfig::default();
    let policy = cfg.bans;
    let mut s = Sim::with(cfg, vec![]);
    let bad = SocketAddr::from(([10, 9, 9, 9], 4000));
    let good = SocketAddr::from(([10, 1, 1, 1], 4000));
    s.input(Input::Connected {
        session: 1,
        peer: good,
    });
    s.line(1, r#"{"type":"HELLO","version":1,"nickname":"good"}"#);
    // Bad HELLOs, one connection each: a strike each.
    let mut id = 100;
    for _ in 0..policy.strikes {
        id += 1;
        s.input(Input::Connected {
            session: id,
            peer: bad,
        });
        s.line(id, r#"{"type":"HELLO","version":9,"nickname":"x"}"#);
        s.input(Input::Disconnected { session: id });
    }
    id += 1;
    s.input(Input::Connected {
        session: id,
        peer: bad,
    });
    assert!(
        matches!(&s.take(id)[..], [ServerMessage::Error { code: ErrorCode::RateLimited, message }] if message.contains("banned")),
        "after {} strikes",
        policy.strikes
    );
    assert!(s.closed.contains(&id));
    assert_eq!(
        (s.engine.stats().bans, s.engine.stats().banned_addresses),
        (1, 1)
    );
    // Others are not affected.
    assert!(!s.closed.contains(&1));
    s.input(Input::Connected {
        session: 2,
        peer: good,
    });
    assert!(s.take(2).is_empty());
    // The ban ends.
    s.advance(policy.duration + Duration::from_millis(1));
    assert_eq!(s.engine.stats().banned_addresses, 0);
    id += 1;
    s.input(Input::Connected {
        session: id,
        peer: bad,
    });
    assert!(!s.closed.contains(&id));
}

impl Sim {
    /// The answers session `s` got since the last call, with their ids.
    fn take_answers(&mut self, s: SessionId) -> Vec<(RequestId, ServerMessage)> {
        let (mine, rest) = std::mem::take(&mut self.answers)
            .into_iter()
            .partition(|(to, _, _)| *to == s);
        self.answers = rest;
        mine.into_iter().map(|(_, r, m)| (r, m)).collect()
    }
}

#[test]
fn what_answers_a_command_carries_its_request_id_and_others_hear_none() {
    let mut s = Sim::chat_lobby();
    s.member(2, "bob");
    s.hello(1, "ann");
    s.take_answers(1);
    // A join with a numeric id: JOINED and the member list answer it.
    s.line(1, r#"{"type":"JOIN","room":"lobby","id":41}"#);
    let answers = s.take_answers(1);
    assert!(
        matches!(
            answers.first(),
            Some((RequestId::Number(41), ServerMessage::Joined { .. }))
        ),
        "{answers:?}"
    );
    assert!(answers.iter().all(|(r, _)| *r == RequestId::Number(41)));
    assert!(
        s.take_answers(2).is_empty(),
        "bob's list is no answer of his"
    );
    s.take(1);
    s.take(2);
    // A chat with a string id: the sender's copy answers it, bob's does not.
    s.line(1, r#"{"type":"CHAT","text":"hi","id":"c-1"}"#);
    let answers = s.take_answers(1);
    assert!(
        matches!(&answers[..], [(RequestId::Text(t), ServerMessage::Chat { .. })] if t == "c-1"),
        "{answers:?}"
    );
    assert!(s.take_answers(2).is_empty());
    assert!(
        s.take(2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Chat { .. })),
        "bob heard the chat all the same"
    );
    // Pipelined refusals: each ERROR names its own command.
    s.line(1, r#"{"type":"MIC_RELEASE","id":"a"}"#);
    s.line(1, r#"{"type":"JOIN","room":"lobby","id":"b"}"#);
    s.line(1, r#"{"type":"JOIN","room":7,"id":"c"}"#);
    let ids: Vec<(RequestId, ErrorCode)> = s
        .take_answers(1)
        .into_iter()
        .filter_map(|(r, m)| match m {
            ServerMessage::Error { code, .. } => Some((r, code)),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0].0, RequestId::Text("a".into()));
    assert_eq!(
        ids[1],
        (RequestId::Text("b".into()), ErrorCode::AlreadyInRoom)
    );
    assert_eq!(ids[2], (RequestId::Text("c".into()), ErrorCode::BadField));
    // Lines without an id are answered without one; a bad id is a bad
    // field named `id`, and the command is not carried out.
    s.take(1);
    s.line(1, r#"{"type":"HEARTBEAT"}"#);
    assert!(s.take_answers(1).is_empty());
    assert_eq!(s.take(1), vec![ServerMessage::HeartbeatAck]);
    for bad in [
        r#"-1"#,
        r#"{"x":1}"#,
        r#"1.5"#,
        &format!("\"{}\"", "x".repeat(65)),
    ] {
        s.line(1, &format!(r#"{{"type":"LEAVE","id":{bad}}}"#));
        let m = s.take(1);
        assert!(
            matches!(&m[..], [ServerMessage::Error { code: ErrorCode::BadField, message }]
                if message.contains("`id`")),
            "id {bad}: {m:?}"
        );
    }
    assert!(
        s.engine.sessions.get(&1).is_some_and(|x| x.room.is_some()),
        "still in"
    );
}

#[test]
fn welcome_announces_the_limits_and_joined_the_rooms_settings() {
    let cfg = EngineConfig::default();
    let mut s = Sim::with(
        cfg.clone(),
        vec![RoomSpec {
            name: "lobby".into(),
            kind: "chat".into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("chat_burst", serde_json::json!(3))]),
        }],
    );
    s.input(Input::Connected {
        session: 1,
        peer: addr(1),
    });
    s.line(1, r#"{"type":"HELLO","version":1,"nickname":"ann"}"#);
    let Some(ServerMessage::Welcome {
        limits: Some(limits),
        ..
    }) = s.take(1).pop()
    else {
        panic!("WELCOME with limits")
    };
    assert_eq!(limits.line_bytes as usize, control::MAX_LINE_BYTES);
    assert_eq!(limits.chat_chars as usize, control::CHAT_MAX_CHARS);
    assert_eq!(limits.bad_lines.burst, cfg.error_burst);
    assert_eq!(limits.floor.burst, cfg.rates.floor.burst);
    assert_eq!(limits.floor.refill_ms, cfg.rates.floor.refill_ms);
    assert_eq!(limits.membership.burst, cfg.rates.membership.burst);
    assert_eq!(limits.create.refill_ms, cfg.rates.create.refill_ms);
    assert_eq!(limits.refusals.burst, cfg.rates.refusals.burst);
    // The announced floor rate is the one held: one more is refused.
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    let Some(ServerMessage::Joined { settings, .. }) = s.take(1).into_iter().next() else {
        panic!("JOINED")
    };
    assert_eq!(
        settings.get("chat_burst"),
        Some(&serde_json::json!(3)),
        "given"
    );
    assert!(
        settings.get("chat_per_minute").is_some_and(|v| v.is_u64()),
        "defaults are typed: {settings:?}"
    );
    assert_eq!(
        settings.get("codec"),
        Some(&serde_json::json!("opus")),
        "every room tells its codec"
    );
    // The room holds to what it announced: 3 chats pass, the 4th is refused.
    for i in 0..4 {
        s.line(1, &format!(r#"{{"type":"CHAT","text":"{i}"}}"#));
    }
    assert_eq!(s.errors(1), vec![ErrorCode::RateLimited]);
}

#[test]
fn a_reused_connection_id_does_not_replace_its_session() {
    // Found by the engine fuzz target: a second Connected for a welcomed
    // session replaced it and the count of welcomed sessions underflowed.
    let mut s = Sim::new();
    s.hello(1, "ann");
    s.input(Input::Connected {
        session: 1,
        peer: addr(2),
    });
    s.input(Input::Connected {
        session: 2,
        peer: addr(3),
    });
    assert_eq!(s.engine.stats().sessions, 2);
    s.line(1, r#"{"type":"HEARTBEAT"}"#);
    assert_eq!(
        s.take(1),
        vec![ServerMessage::HeartbeatAck],
        "ann is still ann"
    );
}

impl Sim {
    /// HELLO on connection `conn` with `resume`; the WELCOME (what came
    /// after it stays in the inbox).
    fn resume(&mut self, conn: SessionId, token: &str) -> ServerMessage {
        self.input(Input::Connected {
            session: conn,
            peer: addr(9),
        });
        self.line(
            conn,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"whoever","resume":"{token}"}}"#),
        );
        let mut got = self.take(conn);
        if got.is_empty() {
            panic!("no WELCOME");
        }
        let first = got.remove(0);
        self.inbox.insert(conn, got);
        match first {
            w @ ServerMessage::Welcome { .. } => w,
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    fn resume_token(&mut self, s: SessionId, nick: &str) -> (String, Ssrcs, String) {
        self.input(Input::Connected {
            session: s,
            peer: addr(1),
        });
        self.line(
            s,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
        );
        match self.take(s).pop() {
            Some(ServerMessage::Welcome {
                resume_token: Some(t),
                ssrcs,
                media_token,
                resume_grace_ms,
                ..
            }) => {
                assert_eq!(resume_grace_ms, Some(10_000), "the default grace is told");
                (t, ssrcs, media_token)
            }
            other => panic!("expected WELCOME with a resume token, got {other:?}"),
        }
    }
}

#[test]
fn a_dropped_session_is_resumed_with_its_room_queue_place_and_identity() {
    let mut s = Sim::new();
    s.member(1, "ann");
    let (token, ssrcs, media_token) = s.resume_token(2, "bob");
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    s.stun(addr(40002), &media_token);
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.line(2, r#"{"type":"MIC_REQUEST"}"#);
    s.take(1);
    s.take(2);
    // Bob's connection drops while he waits for the floor; 3 s later he
    // is back on connection 9.
    s.input(Input::Disconnected { session: 2 });
    assert!(
        s.closed.contains(&2),
        "the connection is closed (its descriptor freed)"
    );
    assert!(s.engine.sessions.get(&2).is_some(), "the session is kept");
    s.advance(Duration::from_secs(3));
    assert!(
        !s.take(1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Userlist { users, .. } if users.len() == 1)),
        "Ann never saw Bob leave"
    );
    let welcome = s.resume(9, &token);
    let ServerMessage::Welcome {
        session_id,
        ssrcs: again,
        media_token: same_media,
        resumed,
        resume_token: Some(next),
        ..
    } = welcome
    else {
        panic!("{welcome:?}")
    };
    assert!(resumed);
    assert_eq!(
        (session_id, again, same_media.as_str()),
        (2, ssrcs, media_token.as_str())
    );
    assert_ne!(next, token, "the token is rotated");
    // Then his room as on joining, on the new connection.
    let got = s.take(9);
    assert!(
        matches!(&got[..], [ServerMessage::Joined { room, .. }, ServerMessage::Userlist { users, .. }]
        if room == "lobby" && users.len() == 2),
        "{got:?}"
    );
    // His place in the queue held: Ann releases, Bob (on 9) is granted.
    s.stun(addr(50009), &media_token);
    s.line(1, r#"{"type":"MIC_RELEASE"}"#);
    assert!(
        s.take(9)
            .iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { session_id: 2, .. })),
        "granted on the new connection"
    );
    // He speaks as session 2 through connection 9; the old token is spent.
    s.line(9, r#"{"type":"MIC_RELEASE"}"#);
    assert!(
        s.take(1)
            .iter()
            .any(|m| matches!(m, ServerMessage::MicReleased { session_id: 2, .. }))
    );
    s.input(Input::Disconnected { session: 9 });
    let again = s.resume(10, &token);
    assert!(
        matches!(
            again,
            ServerMessage::Welcome {
                resumed: false,
                session_id: 10,
                ..
            }
        ),
        "a spent token gives a new session: {again:?}"
    );
    assert_eq!(s.engine.stats().resumed, 1);
}

#[test]
fn a_floor_holder_that_drops_loses_the_floor_at_once() {
    let mut s = Sim::new();
    s.member(1, "ann");
    s.member(2, "bob");
    s.member(3, "cat");
    s.line(1, r#"{"type":"MIC_REQUEST"}"#);
    s.line(2, r#"{"type":"MIC_REQUEST"}"#);
    s.take(2);
    s.take(3);
    s.input(Input::Disconnected { session: 1 });
    // Released as DISCONNECTED, and the next in the queue has it.
    let got = s.take(3);
    assert!(
        got.iter().any(|m| matches!(
            m,
            ServerMessage::MicReleased {
                session_id: 1,
                reason: ReleaseReason::Disconnected,
                ..
            }
        )),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { session_id: 2, .. })),
        "{got:?}"
    );
    // A detached member that comes up in the queue is passed over.
    s.line(1, r#"{"type":"MIC_REQUEST"}"#); // nothing: no connection
    s.line(3, r#"{"type":"MIC_REQUEST"}"#);
    s.input(Input::Disconnected { session: 3 });
    s.line(2, r#"{"type":"MIC_RELEASE"}"#);
    assert!(
        !s.engine
            .rooms
            .get("lobby")
            .is_some_and(|r| r.plugin.is_talking(3)),
        "a detached member never holds the floor"
    );
}

#[test]
fn a_session_not_resumed_in_time_leaves_and_its_token_gives_a_new_one() {
    let mut s = Sim::new();
    s.member(1, "ann");
    let (token, _, _) = s.resume_token(2, "bob");
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    s.take(1);
    s.input(Input::Disconnected { session: 2 });
    s.advance(Duration::from_millis(10_001));
    let got = s.take(1);
    assert!(
        got.iter()
            .any(|m| matches!(m, ServerMessage::Userlist { users, .. } if users.len() == 1)),
        "Ann sees Bob leave when his grace ends: {got:?}"
    );
    assert_eq!(s.engine.stats().resume_expired, 1);
    let w = s.resume(9, &token);
    assert!(
        matches!(
            w,
            ServerMessage::Welcome {
                resumed: false,
                session_id: 9,
                ..
            }
        ),
        "{w:?}"
    );
}

#[test]
fn without_a_grace_period_sessions_end_with_their_connection() {
    let cfg = EngineConfig {
        resume_grace: Duration::ZERO,
        ..Sim::one_address_config()
    };
    let mut s = Sim::with(cfg, vec![]);
    s.member(1, "ann");
    s.input(Input::Connected {
        session: 2,
        peer: addr(1),
    });
    s.line(2, r#"{"type":"HELLO","version":1,"nickname":"bob"}"#);
    assert!(matches!(
        s.take(2).pop(),
        Some(ServerMessage::Welcome {
            resume_token: None,
            resume_grace_ms: None,
            ..
        })
    ));
    s.input(Input::Disconnected { session: 1 });
    assert!(s.closed.contains(&1), "ended at once");
    assert_eq!(s.engine.stats().detached, 0);
}

#[test]
fn a_resumed_session_kicked_is_told_and_closed_on_its_new_connection() {
    let mut s = Sim::new();
    s.member(1, "ann");
    let (token, _, _) = s.resume_token(2, "bob");
    s.line(2, r#"{"type":"JOIN","room":"lobby"}"#);
    s.input(Input::Disconnected { session: 2 });
    s.take(2);
    s.resume(9, &token);
    s.take(9);
    // Bob says something unparseable until he is closed for it: the ERROR
    // and the close reach connection 9, not the gone connection 2.
    for _ in 0..20 {
        s.line(9, "garbage");
    }
    assert!(
        s.closed.contains(&9),
        "closed on the connection it speaks through"
    );
    assert!(
        s.take(9).iter().any(|m| matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::TooManyErrors,
                ..
            }
        )),
        "told why"
    );
    assert!(s.take(2).is_empty(), "nothing to the old connection");
}

#[test]
fn a_room_declares_its_codec_in_joined_and_its_audio_clock_rate_follows() {
    let mut s = Sim::with(
        Sim::one_address_config(),
        vec![RoomSpec {
            name: "walkie".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("codec", serde_json::json!("l16-44k"))]),
        }],
    );
    s.input(Input::Connected {
        session: 1,
        peer: addr(1),
    });
    let (ssrcs, token) = s.hello(1, "ann");
    s.line(1, r#"{"type":"JOIN","room":"walkie"}"#);
    let joined = s.take(1).into_iter().find_map(|m| match m {
        ServerMessage::Joined { settings, .. } => Some(settings),
        _ => None,
    });
    assert_eq!(
        joined.and_then(|j| j.get("codec").cloned()),
        Some(serde_json::json!("l16-44k"))
    );
    s.stun(addr(5001), &token);
    let rates: Vec<(u32, u32)> = s
        .raw
        .iter()
        .map(|((_, ssrc), r)| (*ssrc, r.clock_rate))
        .collect();
    assert!(rates.contains(&(ssrcs.audio, 44_100)), "{rates:?}");
    assert!(rates.contains(&(ssrcs.video, 90_000)), "{rates:?}");
    // Unknown codecs and wrong types are refused, naming what exists.
    for bad in [serde_json::json!("mp3"), serde_json::json!(7)] {
        let e = s.engine.create_room(RoomSpec {
            name: "other".into(),
            kind: "voice".into(),
            max_participants: 0,
            options: plugin_api::sim::options(&[("codec", bad.clone())]),
        });
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("option `codec`"), "{bad}: {e}");
    }
    let e = s.engine.create_room(RoomSpec {
        name: "other".into(),
        kind: "voice".into(),
        max_participants: 0,
        options: plugin_api::sim::options(&[("codek", serde_json::json!("opus"))]),
    });
    let e = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("codec"), "the known options include codec: {e}");
}
