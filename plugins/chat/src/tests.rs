//! Chat rules on virtual time: no sockets, no sleeping.

use std::time::Duration;

use plugin_api::sim::{Delivery, Sim};
use plugin_api::{Audience, CHAT_MAX_CHARS, ChatLine, ErrorCode, Notice};
use plugin_api::{JoinPolicy, Receivers, WallClock};

use super::*;

fn room(opts: &[(&str, serde_json::Value)]) -> Sim {
    Sim::of(&ChatFactory, "c", 0, opts)
}

fn say(s: &mut Sim, who: SessionId, text: &str) -> Result<(), CommandError> {
    s.cmd(
        who,
        RoomCommand::Chat {
            text: text.into(),
            to: None,
        },
    )
}

fn whisper(s: &mut Sim, who: SessionId, to: &str, text: &str) -> Result<(), CommandError> {
    s.cmd(
        who,
        RoomCommand::Chat {
            text: text.into(),
            to: Some(to.into()),
        },
    )
}

fn code(r: Result<(), CommandError>) -> Option<ErrorCode> {
    r.err().map(|e| e.code)
}

#[test]
fn messages_reach_everyone_numbered_with_sender_and_server_time() {
    let mut s = room(&[]);
    s.join(1);
    s.join(2);
    s.take();
    say(&mut s, 1, "hello").unwrap_or_else(|e| panic!("{e}"));
    s.advance(Duration::from_millis(1500));
    say(&mut s, 2, "hi u1").unwrap_or_else(|e| panic!("{e}"));
    let start = s.clock.origin_unix_ms;
    assert_eq!(
        s.take(),
        [
            (
                None,
                Notice::ChatPosted {
                    line: ChatLine {
                        id: 1,
                        ts_ms: start,
                        from: "u1".into(),
                        session: Some(1),
                        text: "hello".into(),
                    },
                    to: None,
                }
            ),
            (
                None,
                Notice::ChatPosted {
                    line: ChatLine {
                        id: 2,
                        ts_ms: start + 1500,
                        from: "u2".into(),
                        session: Some(2),
                        text: "hi u1".into(),
                    },
                    to: None,
                }
            ),
        ]
    );
}

#[test]
fn private_messages_reach_the_recipient_and_a_copy_the_sender_only() {
    let mut s = room(&[]);
    for id in 1..=3 {
        s.join(id);
    }
    s.take();
    // Nicknames match regardless of case.
    whisper(&mut s, 1, "U3", "psst").unwrap_or_else(|e| panic!("{e}"));
    let sent = s.take_all();
    let to: Vec<Delivery> = sent.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(
        to,
        [Delivery::To(Audience::Some(vec![3, 1]))],
        "one notice, to the recipient and the sender's copy"
    );
    for (_, m) in &sent {
        assert!(
            matches!(m, Notice::ChatPosted { to: Some((3, t)), line } if t == "u3" && line.from == "u1"),
            "{m:?}"
        );
    }
    assert_eq!(
        code(whisper(&mut s, 1, "nobody", "hello?")),
        Some(ErrorCode::UnknownParticipant)
    );
    // Private messages are not history.
    s.join(4);
    let history = s.inbox(4);
    assert_eq!(history, [Notice::ChatHistory { messages: vec![] }]);
}

#[test]
fn a_joiner_gets_the_last_n_public_messages_in_order() {
    let mut s = room(&[("history", 3.into()), ("chat_burst", 10.into())]);
    s.join(1);
    for i in 1..=5 {
        say(&mut s, 1, &format!("m{i}")).unwrap_or_else(|e| panic!("{e}"));
        s.advance(Duration::from_secs(1));
    }
    s.take();
    s.join(2);
    let start = s.clock.origin_unix_ms;
    let entry = |i: u64| ChatLine {
        id: i,
        ts_ms: start + (i - 1) * 1000,
        from: "u1".into(),
        session: Some(1),
        text: format!("m{i}"),
    };
    assert_eq!(
        s.inbox(2),
        [Notice::ChatHistory {
            messages: vec![entry(3), entry(4), entry(5)],
        }]
    );
    // With no history kept, the joiner gets an empty list (it knows there is
    // nothing to wait for).
    let mut s = room(&[("history", 0.into())]);
    s.join(1);
    say(&mut s, 1, "gone").unwrap_or_else(|e| panic!("{e}"));
    s.take();
    s.join(2);
    assert!(matches!(&s.inbox(2)[..], [Notice::ChatHistory { messages }] if messages.is_empty()));
}

#[test]
fn size_and_content_limits_answer_bad_field() {
    let mut s = room(&[]);
    s.join(1);
    s.take();
    let max = "é".repeat(CHAT_MAX_CHARS);
    assert_eq!(say(&mut s, 1, &max), Ok(()), "the limit counts characters");
    for bad in [
        "".to_owned(),
        " \n\t ".to_owned(),
        "x".repeat(CHAT_MAX_CHARS + 1),
        "bell\u{7}".to_owned(),
    ] {
        let r = say(&mut s, 1, &bad);
        assert_eq!(code(r.clone()), Some(ErrorCode::BadField), "{bad:?}");
        assert!(
            r.err()
                .is_some_and(|e| e.message.starts_with("field `text`"))
        );
    }
    assert_eq!(say(&mut s, 1, "two\nlines\tand a tab"), Ok(()));
}

