//! The voice rules, driven directly: no sockets, no clock.

use std::time::Instant;

use plugin_api::{Audience, Effect, ErrorCode, Ssrcs, WallClock};

use super::*;

fn clock() -> WallClock {
    WallClock {
        origin: Instant::now(),
        origin_unix_ms: 0,
    }
}

fn room(max_participants: u32) -> VoiceRoom {
    VoiceRoom::new(&RoomInfo {
        name: "r",
        max_participants,
        clock: clock(),
    })
}

fn member(session: SessionId, nick: &str) -> Member {
    Member {
        session,
        nickname: nick.into(),
        ssrcs: Ssrcs {
            audio: session as u32 * 10,
            video: session as u32 * 10 + 1,
        },
    }
}

fn effects(out: &mut Outbox) -> Vec<Effect> {
    out.drain().collect()
}

#[test]
fn everyone_is_routed_to_everyone_else_on_joining() {
    let mut r = room(10);
    let mut out = Outbox::new();
    let now = Instant::now();
    for (id, nick) in [(1, "a"), (2, "b"), (3, "c")] {
        r.on_join(now, &member(id, nick), &mut out);
        assert_eq!(
            effects(&mut out),
            [Effect::SetRoute {
                sender: id,
                receivers: Receivers::AllOthers
            }],
            "no call messages in a room of more than two"
        );
    }
    assert!(!r.is_call());
    r.on_leave(now, 2, LeaveReason::Left, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_room_of_two_is_a_call_started_by_the_second_and_ended_by_either() {
    let mut r = room(2);
    assert!(r.is_call());
    let mut out = Outbox::new();
    let now = Instant::now();
    r.on_join(now, &member(1, "ann"), &mut out);
    assert_eq!(effects(&mut out).len(), 1, "alone: just the route");
    r.on_join(now, &member(2, "bob"), &mut out);
    let e = effects(&mut out);
    let started = |to, peer: &str, peer_session| Effect::Notify {
        to: Audience::One(to),
        notice: Notice::CallStarted {
            peer: peer.into(),
            peer_session,
        },
    };
    assert_eq!(
        e,
        [
            Effect::SetRoute {
                sender: 2,
                receivers: Receivers::AllOthers
            },
            started(1, "bob", 2),
            started(2, "ann", 1),
        ]
    );
    // Bob's connection drops: Ann is told why; she stays for the next call.
    r.on_leave(now, 2, LeaveReason::Disconnected, &mut out);
    assert_eq!(
        effects(&mut out),
        [Effect::Notify {
            to: Audience::One(1),
            notice: Notice::CallEnded {
                peer: "bob".into(),
                peer_session: 2,
                reason: LeaveReason::Disconnected,
            }
        }]
    );
    r.on_join(now, &member(3, "cat"), &mut out);
    let e = effects(&mut out);
    assert!(e.contains(&started(1, "cat", 3)) && e.contains(&started(3, "ann", 1)));
    // Ann hangs up; the last one leaving tells nobody.
    r.on_leave(now, 1, LeaveReason::Left, &mut out);
    assert!(matches!(
        &effects(&mut out)[..],
        [Effect::Notify {
            to: Audience::One(3),
            notice: Notice::CallEnded {
                reason: LeaveReason::Left,
                ..
            }
        }]
    ));
    r.on_leave(now, 3, LeaveReason::Left, &mut out);
    assert!(out.is_empty());
    // Unknown sessions are ignored.
    r.on_leave(now, 99, LeaveReason::Left, &mut out);
    assert!(out.is_empty());
}

#[test]
fn there_is_no_floor_to_ask_for_and_no_options() {
    let mut r = room(5);
    let mut out = Outbox::new();
    let err = r.on_command(
        Instant::now(),
        1,
        &RoomCommand::FloorRequest { priority: 0 },
        &mut out,
    );
    assert_eq!(err.map_err(|e| e.code), Err(ErrorCode::NotSupported));
    let create = |o: &Options| {
        VoiceFactory.create(
            &RoomInfo {
                name: "r",
                max_participants: 2,
                clock: clock(),
            },
            o,
        )
    };
    let mut o = Options::new();
    assert!(create(&o).is_ok());
    o.insert("queue".into(), serde_json::json!(true));
    assert!(create(&o).is_err_and(|e| e.name == "queue"));
}
