//! Floor logic on virtual time: no sockets, no sleeping.

use super::*;

use plugin_api::{DenyReason, ErrorCode, Notice, ReleaseReason, WallClock};

/// The shared room simulator, with floor helpers.
struct Sim(plugin_api::sim::Sim);

impl std::ops::Deref for Sim {
    type Target = plugin_api::sim::Sim;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn room_info(clock: WallClock) -> RoomInfo<'static> {
    RoomInfo {
        name: "r",
        max_participants: 16,
        clock,
    }
}

impl Sim {
    fn new(opts: &[(&str, serde_json::Value)]) -> Self {
        Sim(plugin_api::sim::Sim::of(&PttFactory, "r", 16, opts))
    }

    fn request(&mut self, s: SessionId, priority: u8) {
        if let Err(e) = self.cmd(s, RoomCommand::FloorRequest { priority }) {
            panic!("request failed: {e}");
        }
    }

    fn release(&mut self, s: SessionId) {
        if let Err(e) = self.cmd(s, RoomCommand::FloorRelease) {
            panic!("release failed: {e}");
        }
    }

    fn holder(&self) -> Option<SessionId> {
        let talking: Vec<_> = (0..64).filter(|s| self.room.is_talking(*s)).collect();
        assert!(talking.len() <= 1, "two talkers: {talking:?}");
        // Only the holder's media may be forwarded.
        let forwarded: Vec<_> = self
            .routes
            .iter()
            .filter(|(_, r)| **r != Receivers::Nobody)
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(forwarded, talking, "routes disagree with the floor");
        talking.first().copied()
    }
}

fn granted_to(msgs: &[(Option<SessionId>, Notice)]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|(_, m)| match m {
            Notice::FloorGranted { session, .. } => Some(*session),
            _ => None,
        })
        .collect()
}

#[test]
fn idle_floor_is_granted_and_broadcast() {
    let mut s = Sim::new(&[]);
    s.join(1);
    s.join(2);
    s.request(1, 0);
    let m = s.take();
    assert!(
        matches!(
            &m[..],
            [(None, Notice::FloorGranted { session: 1, ssrc: 1001, burst_limit_ms: 60_000, nickname, .. })] if nickname == "u1"
        ),
        "{m:?}"
    );
    assert_eq!(s.holder(), Some(1));
    assert_eq!(s.routes.get(&1), Some(&Receivers::AllOthers));
}

#[test]
fn busy_floor_is_denied_without_queue() {
    let mut s = Sim::new(&[("queue", false.into())]);
    s.join(1);
    s.join(2);
    s.request(1, 0);
    s.take();
    s.request(2, 0);
    let m = s.take();
    assert_eq!(
        m,
        vec![(
            Some(2),
            Notice::FloorDenied {
                session: 2,
                nickname: "u2".into(),
                reason: DenyReason::FloorBusy,
                holder: Some("u1".into()),
                queue_position: None
            }
        )]
    );
    assert_eq!(s.holder(), Some(1));
    s.release(1);
    assert_eq!(
        s.holder(),
        None,
        "no queue: nobody is granted after release"
    );
}

