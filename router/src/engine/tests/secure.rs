//! Secure rooms: only TLS sessions with `srtp` and `stun_integrity` join;
//! each member gets a fresh key of its own in JOINED and the others' in
//! `SRTP_KEYS`; seed clients and plaintext connections are refused.

use super::*;
use base64::Engine as _;
use proto::control::{SRTP_KEY_BYTES, SRTP_PROFILE, SenderKey};

fn secure_room(name: &str, kind: &str) -> RoomSpec {
    RoomSpec {
        name: name.into(),
        kind: kind.into(),
        max_participants: 0,
        options: plugin_api::sim::options(&[("secure", serde_json::json!(true))]),
    }
}

impl Sim {
    /// A connection (TLS when `tls`) saying HELLO with `features`: the
    /// features granted.
    fn hello_features(
        &mut self,
        s: SessionId,
        nick: &str,
        tls: bool,
        features: &str,
    ) -> Vec<String> {
        self.input(Input::Connected {
            session: s,
            peer: addr(1),
        });
        if tls {
            self.input(Input::Encrypted { session: s });
        }
        self.line(
            s,
            &format!(
                r#"{{"type":"HELLO","version":1,"nickname":"{nick}","features":[{features}]}}"#
            ),
        );
        match self.take(s).pop() {
            Some(ServerMessage::Welcome { features, .. }) => features,
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    fn hello_secure(&mut self, s: SessionId, nick: &str) {
        let granted = self.hello_features(s, nick, true, r#""srtp","stun_integrity""#);
        assert_eq!(granted, ["stun_integrity", "srtp"]);
    }
}

fn key_bytes(key: &proto::control::SrtpKey) -> Vec<u8> {
    assert_eq!(key.profile, SRTP_PROFILE);
    match base64::engine::general_purpose::STANDARD.decode(&key.key) {
        Ok(k) => k,
        Err(e) => panic!("{e}"),
    }
}

/// JOINED's own key, checked for shape.
fn joined_key(msgs: &[ServerMessage]) -> Vec<u8> {
    let joined = msgs.iter().find_map(|m| match m {
        ServerMessage::Joined { secure, srtp, .. } => Some((*secure, srtp.clone())),
        _ => None,
    });
    match joined {
        Some((true, Some(k))) => {
            let bytes = key_bytes(&k);
            assert_eq!(bytes.len(), SRTP_KEY_BYTES);
            bytes
        }
        other => panic!("expected a secure JOINED with a key, got {other:?} in {msgs:?}"),
    }
}

fn told_keys(msgs: &[ServerMessage]) -> Vec<SenderKey> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::SrtpKeys { keys, .. } => Some(keys.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn srtp_is_granted_only_on_tls() {
    let mut s = Sim::with(
        Sim::one_address_config(),
        vec![secure_room("vault", "voice")],
    );
    let plain = s.hello_features(1, "ann", false, r#""srtp","stun_integrity""#);
    assert_eq!(plain, ["stun_integrity"], "no keys over plaintext");
    let tls = s.hello_features(2, "bob", true, r#""srtp""#);
    assert_eq!(tls, ["srtp"]);
}

#[test]
fn members_get_a_key_each_and_each_other_s() {
    let mut s = Sim::with(
        Sim::one_address_config(),
        vec![secure_room("vault", "voice")],
    );
    s.hello_secure(1, "ann");
    s.line(1, r#"{"type":"JOIN","room":"vault"}"#);
    let a = s.take(1);
    let ann_key = joined_key(&a);
    assert!(told_keys(&a).is_empty(), "alone: no one else's key");
    s.hello_secure(2, "bob");
    s.line(2, r#"{"type":"JOIN","room":"vault"}"#);
    let b = s.take(2);
    let bob_key = joined_key(&b);
    assert_ne!(ann_key, bob_key, "a key per sender");
    // Bob hears Ann's key for her SSRCs, Ann hears Bob's.
    let to_bob = told_keys(&b);
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0].session_id, 1);
    assert_eq!(key_bytes(&to_bob[0].key), ann_key);
    let to_ann = told_keys(&s.take(1));
    assert_eq!(to_ann.len(), 1);
    assert_eq!(to_ann[0].session_id, 2);
    assert_eq!(key_bytes(&to_ann[0].key), bob_key);
    assert_eq!(to_ann[0].ssrcs.len(), 2);
    // ROOMS says the room is secure.
    s.line(2, r#"{"type":"LIST_ROOMS"}"#);
    let rooms = s.take(2);
    assert!(rooms.iter().any(|m| matches!(m,
        ServerMessage::Rooms { rooms } if rooms.iter().any(|r| r.name == "vault" && r.secure))));
    // Leaving and coming back gives a new key.
    s.line(1, r#"{"type":"LEAVE"}"#);
    s.line(1, r#"{"type":"JOIN","room":"vault"}"#);
    let again = joined_key(&s.take(1));
    assert_ne!(again, ann_key, "a fresh key for each stay");
    assert_eq!(key_bytes(&told_keys(&s.take(2))[0].key), again);
}

#[test]
fn sessions_that_cannot_key_are_refused_a_secure_room_while_others_carry_on() {
    let mut s = Sim::with(
        Sim::one_address_config(),
        vec![
            secure_room("vault", "voice"),
            RoomSpec {
                name: "open".into(),
                kind: "voice".into(),
                max_participants: 0,
                options: Options::new(),
            },
        ],
    );
    s.hello_secure(9, "host");
    s.line(9, r#"{"type":"JOIN","room":"vault"}"#);
    s.take(9);
    let cases = [
        (1, false, r#""srtp","stun_integrity""#, "TLS"),
        (2, true, r#""stun_integrity""#, "`srtp`"),
        (3, true, r#""srtp""#, "`stun_integrity`"),
    ];
    for (id, tls, features, says) in cases {
        s.hello_features(id, &format!("u{id}"), tls, features);
        s.line(id, r#"{"type":"JOIN","room":"vault"}"#);
        match s.take(id).as_slice() {
            [ServerMessage::Error { code, message }] => {
                assert_eq!(*code, ErrorCode::SecureRoom, "{message}");
                assert!(message.contains(says), "{says}: {message}");
            }
            other => panic!("session {id}: {other:?}"),
        }
        // Refused, not disconnected: a plain room still takes it.
        s.line(id, r#"{"type":"JOIN","room":"open"}"#);
        assert!(
            s.take(id).iter().any(|m| matches!(
                m,
                ServerMessage::Joined {
                    secure: false,
                    srtp: None,
                    ..
                }
            )),
            "session {id} joins the plain room"
        );
    }
    assert!(
        told_keys(&s.take(9)).is_empty(),
        "no key went to anyone refused"
    );
}

#[test]
fn a_session_that_cannot_key_cannot_create_a_secure_room_however_it_spells_it() {
    let mut s = Sim::with(Sim::one_address_config(), vec![]);
    s.hello_features(1, "plain", false, r#""srtp","stun_integrity""#);
    for (i, secure) in [r#"true"#, r#""true""#].into_iter().enumerate() {
        s.line(
            1,
            &format!(
                r#"{{"type":"CREATE_ROOM","room":"v{i}","kind":"voice","options":{{"secure":{secure}}}}}"#
            ),
        );
        match s.take(1).as_slice() {
            [ServerMessage::Error { code, message }] => {
                assert_eq!(*code, ErrorCode::SecureRoom, "{secure}: {message}")
            }
            other => panic!("secure = {secure}: {other:?}"),
        }
    }
}

#[test]
fn seed_clients_never_join_a_secure_room() {
    let mut s = Sim::with(Sim::one_address_config(), vec![secure_room("vault", "ptt")]);
    s.input(Input::Connected {
        session: 1,
        peer: addr(1),
    });
    // Even on an encrypted connection (which seed front-ends never have).
    s.input(Input::Encrypted { session: 1 });
    s.input(Input::Command {
        session: 1,
        name: "HELLO",
        command: Command::Session(SessionCommand::Hello {
            version: 1,
            nickname: "seed".into(),
            features: vec!["srtp".into(), "stun_integrity".into()],
            resume: None,
            token: None,
            legacy: true,
        }),
    });
    s.take(1);
    s.input(Input::Command {
        session: 1,
        name: "JOIN",
        command: Command::Session(SessionCommand::Join {
            room: "vault".into(),
        }),
    });
    match s.take(1).as_slice() {
        [ServerMessage::Error { code, message }] => {
            assert_eq!(*code, ErrorCode::SecureRoom);
            assert!(message.contains("seed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_secure_router_makes_every_room_secure_and_plain_ones_only_when_allowed() {
    let plain = |allow| EngineConfig {
        secure_rooms: true,
        allow_plain_rooms: allow,
        ..Sim::one_address_config()
    };
    let spec = |secure: Option<bool>| RoomSpec {
        name: "r".into(),
        kind: "chat".into(),
        max_participants: 0,
        options: match secure {
            Some(b) => plugin_api::sim::options(&[("secure", serde_json::json!(b))]),
            None => Options::new(),
        },
    };
    let mut s = Sim::with(plain(false), vec![spec(None)]);
    s.hello_secure(1, "ann");
    s.line(1, r#"{"type":"JOIN","room":"r"}"#);
    joined_key(&s.take(1));
    // CREATE_MEETING makes a secure meeting; a plaintext session may not.
    s.hello_features(2, "bob", false, "");
    s.line(2, r#"{"type":"CREATE_MEETING"}"#);
    assert!(matches!(
        s.take(2).as_slice(),
        [ServerMessage::Error {
            code: ErrorCode::SecureRoom,
            ..
        }]
    ));
    let e = match Engine::new(
        plain(false),
        Registry::builtin(),
        vec![spec(Some(false))],
        Start {
            clock: WallClock {
                origin: s.now,
                origin_unix_ms: 0,
            },
            seed: [1; 32],
        },
    ) {
        Ok(_) => panic!("a plain room in a secure router without allow_plaintext_compat"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("allow_plaintext_compat"), "{e}");
    let mut s = Sim::with(plain(true), vec![spec(Some(false))]);
    s.hello_features(3, "cy", false, "");
    s.line(3, r#"{"type":"JOIN","room":"r"}"#);
    assert!(
        s.take(3)
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { secure: false, .. }))
    );
    // A wrongly typed option is refused by name.
    let bad = RoomSpec {
        options: plugin_api::sim::options(&[("secure", serde_json::json!("yes"))]),
        ..spec(None)
    };
    let e = match Engine::new(
        EngineConfig::default(),
        Registry::builtin(),
        vec![bad],
        Start {
            clock: WallClock {
                origin: s.now,
                origin_unix_ms: 0,
            },
            seed: [1; 32],
        },
    ) {
        Ok(_) => panic!("secure = \"yes\" accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("secure"), "{e}");
}

#[test]
fn every_bit_of_the_engine_seed_shapes_the_credentials() {
    // Seeds that differ in their last byte only: a seed cut to 64 bits
    // would give both engines the same tokens.
    let mut last = [9u8; 32];
    last[31] = 10;
    let tokens: Vec<(Ssrcs, String)> = [[9u8; 32], last]
        .into_iter()
        .map(|seed| Sim::seeded(EngineConfig::default(), vec![], seed).hello(1, "ann"))
        .collect();
    assert_ne!(tokens[0].1, tokens[1].1, "media tokens");
    assert_ne!(tokens[0].0, tokens[1].0, "SSRCs");
    // The same seed, the same engine (tests replay).
    let again = Sim::seeded(EngineConfig::default(), vec![], [9u8; 32]).hello(1, "ann");
    assert_eq!(again, tokens[0]);
}