#[test]
fn rate_limit_allows_a_burst_then_one_per_refill_interval() {
    // 5 at once, then 30 a minute: one every 2 s.
    let mut s = room(&[("chat_burst", 5.into()), ("chat_per_minute", 30.into())]);
    s.join(1);
    s.join(2);
    for i in 0..5 {
        assert_eq!(say(&mut s, 1, &format!("{i}")), Ok(()));
    }
    let e = say(&mut s, 1, "one too many").err();
    assert_eq!(e.as_ref().map(|e| e.code), Some(ErrorCode::RateLimited));
    assert!(e.is_some_and(
        |e| e.message.contains("30 messages a minute") && e.message.contains("retry in 2.0 s")
    ),);
    // Others are not limited by one member's flood.
    assert_eq!(say(&mut s, 2, "me too"), Ok(()));
    s.advance(Duration::from_millis(1999));
    assert_eq!(code(say(&mut s, 1, "early")), Some(ErrorCode::RateLimited));
    s.advance(Duration::from_millis(1));
    assert_eq!(say(&mut s, 1, "on time"), Ok(()));
    assert_eq!(code(say(&mut s, 1, "again")), Some(ErrorCode::RateLimited));
    // A quiet minute refills the whole burst, no more.
    s.advance(Duration::from_secs(60));
    for _ in 0..5 {
        assert_eq!(say(&mut s, 1, "x"), Ok(()));
    }
    assert_eq!(code(say(&mut s, 1, "x")), Some(ErrorCode::RateLimited));
    // Refused messages take no id: ids stay dense.
    let ids: Vec<u64> = s
        .take()
        .into_iter()
        .filter_map(|(_, m)| match m {
            Notice::ChatPosted { line, .. } => Some(line.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (1..=12).collect::<Vec<_>>());
}

#[test]
fn exclusive_voice_is_the_ptt_floor_and_shows_who_talks() {
    let mut s = room(&[]);
    s.join(1);
    s.join(2);
    s.take();
    assert_eq!(s.cmd(1, RoomCommand::FloorRequest { priority: 0 }), Ok(()));
    assert!(s.room.is_talking(1) && !s.room.is_talking(2));
    assert_eq!(s.routes.get(&1), Some(&Receivers::AllOthers));
    assert_eq!(s.routes.get(&2), Some(&Receivers::Nobody));
    // The second is queued (ptt's default), still silent.
    assert_eq!(s.cmd(2, RoomCommand::FloorRequest { priority: 0 }), Ok(()));
    assert!(!s.room.is_talking(2));
    // Chat goes on while someone talks.
    assert_eq!(say(&mut s, 2, "my turn next"), Ok(()));
    assert_eq!(s.cmd(1, RoomCommand::FloorRelease), Ok(()));
    assert!(s.room.is_talking(2) && !s.room.is_talking(1));
    assert_eq!(s.routes.get(&1), Some(&Receivers::Nobody));
    // The burst limit is ptt's too.
    let mut s = room(&[("burst_limit_secs", 5.into())]);
    s.join(1);
    assert_eq!(s.cmd(1, RoomCommand::FloorRequest { priority: 0 }), Ok(()));
    s.advance(Duration::from_secs(5));
    assert!(!s.room.is_talking(1));
}

#[test]
fn operator_messages_are_logged_as_from_server() {
    let mut s = room(&[]);
    s.join(1);
    say(&mut s, 1, "first").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.admin(AdminCommand::Chat {
            to: None,
            text: "drill at 14:00".into()
        }),
        Ok(())
    );
    s.take();
    s.join(2);
    let got = s.inbox(2);
    let [Notice::ChatHistory { messages }] = &got[..] else {
        panic!("{got:?}")
    };
    let from: Vec<(&str, Option<u64>, u64)> = messages
        .iter()
        .map(|m| (m.from.as_str(), m.session, m.id))
        .collect();
    assert_eq!(from, [("u1", Some(1), 1), ("server", None, 2)]);
    assert!(matches!(
        s.admin(AdminCommand::Lobby {
            session: 2,
            approve: true,
            reason: String::new()
        }),
        Err(AdminError::NotSupported(_))
    ));
}

#[test]
fn everyone_is_admitted_and_options_are_checked() {
    let mut s = room(&[]);
    assert_eq!(s.request_join(Sim::member(1)), JoinPolicy::Admit);
    assert_eq!(s.members.len(), 1);
    let info = RoomInfo {
        name: "c",
        max_participants: 0,
        clock: WallClock {
            origin: std::time::Instant::now(),
            origin_unix_ms: 0,
        },
    };
    for (k, v) in [
        ("history", serde_json::json!(1001)),
        ("chat_burst", serde_json::json!(0)),
        ("chat_per_minute", serde_json::json!("lots")),
        ("colour", serde_json::json!("red")),
    ] {
        let opts: Options = [(k.to_string(), v)].into_iter().collect();
        let e = ChatFactory.create(&info, &opts).err();
        assert_eq!(e.map(|e| e.name), Some(k.to_string()));
    }
    let names: Vec<&str> = ChatFactory.info().options.iter().map(|o| o.name).collect();
    assert!(names.contains(&"history") && names.contains(&"burst_limit_secs"));
}
