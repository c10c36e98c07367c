//! The view-models, driven with server messages as the router sends them.

use std::time::{Duration, Instant};

use proto::control::{
    ChatEntry, DenyReason, LobbyEntry, RejectReason, ReleaseReason, RevokeReason, ServerMessage,
    Ssrcs, UserInfo,
};

use super::room::{Floor, RoomModel, Tone, TransferState};
use super::session::{Backoff, Link, SessionModel, Target};
use super::stats::{BITRATE, FPS, LOSS, RTT, StatsModel};

/// A member as the router lists it (SSRCs derived from the id).
pub(crate) fn user(id: u64, nick: &str, talking: bool) -> UserInfo {
    UserInfo {
        session_id: id,
        nickname: nick.into(),
        ssrcs: Ssrcs {
            audio: id as u32 * 10,
            video: id as u32 * 10 + 1,
        },
        talking,
        muted: false,
    }
}

fn ptt() -> RoomModel {
    let mut r = RoomModel::new("dispatch", "ptt", 1, "ann");
    r.apply(
        &ServerMessage::Userlist {
            room: "dispatch".into(),
            users: vec![
                user(1, "ann", false),
                user(2, "bob", false),
                user(3, "cy", false),
            ],
        },
        Instant::now(),
    );
    r
}

fn granted(id: u64, holder: &str, burst_ms: u64) -> ServerMessage {
    ServerMessage::MicGranted {
        room: "dispatch".into(),
        holder: holder.into(),
        session_id: id,
        ssrc: id as u32 * 10,
        priority: 0,
        burst_limit_ms: burst_ms,
    }
}

#[test]
fn the_status_line_follows_the_floor() {
    let now = Instant::now();
    let mut r = ptt();
    assert_eq!(r.status(now).text, "Hold Space to talk");
    assert_eq!(r.status(now).tone, Tone::Neutral);

    // Someone else talks: red with their name, and they show as talking.
    r.apply(&granted(2, "bob", 0), now);
    let s = r.status(now);
    assert_eq!((s.text.as_str(), s.tone), ("bob is speaking", Tone::Red));
    assert!(r.member(2).is_some_and(|m| m.talking));

    // We ask while bob talks: queued, with our place.
    r.apply(
        &ServerMessage::MicDenied {
            room: "dispatch".into(),
            reason: DenyReason::Queued,
            holder: Some("bob".into()),
            queue_position: Some(2),
        },
        now,
    );
    assert_eq!(r.status(now).text, "Floor busy — queued #2");
    r.apply(
        &ServerMessage::MicQueued {
            room: "dispatch".into(),
            queue_position: 1,
        },
        now,
    );
    assert_eq!(r.status(now).text, "Floor busy — queued #1");
    assert_eq!(r.status(now).tone, Tone::Red);

    // bob releases, the queue hands us the floor with a 30 s burst limit.
    r.apply(
        &ServerMessage::MicReleased {
            room: "dispatch".into(),
            holder: "bob".into(),
            session_id: 2,
            reason: ReleaseReason::Released,
        },
        now,
    );
    assert!(matches!(r.floor, Floor::Queued { position: 1, .. }));
    r.apply(&granted(1, "ann", 30_000), now);
    let s = r.status(now + Duration::from_secs(10));
    assert_eq!((s.text.as_str(), s.tone), ("You can speak", Tone::Green));
    assert_eq!(s.countdown, Some(Duration::from_secs(20)));
    assert!(r.member(1).is_some_and(|m| m.talking));
    assert!(r.member(2).is_some_and(|m| !m.talking));

    // The burst limit revokes it: free again, and we are told why.
    r.apply(
        &ServerMessage::MicRevoked {
            room: "dispatch".into(),
            holder: "ann".into(),
            session_id: 1,
            reason: RevokeReason::BurstLimit,
        },
        now,
    );
    assert_eq!(r.status(now).tone, Tone::Neutral);
    assert_eq!(r.notice.as_deref(), Some("Talk burst limit reached"));
}

