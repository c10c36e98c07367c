//! The desktop client's backend (no window) against a real router: while
//! it sends a 20 MB file, a chat line, a lobby decision and a microphone
//! toggle still take effect at once. Before files ran as tasks of their
//! own, each waited for the whole transfer.

use std::time::{Duration, Instant};

use client::Session;
use client_gtk::backend::{Backend, Command, Event, MediaChoice, Options};
use client_gtk::model::settings::Settings;
use pipelines::{Sink, Source};
use proto::control::{ClientMessage, ServerMessage};
use proto_grpc::admin::{WatchRoomRequest, room_event::Event as Ev};
use switchboard_tests::{admin, start_router, wait_for};
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(20);

/// The next backend event `pick` accepts.
async fn event<T>(
    events: &async_channel::Receiver<Event>,
    what: &str,
    pick: impl Fn(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ev)) => {
                if let Some(t) = pick(&ev) {
                    return t;
                }
            }
            Ok(Err(_)) => panic!("the backend stopped before {what}"),
            Err(_) => panic!("the backend never reported {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_a_lobby_decision_and_a_mute_take_effect_while_a_20_mb_file_is_in_flight() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    gst::init().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("sb-backend-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("got")).unwrap_or_else(|e| panic!("{e}"));
    let (backend, events) = Backend::start(Options {
        downloads: dir.join("downloads"),
        video_sink: "fakesink".into(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    backend.send(Command::Media(MediaChoice {
        microphone: Source::Tone {
            freq: 440.0,
            volume: 0.3,
        },
        speaker: Sink::Discard,
        camera: Source::Pattern("ball".into()),
        audio_codec: "opus".into(),
        video_codec: "jpeg".into(),
        tones: false,
    }));
    backend.send(Command::Connect(Settings {
        server: addr.to_string(),
        nickname: "host".into(),
        ..Settings::default()
    }));
    event(&events, "connected", |e| {
        matches!(
            e,
            Event::Link(client_gtk::model::session::Link::Connected { .. })
        )
        .then_some(())
    })
    .await;
    backend.send(Command::CreateMeeting {
        end_with_host: false,
    });
    let code = event(&events, "MEETING_CREATED", |e| match e {
        Event::Server(ServerMessage::MeetingCreated { code, .. }) => Some(code.clone()),
        _ => None,
    })
    .await;
    let room = format!("meeting-{code}");

    // bob is let in to receive the file; carol waits in the lobby.
    let mut bob = Session::connect(addr, "bob")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bob.send(ClientMessage::RequestJoin { code: code.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bob_id = event(&events, "bob in the lobby", |e| match e {
        Event::Server(ServerMessage::Lobby { waiting, .. }) => waiting
            .iter()
            .find(|w| w.nickname == "bob")
            .map(|w| w.session_id),
        _ => None,
    })
    .await;
    backend.send(Command::Allow(bob_id));
    wait_for(&mut bob, WAIT, "bob JOINED", |m| {
        matches!(m, ServerMessage::Joined { .. }).then_some(())
    })
    .await;
    let carol = Session::connect(addr, "carol")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    carol
        .send(ClientMessage::RequestJoin { code })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let carol_id = event(&events, "carol in the lobby", |e| match e {
        Event::Server(ServerMessage::Lobby { waiting, .. }) => waiting
            .iter()
            .find(|w| w.nickname == "carol")
            .map(|w| w.session_id),
        _ => None,
    })
    .await;
    let mut watch = admin(&router)
        .await
        .watch_room(WatchRoomRequest { room: room.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    // What bob sees, with the time: every message, and the file's end.
    let file = dir.join("big.bin");
    let bytes: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let got_dir = dir.join("got");
    let receiving = tokio::spawn(async move {
        let mut seen: Vec<(Instant, ServerMessage)> = Vec::new();
        let r = client::file::receive_file(
            &mut bob,
            &got_dir,
            |_, _| {},
            |m| seen.push((Instant::now(), m)),
        )
        .await;
        // bob stays: its FILE_RESULT must reach the sender.
        (r, Instant::now(), seen, bob)
    });
    backend.send(Command::SendFile {
        path: file.clone(),
        to: Some("bob".into()),
    });
    event(&events, "the transfer under way", |e| {
        matches!(e, Event::FileProgress { done, .. } if *done > 0).then_some(())
    })
    .await;

    // Now, with the file in flight: chat, let carol in, microphone off.
    let asked = Instant::now();
    backend.send(Command::Chat {
        text: "while the file goes".into(),
        to: None,
    });
    backend.send(Command::Allow(carol_id));
    backend.send(Command::Microphone(false));
    let mut chat_at = None;
    let mut carol_at = None;
    while chat_at.is_none() || carol_at.is_none() {
        let ev = tokio::time::timeout(WAIT, watch.next())
            .await
            .unwrap_or_else(|_| panic!("the router never showed the chat and carol joining"));
        match ev.and_then(Result::ok).and_then(|e| e.event) {
            Some(Ev::Chat(c)) if c.text == "while the file goes" => chat_at = Some(Instant::now()),
            Some(Ev::Joined(j)) if j.nickname == "carol" => carol_at = Some(Instant::now()),
            _ => {}
        }
    }
    let (received, file_done_at, seen, _bob) = receiving.await.unwrap_or_else(|e| panic!("{e}"));
    let received = received.unwrap_or_else(|e| panic!("receive: {e}"));
    assert_eq!(std::fs::read(&received.path).ok(), Some(bytes), "intact");
    let muted_at = seen
        .iter()
        .find(|(_, m)| {
            matches!(m, ServerMessage::MediaState { audio: false, session_id, .. } if *session_id != bob_id)
        })
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("bob never heard the host's microphone go off"));
    let (chat_at, carol_at) = (chat_at.unwrap_or(asked), carol_at.unwrap_or(asked));
    let ms = |t: Instant| t.duration_since(asked).as_secs_f64() * 1000.0;
    eprintln!(
        "with a 20 MiB file in flight: chat at the router after {:.1} ms, carol let in after {:.1} ms, \
         the microphone off (as bob heard it) after {:.1} ms; the file ended {:.1} ms after they were asked",
        ms(chat_at),
        ms(carol_at),
        ms(muted_at),
        ms(file_done_at),
    );
    for (what, at) in [
        ("chat", chat_at),
        ("lobby decision", carol_at),
        ("mute", muted_at),
    ] {
        assert!(
            at < file_done_at,
            "the {what} took effect only after the file ({:.1} ms vs {:.1} ms)",
            ms(at),
            ms(file_done_at)
        );
    }
    let done = event(&events, "the sender's verdict", |e| match e {
        Event::FileDone { result, .. } => Some(result.clone()),
        _ => None,
    })
    .await;
    assert!(done.is_ok(), "{done:?}");
    backend.send(Command::Disconnect);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP forwarder to the router whose connections can be cut, as a
/// network would.
struct Cuttable {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Cuttable {
    async fn start(to: std::net::SocketAddr) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (cut, watch) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                watch.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        Cuttable { addr, cut }
    }

    /// Drops every connection open now (both ends see it closed).
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// A dropped connection is resumed: the backend reconnects with its resume
/// token and the router continues the same session in the same room, with
/// no leave or join seen by the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_the_same_session_in_its_room() {
    let router = start_router(|c| {
        c.rooms = vec![switchboard_tests::ptt_room("dispatch", 0)];
    })
    .await;
    gst::init().unwrap_or_else(|e| panic!("{e}"));
    let link = Cuttable::start(router.control_addr()).await;
    let dir = std::env::temp_dir().join(format!("sb-backend-resume-{}", std::process::id()));
    let (backend, events) = Backend::start(Options {
        downloads: dir.clone(),
        video_sink: "fakesink".into(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    backend.send(Command::Media(MediaChoice {
        microphone: Source::Silence,
        speaker: Sink::Discard,
        camera: Source::Pattern("ball".into()),
        audio_codec: "opus".into(),
        video_codec: "jpeg".into(),
        tones: false,
    }));
    backend.send(Command::Connect(Settings {
        server: link.addr.to_string(),
        nickname: "gui".into(),
        ..Settings::default()
    }));
    use client_gtk::model::session::Link;
    let first = event(&events, "connected", |e| match e {
        Event::Link(Link::Connected { session_id, .. }) => Some(*session_id),
        _ => None,
    })
    .await;
    backend.send(Command::Join("dispatch".into()));
    event(&events, "JOINED", |e| {
        matches!(e, Event::Server(ServerMessage::Joined { .. })).then_some(())
    })
    .await;
    let mut watch = admin(&router)
        .await
        .watch_room(WatchRoomRequest {
            room: "dispatch".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    link.cut();
    let (again, resumed) = event(&events, "connected again", |e| match e {
        Event::Link(Link::Connected {
            session_id,
            resumed,
            ..
        }) => Some((*session_id, *resumed)),
        _ => None,
    })
    .await;
    assert!(resumed, "the router continued the session");
    assert_eq!(again, first, "the same session");
    // Back in the room without asking: the router sends JOINED again.
    event(&events, "JOINED after resuming", |e| {
        matches!(e, Event::Server(ServerMessage::Joined { room, .. }) if room == "dispatch")
            .then_some(())
    })
    .await;
    let people = admin(&router)
        .await
        .list_participants(proto_grpc::admin::ListParticipantsRequest {
            room: "dispatch".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .participants;
    assert_eq!(people.len(), 1, "{people:?}");
    assert_eq!(people[0].session_id, first);
    // Nobody saw gui leave or join meanwhile.
    let quiet = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(Ok(ev)) = watch.next().await {
            if matches!(ev.event, Some(Ev::Left(_)) | Some(Ev::Joined(_))) {
                return Some(ev);
            }
        }
        None
    })
    .await;
    assert!(
        !matches!(quiet, Ok(Some(_))),
        "the room saw a leave or join: {quiet:?}"
    );
    backend.send(Command::Disconnect);
}

/// With the default codec choice (automatic), the desktop client talks in
/// each room's codec: a listener in an L16 44.1 kHz room gets its audio as
/// payload type 113, and in an Opus room as 111.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_codec_follows_each_rooms_codec() {
    let router = start_router(|c| {
        for (name, codec) in [("seedy", "l16-44k"), ("plain", "opus")] {
            c.rooms.push(router::config::RoomConfig {
                name: name.into(),
                kind: "voice".into(),
                max_participants: 0,
                options: plugin_api::sim::options(&[("codec", serde_json::json!(codec))]),
            });
        }
    })
    .await;
    gst::init().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("sb-backend-codec-{}", std::process::id()));
    let (backend, events) = Backend::start(Options {
        downloads: dir,
        video_sink: "fakesink".into(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        MediaChoice::default().audio_codec,
        client_gtk::backend::ROOM_CODEC
    );
    assert_eq!(
        Settings::default().audio_codec,
        client_gtk::backend::ROOM_CODEC
    );
    backend.send(Command::Media(MediaChoice {
        microphone: Source::Tone {
            freq: 440.0,
            volume: 0.3,
        },
        speaker: Sink::Discard,
        tones: false,
        ..MediaChoice::default()
    }));
    backend.send(Command::Connect(Settings {
        server: router.control_addr().to_string(),
        nickname: "gui".into(),
        ..Settings::default()
    }));
    event(&events, "connected", |e| {
        matches!(
            e,
            Event::Link(client_gtk::model::session::Link::Connected { .. })
        )
        .then_some(())
    })
    .await;
    for (room, pt) in [("seedy", 113u8), ("plain", 111)] {
        let (_ears, media) =
            switchboard_tests::member(router.control_addr(), &format!("ears-{room}"), room).await;
        backend.send(Command::Join(room.into()));
        event(&events, "JOINED", |e| {
            matches!(e, Event::Server(ServerMessage::Joined { room: r, .. }) if r == room)
                .then_some(())
        })
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let got = loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{room}: no audio heard"
            );
            if let Ok(Some(p)) = media.recv(Duration::from_millis(500)).await
                && let Some((_, got, _)) = proto::media::rtp_payload(&p)
            {
                break got;
            }
        };
        assert_eq!(got, pt, "{room}: the room's codec");
        backend.send(Command::Leave);
        event(&events, "LEFT", |e| {
            matches!(e, Event::Server(ServerMessage::Left { .. })).then_some(())
        })
        .await;
    }
    backend.send(Command::Disconnect);
}