#[test]
fn queue_positions_and_handover_in_order() {
    let mut s = Sim::new(&[]);
    for id in 1..=4 {
        s.join(id);
    }
    s.request(1, 0);
    s.request(2, 0);
    s.request(3, 0);
    s.request(4, 0);
    let m = s.take();
    let positions: Vec<_> = m
        .iter()
        .filter_map(|(to, m)| match m {
            Notice::FloorDenied {
                reason: DenyReason::Queued,
                queue_position,
                ..
            } => Some((to.unwrap_or(0), queue_position.unwrap_or(0))),
            _ => None,
        })
        .collect();
    assert_eq!(positions, vec![(2, 1), (3, 2), (4, 3)]);
    // Asking again says where you are.
    assert!(s.cmd(3, RoomCommand::FloorRequest { priority: 0 }).is_ok());
    assert!(matches!(
        s.take()[..],
        [(
            Some(3),
            Notice::FloorDenied {
                reason: DenyReason::AlreadyQueued,
                queue_position: Some(2),
                ..
            }
        )]
    ));
    s.release(1);
    let m = s.take();
    assert!(
        matches!(
            m[0].1,
            Notice::FloorReleased {
                session: 1,
                reason: ReleaseReason::Released,
                ..
            }
        ),
        "{m:?}"
    );
    assert_eq!(granted_to(&m), vec![2]);
    // The others moved up and were told.
    assert!(m.contains(&(Some(3), Notice::FloorQueued { queue_position: 1 })));
    assert!(m.contains(&(Some(4), Notice::FloorQueued { queue_position: 2 })));
    // 3 withdraws; 4 moves to 1.
    s.release(3);
    let m = s.take();
    assert!(m.contains(&(Some(3), Notice::FloorDequeued)));
    assert!(m.contains(&(Some(4), Notice::FloorQueued { queue_position: 1 })));
    s.release(2);
    assert_eq!(granted_to(&s.take()), vec![4]);
    assert_eq!(s.holder(), Some(4));
}

#[test]
fn queue_limit_is_enforced() {
    let mut s = Sim::new(&[("queue_limit", 1.into())]);
    for id in 1..=3 {
        s.join(id);
    }
    s.request(1, 0);
    s.request(2, 0);
    s.take();
    s.request(3, 0);
    assert!(matches!(
        s.take()[..],
        [(
            Some(3),
            Notice::FloorDenied {
                reason: DenyReason::QueueFull,
                ..
            }
        )]
    ));
}

#[test]
fn higher_priority_preempts_and_queue_orders_by_priority() {
    let mut s = Sim::new(&[]);
    for id in 1..=4 {
        s.join(id);
    }
    s.request(1, 1);
    s.request(2, 0);
    s.request(3, 1); // equal priority: queued, but ahead of the lower one
    let m = s.take();
    assert!(m.iter().any(|(to, m)| *to == Some(3)
        && matches!(
            m,
            Notice::FloorDenied {
                queue_position: Some(1),
                ..
            }
        )));
    assert!(m.contains(&(Some(2), Notice::FloorQueued { queue_position: 2 })));
    s.request(4, 5);
    let m = s.take();
    assert!(
        matches!(
            &m[0].1,
            Notice::FloorRevoked {
                session: 1,
                reason: RevokeReason::Preempted,
                ..
            }
        ),
        "{m:?}"
    );
    assert_eq!(granted_to(&m), vec![4]);
    assert_eq!(s.holder(), Some(4));
    assert_eq!(s.routes.get(&1), Some(&Receivers::Nobody));
}

#[test]
fn preemption_can_be_disabled_and_priority_is_bounded() {
    let mut s = Sim::new(&[("preemption", false.into()), ("max_priority", 2.into())]);
    s.join(1);
    s.join(2);
    s.request(1, 0);
    s.request(2, 2);
    assert_eq!(s.holder(), Some(1));
    let e = s.cmd(2, RoomCommand::FloorRequest { priority: 3 });
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::BadField));
}

#[test]
fn talk_burst_limit_revokes_and_hands_over() {
    let mut s = Sim::new(&[("burst_limit_secs", 30.into())]);
    s.join(1);
    s.join(2);
    s.request(1, 0);
    s.request(2, 0);
    s.take();
    s.advance(Duration::from_millis(29_999));
    assert_eq!(s.holder(), Some(1));
    assert!(s.take().is_empty());
    s.advance(Duration::from_millis(1));
    let m = s.take();
    assert!(
        matches!(
            &m[0],
            (
                None,
                Notice::FloorRevoked {
                    session: 1,
                    reason: RevokeReason::BurstLimit,
                    ..
                }
            )
        ),
        "{m:?}"
    );
    assert_eq!(granted_to(&m), vec![2]);
    // The new holder gets a fresh burst.
    s.advance(Duration::from_secs(29));
    assert_eq!(s.holder(), Some(2));
    s.advance(Duration::from_secs(1));
    assert_eq!(s.holder(), None);
}