#[test]
fn a_joiner_sees_who_holds_the_floor_from_the_userlist() {
    let now = Instant::now();
    let mut r = RoomModel::new("dispatch", "ptt", 1, "ann");
    r.apply(
        &ServerMessage::Userlist {
            room: "dispatch".into(),
            users: vec![user(1, "ann", false), user(2, "bob", true)],
        },
        now,
    );
    assert_eq!(r.status(now).text, "bob is speaking");
}

#[test]
fn a_holder_who_leaves_frees_the_floor() {
    let now = Instant::now();
    let mut r = ptt();
    r.apply(&granted(3, "cy", 0), now);
    r.apply(
        &ServerMessage::Userlist {
            room: "dispatch".into(),
            users: vec![user(1, "ann", false), user(2, "bob", false)],
        },
        now,
    );
    assert_eq!(r.floor, Floor::Free);
    assert_eq!(r.others(), ["bob"]);
}

#[test]
fn chat_keeps_history_in_order_and_marks_private_lines() {
    let now = Instant::now();
    let mut r = RoomModel::new("team", "chat", 1, "ann");
    let chat =
        |id: u64, from: &str, text: &str, private: bool, to: Option<&str>| ServerMessage::Chat {
            room: "team".into(),
            id,
            ts_ms: 1000 + id,
            from: from.into(),
            session_id: Some(2),
            text: text.into(),
            private,
            to: to.map(Into::into),
            operator: false,
        };
    r.apply(
        &ServerMessage::ChatHistory {
            room: "team".into(),
            messages: (1..=3)
                .map(|i| ChatEntry {
                    id: i,
                    ts_ms: i,
                    from: "bob".into(),
                    session_id: Some(2),
                    text: format!("old {i}"),
                    operator: false,
                })
                .collect(),
        },
        now,
    );
    r.apply(&chat(4, "bob", "hello", false, None), now);
    r.apply(&chat(0, "bob", "psst", true, Some("ann")), now);
    r.apply(&chat(0, "ann", "yes?", true, Some("bob")), now);
    let shown: Vec<String> = r.chat.iter().map(|c| c.display("ann")).collect();
    assert_eq!(
        shown,
        [
            "bob: old 1",
            "bob: old 2",
            "bob: old 3",
            "bob: hello",
            "(private) bob: psst",
            "(private to bob) yes?"
        ]
    );
    // The window keeps at most MAX_CHAT_LINES.
    for i in 0..600 {
        r.apply(&chat(10 + i, "bob", "spam", false, None), now);
    }
    assert_eq!(r.chat.len(), super::room::MAX_CHAT_LINES);
}

#[test]
fn a_meeting_host_sees_the_lobby_and_media_state() {
    let now = Instant::now();
    let mut r = RoomModel::new("meeting-123456", "meeting", 1, "host");
    for m in [
        ServerMessage::MeetingCreated {
            room: r.name.clone(),
            code: "123456".into(),
            end_with_host: false,
        },
        ServerMessage::HostChanged {
            room: r.name.clone(),
            host: "host".into(),
            session_id: 1,
        },
        ServerMessage::Userlist {
            room: r.name.clone(),
            users: vec![user(1, "host", false), user(2, "ann", false)],
        },
        ServerMessage::MediaState {
            room: r.name.clone(),
            nickname: "ann".into(),
            session_id: 2,
            audio: false,
            video: true,
        },
        ServerMessage::Lobby {
            room: r.name.clone(),
            waiting: vec![LobbyEntry {
                session_id: 9,
                nickname: "guest".into(),
                waited_ms: 1200,
            }],
        },
    ] {
        assert!(r.apply(&m, now), "{m:?}");
    }
    assert!(r.am_host());
    assert_eq!(r.lobby.len(), 1);
    assert_eq!(r.status(now).text, "Meeting 123456");
    let ann = r.member(2).cloned();
    assert!(ann.is_some_and(|a| !a.audio && a.video));
    // The media state survives the next USERLIST; the video SSRC finds ann.
    r.apply(
        &ServerMessage::Userlist {
            room: r.name.clone(),
            users: vec![user(1, "host", false), user(2, "ann", false)],
        },
        now,
    );
    assert!(r.member(2).is_some_and(|a| a.video));
    assert_eq!(
        r.by_video_ssrc(21).map(|m| m.nickname.as_str()),
        Some("ann")
    );
    // Files: offered by us, acknowledged, confirmed. FILE_STARTED and
    // the sending task's report (which names the file) come in either order.
    r.apply(
        &ServerMessage::FileStarted {
            room: r.name.clone(),
            transfer_id: 5,
            receivers: vec!["ann".into()],
            chunks: 10,
        },
        now,
    );
    r.sending(5, Some("notes.txt"), &["ann".into()], 10);
    r.progress(5, 4, Some(6.0));
    assert_eq!(r.transfers[&5].label(), "notes.txt to ann: 40%, window 6.0");
    r.sending(6, Some("b.txt"), &["ann".into()], 3);
    r.apply(
        &ServerMessage::FileStarted {
            room: r.name.clone(),
            transfer_id: 6,
            receivers: vec!["ann".into()],
            chunks: 3,
        },
        now,
    );
    assert_eq!(r.transfers[&6].label(), "b.txt to ann: 0%");
    r.apply(
        &ServerMessage::FileResult {
            transfer_id: 5,
            nickname: "ann".into(),
            ok: true,
            message: None,
        },
        now,
    );
    assert_eq!(r.transfers[&5].state, TransferState::Done(None));
}

