//! Signed STUN (`stun_integrity`): MESSAGE-INTEGRITY keyed by the media
//! token, a public USERNAME, replays refused, moves only with the nonce
//! told over the control channel.

use super::*;
use proto::media::{BindingResponse, binding_request_signed, parse_binding_response};

impl Sim {
    /// HELLO asking for `stun_integrity`: (media_id, media_token).
    fn hello_signed(&mut self, s: SessionId, nick: &str) -> (String, String) {
        self.input(Input::Connected {
            session: s,
            peer: addr(1),
        });
        self.line(
            s,
            &format!(
                r#"{{"type":"HELLO","version":1,"nickname":"{nick}","features":["stun_integrity"]}}"#
            ),
        );
        match self.take(s).pop() {
            Some(ServerMessage::Welcome {
                media_id: Some(id),
                media_token,
                features,
                ..
            }) => {
                assert!(features.iter().any(|f| f == "stun_integrity"));
                (id, media_token)
            }
            other => panic!("expected WELCOME with a media_id, got {other:?}"),
        }
    }

    /// `request` arriving from `from` with USERNAME `user`: the answer.
    fn stun_raw(
        &mut self,
        from: SocketAddr,
        user: &str,
        request: &[u8],
    ) -> Option<BindingResponse> {
        let tid = proto::media::parse_binding_request(request)
            .ok()?
            .transaction;
        self.media.clear();
        self.input(Input::StunBinding {
            worker: 0,
            from,
            username: Some(user.to_owned()),
            request: request.to_vec(),
        });
        self.media.iter().rev().find_map(|(_, c)| match c {
            MediaCommand::Reply { to, bytes } if *to == from => parse_binding_response(bytes, tid),
            _ => None,
        })
    }
}

fn signed(id: &str, key: &str, nonce: Option<&str>) -> Vec<u8> {
    match binding_request_signed(id, key, nonce) {
        Ok((bytes, _)) => bytes,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_replayed_binding_is_refused_and_a_move_needs_the_nonce() {
    let mut s = Sim::new();
    let (id, key) = s.hello_signed(1, "ann");
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    s.take(1);
    let (a, b, c) = (addr(41001), addr(41002), addr(41003));
    let first = signed(&id, &key, None);
    assert_eq!(
        s.stun_raw(a, &id, &first),
        Some(BindingResponse::Success(a))
    );
    assert_eq!(s.bound.get(&a), Some(&1));
    // The same bytes again from the same address: a retransmission.
    assert_eq!(
        s.stun_raw(a, &id, &first),
        Some(BindingResponse::Success(a))
    );
    // Captured and sent from elsewhere: a replay, refused; media stays.
    assert!(matches!(
        s.stun_raw(b, &id, &first),
        Some(BindingResponse::Error(400, _))
    ));
    assert_eq!(s.bound.get(&a), Some(&1));
    assert!(!s.bound.contains_key(&b));
    assert_eq!(s.engine.stats().stun_replayed, 1);
    // The token in clear, or a wrong key, binds nothing.
    let Ok((plain, _)) = proto::media::binding_request(&key) else {
        panic!()
    };
    assert!(matches!(
        s.stun_raw(b, &key, &plain),
        Some(BindingResponse::Error(401, _))
    ));
    let forged = signed(&id, "not the key", None);
    assert!(matches!(
        s.stun_raw(b, &id, &forged),
        Some(BindingResponse::Error(401, _))
    ));
    // A fresh, signed request from a new address: Stale Nonce, and the
    // nonce goes to the session over the control channel.
    let moving = signed(&id, &key, None);
    assert!(matches!(
        s.stun_raw(b, &id, &moving),
        Some(BindingResponse::Error(438, _))
    ));
    let nonce = s.take(1).into_iter().find_map(|m| match m {
        ServerMessage::MediaNonce { nonce } => Some(nonce),
        _ => None,
    });
    let Some(nonce) = nonce else {
        panic!("no MEDIA_NONCE")
    };
    assert_eq!(s.bound.get(&a), Some(&1), "not moved yet");
    let with_nonce = signed(&id, &key, Some(&nonce));
    assert_eq!(
        s.stun_raw(b, &id, &with_nonce),
        Some(BindingResponse::Success(b))
    );
    assert_eq!(s.bound.get(&b), Some(&1));
    assert!(!s.bound.contains_key(&a));
    // The nonce works once.
    let again = signed(&id, &key, Some(&nonce));
    assert!(matches!(
        s.stun_raw(c, &id, &again),
        Some(BindingResponse::Error(438, _))
    ));
    assert_eq!(s.bound.get(&b), Some(&1));
    // JOINED tells a nonce too: binding for a new room from a new socket.
    s.line(1, r#"{"type":"LEAVE"}"#);
    s.line(1, r#"{"type":"JOIN","room":"lobby"}"#);
    let told = s.take(1).into_iter().find_map(|m| match m {
        ServerMessage::Joined { media_nonce, .. } => media_nonce,
        _ => None,
    });
    let Some(told) = told else {
        panic!("JOINED without media_nonce")
    };
    let d = addr(41004);
    let for_room = signed(&id, &key, Some(&told));
    assert_eq!(
        s.stun_raw(d, &id, &for_room),
        Some(BindingResponse::Success(d))
    );
    assert_eq!(s.bound.get(&d), Some(&1));
}

#[test]
fn sessions_without_the_feature_bind_as_before() {
    let mut s = Sim::new();
    let (_, token) = s.hello(1, "bob");
    match s.stun(addr(41010), &token) {
        BindingResponse::Success(a) => assert_eq!(a, addr(41010)),
        other => panic!("{other:?}"),
    }
    // A media id nobody has is an unknown user.
    let forged = signed("0000000000000000", &token, None);
    assert!(matches!(
        s.stun_raw(addr(41011), "0000000000000000", &forged),
        Some(BindingResponse::Error(401, _))
    ));
}

#[test]
fn a_secure_router_takes_signed_bindings_only() {
    let cfg = EngineConfig {
        require_stun_integrity: true,
        ..Sim::one_address_config()
    };
    let mut s = Sim::with(cfg, vec![]);
    let (_, token) = s.hello(1, "bob");
    let Ok((plain, _)) = proto::media::binding_request(&token) else {
        panic!()
    };
    assert!(matches!(
        s.stun_raw(addr(41020), &token, &plain),
        Some(BindingResponse::Error(401, _))
    ));
    let (id, key) = s.hello_signed(2, "ann");
    let signed = signed(&id, &key, None);
    let a = addr(41021);
    assert_eq!(
        s.stun_raw(a, &id, &signed),
        Some(BindingResponse::Success(a))
    );
}
