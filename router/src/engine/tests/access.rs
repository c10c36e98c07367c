//! Access tokens in the engine: HELLO checks, grants at every door,
//! revocation, on virtual time (the engine's clock starts at
//! 2026-01-01T00:00:00Z, Unix 1_767_225_600).

use super::*;
use crate::auth::{Claims, Grants, SigningKey, Verifier};
use crate::config::{AuthConfig, AuthMode, KeyConfig};

const NOW: u64 = 1_767_225_600;

fn rooms() -> Vec<RoomSpec> {
    ["lobby", "ops-1", "secret"]
        .into_iter()
        .map(ptt_room)
        .chain(std::iter::once(RoomSpec {
            name: "ops-voice".into(),
            kind: "voice".into(),
            max_participants: 0,
            options: Options::new(),
        }))
        .collect()
}

fn verifier(key: &SigningKey, revoked_subjects: &[&str]) -> Arc<Verifier> {
    let cfg = AuthConfig {
        mode: AuthMode::Token,
        keys: vec![KeyConfig::new("k1", key.public_key())],
        revoked: vec!["burned".into()],
        revoked_subjects: revoked_subjects.iter().map(|s| (*s).to_owned()).collect(),
        ..AuthConfig::default()
    };
    match Verifier::from_config(&cfg) {
        Ok(v) => Arc::new(v),
        Err(e) => panic!("{e}"),
    }
}

fn claims(sub: &str, grants: Grants) -> Claims {
    Claims {
        sub: sub.into(),
        name: Some(format!("{sub} Smith")),
        exp: NOW + 3600,
        iat: Some(NOW),
        nbf: None,
        jti: Some(format!("id-{sub}")),
        iss: None,
        grants,
    }
}

fn operator_grants() -> Grants {
    Grants {
        join: vec!["ops-*".into(), "lobby".into()],
        talk: vec!["ops-*".into()],
        create: vec![],
        max_priority: 2,
        admin: false,
    }
}

