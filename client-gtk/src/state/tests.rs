//! `SbSession` without a display: the lists are updated in place (the
//! same item before and after a change, no store signal for a change
//! inside an item), and the session goes back where it was after a
//! reconnect the router could not resume.

use std::cell::RefCell;
use std::rc::Rc;

use gtk::prelude::*;
use proto::control::{ServerMessage, UserInfo};

use super::items::{SbChatItem, SbMemberItem, SbTransferItem};
use super::*;
use crate::backend::{Command, Event};
use crate::model::session::Link;

fn user(id: u64, nick: &str) -> UserInfo {
    crate::model::tests::user(id, nick, false)
}

/// A session that records the commands it sends.
fn session() -> (SbSession, Rc<RefCell<Vec<Command>>>) {
    let sent: Rc<RefCell<Vec<Command>>> = Rc::default();
    let s = sent.clone();
    (SbSession::new(move |c| s.borrow_mut().push(c)), sent)
}

fn connected(s: &SbSession, resumed: bool) {
    s.apply(Event::Link(Link::Connected {
        session_id: 1,
        nickname: "me".into(),
        resumed,
        security: Default::default(),
    }));
}

fn joined(s: &SbSession, room: &str, kind: &str) {
    s.apply(Event::Server(ServerMessage::Joined {
        room: room.into(),
        kind: kind.into(),
        udp_port: 1,
        settings: Default::default(),
        media_nonce: None,
        secure: false,
        srtp: None,
    }));
}

fn members(s: &SbSession) -> Vec<SbMemberItem> {
    let store = &s.stores().members;
    (0..store.n_items())
        .filter_map(|i| store.item(i).and_downcast::<SbMemberItem>())
        .collect()
}

/// Counts the store's items-changed signals.
fn changes(store: &gtk::gio::ListStore) -> Rc<RefCell<Vec<(u32, u32, u32)>>> {
    let seen: Rc<RefCell<Vec<(u32, u32, u32)>>> = Rc::default();
    let s = seen.clone();
    store.connect_items_changed(move |_, p, r, a| s.borrow_mut().push((p, r, a)));
    seen
}

#[test]
fn members_are_updated_in_place_and_joins_and_leaves_touch_one_position() {
    let (s, _) = session();
    connected(&s, false);
    joined(&s, "dispatch", "ptt");
    assert_eq!(s.page(), "room");
    let users = vec![user(1, "me"), user(2, "ann"), user(3, "bob")];
    s.apply(Event::Server(ServerMessage::Userlist {
        room: "dispatch".into(),
        users: users.clone(),
    }));
    let before = members(&s);
    assert_eq!(before.len(), 3);
    assert!(before[0].me() && !before[1].me());
    let seen = changes(&s.stores().members);
    let talking = Rc::new(RefCell::new(0));
    let t = talking.clone();
    before[1].connect_talking_notify(move |_| *t.borrow_mut() += 1);

    // ann takes the floor: her item says so; no row is replaced.
    s.apply(Event::Server(ServerMessage::MicGranted {
        room: "dispatch".into(),
        holder: "ann".into(),
        session_id: 2,
        ssrc: 20,
        priority: 0,
        burst_limit_ms: 0,
    }));
    let after = members(&s);
    assert_eq!(after, before, "the same items");
    assert!(after[1].talking());
    assert_eq!(after[1].subtitle(), "talking");
    assert_eq!(*talking.borrow(), 1);
    assert_eq!(s.status_text(), "ann is speaking");
    assert_eq!(s.status_tone(), "red");
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());

    // cat joins at the end, ann leaves from the middle: one change each.
    s.apply(Event::Server(ServerMessage::MembersChanged {
        room: "dispatch".into(),
        joined: vec![user(4, "cat")],
        changed: vec![],
        left: vec![],
    }));
    assert_eq!(*seen.borrow(), [(3, 0, 1)]);
    s.apply(Event::Server(ServerMessage::MembersChanged {
        room: "dispatch".into(),
        joined: vec![],
        changed: vec![],
        left: vec![proto::control::MemberGone {
            session_id: 2,
            nickname: "ann".into(),
        }],
    }));
    assert_eq!(seen.borrow()[1], (1, 1, 0));
    let now = members(&s);
    assert_eq!(now.len(), 3);
    assert_eq!(now[0], before[0]);
    assert_eq!(now[1], before[2], "bob's item is still bob's");
    assert_eq!(now[2].nickname(), "cat");
}

