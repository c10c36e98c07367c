//! Meeting rules on virtual time: lobby, host, media state, files, adaptive
//! video. No sockets, no sleeping.

use std::time::Duration;

use plugin_api::sim::{Delivery, Sim};
use plugin_api::{Audience, ErrorCode, Notice, ReceiverReport, Ssrcs, WallClock};

use super::*;

fn meeting(opts: &[(&str, serde_json::Value)]) -> Sim {
    Sim::of(&MeetingFactory, "m", 0, opts)
}

/// A meeting with host u1 and guests u2.. admitted.
fn with_guests(n: u64, opts: &[(&str, serde_json::Value)]) -> Sim {
    let mut s = meeting(opts);
    s.join(1);
    for g in 2..=n + 1 {
        assert_eq!(s.request_join(Sim::member(g)), JoinPolicy::Wait);
        ok(s.cmd(
            1,
            RoomCommand::LobbyAnswer {
                session: g,
                admit: true,
                reason: None,
            },
        ));
    }
    s.take();
    s
}

fn ok(r: Result<(), CommandError>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn code(r: Result<(), CommandError>) -> Option<ErrorCode> {
    r.err().map(|e| e.code)
}

fn lobby_of(msgs: &[Notice]) -> Option<Vec<String>> {
    msgs.iter().rev().find_map(|m| match m {
        Notice::LobbyWaiting { waiting } => {
            Some(waiting.iter().map(|w| w.nickname.clone()).collect())
        }
        _ => None,
    })
}

fn member_ids(s: &Sim) -> Vec<SessionId> {
    s.members.iter().map(|m| m.session).collect()
}

#[test]
fn the_first_is_host_and_the_others_wait_for_the_host() {
    let mut s = meeting(&[]);
    assert_eq!(s.request_join(Sim::member(1)), JoinPolicy::Admit);
    assert_eq!(
        s.inbox(1).first(),
        Some(&Notice::HostChanged {
            session: 1,
            nickname: "u1".into()
        })
    );
    s.take();
    assert_eq!(s.request_join(Sim::member(2)), JoinPolicy::Wait);
    assert_eq!(
        s.inbox(2),
        [Notice::JoinPending {
            timeout_ms: 120_000
        }]
    );
    assert_eq!(lobby_of(&s.inbox(1)), Some(vec!["u2".into()]));
    s.take();
    // Only the host decides.
    assert_eq!(s.request_join(Sim::member(3)), JoinPolicy::Wait);
    ok(s.cmd(
        1,
        RoomCommand::LobbyAnswer {
            session: 2,
            admit: true,
            reason: None,
        },
    ));
    assert_eq!(member_ids(&s), [1, 2]);
    assert!(s.decisions.contains(&Effect::Admit { session: 2 }));
    assert_eq!(
        code(s.cmd(
            2,
            RoomCommand::LobbyAnswer {
                session: 3,
                admit: true,
                reason: None
            }
        )),
        Some(ErrorCode::NotHost)
    );
    // The admitted guest learns who hosts, gets the chat history and the
    // others' microphone and camera; everyone's media goes to everyone.
    let inbox = s.inbox(2);
    assert!(inbox.contains(&Notice::HostChanged {
        session: 1,
        nickname: "u1".into()
    }));
    assert!(
        inbox
            .iter()
            .any(|m| matches!(m, Notice::ChatHistory { .. }))
    );
    assert!(inbox.iter().any(|m| matches!(
        m,
        Notice::MediaState {
            session: 1,
            audio: true,
            video: true,
            ..
        }
    )));
    // In that order, as docs/protocol.md says: host, history, media states.
    let at = |f: fn(&Notice) -> bool| inbox.iter().position(f);
    let host = at(|m| matches!(m, Notice::HostChanged { .. }));
    let history = at(|m| matches!(m, Notice::ChatHistory { .. }));
    let media = at(|m| matches!(m, Notice::MediaState { .. }));
    assert!(host < history && history < media, "{inbox:?}");
    assert_eq!(s.routes.get(&1), Some(&Receivers::AllOthers));
    assert_eq!(s.routes.get(&2), Some(&Receivers::AllOthers));
    assert_eq!(lobby_of(&s.inbox(1)), Some(vec!["u3".into()]));
    s.take();
    // Deny with a reason; an unknown or already decided session is an error.
    ok(s.cmd(
        1,
        RoomCommand::LobbyAnswer {
            session: 3,
            admit: false,
            reason: Some("not today".into()),
        },
    ));
    assert_eq!(
        s.decisions.last(),
        Some(&Effect::Reject {
            session: 3,
            reason: RejectReason::Denied,
            message: "not today".into()
        })
    );
    assert_eq!(lobby_of(&s.inbox(1)), Some(vec![]));
    assert_eq!(
        code(s.cmd(
            1,
            RoomCommand::LobbyAnswer {
                session: 3,
                admit: true,
                reason: None
            }
        )),
        Some(ErrorCode::UnknownParticipant)
    );
}

#[test]
fn waiting_is_bounded_by_the_lobby_timeout_and_can_be_withdrawn() {
    let mut s = meeting(&[("lobby_timeout_secs", 30.into())]);
    s.join(1);
    s.request_join(Sim::member(2));
    s.advance(Duration::from_secs(10));
    s.request_join(Sim::member(3));
    s.request_join(Sim::member(4));
    s.take();
    s.advance(Duration::from_millis(19_999));
    assert_eq!(s.waiting.len(), 3, "not a moment early");
    s.advance(Duration::from_millis(1));
    assert_eq!(
        s.decisions.last(),
        Some(&Effect::Reject {
            session: 2,
            reason: RejectReason::TimedOut,
            message: "nobody let you in within 30 s".into()
        })
    );
    assert_eq!(lobby_of(&s.inbox(1)), Some(vec!["u3".into(), "u4".into()]));
    // One gives up; the host sees it and no timer fires for it later.
    s.withdraw(3);
    assert_eq!(lobby_of(&s.inbox(1)), Some(vec!["u4".into()]));
    s.advance(Duration::from_secs(10));
    let rejected: Vec<SessionId> = s
        .decisions
        .iter()
        .filter_map(|e| match e {
            Effect::Reject { session, .. } => Some(*session),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, [2, 4]);
    assert!(s.waiting.is_empty());
}

#[test]
fn an_operator_decides_like_the_host() {
    let mut s = meeting(&[]);
    s.join(1);
    s.request_join(Sim::member(2));
    s.request_join(Sim::member(3));
    assert_eq!(
        s.admin(AdminCommand::Lobby {
            session: 2,
            approve: true,
            reason: String::new()
        }),
        Ok(())
    );
    assert_eq!(
        s.admin(AdminCommand::Lobby {
            session: 3,
            approve: false,
            reason: "full today".into()
        }),
        Ok(())
    );
    assert_eq!(member_ids(&s), [1, 2]);
    assert!(matches!(
        s.decisions.last(),
        Some(Effect::Reject { session: 3, reason: RejectReason::Denied, message }) if message == "full today"
    ));
    assert!(matches!(
        s.admin(AdminCommand::Lobby {
            session: 3,
            approve: true,
            reason: String::new()
        }),
        Err(AdminError::Precondition(_))
    ));
}

#[test]
fn host_passes_to_the_longest_present_unless_the_meeting_ends_with_its_host() {
    let mut s = with_guests(3, &[]);
    s.request_join(Sim::member(9));
    s.take();
    s.leave(1, LeaveReason::Left);
    let sent = s.take();
    assert!(sent.contains(&(
        None,
        Notice::HostChanged {
            session: 2,
            nickname: "u2".into()
        }
    )));
    // The new host sees the lobby and decides.
    assert!(sent.iter().any(|(to, m)| *to == Some(2)
        && matches!(m, Notice::LobbyWaiting { waiting } if waiting.len() == 1)));
    ok(s.cmd(
        2,
        RoomCommand::LobbyAnswer {
            session: 9,
            admit: true,
            reason: None,
        },
    ));
    s.take();
    // A guest leaving changes nothing about the host.
    s.leave(3, LeaveReason::Disconnected);
    assert!(
        !s.take()
            .iter()
            .any(|(_, m)| matches!(m, Notice::HostChanged { .. }))
    );

    let mut s = with_guests(2, &[("end_with_host", true.into())]);
    s.request_join(Sim::member(9));
    s.leave(1, LeaveReason::Left);
    assert_eq!(s.closed.as_deref(), Some("the host ended the meeting"));
    assert!(s.members.is_empty() && s.waiting.is_empty());
    assert!(s.decisions.iter().any(|e| matches!(
        e,
        Effect::Reject {
            session: 9,
            reason: RejectReason::MeetingEnded,
            ..
        }
    )));
}

#[test]
fn media_state_is_announced_and_the_host_mutes_and_removes() {
    let mut s = with_guests(2, &[]);
    ok(s.cmd(
        2,
        RoomCommand::MediaState {
            audio: false,
            video: true,
        },
    ));
    assert_eq!(
        s.take(),
        [(
            None,
            Notice::MediaState {
                session: 2,
                nickname: "u2".into(),
                audio: false,
                video: true
            }
        )]
    );
    assert_eq!(
        s.room.member_stats(2),
        [
            ("video_level", "360p".to_owned()),
            ("microphone", "off".to_owned()),
            ("camera", "on".to_owned())
        ]
    );
    let mute = |n: &str, muted| RoomCommand::Mute {
        nickname: n.into(),
        muted,
    };
    assert_eq!(code(s.cmd(2, mute("u3", true))), Some(ErrorCode::NotHost));
    assert_eq!(
        code(s.cmd(1, mute("zed", true))),
        Some(ErrorCode::UnknownParticipant)
    );
    ok(s.cmd(1, mute("U3", true)));
    assert_eq!(s.muted.get(&3), Some(&true));
    ok(s.cmd(1, mute("u3", false)));
    assert_eq!(s.muted.get(&3), Some(&false));
    let remove = |n: &str| RoomCommand::Remove {
        nickname: n.into(),
        reason: None,
    };
    assert_eq!(code(s.cmd(2, remove("u3"))), Some(ErrorCode::NotHost));
    assert_eq!(code(s.cmd(1, remove("u1"))), Some(ErrorCode::BadField));
    ok(s.cmd(1, remove("u3")));
    assert_eq!(member_ids(&s), [1, 2]);
    assert!(s.decisions.contains(&Effect::Remove {
        session: 3,
        message: "removed by the host".into()
    }));
    // Meetings have no floor.
    assert_eq!(
        code(s.cmd(2, RoomCommand::FloorRequest { priority: 0 })),
        Some(ErrorCode::NotSupported)
    );
}

#[test]
fn a_newcomer_gets_a_keyframe_from_every_camera_that_is_on() {
    let mut s = with_guests(2, &[]);
    ok(s.cmd(
        2,
        RoomCommand::MediaState {
            audio: true,
            video: false,
        },
    ));
    s.take();
    assert_eq!(s.request_join(Sim::member(4)), JoinPolicy::Wait);
    ok(s.cmd(
        1,
        RoomCommand::LobbyAnswer {
            session: 4,
            admit: true,
            reason: None,
        },
    ));
    let mut asked: Vec<SessionId> = s
        .take()
        .into_iter()
        .filter_map(|(to, n)| matches!(n, Notice::KeyframeRequest).then_some(to).flatten())
        .collect();
    asked.sort_unstable();
    // u2's camera is off; the newcomer is not asked for its own.
    assert_eq!(asked, [1, 3]);
}

#[test]
fn chat_works_as_in_chat_rooms_with_private_messages() {
    let mut s = with_guests(2, &[]);
    ok(s.cmd(
        2,
        RoomCommand::Chat {
            text: "psst".into(),
            to: Some("u3".into()),
        },
    ));
    let to: Vec<Delivery> = s.take_all().into_iter().map(|(d, _)| d).collect();
    assert_eq!(to, [Delivery::To(Audience::Some(vec![3, 2]))]);
    ok(s.cmd(
        1,
        RoomCommand::Chat {
            text: "welcome".into(),
            to: None,
        },
    ));
    s.request_join(Sim::member(4));
    ok(s.cmd(
        1,
        RoomCommand::LobbyAnswer {
            session: 4,
            admit: true,
            reason: None,
        },
    ));
    assert!(s.inbox(4).iter().any(|m| matches!(m, Notice::ChatHistory { messages, .. } if messages.len() == 1 && messages[0].text == "welcome")));
}

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn offer(to: Option<&str>, size: u64) -> RoomCommand {
    RoomCommand::FileOffer(FileOffer {
        to: to.map(str::to_owned),
        name: "notes.pdf".into(),
        size,
        sha256: SHA.into(),
        chunk_size: 8192,
    })
}

fn acks_to(sent: &[(Delivery, Notice)], to: SessionId) -> Vec<u64> {
    sent.iter()
        .filter_map(|(d, m)| match (d, m) {
            (Delivery::To(Audience::One(t)), Notice::FileAcked { next_seq, .. }) if *t == to => {
                Some(*next_seq)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn file_offers_are_checked_against_the_limits() {
    let mut s = with_guests(2, &[("max_file_mb", 1.into())]);
    let bad = |s: &mut Sim, cmd| code(s.cmd(2, cmd));
    assert_eq!(
        bad(&mut s, offer(None, (1 << 20) + 1)),
        Some(ErrorCode::BadFile)
    );
    assert_eq!(
        bad(&mut s, offer(Some("nobody"), 10)),
        Some(ErrorCode::UnknownParticipant)
    );
    assert_eq!(
        bad(&mut s, offer(Some("u2"), 10)),
        Some(ErrorCode::UnknownParticipant),
        "not to oneself"
    );
    for (name, sha, chunk) in [
        ("../etc/passwd", SHA, 8192),
        ("", SHA, 8192),
        ("a\u{0}b", SHA, 8192),
        ("ok.txt", "abc", 8192),
        ("ok.txt", &SHA.to_uppercase()[..], 8192),
        ("ok.txt", SHA, 100),
        ("ok.txt", SHA, 64 * 1024),
    ] {
        let cmd = RoomCommand::FileOffer(FileOffer {
            to: None,
            name: name.into(),
            size: 10,
            sha256: sha.into(),
            chunk_size: chunk,
        });
        assert_eq!(
            bad(&mut s, cmd),
            Some(ErrorCode::BadFile),
            "{name} {sha} {chunk}"
        );
    }
    ok(s.cmd(2, offer(None, 1 << 20)));
    let sent = s.take_all();
    assert!(sent.iter().any(|(d, m)| *d == Delivery::To(Audience::One(2)) && matches!(m, Notice::FileStarted { transfer: 1, chunks: 128, receivers, .. } if receivers == &["u1", "u3"])));
    for r in [1, 3] {
        assert!(sent.iter().any(|(d, m)| *d == Delivery::To(Audience::One(r)) && matches!(m, Notice::FileOffered { transfer: 1, from, size: 1_048_576, .. } if from == "u2")));
    }
    // Chunks: only the sender's, in range, no bigger than the chunk size.
    assert_eq!(
        code(s.cmd(
            3,
            RoomCommand::FileChunk {
                transfer: 1,
                seq: 0,
                data: "AAAA".into()
            }
        )),
        Some(ErrorCode::UnknownTransfer)
    );
    assert_eq!(
        code(s.cmd(
            2,
            RoomCommand::FileChunk {
                transfer: 1,
                seq: 128,
                data: "AAAA".into()
            }
        )),
        Some(ErrorCode::BadFile)
    );
    let big = "A".repeat(8192 / 3 * 4 + 8);
    assert_eq!(
        code(s.cmd(
            2,
            RoomCommand::FileChunk {
                transfer: 1,
                seq: 0,
                data: big
            }
        )),
        Some(ErrorCode::BadFile)
    );
    // Data that is not base64 is refused, not relayed.
    s.take_all();
    for data in ["!!!!", "AAA", "AA=A", "AAAA\n"] {
        assert_eq!(
            code(s.cmd(
                2,
                RoomCommand::FileChunk {
                    transfer: 1,
                    seq: 0,
                    data: data.into()
                }
            )),
            Some(ErrorCode::BadFile),
            "{data:?}"
        );
    }
    assert!(
        !s.take_all()
            .iter()
            .any(|(_, m)| matches!(m, Notice::FileChunk { .. })),
        "a refused chunk reached a receiver"
    );
    // Four at once per sender.
    for _ in 0..3 {
        ok(s.cmd(2, offer(None, 10)));
    }
    assert_eq!(
        code(s.cmd(2, offer(None, 10))),
        Some(ErrorCode::RateLimited)
    );
}

#[test]
fn chunks_go_in_bulk_and_the_slowest_receivers_acks_come_back() {
    let mut s = with_guests(3, &[]);
    ok(s.cmd(2, offer(None, 5 * 8192)));
    s.take();
    let chunk = |seq| RoomCommand::FileChunk {
        transfer: 1,
        seq,
        data: "AAAA".into(),
    };
    ok(s.cmd(2, chunk(0)));
    let sent = s.take_all();
    let to: Vec<Delivery> = sent.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(
        to,
        [Delivery::Bulk(1), Delivery::Bulk(3), Delivery::Bulk(4)]
    );
    let ack = |s: &mut Sim, from, next_seq| {
        ok(s.cmd(
            from,
            RoomCommand::FileAck {
                transfer: 1,
                next_seq,
            },
        ))
    };
    ack(&mut s, 1, 1);
    ack(&mut s, 3, 1);
    assert!(
        acks_to(&s.take_all(), 2).is_empty(),
        "u4 is behind: no progress yet"
    );
    ack(&mut s, 4, 1);
    assert_eq!(acks_to(&s.take_all(), 2), [1], "the minimum moved");
    // u1 and u3 get ahead; u4 lost chunk 1 and repeats its ack: duplicates
    // of the slowest reach the sender (its loss signal), the others' do not.
    for r in [1, 3] {
        ack(&mut s, r, 4);
    }
    for _ in 0..3 {
        ack(&mut s, 4, 1);
    }
    assert_eq!(acks_to(&s.take_all(), 2), [1, 1, 1]);
    // A retransmission goes only to whoever misses it.
    ok(s.cmd(2, chunk(1)));
    let to: Vec<Delivery> = s.take_all().iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(to, [Delivery::Bulk(4)]);
    assert_eq!(
        code(s.cmd(2, RoomCommand::FileEnd { transfer: 1 })),
        Some(ErrorCode::BadFile),
        "not all acknowledged"
    );
    ack(&mut s, 4, 5);
    assert_eq!(acks_to(&s.take_all(), 2), [4]);
    // The slowest leaves: the next slowest's position is passed on.
    s.leave(4, LeaveReason::Left);
    assert_eq!(
        code(s.cmd(
            3,
            RoomCommand::FileAck {
                transfer: 1,
                next_seq: 6
            }
        )),
        Some(ErrorCode::BadFile)
    );
    for r in [1, 3] {
        ack(&mut s, r, 5);
    }
    assert_eq!(acks_to(&s.take_all(), 2), [5]);
    ok(s.cmd(2, RoomCommand::FileEnd { transfer: 1 }));
    let ends: Vec<Delivery> = s
        .take_all()
        .iter()
        .filter(|(_, m)| matches!(m, Notice::FileEnded { .. }))
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(
        ends,
        [
            Delivery::To(Audience::One(1)),
            Delivery::To(Audience::One(3))
        ]
    );
    ok(s.cmd(
        1,
        RoomCommand::FileResult {
            transfer: 1,
            ok: true,
            message: None,
        },
    ));
    ok(s.cmd(
        3,
        RoomCommand::FileResult {
            transfer: 1,
            ok: false,
            message: Some("sha256 mismatch".into()),
        },
    ));
    let results: Vec<(String, bool)> = s
        .take()
        .into_iter()
        .filter_map(|(to, m)| match m {
            Notice::FileResult { nickname, ok, .. } if to == Some(2) => Some((nickname, ok)),
            _ => None,
        })
        .collect();
    assert_eq!(results, [("u1".into(), true), ("u3".into(), false)]);
    assert_eq!(
        code(s.cmd(
            1,
            RoomCommand::FileAck {
                transfer: 1,
                next_seq: 5
            }
        )),
        Some(ErrorCode::UnknownTransfer),
        "finished"
    );
}

#[test]
fn transfers_abort_when_the_sender_leaves_cancels_or_stalls() {
    let mut s = with_guests(2, &[("file_stall_secs", 10.into())]);
    ok(s.cmd(2, offer(Some("u3"), 100)));
    s.take();
    s.leave(2, LeaveReason::Disconnected);
    assert!(s.inbox(3).iter().any(
        |m| matches!(m, Notice::FileAborted { transfer: 1, reason } if reason == "the sender left")
    ));
    s.take();
    ok(s.cmd(1, offer(None, 100)));
    ok(s.cmd(
        3,
        RoomCommand::FileCancel {
            transfer: 2,
            reason: Some("no thanks".into()),
        },
    ));
    assert!(s.inbox(1).iter().any(|m| matches!(m, Notice::FileResult { ok: false, message: Some(msg), .. } if msg.contains("no thanks"))));
    s.take();
    ok(s.cmd(1, offer(None, 100)));
    s.advance(Duration::from_millis(9_999));
    assert!(
        s.inbox(1)
            .iter()
            .all(|m| !matches!(m, Notice::FileAborted { .. }))
    );
    s.advance(Duration::from_millis(1));
    assert!(s.inbox(1).iter().any(
        |m| matches!(m, Notice::FileAborted { transfer: 3, reason } if reason.contains("10 s"))
    ));
    assert!(
        s.inbox(3)
            .iter()
            .any(|m| matches!(m, Notice::FileAborted { transfer: 3, .. }))
    );
}

fn report(loss: f64, rtt: Option<f64>) -> RoomCommand {
    RoomCommand::VideoReports {
        reports: vec![
            ReceiverReport {
                from_ssrc: 7,
                fraction_lost: 0.0,
                rtt_ms: Some(10.0),
            },
            ReceiverReport {
                from_ssrc: 8,
                fraction_lost: loss,
                rtt_ms: rtt,
            },
        ],
    }
}

fn levels(s: &mut Sim, to: SessionId) -> Vec<String> {
    s.take()
        .into_iter()
        .filter_map(|(t, m)| match m {
            Notice::VideoLevel { level, .. } if t == Some(to) => Some(level.to_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn video_level_steps_down_on_loss_or_rtt_and_up_on_a_clean_path_once_a_second() {
    let mut s = with_guests(2, &[]);
    let second = Duration::from_secs(1);
    // The worst receiver decides: 15% loss steps down each second, to 144p
    // and no further.
    for _ in 0..4 {
        ok(s.cmd(2, report(0.15, Some(20.0))));
        s.advance(second);
    }
    assert_eq!(levels(&mut s, 2), ["240p", "144p"]);
    assert_eq!(
        s.room.member_stats(2)[0],
        ("video_level", "144p".to_owned())
    );
    // No report, no change.
    s.advance(second * 5);
    assert!(levels(&mut s, 2).is_empty());
    // Between the thresholds (5% loss, 200 ms): hold.
    ok(s.cmd(2, report(0.05, Some(200.0))));
    s.advance(second);
    assert!(levels(&mut s, 2).is_empty());
    // Clean: up one step a second, to 720p and no further.
    for _ in 0..6 {
        ok(s.cmd(2, report(0.0, Some(20.0))));
        s.advance(second);
    }
    assert_eq!(levels(&mut s, 2), ["240p", "360p", "480p", "720p"]);
    // RTT alone: above 300 ms steps down; at 150 ms (not under 120) holds.
    ok(s.cmd(2, report(0.0, Some(301.0))));
    s.advance(second);
    ok(s.cmd(2, report(0.0, Some(150.0))));
    s.advance(second);
    assert_eq!(levels(&mut s, 2), ["480p"]);
    // The worst report of the second counts, not the last: a lossy report
    // followed by a clean one still steps down.
    ok(s.cmd(2, report(0.12, None)));
    ok(s.cmd(2, report(0.0, Some(5.0))));
    s.advance(second);
    assert_eq!(levels(&mut s, 2), ["360p"]);
    // The boundaries: exactly 10% holds, exactly 2% does not step up.
    ok(s.cmd(2, report(0.10, None)));
    s.advance(second);
    ok(s.cmd(2, report(0.02, None)));
    s.advance(second);
    assert!(levels(&mut s, 2).is_empty());
    // Each sender has its own level; bad figures are refused.
    assert_eq!(
        s.room.member_stats(3)[0],
        ("video_level", "360p".to_owned())
    );
    assert_eq!(code(s.cmd(2, report(1.5, None))), Some(ErrorCode::BadField));
    assert_eq!(
        code(s.cmd(2, report(0.1, Some(-1.0)))),
        Some(ErrorCode::BadField)
    );
}

#[test]
fn options_are_checked() {
    let info = RoomInfo {
        name: "m",
        max_participants: 0,
        clock: WallClock {
            origin: std::time::Instant::now(),
            origin_unix_ms: 0,
        },
    };
    for (k, v) in [
        ("lobby_timeout_secs", serde_json::json!(1)),
        ("max_file_mb", serde_json::json!(0)),
        ("end_with_host", serde_json::json!("maybe")),
        ("colour", serde_json::json!("red")),
    ] {
        let opts: Options = [(k.to_string(), v)].into_iter().collect();
        assert_eq!(
            MeetingFactory.create(&info, &opts).err().map(|e| e.name),
            Some(k.to_string())
        );
    }
    let _ = Ssrcs { audio: 1, video: 2 };
}