fn mint(key: &SigningKey, c: &Claims) -> String {
    match key.mint("k1", c) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

impl Sim {
    fn token_router(key: &SigningKey) -> Sim {
        let mut cfg = Sim::one_address_config();
        cfg.bans.strikes = 4;
        let mut s = Sim::with(cfg, rooms());
        let now = s.now;
        s.engine.set_auth(now, verifier(key, &[]));
        s
    }

    /// HELLO with `token` (none: `null`) from 10.0.0.`ip`.
    fn hello_token(&mut self, id: SessionId, ip: u8, token: Option<&str>) -> Vec<ServerMessage> {
        if !self.engine.sessions.contains_key(&id) {
            self.input(Input::Connected {
                session: id,
                peer: SocketAddr::from(([10, 0, 0, ip], 5000)),
            });
        }
        let token = token.map_or("null".to_owned(), |t| format!("\"{t}\""));
        self.line(
            id,
            &format!(r#"{{"type":"HELLO","version":1,"nickname":"whoever","token":{token}}}"#),
        );
        self.take(id)
    }

    /// A welcomed session of `sub` with `grants`, in `room`, media bound.
    fn holder(&mut self, key: &SigningKey, id: SessionId, sub: &str, grants: Grants) -> Ssrcs {
        let t = mint(key, &claims(sub, grants));
        let m = self.hello_token(id, id as u8, Some(&t));
        match m.last() {
            Some(ServerMessage::Welcome {
                ssrcs, media_token, ..
            }) => {
                let (ssrcs, token) = (*ssrcs, media_token.clone());
                self.stun(addr(id as u16 + 40000), &token);
                ssrcs
            }
            other => panic!("{sub}: {other:?}"),
        }
    }
}

fn codes(m: &[ServerMessage]) -> Vec<ErrorCode> {
    m.iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn token_mode_refuses_every_flawed_token_with_its_code_and_the_session_may_try_again() {
    let key = SigningKey::generate();
    let mut s = Sim::token_router(&key);
    let good = claims("alice", operator_grants());
    let mut expired = good.clone();
    expired.exp = NOW - 600;
    let mut burned = good.clone();
    burned.jti = Some("burned".into());
    let forged = mint(&SigningKey::generate(), &good);
    let cases: [(Option<String>, ErrorCode); 5] = [
        (None, ErrorCode::TokenRequired),
        (Some(mint(&key, &expired)), ErrorCode::TokenExpired),
        (Some(forged), ErrorCode::TokenInvalid),
        (Some("a.b.c".into()), ErrorCode::TokenInvalid),
        (Some(mint(&key, &burned)), ErrorCode::TokenRevoked),
    ];
    for (token, want) in &cases {
        let m = s.hello_token(1, 1, token.as_deref());
        assert_eq!(codes(&m), [*want], "{token:?}: {m:?}");
    }
    assert!(
        !s.closed.contains(&1),
        "a refused HELLO keeps the connection"
    );
    // The same connection, with a good token: the nickname is the token's.
    let m = s.hello_token(1, 1, Some(&mint(&key, &good)));
    assert!(
        matches!(m.last(), Some(ServerMessage::Welcome { nickname, .. }) if nickname == "alice Smith"),
        "{m:?}"
    );
    assert_eq!(s.engine.stats().auth_refused, 5);
}

#[test]
fn failed_tokens_count_strikes_toward_a_ban() {
    let key = SigningKey::generate();
    let mut s = Sim::token_router(&key);
    let forged = mint(&SigningKey::generate(), &claims("eve", operator_grants()));
    for id in 1..=4 {
        let m = s.hello_token(id, 66, Some(&forged));
        assert_eq!(codes(&m), [ErrorCode::TokenInvalid]);
    }
    // The fourth strike banned 10.0.0.66: it is refused at connect now.
    s.input(Input::Connected {
        session: 9,
        peer: SocketAddr::from(([10, 0, 0, 66], 5000)),
    });
    let m = s.take(9);
    assert_eq!(codes(&m), [ErrorCode::RateLimited], "{m:?}");
    assert!(s.closed.contains(&9));
    // Another address is not affected.
    let t = mint(&key, &claims("bob", operator_grants()));
    let m = s.hello_token(10, 67, Some(&t));
    assert!(
        matches!(m.last(), Some(ServerMessage::Welcome { .. })),
        "{m:?}"
    );
}

#[test]
fn grants_decide_joining_talking_priority_and_creating() {
    let key = SigningKey::generate();
    let mut s = Sim::token_router(&key);
    s.holder(&key, 1, "alice", operator_grants());
    // Rooms it may not join are neither listed nor joinable.
    s.line(1, r#"{"type":"LIST_ROOMS"}"#);
    let listed: Vec<String> = s
        .take(1)
        .into_iter()
        .flat_map(|m| match m {
            ServerMessage::Rooms { rooms } => rooms.into_iter().map(|r| r.name).collect(),
            _ => vec![],
        })
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!listed.iter().any(|r| r == "secret"), "{listed:?}");
    s.line(1, r#"{"type":"JOIN","room":"secret"}"#);
    assert_eq!(s.errors(1), [ErrorCode::Forbidden]);
    s.line(1, r#"{"type":"JOIN","room":"nowhere"}"#);
    assert_eq!(s.errors(1), [ErrorCode::Forbidden], "existence is not told");
    // Creating needs the create grant.
    s.line(1, r#"{"type":"CREATE_ROOM","room":"mine","kind":"ptt"}"#);
    assert_eq!(s.errors(1), [ErrorCode::Forbidden]);
    s.line(1, r#"{"type":"CREATE_MEETING"}"#);
    assert_eq!(s.errors(1), [ErrorCode::Forbidden]);
    s.line(1, r#"{"type":"REQUEST_JOIN","code":"123456"}"#);
    assert_eq!(s.errors(1), [ErrorCode::Forbidden]);
    // Its rooms: the floor up to its priority.
    s.line(1, r#"{"type":"JOIN","room":"ops-1"}"#);
    assert_eq!(s.errors(1), []);
    s.line(1, r#"{"type":"MIC_REQUEST","priority":3}"#);
    assert_eq!(s.errors(1), [ErrorCode::Forbidden]);
    s.line(1, r#"{"type":"MIC_REQUEST","priority":2}"#);
    assert!(
        s.take(1)
            .iter()
            .any(|m| matches!(m, ServerMessage::MicGranted { .. }))
    );
    // A listener may join but not talk; the refusals cost no connection.
    let listener = Grants {
        join: vec!["ops-*".into()],
        ..operator_grants()
    };
    let listener = Grants {
        talk: vec![],
        ..listener
    };
    s.holder(&key, 2, "carol", listener);
    s.line(2, r#"{"type":"JOIN","room":"ops-1"}"#);
    s.take(2);
    for _ in 0..3 {
        s.line(2, r#"{"type":"MIC_REQUEST"}"#);
        assert_eq!(s.errors(2), [ErrorCode::Forbidden]);
    }
    assert!(!s.closed.contains(&2));
    assert!(s.engine.stats().forbidden >= 9);
    // A creator may create what its patterns name, meetings included.
    let creator = Grants {
        join: vec!["meeting-*".into(), "team-*".into()],
        create: vec!["meeting-*".into(), "team-*".into()],
        ..Grants::default_none()
    };
    s.holder(&key, 3, "dave", creator);
    s.line(3, r#"{"type":"CREATE_ROOM","room":"team-a","kind":"ptt"}"#);
    assert_eq!(s.errors(3), []);
    s.line(3, r#"{"type":"LEAVE"}"#);
    s.line(3, r#"{"type":"CREATE_MEETING"}"#);
    assert!(
        s.take(3)
            .iter()
            .any(|m| matches!(m, ServerMessage::MeetingCreated { .. }))
    );
}

#[test]
fn without_the_talk_grant_a_member_is_routed_to_nobody() {
    let key = SigningKey::generate();
    let mut s = Sim::token_router(&key);
    let talker = s.holder(&key, 1, "alice", operator_grants());
    let mute = Grants {
        talk: vec!["ops-1".into()],
        ..operator_grants()
    };
    let listener = s.holder(&key, 2, "carol", mute);
    for id in [1, 2] {
        s.line(id, r#"{"type":"JOIN","room":"ops-voice"}"#);
        s.take(id);
    }
    let heard = |s: &Sim, ssrc: u32| s.table.get(&ssrc).map_or(0, |r| r.media.len());
    assert_eq!(heard(&s, talker.audio), 1, "alice talks in ops-voice");
    assert_eq!(heard(&s, listener.audio), 0, "carol may not talk there");
}

#[test]
fn a_revocation_ends_the_sessions_it_names_and_no_other() {
    let key = SigningKey::generate();
    let mut s = Sim::token_router(&key);
    s.holder(&key, 1, "alice", operator_grants());
    s.holder(&key, 2, "bob", operator_grants());
    for id in [1, 2] {
        s.line(id, r#"{"type":"JOIN","room":"ops-1"}"#);
        s.take(id);
    }
    let now = s.now;
    s.engine.set_auth(now, verifier(&key, &["bob"]));
    s.drain();
    assert_eq!(codes(&s.take(2)), [ErrorCode::TokenRevoked]);
    assert!(s.closed.contains(&2) && !s.closed.contains(&1));
    assert_eq!(s.engine.stats().auth_revoked, 1);
    // Bob's token is refused from now on.
    let t = mint(&key, &claims("bob", operator_grants()));
    assert_eq!(
        codes(&s.hello_token(3, 3, Some(&t))),
        [ErrorCode::TokenRevoked]
    );
}

#[test]
fn an_open_router_ignores_tokens_without_keys_and_checks_them_with() {
    let mut s = Sim::with(Sim::one_address_config(), rooms());
    let m = s.hello_token(1, 1, Some("anything"));
    assert!(
        matches!(m.last(), Some(ServerMessage::Welcome { nickname, .. }) if nickname == "whoever"),
        "{m:?}"
    );
    let key = SigningKey::generate();
    let cfg = AuthConfig {
        keys: vec![KeyConfig::new("k1", key.public_key())],
        ..AuthConfig::default()
    };
    let Ok(v) = Verifier::from_config(&cfg) else {
        panic!("verifier")
    };
    let now = s.now;
    s.engine.set_auth(now, Arc::new(v));
    assert!(matches!(
        s.hello_token(2, 2, None).last(),
        Some(ServerMessage::Welcome { .. })
    ));
    assert_eq!(
        codes(&s.hello_token(3, 3, Some("a.b.c"))),
        [ErrorCode::TokenInvalid]
    );
    let t = mint(&key, &claims("alice", operator_grants()));
    assert!(matches!(
        s.hello_token(4, 4, Some(&t)).last(),
        Some(ServerMessage::Welcome { nickname, .. }) if nickname == "alice Smith"
    ));
    s.line(4, r#"{"type":"JOIN","room":"secret"}"#);
    assert_eq!(s.errors(4), [ErrorCode::Forbidden], "a token's grants hold");
}