#[test]
fn the_session_tracks_rooms_waiting_and_where_to_go_back() {
    let mut s = SessionModel::default();
    assert_eq!(s.link_text(), "Disconnected");
    s.target = Some(Target::Meeting {
        code: "123456".into(),
    });
    s.apply(&ServerMessage::JoinPending {
        room: "meeting-123456".into(),
        timeout_ms: 60_000,
    });
    assert!(s.waiting.is_some());
    s.apply(&joined("meeting-123456", "meeting"));
    assert!(s.waiting.is_none());
    assert!(
        matches!(s.target, Some(Target::Meeting { .. })),
        "rejoined by code"
    );
    s.apply(&ServerMessage::JoinRejected {
        room: "meeting-123456".into(),
        reason: RejectReason::Denied,
        message: "no".into(),
    });
    assert_eq!(s.target, None);
    assert_eq!(s.error.as_deref(), Some("The host said no: no"));
    s.apply(&joined("dispatch", "ptt"));
    assert_eq!(
        s.target,
        Some(Target::Room {
            name: "dispatch".into()
        })
    );
    s.link = Link::Reconnecting {
        attempt: 3,
        retry_in: Duration::from_secs(2),
        reason: "connection refused".into(),
    };
    assert_eq!(s.link_text(), "Reconnecting (attempt 3, next in 2.0 s)…");
}

#[test]
fn backoff_doubles_to_a_cap_and_resets() {
    let mut b = Backoff::default();
    let waits: Vec<u64> = (0..8).map(|_| b.next_wait().1.as_millis() as u64).collect();
    assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    b.reset();
    assert_eq!(b.next_wait(), (1, Duration::from_millis(500)));
}