#[test]
fn released_floor_disarms_the_burst_timer() {
    let mut s = Sim::new(&[("burst_limit_secs", 10.into())]);
    s.join(1);
    s.request(1, 0);
    s.advance(Duration::from_secs(5));
    s.release(1);
    s.request(1, 0);
    s.take();
    // The first burst's deadline must not cut the second burst short.
    s.advance(Duration::from_secs(9));
    assert_eq!(s.holder(), Some(1));
    assert!(s.take().is_empty());
}

#[test]
fn holder_loss_frees_the_floor_at_once() {
    for why in [
        LeaveReason::Left,
        LeaveReason::Disconnected,
        LeaveReason::TimedOut,
    ] {
        let mut s = Sim::new(&[]);
        s.join(1);
        s.join(2);
        s.join(3);
        s.request(1, 0);
        s.request(2, 0);
        s.take();
        s.leave(1, why);
        let m = s.take();
        assert!(
            matches!(
                &m[0],
                (None, Notice::FloorReleased { session: 1, reason, nickname, .. }) if *reason == why.as_release() && nickname == "u1"
            ),
            "{m:?}"
        );
        assert_eq!(granted_to(&m), vec![2]);
        assert_eq!(s.holder(), Some(2));
    }
}

#[test]
fn queued_member_leaving_moves_others_up() {
    let mut s = Sim::new(&[]);
    for id in 1..=3 {
        s.join(id);
    }
    s.request(1, 0);
    s.request(2, 0);
    s.request(3, 0);
    s.take();
    s.leave(2, LeaveReason::Disconnected);
    assert_eq!(
        s.take(),
        vec![(Some(3), Notice::FloorQueued { queue_position: 1 })]
    );
    s.release(1);
    assert_eq!(granted_to(&s.take()), vec![3]);
}

#[test]
fn release_without_floor_is_an_error() {
    let mut s = Sim::new(&[]);
    s.join(1);
    let e = s.cmd(1, RoomCommand::FloorRelease).map_err(|e| e.code);
    assert_eq!(e, Err(ErrorCode::NotFloorHolder));
    let e = s
        .cmd(
            1,
            RoomCommand::MediaState {
                audio: true,
                video: false,
            },
        )
        .map_err(|e| e.code);
    assert_eq!(e, Err(ErrorCode::NotSupported));
}

#[test]
fn operator_grant_preempts_the_holder_and_skips_the_queue() {
    let mut s = Sim::new(&[]);
    for id in 1..=3 {
        s.join(id);
    }
    s.request(1, 7); // highest priority a member may ask for
    s.request(2, 0); // queued
    s.take();
    assert_eq!(s.admin(AdminCommand::GrantFloor { session: 3 }), Ok(()));
    let m = s.take();
    assert!(
        matches!(
            &m[0],
            (
                None,
                Notice::FloorRevoked {
                    session: 1,
                    reason: RevokeReason::Admin,
                    ..
                }
            )
        ),
        "{m:?}"
    );
    assert_eq!(granted_to(&m), vec![3]);
    assert_eq!(s.holder(), Some(3));
    // The queue is untouched: 2 still waits and gets the floor next.
    s.release(3);
    assert_eq!(s.holder(), Some(2));
    // A member cannot take back an operator grant by priority: grants carry
    // max_priority.
    s.admin(AdminCommand::GrantFloor { session: 1 })
        .unwrap_or_else(|e| panic!("{e}"));
    s.request(2, 7);
    assert_eq!(s.holder(), Some(1));
}