#[test]
fn chat_lines_are_appended_and_transfers_kept_by_id() {
    let (s, _) = session();
    connected(&s, false);
    joined(&s, "meeting-123456", "meeting");
    assert_eq!(s.room_title(), "Meeting 123456");
    assert!(s.is_meeting() && s.has_chat() && !s.has_floor());
    let chat = |id: u64, from: &str, text: &str| {
        Event::Server(ServerMessage::Chat {
            room: "meeting-123456".into(),
            id,
            ts_ms: 0,
            from: from.into(),
            session_id: None,
            text: text.into(),
            private: false,
            to: None,
            operator: false,
        })
    };
    s.apply(chat(1, "ann", "hello"));
    let first = s.stores().chat.item(0).and_downcast::<SbChatItem>();
    s.apply(chat(2, "me", "hi ann"));
    let store = &s.stores().chat;
    assert_eq!(store.n_items(), 2);
    assert_eq!(store.item(0).and_downcast::<SbChatItem>(), first);
    let mine = store.item(1).and_downcast::<SbChatItem>();
    assert!(mine.is_some_and(|m| m.mine() && m.text() == "hi ann"));

    // A file we send: the task's report and FILE_STARTED, then progress,
    // all on one item.
    s.apply(Event::FileStarted {
        id: 9,
        name: "plan.pdf".into(),
        receivers: vec!["ann".into()],
        chunks: 10,
    });
    let item = s
        .stores()
        .transfers
        .item(0)
        .and_downcast::<SbTransferItem>();
    s.apply(Event::Server(ServerMessage::FileStarted {
        room: "meeting-123456".into(),
        transfer_id: 9,
        receivers: vec!["ann".into()],
        chunks: 10,
    }));
    s.apply(Event::FileProgress {
        id: 9,
        done: 5,
        total: 10,
        cwnd: Some(4.0),
    });
    let now = s
        .stores()
        .transfers
        .item(0)
        .and_downcast::<SbTransferItem>();
    assert_eq!(now, item);
    let now = now.unwrap_or_else(|| panic!("no transfer item"));
    assert_eq!(now.label(), "plan.pdf to ann: 50%, window 4.0");
    assert!((now.fraction() - 0.5).abs() < 1e-9 && now.running());
    assert_eq!(s.stores().transfers.n_items(), 1);
}

#[test]
fn a_session_not_resumed_goes_back_to_its_room_and_a_resumed_one_does_not() {
    let (s, sent) = session();
    s.set_pending(Pending {
        join: Some("dispatch".into()),
        ..Pending::default()
    });
    connected(&s, false);
    assert!(matches!(&sent.borrow()[..], [Command::Join(r)] if r == "dispatch"));
    joined(&s, "dispatch", "ptt");
    sent.borrow_mut().clear();

    // Lost: the room stays on screen, the status says so.
    s.apply(Event::Link(Link::Reconnecting {
        attempt: 1,
        retry_in: std::time::Duration::from_millis(500),
        reason: "gone".into(),
    }));
    assert_eq!(s.page(), "room");
    assert_eq!(s.status_tone(), "grey");
    // Resumed: the router still has us in the room; nothing to ask.
    connected(&s, true);
    assert!(sent.borrow().is_empty(), "{:?}", sent.borrow());
    // Not resumed (the router restarted): join again.
    s.apply(Event::Link(Link::Reconnecting {
        attempt: 1,
        retry_in: std::time::Duration::from_millis(500),
        reason: "gone".into(),
    }));
    connected(&s, false);
    assert!(matches!(&sent.borrow()[..], [Command::Join(r)] if r == "dispatch"));
    // After leaving, a reconnect goes nowhere.
    s.send(Command::Leave);
    sent.borrow_mut().clear();
    connected(&s, false);
    assert!(sent.borrow().is_empty());
    // Disconnected: back to the connect page.
    s.apply(Event::Link(Link::Disconnected { reason: None }));
    assert_eq!(s.page(), "connect");
}

#[test]
fn a_store_is_synced_by_runs_of_insertions_and_removals() {
    use super::items::{SbNameItem, sync_store};
    let store = gtk::gio::ListStore::new::<SbNameItem>();
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(SbNameItem::new);
    sync_store(&store, &[a.clone(), b.clone(), c.clone()]);
    let seen = changes(&store);
    // b leaves and d, e join at the end in one update: two changes, and
    // a and c are the same items at their places.
    sync_store(&store, &[a.clone(), c.clone(), d.clone(), e.clone()]);
    assert_eq!(*seen.borrow(), [(1, 1, 0), (2, 0, 2)]);
    let names = |s: &gtk::gio::ListStore| -> Vec<String> {
        (0..s.n_items())
            .filter_map(|i| s.item(i).and_downcast::<SbNameItem>())
            .map(|n| n.name())
            .collect()
    };
    assert_eq!(names(&store), ["a", "c", "d", "e"]);
    // Nothing changed: no signal.
    sync_store(&store, &[a.clone(), c.clone(), d.clone(), e.clone()]);
    assert_eq!(seen.borrow().len(), 2);
    // A move replaces from the first that moved.
    sync_store(&store, &[a.clone(), d.clone(), c.clone(), e.clone()]);
    assert_eq!(names(&store), ["a", "d", "c", "e"]);
    assert_eq!(seen.borrow()[2], (1, 3, 3));
}

/// A page's handler may send a command while the session updates its
/// properties (the connect page stops the microphone test when the page
/// changes): no borrow of the models is held then.
#[test]
fn handlers_may_send_commands_while_the_session_updates() {
    let (s, sent) = session();
    s.connect_page_notify(|s| s.send(Command::TestMicrophone(false)));
    s.stores().members.connect_items_changed(|_, _, _, _| {});
    let s2 = s.clone();
    s.connect_status_text_notify(move |_| s2.send(Command::ListRooms));
    connected(&s, false);
    joined(&s, "dispatch", "ptt");
    assert_eq!(s.page(), "room");
    assert!(
        sent.borrow()
            .iter()
            .any(|c| matches!(c, Command::TestMicrophone(false)))
    );
}