#[test]
fn stats_become_rates_over_a_sliding_minute() {
    use client::av::{ReceiveStats, RemoteReport, SendStats, StatsSnapshot};
    let snap = |i: u64| StatsSnapshot {
        sent: vec![SendStats {
            kind: "audio".into(),
            ssrc: 1,
            packets_sent: 50 * i,
            octets_sent: 4000 * i,
            reports: vec![RemoteReport {
                from_ssrc: 2,
                fraction_lost: 0.05,
                rtt_ms: Some(20.0 + i as f64),
                ..Default::default()
            }],
        }],
        received: vec![ReceiveStats {
            kind: "video".into(),
            ssrc: 7,
            packets_received: 90 * i,
            octets_received: 8000 * i,
            packets_lost: 10 * i as i64,
            jitter_ms: 3.0,
            rendered: 25 * i,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut m = StatsModel::default();
    for i in 0..100 {
        m.push(i as f64, &snap(i));
    }
    // 8000 bytes a second in, 4000 out; 10 of 100 packets lost; 25 fps.
    assert_eq!(m.plots[BITRATE].series[0].last(), Some(64.0));
    assert_eq!(m.plots[BITRATE].series[1].last(), Some(32.0));
    assert_eq!(m.plots[LOSS].series[0].last(), Some(10.0));
    assert_eq!(m.plots[LOSS].series[1].last(), Some(5.0));
    assert_eq!(m.plots[FPS].series[0].last(), Some(25.0));
    assert_eq!(m.plots[RTT].series[0].last(), Some(119.0));
    // Only the last minute is kept.
    let pts = &m.plots[RTT].series[0].points;
    assert_eq!(pts.front().map(|p| p.0), Some(39.0));
    assert_eq!(pts.len(), 61);
    assert!(
        m.plots[RTT]
            .caption()
            .starts_with("Round-trip time (ms): audio 119.0")
    );
}

#[test]
fn device_and_codec_choices_become_media_settings() {
    use crate::backend::MediaChoice;
    use crate::model::settings::Settings;
    use pipelines::{Sink, Source};
    let s = Settings {
        nickname: "ann".into(),
        microphone: "element:pulsesrc device=alsa_input.usb".into(),
        speaker: "discard".into(),
        camera: "pattern:ball".into(),
        audio_codec: "l16".into(),
        video_codec: "vp8".into(),
        tones: false,
        ..Settings::default()
    };
    // Saved and read back as the same settings.
    let text = toml::to_string_pretty(&s).unwrap_or_default();
    assert_eq!(toml::from_str::<Settings>(&text).ok(), Some(s.clone()));
    let c = MediaChoice::from_settings(&s);
    assert_eq!(
        c.microphone,
        Source::Element("pulsesrc device=alsa_input.usb".into())
    );
    assert_eq!(c.speaker, Sink::Discard);
    assert_eq!(c.camera, Source::Pattern("ball".into()));
    assert_eq!(
        (c.audio_codec.as_str(), c.video_codec.as_str()),
        ("l16", "vp8")
    );
    assert!(!c.tones);
    // A value that does not parse falls back to the device, not to an error.
    let odd = Settings {
        microphone: "element:a ! filesink".into(),
        ..Settings::default()
    };
    assert_eq!(MediaChoice::from_settings(&odd).microphone, Source::Device);
    // The server field takes a bare host too.
    let bare = Settings {
        server: "127.0.0.1".into(),
        ..Settings::default()
    };
    assert_eq!(bare.server_addr().map(|a| a.port()), Ok(7070));
}

#[test]
fn member_deltas_give_the_list_userlist_would() {
    use proto::control::MemberGone;
    let now = Instant::now();
    let mut r = RoomModel::new("dispatch", "ptt", 1, "ann");
    r.apply(
        &ServerMessage::Userlist {
            room: "dispatch".into(),
            users: vec![user(1, "ann", false), user(2, "bob", false)],
        },
        now,
    );
    r.apply(
        &ServerMessage::MembersChanged {
            room: "dispatch".into(),
            joined: vec![user(3, "cy", false)],
            changed: vec![user(2, "bob", true)],
            left: vec![],
        },
        now,
    );
    assert_eq!(r.others(), ["bob", "cy"]);
    assert_eq!(r.status(now).text, "bob is speaking");
    r.apply(
        &ServerMessage::MembersChanged {
            room: "dispatch".into(),
            joined: vec![],
            changed: vec![],
            left: vec![
                MemberGone {
                    session_id: 2,
                    nickname: "bob".into(),
                },
                MemberGone {
                    session_id: 99,
                    nickname: "nobody".into(),
                },
            ],
        },
        now,
    );
    assert_eq!(r.others(), ["cy"]);
    assert_eq!(r.floor, Floor::Free, "the holder left");
}

fn joined(room: &str, kind: &str) -> ServerMessage {
    ServerMessage::Joined {
        room: room.into(),
        kind: kind.into(),
        udp_port: 1,
        settings: Default::default(),
        media_nonce: None,
        secure: false,
        srtp: None,
    }
}