#[test]
fn operator_revoke_hands_over_and_fails_on_an_idle_floor() {
    let mut s = Sim::new(&[]);
    for id in 1..=2 {
        s.join(id);
    }
    assert!(matches!(
        s.admin(AdminCommand::RevokeFloor),
        Err(AdminError::Precondition(_))
    ));
    s.request(1, 0);
    s.request(2, 0);
    s.take();
    assert_eq!(s.admin(AdminCommand::RevokeFloor), Ok(()));
    let m = s.take();
    assert!(m.iter().any(|(_, m)| matches!(
        m,
        Notice::FloorRevoked {
            session: 1,
            reason: RevokeReason::Admin,
            ..
        }
    )));
    assert_eq!(s.holder(), Some(2));
}

#[test]
fn muted_member_loses_the_floor_and_is_denied_until_unmuted() {
    let mut s = Sim::new(&[]);
    for id in 1..=3 {
        s.join(id);
    }
    s.request(1, 0);
    s.request(2, 0);
    s.request(3, 0);
    s.take();
    // Muting a queued member withdraws its request.
    s.admin(AdminCommand::Mute {
        session: 3,
        muted: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.take().contains(&(Some(3), Notice::FloorDequeued)));
    // Muting the holder revokes and hands over.
    s.admin(AdminCommand::Mute {
        session: 1,
        muted: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let m = s.take();
    assert!(m.iter().any(|(_, m)| matches!(
        m,
        Notice::FloorRevoked {
            session: 1,
            reason: RevokeReason::Muted,
            ..
        }
    )));
    assert_eq!(s.holder(), Some(2));
    s.release(2);
    s.take();
    s.request(1, 7);
    assert_eq!(
        s.take(),
        vec![(
            Some(1),
            Notice::FloorDenied {
                session: 1,
                nickname: "u1".into(),
                reason: DenyReason::Muted,
                holder: None,
                queue_position: None
            }
        )]
    );
    assert!(matches!(
        s.admin(AdminCommand::GrantFloor { session: 1 }),
        Err(AdminError::Precondition(_))
    ));
    s.admin(AdminCommand::Mute {
        session: 1,
        muted: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    s.request(1, 0);
    assert_eq!(s.holder(), Some(1));
}

#[test]
fn bad_options_are_refused() {
    let bad = |k: &str, v: serde_json::Value| {
        let o: Options = [(k.to_string(), v)].into_iter().collect();
        PttFactory
            .create(
                &room_info(WallClock {
                    origin: std::time::Instant::now(),
                    origin_unix_ms: 0,
                }),
                &o,
            )
            .err()
            .map(|e| e.name)
    };
    assert_eq!(bad("queue", "maybe".into()), Some("queue".into()));
    assert_eq!(
        bad("burst_limit_secs", 99_999.into()),
        Some("burst_limit_secs".into())
    );
    assert_eq!(bad("colour", "red".into()), Some("colour".into()));
}

/// A seeded random walk of requests, releases, leaves and time; after every
/// step at most one member talks and only its media is routed.
#[test]
fn random_walk_keeps_floor_invariants() {
    let mut seed: u64 = 42;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut s = Sim::new(&[("burst_limit_secs", 3.into()), ("queue_limit", 4.into())]);
    let mut present = std::collections::BTreeSet::new();
    let mut grants = 0;
    for _ in 0..20_000 {
        let id = next() % 8 + 1;
        match next() % 6 {
            0 if !present.contains(&id) => {
                s.join(id);
                present.insert(id);
            }
            1 if present.contains(&id) => {
                s.leave(id, LeaveReason::Disconnected);
                present.remove(&id);
            }
            2 | 3 if present.contains(&id) => s.request(id, (next() % 3) as u8),
            4 if present.contains(&id) => {
                let _ = s.cmd(id, RoomCommand::FloorRelease);
            }
            _ => s.advance(Duration::from_millis(next() % 2000)),
        }
        let h = s.holder();
        assert!(h.is_none_or(|h| present.contains(&h)));
        grants += granted_to(&s.take()).len();
    }
    assert!(
        grants > 100,
        "the walk exercised the floor ({grants} grants)"
    );
}
