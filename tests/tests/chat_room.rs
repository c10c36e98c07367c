//! A `chat` room through a real router: history for a late joiner, private
//! messages, limits answered on the wire, the talking indicator.

use std::time::Duration;

use proto::control::{ChatEntry, ErrorCode, ServerMessage};
use switchboard_tests::{start_router, wait_for};

const QUIET: Duration = Duration::from_secs(3);

fn chat_text(m: &ServerMessage) -> Option<(u64, String, String, bool)> {
    match m {
        ServerMessage::Chat {
            id,
            from,
            text,
            private,
            ..
        } => Some((*id, from.clone(), text.clone(), *private)),
        _ => None,
    }
}

async fn error(s: &mut client::Session) -> (ErrorCode, String) {
    wait_for(s, QUIET, "ERROR", |m| match m {
        ServerMessage::Error { code, message } => Some((*code, message.clone())),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_history_private_stays_private_limits_are_errors() {
    let router = start_router(|c| {
        let mut options = plugin_api::Options::new();
        options.insert("history".into(), 3.into());
        options.insert("chat_burst".into(), 6.into());
        c.rooms.push(router::config::RoomConfig {
            name: "den".into(),
            kind: "chat".into(),
            max_participants: 0,
            options,
        });
    })
    .await;
    let addr = router.control_addr();
    let connect = |nick: &'static str| async move {
        let mut s = client::Session::connect(addr, nick)
            .await
            .unwrap_or_else(|e| panic!("{nick}: {e}"));
        s.join("den")
            .await
            .unwrap_or_else(|e| panic!("{nick}: {e}"));
        s
    };
    let mut ann = connect("ann").await;
    for i in 1..=5 {
        ann.chat(&format!("message {i}"), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for i in 1..=5 {
        let got = wait_for(&mut ann, QUIET, "own CHAT echo", chat_text).await;
        assert_eq!(got, (i, "ann".into(), format!("message {i}"), false));
    }

    // Bob joins late and gets the last three, in order, before anything new.
    let mut bob = connect("bob").await;
    let history = wait_for(&mut bob, QUIET, "CHAT_HISTORY", |m| match m {
        ServerMessage::ChatHistory { messages, .. } => Some(messages.clone()),
        _ => None,
    })
    .await;
    let seen: Vec<(u64, &str)> = history
        .iter()
        .map(|e: &ChatEntry| (e.id, e.text.as_str()))
        .collect();
    assert_eq!(seen, [(3, "message 3"), (4, "message 4"), (5, "message 5")]);
    assert!(history.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    assert!(
        history
            .iter()
            .all(|e| e.ts_ms <= now_ms && now_ms - e.ts_ms < 60_000),
        "server time stamps: {history:?}"
    );

    // A private message reaches its recipient and its sender, not cat.
    let mut cat = connect("cat").await;
    bob.chat("just for you", Some("ann"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for s in [&mut ann, &mut bob] {
        let got = wait_for(s, QUIET, "private CHAT", chat_text).await;
        assert_eq!(got, (6, "bob".into(), "just for you".into(), true));
    }
    // Only now does cat speak (two connections race otherwise).
    cat.chat("hello all", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for s in [&mut ann, &mut bob] {
        let got = wait_for(s, QUIET, "public CHAT", chat_text).await;
        assert_eq!(got.2, "hello all");
    }
    let got = wait_for(&mut cat, QUIET, "cat's own CHAT", chat_text).await;
    assert_eq!(
        got,
        (7, "cat".into(), "hello all".into(), false),
        "cat saw no private message before its own"
    );

    // Limits come back as documented errors, and the session stays.
    cat.chat(&"x".repeat(5000), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, message) = error(&mut cat).await;
    assert_eq!(code, ErrorCode::BadField, "{message}");
    cat.chat("hi", Some("nobody"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(error(&mut cat).await.0, ErrorCode::UnknownParticipant);
    // cat has used 1 of its burst of 6: five more pass, the sixth is refused.
    for i in 0..6 {
        cat.chat(&format!("flood {i}"), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (code, message) = error(&mut cat).await;
    assert_eq!(code, ErrorCode::RateLimited, "{message}");
    assert!(message.contains("retry in"), "{message}");

    // Exclusive voice: the floor holder shows as talking in USERLIST.
    match ann.request_floor(0).await {
        Ok(client::FloorAnswer::Granted { .. }) => {}
        other => panic!("floor: {other:?}"),
    }
    let talking = wait_for(&mut bob, QUIET, "USERLIST with ann talking", |m| match m {
        ServerMessage::Userlist { users, .. } if users.iter().any(|u| u.talking) => Some(
            users
                .iter()
                .filter(|u| u.talking)
                .map(|u| u.nickname.clone())
                .collect::<Vec<_>>(),
        ),
        _ => None,
    })
    .await;
    assert_eq!(talking, ["ann"]);
    match bob.request_floor(0).await {
        Ok(client::FloorAnswer::Denied { holder, .. }) => {
            assert_eq!(holder.as_deref(), Some("ann"))
        }
        other => panic!("bob got the floor while ann holds it: {other:?}"),
    }
}
