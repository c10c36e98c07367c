//! The room page's widgets bound to a session, under Xvfb without a
//! router: rows are updated in place (the same row widget before and after
//! a change), a member who joins adds one row, and the talking ring
//! follows the floor and the level heard.

mod support;

use adw::prelude::*;
use client_gtk::backend::Event;
use client_gtk::model::session::Link;
use client_gtk::state::SbSession;
use client_gtk::ui::member_row::SbMemberRow;
use client_gtk::ui::room_page::SbRoomPage;
use proto::control::{MemberGone, ServerMessage, Ssrcs, UserInfo};

fn user(id: u64, nick: &str) -> UserInfo {
    UserInfo {
        session_id: id,
        nickname: nick.into(),
        ssrcs: Ssrcs {
            audio: id as u32 * 10,
            video: id as u32 * 10 + 1,
        },
        talking: false,
        muted: false,
    }
}

/// Every descendant of `w` of type `T`, depth first.
fn all<T: IsA<gtk::Widget>>(w: &gtk::Widget, out: &mut Vec<T>) {
    let mut child = w.first_child();
    while let Some(c) = child {
        if let Some(t) = c.downcast_ref::<T>() {
            out.push(t.clone());
        }
        all(&c, out);
        child = c.next_sibling();
    }
}

fn member_rows(page: &SbRoomPage) -> Vec<SbMemberRow> {
    let mut rows = Vec::new();
    all(page.upcast_ref(), &mut rows);
    rows
}

fn ring(row: &SbMemberRow) -> bool {
    let mut avatars: Vec<adw::Avatar> = Vec::new();
    all(row.upcast_ref(), &mut avatars);
    avatars.iter().any(|a| a.has_css_class("sb-talking"))
}

fn flush() {
    let ctx = gtk::glib::MainContext::default();
    while ctx.iteration(false) {}
}

#[test]
fn member_rows_are_updated_in_place() {
    let display = support::Display::start();
    // SAFETY: set before GTK starts and before this test starts any
    // thread; the harness runs this binary's one test alone.
    unsafe { std::env::set_var("DISPLAY", &display.name) };
    gtk::init().unwrap_or_else(|e| panic!("{e}"));
    adw::init().unwrap_or_else(|e| panic!("{e}"));

    let session = SbSession::new(|_| {});
    let page = SbRoomPage::new();
    page.bind(&session);
    let win = gtk::Window::new();
    win.set_child(Some(&page));
    win.present();
    session.apply(Event::Link(Link::Connected {
        session_id: 1,
        nickname: "me".into(),
        resumed: false,
        security: Default::default(),
    }));
    session.apply(Event::Server(ServerMessage::Joined {
        room: "dispatch".into(),
        kind: "ptt".into(),
        udp_port: 1,
        settings: Default::default(),
        media_nonce: None,
        secure: false,
        srtp: None,
    }));
    session.apply(Event::Server(ServerMessage::Userlist {
        room: "dispatch".into(),
        users: vec![user(1, "me"), user(2, "ann"), user(3, "bob")],
    }));
    flush();
    let before = member_rows(&page);
    let titles: Vec<String> = before.iter().map(|r| r.title().to_string()).collect();
    assert_eq!(titles, ["me", "ann", "bob"]);
    assert!(!ring(&before[1]));

    // ann takes the floor: her row, the same widget, shows it.
    session.apply(Event::Server(ServerMessage::MicGranted {
        room: "dispatch".into(),
        holder: "ann".into(),
        session_id: 2,
        ssrc: 20,
        priority: 0,
        burst_limit_ms: 0,
    }));
    flush();
    let after = member_rows(&page);
    assert_eq!(after, before, "the same row widgets");
    assert!(ring(&after[1]), "ann's ring is on");
    assert_eq!(after[1].subtitle().as_deref(), Some("talking"));

    // Released: ring off; bob is heard (a level) in an open room: on.
    session.apply(Event::Server(ServerMessage::MicReleased {
        room: "dispatch".into(),
        holder: "ann".into(),
        session_id: 2,
        reason: proto::control::ReleaseReason::Released,
    }));
    session.apply(Event::Levels(vec![(30, 0.8)]));
    flush();
    let rows = member_rows(&page);
    assert!(
        !ring(&rows[1]) && ring(&rows[2]),
        "the ring follows the level"
    );

    // cat joins, ann leaves: the other rows stay the same widgets.
    session.apply(Event::Server(ServerMessage::MembersChanged {
        room: "dispatch".into(),
        joined: vec![user(4, "cat")],
        changed: vec![],
        left: vec![MemberGone {
            session_id: 2,
            nickname: "ann".into(),
        }],
    }));
    flush();
    let now = member_rows(&page);
    let titles: Vec<String> = now.iter().map(|r| r.title().to_string()).collect();
    assert_eq!(titles, ["me", "bob", "cat"]);
    assert_eq!(now[0], before[0]);
    assert_eq!(now[1], before[2], "bob's row is still bob's");
    win.destroy();
}
