//! The real desktop client under Xvfb against a real router: screenshots
//! of each screen (written to target/screenshots; set
//! SWITCHBOARD_SCREENSHOT_DIR=docs/screenshots to refresh the README's), the space bar seen at the
//! router through gRPC WatchRoom, a meeting with video tiles and the
//! host's lobby, the statistics window, and a router restart survived.
//!
//! Each test starts its own X server (`Xvfb -displayfd`), so the tests need
//! Xvfb, xdotool and ImageMagick's `import` (scripts/test installs them).
//! The client's log says what it shows (`ui: status …`, `ui: page …`);
//! the router says what it did.

use std::time::{Duration, Instant};

use client::Session;
use client::av::{Av, AvOptions, LaneConfig};
use pipelines::{Catalog, Sink, Source};
use proto::control::{ClientMessage, ServerMessage};
use proto_grpc::admin::{ListRoomsRequest, WatchRoomRequest, room_event::Event as Ev};
use switchboard_tests::{admin, start_router};

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_screen_then_connecting_from_the_keyboard() {
    let _one = SERIAL.lock().await;
    let router = start_router(|_| {}).await;
    let display = Display::start();
    let server = router.control_addr().to_string();
    let gui = Gui::start(
        &display,
        &[
            "--server",
            &server,
            "--nickname",
            "alice",
            "--microphone",
            "tone:523:0.5",
            "--speaker",
            "discard",
        ],
    );
    gui.wait_log(&["ui: status", "Disconnected"], WAIT).await;
    let win = display.window("^Switchboard$");
    // Test my microphone: its level on the meter (a 523 Hz test tone).
    display.a11y(&["click", "Test my microphone", "list item"]);
    gui.wait_log(&["microphone test started"], WAIT).await;
    gui.wait_log(&["ui: microphone level"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    display.screenshot(None, "connect.png");
    // Enter in the nickname field connects.
    display.focus(&win);
    display.a11y(&["click", "Nickname", "text"]);
    display.tool("xdotool", &["key", "Return"]);
    gui.wait_log(&["ui: page", "rooms"], WAIT).await;
    gui.wait_log(&["link=Connected as alice"], WAIT).await;
    // Leaving the page ended the microphone test.
    gui.wait_log(&["microphone test stopped"], WAIT).await;
    // The server and nickname are remembered for next time.
    let saved = std::fs::read_to_string(gui.config.join("switchboard/client.toml"))
        .unwrap_or_else(|e| panic!("settings: {e}"));
    assert!(saved.contains("nickname = \"alice\""), "{saved}");
    assert!(saved.contains(&server), "{saved}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "rooms.png");

    // A new room from the form: a name, a kind from the menu, an option,
    // Create Room. The router has it, with its kind and option, and the
    // client is in it.
    display.a11y(&["text", "Room name", "ops"]);
    display.a11y(&["choose", "Kind", "Chat with voice"]);
    display.a11y(&[
        "text",
        "Options (key=value …)",
        "history=5 burst_limit_secs=20",
    ]);
    display.a11y(&["click", "Create Room"]);
    gui.wait_log(&["ui: joined", "\"ops\"", "kind=\"chat\""], WAIT)
        .await;
    let rooms = admin(&router)
        .await
        .list_rooms(ListRoomsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .rooms;
    let ops = rooms.iter().find(|r| r.name == "ops");
    assert!(
        ops.is_some_and(|r| r.kind == "chat" && r.participants == 1),
        "{rooms:?}"
    );
    gui.assert_no_stalls();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_talk_with_the_space_bar_seen_at_the_router() {
    let _one = SERIAL.lock().await;
    let router = start_router(|c| {
        let mut room = switchboard_tests::ptt_room("dispatch", 0);
        room.options
            .insert("burst_limit_secs".into(), serde_json::json!(30));
        c.rooms = vec![room];
    })
    .await;
    let addr = router.control_addr();
    let mut a = admin(&router).await;
    let mut watch = a
        .watch_room(WatchRoomRequest {
            room: "dispatch".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    // bob holds the floor.
    let mut bob = Session::connect(addr, "bob")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bob.join("dispatch").await.unwrap_or_else(|e| panic!("{e}"));
    bob.request_floor(0).await.unwrap_or_else(|e| panic!("{e}"));

    let display = Display::start();
    let server = addr.to_string();
    let gui = Gui::connected(&display, &server, "gui", &["--join", "dispatch"]);
    gui.wait_log(&["ui: status", "bob is speaking"], WAIT).await;
    let win = display.window("^Switchboard$");
    tokio::time::sleep(Duration::from_millis(800)).await;
    display.screenshot(None, "ptt-red.png");

    // bob lets go; the space bar goes down in the window.
    bob.release_floor().await.unwrap_or_else(|e| panic!("{e}"));
    gui.wait_log(&["ui: status", "Hold Space to talk"], WAIT)
        .await;
    display.focus(&win);
    display.tool("xdotool", &["keydown", "space"]);
    floor_granted(&mut watch, "gui").await;
    gui.wait_log(&["ui: status", "You can speak"], WAIT).await;
    // The microphone is open: bob hears the GUI's tone.
    let heard = wait_for_audio(&mut bob).await;
    assert!(heard > 10, "bob got {heard} packets from the GUI");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    display.screenshot(None, "ptt-green.png");
    // Space up: released at the router.
    display.tool("xdotool", &["keyup", "space"]);
    floor_released(&mut watch, "gui").await;
    gui.wait_log(&["ui: status", "Hold Space to talk"], WAIT)
        .await;
    gui.assert_no_stalls();
}

/// Media packets bob receives within 3 s.
async fn wait_for_audio(bob: &mut Session) -> usize {
    let media = bob.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(p)) = media.recv(Duration::from_millis(200)).await
            && proto::media::classify(&p) == proto::media::PacketKind::Rtp
        {
            n += 1;
        }
    }
    n
}

fn def(name: &str) -> pipelines::Definition {
    match Catalog::builtin() {
        Ok(c) => c.require(name).unwrap_or_else(|e| panic!("{e}")).clone(),
        Err(e) => panic!("{e}"),
    }
}

/// A headless guest asking to join; returns its session once let in.
async fn guest(addr: std::net::SocketAddr, nick: &str, code: &str) -> Session {
    let s = Session::connect(addr, nick)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.send(ClientMessage::RequestJoin { code: code.into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_host_approves_guests_and_sees_their_video() {
    let _one = SERIAL.lock().await;
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let display = Display::start();
    let server = addr.to_string();
    let files = std::env::temp_dir().join(format!("sb-gui-files-{}", rand_suffix()));
    let downloads = files.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap_or_else(|e| panic!("{e}"));
    let downloads_arg = downloads.to_string_lossy().into_owned();
    let gui = Gui::connected(
        &display,
        &server,
        "host",
        &["--create-meeting", "--downloads", &downloads_arg],
    );
    let line = gui.wait_log(&["ui: meeting created"], WAIT).await;
    let code: String = line
        .rsplit("code=")
        .next()
        .map(|c| {
            c.trim_start_matches('"')
                .chars()
                .take_while(char::is_ascii_digit)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(code.len(), 6, "{line}");
    let room = format!("meeting-{code}");
    gui.wait_log(&["ui: preview"], WAIT).await;

    // Three guests wait in the lobby: the host sees them.
    let mut ann = guest(addr, "ann", &code).await;
    let mut bob = guest(addr, "bob", &code).await;
    let mut cat = guest(addr, "cat", &code).await;
    gui.wait_log(&["ui: lobby", "ann", "bob", "cat"], WAIT)
        .await;
    let win = display.window("^Switchboard$");
    tokio::time::sleep(Duration::from_millis(800)).await;
    display.screenshot(None, "meeting-lobby.png");

    // The host's buttons, found by their accessible names: ann and bob
    // are let in, cat is turned away.
    let mut watch = admin(&router)
        .await
        .watch_room(WatchRoomRequest { room: room.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    display.a11y(&["click", "Turn cat away"]);
    let (reason, _) = switchboard_tests::wait_for(&mut cat, WAIT, "JOIN_REJECTED", |m| match m {
        ServerMessage::JoinRejected {
            reason, message, ..
        } => Some((*reason, message.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reason, proto::control::RejectReason::Denied);
    for nick in ["ann", "bob"] {
        display.a11y(&["click", &format!("Let {nick} in")]);
        next_event(&mut watch, &format!("{nick} joining"), |ev| {
            match &ev.event {
                Some(Ev::Joined(j)) if j.nickname == nick => Some(()),
                _ => None,
            }
        })
        .await;
    }
    let mut guests = Vec::new();
    for (s, pattern) in [(&mut ann, "smpte"), (&mut bob, "ball")] {
        switchboard_tests::wait_for(s, WAIT, "JOINED", |m| {
            matches!(m, ServerMessage::Joined { .. }).then_some(())
        })
        .await;
        let media = s.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
        let mut video = LaneConfig::new(
            def("jpeg"),
            Some(Source::Pattern(pattern.into())),
            Sink::Discard,
        );
        video.params.insert("framerate".into(), "10".into());
        let audio = LaneConfig::new(def("opus"), Some(Source::Silence), Sink::Discard);
        let av = Av::start(&media, vec![audio, video], AvOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        av.transmit(pipelines::Media::Video, true);
        av.transmit(pipelines::Media::Audio, true);
        s.send(ClientMessage::MediaState {
            audio: true,
            video: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        guests.push(av);
    }
    gui.wait_log(&["ui: video tile", "tiles=2"], WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    display.screenshot(None, "meeting-video.png");
    // The host's camera reaches the guests.
    let got_video = guests[0]
        .stats()
        .received
        .iter()
        .any(|r| r.kind == "video" && r.packets_received > 10);
    assert!(got_video, "ann receives the host's video");

    // A file from the host (Ctrl+O, a path typed into the chooser) reaches
    // both guests intact; the window's progress reaches 100%.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sent = files.join("plan.bin");
    std::fs::write(&sent, &data).unwrap_or_else(|e| panic!("{e}"));
    let receivers: Vec<_> = [ann, bob]
        .into_iter()
        .map(|mut s| {
            let dir = files.join(format!("rx-{}", rand_suffix()));
            tokio::spawn(async move {
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
                let got = client::file::receive_file(&mut s, &dir, |_, _| {}, |_| {}).await;
                (got.map(|r| r.path), s)
            })
        })
        .collect();
    display.focus(&win);
    display.tool("xdotool", &["key", "ctrl+o"]);
    let chooser = display.window("^Send a file$");
    tokio::time::sleep(Duration::from_millis(800)).await;
    display.focus(&chooser);
    display.tool(
        "xdotool",
        &["type", "--delay", "20", &sent.to_string_lossy()],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    display.tool("xdotool", &["key", "Return"]);
    gui.wait_log(
        &["ui: file done", "plan.bin", "done"],
        Duration::from_secs(60),
    )
    .await;
    let mut sessions = Vec::new();
    for r in receivers {
        let (path, s) = r.await.unwrap_or_else(|e| panic!("{e}"));
        let path = path.unwrap_or_else(|e| panic!("receive: {e}"));
        assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&data[..]));
        sessions.push(s);
    }
    // And one to the host, saved in its downloads folder.
    let mut ann = sessions.remove(0);
    let back = files.join("minutes.txt");
    std::fs::write(&back, b"minutes of the meeting\n").unwrap_or_else(|e| panic!("{e}"));
    client::file::send_file(&mut ann, &back, Some("host"), 1024, |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("send to host: {e}"));
    gui.wait_log(&["ui: file done", "minutes.txt from ann: done"], WAIT)
        .await;
    assert_eq!(
        std::fs::read(downloads.join("minutes.txt")).ok().as_deref(),
        Some(&b"minutes of the meeting\n"[..])
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "meeting-files.png");

    // Ctrl+I opens the statistics window; after a while its plots have data.
    display.focus(&win);
    display.tool("xdotool", &["key", "ctrl+i"]);
    let stats = display.window("^Statistics");
    tokio::time::sleep(Duration::from_secs(8)).await;
    display.screenshot(Some(&stats), "stats.png");
    for av in guests {
        tokio::task::block_in_place(|| av.stop(Duration::from_millis(100)));
    }
    gui.assert_no_stalls();
}

/// Free addresses picked now, for routers started one after another at
/// the same place: the control address, and a config tweak that uses them.
fn fixed_ports() -> (
    std::net::SocketAddr,
    impl Fn(&mut router::config::Config) + Copy,
) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (control, admin_addr) = (free(), free());
    let media = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = move |c: &mut router::config::Config| {
        c.control = control;
        c.admin = admin_addr;
        c.media = media;
    };
    (control, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_after_a_router_restart_and_rejoins() {
    let _one = SERIAL.lock().await;
    // Fixed ports, so the second router is where the first was.
    let (control, config) = fixed_ports();
    let router = start_router(config).await;
    let display = Display::start();
    let server = control.to_string();
    let gui = Gui::connected(&display, &server, "gui", &["--join", "lobby"]);
    gui.wait_log(&["ui: joined", "\"lobby\""], WAIT).await;
    let joined_before = gui.log.lock().map(|l| l.len()).unwrap_or(0);

    router.shutdown().await;
    gui.wait_log(&["ui: status", "reconnecting"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    display.screenshot(None, "reconnecting.png");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let router = start_router(config).await;
    // Back in the room: the client says so, and so does the router.
    let deadline = Instant::now() + WAIT;
    loop {
        let rejoined = gui
            .log
            .lock()
            .map(|l| {
                l[joined_before..]
                    .iter()
                    .any(|x| x.contains("ui: joined") && x.contains("\"lobby\""))
            })
            .unwrap_or(false);
        if rejoined {
            break;
        }
        assert!(Instant::now() < deadline, "the client did not rejoin");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut a = admin(&router).await;
    let people = a
        .list_participants(proto_grpc::admin::ListParticipantsRequest {
            room: "lobby".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let names: Vec<_> = people
        .participants
        .iter()
        .map(|p| p.nickname.as_str())
        .collect();
    assert_eq!(names, ["gui"]);
    gui.wait_log(&["ui: status", "Hold Space to talk"], WAIT)
        .await;
    gui.assert_no_stalls();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_lock_shows_the_pinned_fingerprint_and_a_changed_certificate_is_refused() {
    let _one = SERIAL.lock().await;
    // Fixed ports: the second router, with a certificate of its own, is
    // where the first was. Its lobby is secure: SRTP media, keys over TLS.
    let (control, config) = fixed_ports();
    let router = start_router(move |c| {
        config(c);
        c.rooms = vec![switchboard_tests::secure_room("lobby")];
    })
    .await;
    let fp = router.tls_fingerprint().unwrap_or_else(|| panic!("no TLS"));
    let display = Display::start();
    let server = format!("tls://{control}");
    let gui = Gui::connected(&display, &server, "alice", &["--join", "lobby"]);
    gui.wait_log(
        &["ui: security", "channel-secure-symbolic", &fp, "first use"],
        WAIT,
    )
    .await;
    gui.wait_log(&["ui: joined", "\"lobby\""], WAIT).await;
    let known = std::fs::read_to_string(gui.config.join("switchboard/known_hosts"))
        .unwrap_or_else(|e| panic!("known_hosts: {e}"));
    assert!(known.contains(&fp), "{known}");
    // The lock opens on what it means.
    display.a11y(&["click", "Connection security"]);
    display.a11y(&["wait", "Encrypted (TLS)"]);
    // The desktop client asked for `srtp` (a secure room refuses others)
    // and its media runs SRTP; the lock says so.
    gui.wait_log(&["media: audio pipeline"], WAIT).await;
    display.a11y(&[
        "wait",
        "Voice and video in this room are encrypted (SRTP), with keys only the router and its members hold.",
    ]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "tls-pinned.png");
    display.tool("xdotool", &["key", "Escape"]);

    // Another certificate where the pinned router was: refused, and said.
    router.shutdown().await;
    let other = start_router(move |c| {
        config(c);
        c.state_dir = Some(switchboard_tests::scratch("gui-other-cert"));
    })
    .await;
    assert_ne!(other.tls_fingerprint().as_deref(), Some(fp.as_str()));
    gui.wait_log(&["refusing the router's certificate", "has changed"], WAIT)
        .await;
    gui.wait_log(&["ui: page", "connect"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "tls-changed.png");
    // Nobody joined the impostor.
    let rooms = admin(&other)
        .await
        .list_rooms(ListRoomsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .rooms;
    assert!(rooms.iter().all(|r| r.participants == 0), "{rooms:?}");
    gui.assert_no_stalls();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_waits_for_the_host_then_chats() {
    let _one = SERIAL.lock().await;
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let mut host = Session::connect(addr, "host")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, code) = host
        .create_meeting(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    host.chat("welcome, everyone", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let display = Display::start();
    let server = addr.to_string();
    let gui = Gui::connected(&display, &server, "guest", &["--meeting-code", &code]);
    // The guest waits; the host sees it in the lobby and lets it in.
    gui.wait_log(&["ui: page", "waiting"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    display.screenshot(None, "meeting-waiting.png");
    let id = switchboard_tests::wait_for(&mut host, WAIT, "LOBBY", |m| match m {
        ServerMessage::Lobby { waiting, .. } => waiting.first().map(|w| w.session_id),
        _ => None,
    })
    .await;
    host.send(ClientMessage::AllowJoin { session_id: id })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    gui.wait_log(&["ui: page", "room"], WAIT).await;
    // History, then a private line from the host.
    gui.wait_log(&["ui: chat shown", "host: welcome, everyone"], WAIT)
        .await;
    host.chat("just for you", Some("guest"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    gui.wait_log(&["ui: chat shown", "(private) host: just for you"], WAIT)
        .await;
    // The guest writes back from the keyboard: Alt+W, text, Enter.
    let win = display.window("^Switchboard$");
    display.focus(&win);
    display.tool("xdotool", &["key", "alt+w"]);
    display.tool(
        "xdotool",
        &["type", "--delay", "20", "hello from the desktop"],
    );
    display.tool("xdotool", &["key", "Return"]);
    let said = switchboard_tests::wait_for(&mut host, WAIT, "the guest's CHAT", |m| match m {
        ServerMessage::Chat { from, text, .. } if from == "guest" => Some(text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(said, "hello from the desktop");
    gui.wait_log(&["ui: chat shown", "guest: hello from the desktop"], WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "meeting-chat.png");

    // Leaving a meeting asks first: Stay keeps the guest in, Leave leaves.
    display.a11y(&["click", "Leave", "push button"]);
    display.a11y(&["wait", "Leave the Meeting?"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    display.screenshot(None, "meeting-leave.png");
    display.a11y(&["click", "Stay", "push button"]);
    display.a11y(&["gone", "Leave the Meeting?"]);
    display.a11y(&["click", "Leave", "push button"]);
    display.a11y(&["wait", "Leave the Meeting?"]);
    display.a11y(&["click", "Leave", "push button"]);
    switchboard_tests::wait_for(&mut host, WAIT, "the guest leaving", |m| match m {
        ServerMessage::MembersChanged { left, .. }
            if left.iter().any(|g| g.nickname == "guest") =>
        {
            Some(())
        }
        ServerMessage::Userlist { users, .. } if !users.iter().any(|u| u.nickname == "guest") => {
            Some(())
        }
        _ => None,
    })
    .await;
    gui.wait_log(&["ui: left"], WAIT).await;
    gui.assert_no_stalls();
}

/// The talk key is changed in Preferences (Change…, then the new key), and
/// talking works with it: the router grants the floor, the talk permit
/// tone (880 Hz) and then the end tone (440 Hz) reach the speaker, a WAV
/// file here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talk_key_chosen_in_preferences_talks_and_the_tones_reach_the_speaker() {
    let _one = SERIAL.lock().await;
    let router = start_router(|c| {
        c.rooms = vec![switchboard_tests::ptt_room("dispatch", 0)];
    })
    .await;
    let mut watch = watch(&router, "dispatch").await;
    let dir = std::env::temp_dir().join(format!("sb-gui-tones-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let heard = dir.join("heard.wav");
    let speaker = format!("wav:{}", heard.display());
    let display = Display::start();
    let server = router.control_addr().to_string();
    let gui = Gui::connected(
        &display,
        &server,
        "gui",
        &["--join", "dispatch", "--speaker", &speaker, "--tones"],
    );
    gui.wait_log(&["ui: status", "Hold Space to talk"], WAIT)
        .await;
    let win = display.window("^Switchboard$");
    display.focus(&win);
    display.tool("xdotool", &["key", "ctrl+comma"]);
    let prefs = display.window("^Preferences$");
    display.a11y(&["click", "Push to Talk"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    display.a11y(&["click", "Change…", "push button"]);
    gui.wait_log(&["ui: waiting for the new talk key"], WAIT)
        .await;
    display.focus(&prefs);
    display.tool("xdotool", &["key", "F8"]);
    gui.wait_log(&["ui: talk key", "F8"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "preferences-talk-key.png");
    let saved = std::fs::read_to_string(gui.config.join("switchboard/client.toml"))
        .unwrap_or_else(|e| panic!("settings: {e}"));
    assert!(saved.contains("talk_key = \"F8\""), "{saved}");
    display.tool("xdotool", &["key", "Escape"]);
    gui.wait_log(&["ui: status", "Hold F8 to talk"], WAIT).await;

    display.focus(&win);
    display.tool("xdotool", &["keydown", "F8"]);
    floor_granted(&mut watch, "gui").await;
    gui.wait_log(&["ui: status", "You can speak"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    display.tool("xdotool", &["keyup", "F8"]);
    floor_released(&mut watch, "gui").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Leaving stops media, which finishes the WAV file.
    display.a11y(&["click", "Leave"]);
    gui.wait_log(&["ui: left"], WAIT).await;
    let permit = tone_windows(&heard, 880.0).await;
    let end = tone_windows(&heard, 440.0).await;
    let (p, e) = (first_above(&permit, -30.0), first_above(&end, -30.0));
    eprintln!(
        "tones: permit from window {p:?} (max {:.1} dBFS), end from window {e:?} (max {:.1} dBFS), {} windows",
        permit.iter().copied().fold(f64::MIN, f64::max),
        end.iter().copied().fold(f64::MIN, f64::max),
        permit.len()
    );
    match (p, e) {
        (Some(p), Some(e)) => assert!(p < e, "the permit tone comes before the end tone"),
        _ => panic!("the speaker never got both tones"),
    }
    gui.assert_no_stalls();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A headless member of `room` sending a tone of `hz` (Opus), and, when
/// `heard` is given, recording what it hears with `codec` into that WAV.
async fn tone_member(
    addr: std::net::SocketAddr,
    nick: &str,
    room: &str,
    hz: f64,
    listen: Option<(&str, &std::path::Path)>,
) -> (Session, Av) {
    let mut s = Session::connect(addr, nick)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.join(room).await.unwrap_or_else(|e| panic!("{e}"));
    let media = s.bind_media().await.unwrap_or_else(|e| panic!("{e}"));
    let lane = match listen {
        Some((codec, wav)) => LaneConfig::new(def(codec), None, Sink::Wav(wav.to_owned())),
        None => LaneConfig::new(
            def("opus"),
            Some(Source::Tone {
                freq: hz,
                volume: 0.3,
            }),
            Sink::Discard,
        ),
    };
    let av = Av::start(&media, vec![lane], AvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    av.transmit(pipelines::Media::Audio, true);
    (s, av)
}

fn max(levels: &[f64]) -> f64 {
    levels.iter().copied().fold(f64::MIN, f64::max)
}

fn median(levels: &[f64]) -> f64 {
    let mut v = levels.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::MIN)
}

/// Muting one person here (their row's volume menu, Mute for me) stops
/// their tone reaching the speaker while the other's goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_one_person_here_silences_only_them() {
    let _one = SERIAL.lock().await;
    let router = start_router(|c| c.rooms = vec![open_voice_room()]).await;
    let addr = router.control_addr();
    let (_ann, ann_av) = tone_member(addr, "ann", "open", 660.0, None).await;
    let (_bob, bob_av) = tone_member(addr, "bob", "open", 1000.0, None).await;
    let dir = std::env::temp_dir().join(format!("sb-gui-mute-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let heard = dir.join("heard.wav");
    let speaker = format!("wav:{}", heard.display());
    let display = Display::start();
    let server = addr.to_string();
    let gui = Gui::connected(
        &display,
        &server,
        "gui",
        &["--join", "open", "--speaker", &speaker],
    );
    gui.wait_log(&["ui: joined", "\"open\""], WAIT).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    display.a11y(&["click", "Volume for ann"]);
    // The menu opens with its volume slider focused; the check box is
    // next (GTK 4.8's check boxes do not take AT-SPI's action).
    display.a11y(&["wait", "Mute for me", "check box"]);
    display.tool("xdotool", &["key", "--delay", "80", "Tab", "space"]);
    gui.wait_log(&["ui: member silenced", "ann", "silenced=true"], WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    display.screenshot(None, "member-volume.png");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    display.tool("xdotool", &["key", "Escape"]);
    display.a11y(&["click", "Leave"]);
    gui.wait_log(&["ui: left"], WAIT).await;
    let ann_lv = tone_windows(&heard, 660.0).await;
    let bob_lv = tone_windows(&heard, 1000.0).await;
    // The last second: after the mute.
    let tail = ann_lv.len().saturating_sub(25);
    let (ann_before, ann_after) = ann_lv.split_at(tail);
    let bob_after = &bob_lv[tail..];
    eprintln!(
        "ann (660 Hz) before the mute max {:.1} dBFS, after median {:.1} max {:.1}; bob (1000 Hz) after {:.1}",
        max(ann_before),
        median(ann_after),
        max(ann_after),
        max(bob_after)
    );
    assert!(max(ann_before) > -30.0, "ann was heard before");
    // Silent, but for the codec's noise from bob's tone (some 35 dB down).
    assert!(
        median(ann_after) < -50.0 && max(ann_after) < -35.0,
        "ann is silent here after the mute"
    );
    let bob_heard = bob_after.iter().filter(|l| **l > -30.0).count();
    assert!(
        bob_heard > 15,
        "bob is still heard: {bob_heard} of {} windows",
        bob_after.len()
    );
    for av in [ann_av, bob_av] {
        tokio::task::block_in_place(|| av.stop(Duration::from_millis(100)));
    }
    gui.assert_no_stalls();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A microphone and a codec chosen in Preferences are what the next room
/// gets: a listener decoding L16 hears the 660 Hz test tone (an Opus
/// sender's packets would be dropped as an unknown payload type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microphone_and_codec_chosen_in_preferences_are_what_a_listener_hears() {
    let _one = SERIAL.lock().await;
    let router = start_router(|c| c.rooms = vec![open_voice_room()]).await;
    let addr = router.control_addr();
    let dir = std::env::temp_dir().join(format!("sb-gui-codec-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let heard = dir.join("listener.wav");
    let (_listener, listener_av) =
        tone_member(addr, "listener", "open", 0.0, Some(("l16", &heard))).await;
    let display = Display::start();
    let server = addr.to_string();
    let gui = Gui::connected(&display, &server, "gui", &[]);
    gui.wait_log(&["ui: page", "rooms"], WAIT).await;
    let win = display.window("^Switchboard$");
    display.focus(&win);
    display.tool("xdotool", &["key", "ctrl+comma"]);
    display.window("^Preferences$");
    display.a11y(&["click", "Audio and Video"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    display.a11y(&["choose", "Microphone", "Test tone (660 Hz)"]);
    gui.wait_log(&["ui: chosen", "tone:660"], WAIT).await;
    let l16 = def("l16");
    let label = format!("{} — {}", l16.name, l16.description);
    display.a11y(&["choose", "Audio codec", &label]);
    gui.wait_log(&["ui: chosen", "value=l16"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    display.screenshot(None, "preferences-devices.png");
    display.tool("xdotool", &["key", "Escape"]);
    display.a11y(&["click", "open", "list item"]);
    gui.wait_log(&["media: audio pipeline", "codec=l16", "freq: 660.0"], WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = listener_av.stats();
    tokio::task::block_in_place(|| listener_av.stop(Duration::from_millis(200)));
    let report = switchboard_tests::audio::analyze_wav(
        &heard,
        switchboard_tests::audio::sine_dbfs(0.3),
        10.0,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "the listener heard {report:?}; unknown payload types {}",
        stats.unknown_payload_type
    );
    assert!(
        (report.dominant_hz - 660.0).abs() < 5.0 && report.voiced_s > 1.0,
        "the listener heard {report:?}"
    );
    assert_eq!(stats.unknown_payload_type, 0);
    gui.assert_no_stalls();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Push-to-talk from anywhere: with a desktop portal that has global
/// shortcuts (a fake one here), the talk key is registered with it, the
/// preferences say it works from any window, and the portal's presses take
/// and give back the floor without a key event reaching the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktops_global_shortcut_talks_from_any_window() {
    let _one = SERIAL.lock().await;
    let router = start_router(|c| {
        c.rooms = vec![switchboard_tests::ptt_room("dispatch", 0)];
    })
    .await;
    let mut watch = watch(&router, "dispatch").await;
    let display = Display::start();
    let portal = tokio::task::block_in_place(|| display.portal());
    let server = router.control_addr().to_string();
    let gui = Gui::connected(&display, &server, "gui", &["--join", "dispatch"]);
    gui.wait_log(&["global shortcut: bound", "space"], WAIT)
        .await;
    gui.wait_log(&["ui: status", "Hold Space to talk"], WAIT)
        .await;
    let win = display.window("^Switchboard$");
    display.focus(&win);
    display.tool("xdotool", &["key", "ctrl+comma"]);
    display.window("^Preferences$");
    display.a11y(&["click", "Push to Talk"]);
    display.a11y(&[
        "wait",
        "From any window, with space (the desktop's global shortcut)",
    ]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    display.screenshot(None, "preferences-global-shortcut.png");
    display.tool("xdotool", &["key", "Escape"]);

    let trigger = portal
        .call("Press", "talk")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(trigger.contains("space"), "{trigger}");
    floor_granted(&mut watch, "gui").await;
    gui.wait_log(&["global shortcut: talk", "pressed=true"], WAIT)
        .await;
    portal
        .call("Release", "talk")
        .unwrap_or_else(|e| panic!("{e}"));
    floor_released(&mut watch, "gui").await;
    gui.assert_no_stalls();
}

/// An open voice room named `open`.
fn open_voice_room() -> router::config::RoomConfig {
    router::config::RoomConfig {
        name: "open".into(),
        kind: "voice".into(),
        max_participants: 0,
        options: Default::default(),
    }
}

/// The events of `room`, from gRPC WatchRoom.
async fn watch(
    router: &router::Router,
    room: &str,
) -> tonic::Streaming<proto_grpc::admin::RoomEvent> {
    admin(router)
        .await
        .watch_room(WatchRoomRequest { room: room.into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
}

/// Waits until the router grants `nick` the floor.
async fn floor_granted(watch: &mut tonic::Streaming<proto_grpc::admin::RoomEvent>, nick: &str) {
    next_event(
        watch,
        &format!("the floor granted to {nick}"),
        |ev| match &ev.event {
            Some(Ev::FloorGranted(g)) if g.nickname == nick => Some(()),
            _ => None,
        },
    )
    .await;
}

/// Waits until the router sees `nick` release the floor.
async fn floor_released(watch: &mut tonic::Streaming<proto_grpc::admin::RoomEvent>, nick: &str) {
    next_event(
        watch,
        &format!("the floor released by {nick}"),
        |ev| match &ev.event {
            Some(Ev::FloorReleased(r)) if r.nickname == nick => Some(()),
            _ => None,
        },
    )
    .await;
}
