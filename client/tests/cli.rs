//! The CLI as a real process, against a router in this process.

use std::process::Stdio;
use std::time::Duration;

use client::Session;
use proto::control::{ReleaseReason, ServerMessage};
mod common;
use common::{EXE, router, spawn_cli};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn next_matching(
    s: &mut Session,
    within: Duration,
    mut f: impl FnMut(&ServerMessage) -> bool,
) -> ServerMessage {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.next_event()).await {
            Ok(Some(m)) if f(&m) => return m,
            Ok(Some(_)) => {}
            other => panic!("nothing matching within {within:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn killed_talker_frees_the_floor() {
    let router = router().await;
    let addr = router.control_addr();
    let mut observer = match Session::connect(addr, "observer").await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = observer.join("lobby").await {
        panic!("{e}");
    }
    let server = addr.to_string();
    let mut child = spawn_cli(
        [
            "--server",
            &server,
            "--nick",
            "doomed",
            "talk",
            "lobby",
            "--synthetic",
            "--seconds",
            "60",
        ],
        Stdio::null(),
    );
    next_matching(
        &mut observer,
        Duration::from_secs(10),
        |m| matches!(m, ServerMessage::MicGranted { holder, .. } if holder == "doomed"),
    )
    .await;
    // Let it talk a little, then SIGKILL it mid-burst.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = tokio::time::Instant::now();
    let _ = child.start_kill();
    let _ = child.wait().await;
    let m = next_matching(
        &mut observer,
        Duration::from_secs(15),
        |m| matches!(m, ServerMessage::MicReleased { holder, .. } if holder == "doomed"),
    )
    .await;
    assert!(
        matches!(
            m,
            ServerMessage::MicReleased {
                reason: ReleaseReason::Disconnected,
                ..
            }
        ),
        "{m:?}"
    );
    // The kernel closes a killed process's sockets: no need to wait for the
    // silence timeout.
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed_at.elapsed()
    );
    router.shutdown().await;
}

#[tokio::test]
async fn talk_and_count_through_the_cli() {
    let router = router().await;
    let addr = router.control_addr().to_string();
    let mut counter = spawn_cli(
        [
            "--server",
            &addr,
            "--nick",
            "ears",
            "count",
            "lobby",
            "--seconds",
            "3",
        ],
        Stdio::null(),
    );
    let Some(stdout) = counter.stdout.take() else {
        panic!()
    };
    let mut lines = BufReader::new(stdout).lines();
    // Wait until the counter is in the room (its first USERLIST).
    while let Ok(Some(l)) = lines.next_line().await {
        if l.contains("USERLIST") {
            break;
        }
    }
    let talk = Command::new(EXE)
        .args([
            "--server",
            &addr,
            "--nick",
            "mouth",
            "talk",
            "lobby",
            "--synthetic",
            "--seconds",
            "1",
            "--rate",
            "50",
        ])
        .output()
        .await;
    let Ok(talk) = talk else {
        panic!("talk failed to run")
    };
    assert!(
        talk.status.success(),
        "{}",
        String::from_utf8_lossy(&talk.stderr)
    );
    let talk_out = String::from_utf8_lossy(&talk.stdout);
    let sent: u64 = talk_out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "SUMMARY")
        .and_then(|v| v["sent"].as_u64())
        .unwrap_or(0);
    assert!((45..=55).contains(&sent), "sent {sent}");
    let mut summary = None;
    while let Ok(Some(l)) = lines.next_line().await {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
            && v["type"] == "SUMMARY"
        {
            summary = Some(v);
        }
    }
    let Some(summary) = summary else {
        panic!("no summary from count")
    };
    assert_eq!(summary["packets"].as_u64(), Some(sent), "{summary}");
    router.shutdown().await;
}

/// The CLI speaks TLS to a router that offers it, remembers its
/// certificate on first use, says so, and refuses a fingerprint that is not
/// the router's with words a person can act on.
#[tokio::test]
async fn the_cli_pins_a_tls_router_on_first_use_and_refuses_another_certificate() {
    let router = router().await;
    let Some(fp) = router.tls_fingerprint() else {
        panic!("no TLS")
    };
    let known = common::scratch("pin-known_hosts");
    let _ = std::fs::remove_file(&known);
    let server = format!("tls://{}", router.control_addr());
    let run = |extra: Vec<String>| {
        let known = known.clone();
        let server = server.clone();
        async move {
            let mut args = vec!["--server".to_owned(), server, "--known-hosts".to_owned()];
            args.push(known.display().to_string());
            args.extend(extra);
            args.push("rooms".into());
            match Command::new(EXE).args(&args).output().await {
                Ok(o) => o,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let first = run(vec![]).await;
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(first.status.success(), "{err}");
    assert!(err.contains(&fp) && err.contains("first use"), "{err}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("lobby"));
    let again = run(vec![]).await;
    let err = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success() && err.contains("pinned in"), "{err}");
    let wrong = run(vec!["--tls-fingerprint".into(), "00".repeat(32)]).await;
    let err = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert!(!wrong.status.success(), "{err}");
    assert!(err.contains("not the fingerprint given"), "{err}");
    router.shutdown().await;
}
