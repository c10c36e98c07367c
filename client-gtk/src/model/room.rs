//! The room a person is in, as the window shows it: members with their
//! talking, mute, microphone and camera state; the floor and the status
//! line it gives; chat; a host's lobby; files. Fed with server messages,
//! read by the widgets; no GTK here, so it is tested without a display.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proto::control::{
    ChatEntry, DenyReason, LeaveReason, LobbyEntry, ReleaseReason, RevokeReason, ServerMessage,
    UserInfo,
};

/// The colour of the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// You hold the floor.
    Green,
    /// Someone else holds it, or you wait for it.
    Red,
    /// No connection.
    Grey,
    /// Nothing going on.
    Neutral,
}

/// The status line: words, colour and, while you talk under a burst
/// limit, the time left.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub text: String,
    pub tone: Tone,
    pub countdown: Option<Duration>,
}

/// Where the floor stands, seen from here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Floor {
    #[default]
    Free,
    /// Asked, no answer yet.
    Requesting,
    /// Ours, revoked at `until` when the room limits talk bursts.
    Mine { until: Option<Instant> },
    /// Someone else's.
    Taken { holder: String },
    /// Someone else's, and we are in the queue at `position`.
    Queued {
        holder: Option<String>,
        position: u32,
    },
}

/// One member as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub session_id: u64,
    pub nickname: String,
    pub talking: bool,
    pub muted: bool,
    /// Microphone and camera on (meetings announce them; elsewhere the
    /// microphone is on and there is no camera).
    pub audio: bool,
    pub video: bool,
    pub video_ssrc: u32,
    pub audio_ssrc: u32,
}

/// One chat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub id: u64,
    pub ts_ms: u64,
    pub from: String,
    pub text: String,
    /// Private: to `to` (or to us).
    pub private: bool,
    pub to: Option<String>,
}

impl ChatLine {
    /// How the line reads in the chat panel.
    pub fn display(&self, me: &str) -> String {
        if self.private {
            let to = self.to.as_deref().unwrap_or(me);
            if self.from == me {
                format!("(private to {to}) {}", self.text)
            } else {
                format!("(private) {}: {}", self.from, self.text)
            }
        } else {
            format!("{}: {}", self.from, self.text)
        }
    }
}

/// A file on its way, in or out.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub id: u64,
    pub name: String,
    pub outgoing: bool,
    /// The other side: the sender, or the receivers.
    pub peer: String,
    pub done: u64,
    pub total: u64,
    /// Sender: the congestion window, in chunks.
    pub cwnd: Option<f64>,
    pub state: TransferState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    Running,
    /// Received intact, saved here (or sent and confirmed).
    Done(Option<std::path::PathBuf>),
    Failed(String),
}

impl Transfer {
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }

    pub fn label(&self) -> String {
        let dir = if self.outgoing { "to" } else { "from" };
        match &self.state {
            TransferState::Running => format!(
                "{} {dir} {}: {:.0}%{}",
                self.name,
                self.peer,
                self.fraction() * 100.0,
                self.cwnd
                    .map(|c| format!(", window {c:.1}"))
                    .unwrap_or_default()
            ),
            TransferState::Done(_) => format!("{} {dir} {}: done", self.name, self.peer),
            TransferState::Failed(e) => format!("{} {dir} {}: failed ({e})", self.name, self.peer),
        }
    }
}

/// Most chat lines kept in the window.
pub const MAX_CHAT_LINES: usize = 500;

/// The room view-model.
#[derive(Debug, Clone)]
pub struct RoomModel {
    pub name: String,
    pub kind: String,
    pub me: u64,
    pub my_nickname: String,
    pub members: Vec<Member>,
    pub floor: Floor,
    pub chat: Vec<ChatLine>,
    /// Meetings: who hosts, our lobby (if we host), the code.
    pub host: Option<u64>,
    pub lobby: Vec<LobbyEntry>,
    pub code: Option<String>,
    /// Voice rooms of two: who the call is with.
    pub call_peer: Option<String>,
    /// The host or an operator muted us.
    pub muted: bool,
    /// Our video level (adaptive video).
    pub video_level: Option<String>,
    pub transfers: BTreeMap<u64, Transfer>,
    /// The last thing worth telling (a refusal, a revoked floor).
    pub notice: Option<String>,
    media: BTreeMap<u64, (bool, bool)>,
}

impl RoomModel {
    pub fn new(name: &str, kind: &str, me: u64, my_nickname: &str) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            me,
            my_nickname: my_nickname.into(),
            members: Vec::new(),
            floor: Floor::Free,
            chat: Vec::new(),
            host: None,
            lobby: Vec::new(),
            code: None,
            call_peer: None,
            muted: false,
            video_level: None,
            transfers: BTreeMap::new(),
            notice: None,
            media: BTreeMap::new(),
        }
    }

    /// Rooms with one speaker at a time.
    pub fn has_floor(&self) -> bool {
        matches!(self.kind.as_str(), "ptt" | "chat")
    }

    pub fn has_chat(&self) -> bool {
        matches!(self.kind.as_str(), "chat" | "meeting")
    }

    pub fn is_meeting(&self) -> bool {
        self.kind == "meeting"
    }

    pub fn am_host(&self) -> bool {
        self.host == Some(self.me)
    }

    pub fn member(&self, session_id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.session_id == session_id)
    }

    /// The member whose video arrives with `ssrc`.
    pub fn by_video_ssrc(&self, ssrc: u32) -> Option<&Member> {
        self.members.iter().find(|m| m.video_ssrc == ssrc)
    }

    /// Takes in one server message; true if anything shown changed.
    pub fn apply(&mut self, msg: &ServerMessage, now: Instant) -> bool {
        match msg {
            ServerMessage::MembersChanged {
                joined,
                changed,
                left,
                ..
            } => {
                // The same list USERLIST would have given: entries replaced
                // or appended, the leavers removed.
                let mut users: Vec<UserInfo> = self
                    .members
                    .iter()
                    .map(|m| UserInfo {
                        session_id: m.session_id,
                        nickname: m.nickname.clone(),
                        ssrcs: proto::control::Ssrcs {
                            audio: m.audio_ssrc,
                            video: m.video_ssrc,
                        },
                        talking: m.talking,
                        muted: m.muted,
                    })
                    .collect();
                for u in joined.iter().chain(changed) {
                    match users.iter_mut().find(|x| x.session_id == u.session_id) {
                        Some(x) => *x = u.clone(),
                        None => users.push(u.clone()),
                    }
                }
                users.retain(|u| !left.iter().any(|g| g.session_id == u.session_id));
                return self.apply(
                    &ServerMessage::Userlist {
                        room: self.name.clone(),
                        users,
                    },
                    now,
                );
            }
            ServerMessage::Userlist { users, .. } => {
                self.set_users(users);
                // The holder may have left: then the floor is free. A
                // joiner learns who holds it from the `talking` flag.
                if let Floor::Taken { holder } = &self.floor
                    && !self.members.iter().any(|m| &m.nickname == holder)
                {
                    self.floor = Floor::Free;
                }
                let talker = self.members.iter().find(|m| m.talking);
                if self.has_floor()
                    && self.floor == Floor::Free
                    && let Some(t) = talker
                    && t.session_id != self.me
                {
                    self.floor = Floor::Taken {
                        holder: t.nickname.clone(),
                    };
                }
            }
            ServerMessage::MicGranted {
                holder,
                session_id,
                burst_limit_ms,
                ..
            } => {
                self.floor = if *session_id == self.me {
                    Floor::Mine {
                        until: (*burst_limit_ms > 0)
                            .then(|| now + Duration::from_millis(*burst_limit_ms)),
                    }
                } else if let Floor::Queued { position, .. } = self.floor {
                    Floor::Queued {
                        holder: Some(holder.clone()),
                        position,
                    }
                } else {
                    Floor::Taken {
                        holder: holder.clone(),
                    }
                };
                self.set_talking(Some(*session_id));
            }
            ServerMessage::MicDenied {
                reason,
                holder,
                queue_position,
                ..
            } => {
                self.floor = match (reason, queue_position) {
                    (DenyReason::Queued | DenyReason::AlreadyQueued, Some(p)) => Floor::Queued {
                        holder: holder.clone(),
                        position: *p,
                    },
                    _ => match holder {
                        Some(h) => Floor::Taken { holder: h.clone() },
                        None => Floor::Free,
                    },
                };
                if matches!(reason, DenyReason::Muted | DenyReason::QueueFull) {
                    self.notice = Some(match reason {
                        DenyReason::Muted => "You are muted: the floor is refused".into(),
                        _ => "The floor queue is full".into(),
                    });
                }
            }
            ServerMessage::MicQueued { queue_position, .. } => {
                let holder = match &self.floor {
                    Floor::Queued { holder, .. } => holder.clone(),
                    Floor::Taken { holder } => Some(holder.clone()),
                    _ => None,
                };
                self.floor = Floor::Queued {
                    holder,
                    position: *queue_position,
                };
            }
            ServerMessage::MicDequeued { .. } => {
                self.floor = match &self.floor {
                    Floor::Queued {
                        holder: Some(h), ..
                    } => Floor::Taken { holder: h.clone() },
                    _ => Floor::Free,
                };
            }
            ServerMessage::MicReleased { session_id, .. }
            | ServerMessage::MicRevoked { session_id, .. } => {
                if let ServerMessage::MicRevoked { reason, .. } = msg
                    && *session_id == self.me
                {
                    self.notice = Some(match reason {
                        RevokeReason::BurstLimit => "Talk burst limit reached".into(),
                        RevokeReason::Preempted => "Pre-empted by a higher priority".into(),
                        RevokeReason::Admin => "The operator took the floor".into(),
                        RevokeReason::Muted => "You were muted".into(),
                    });
                }
                if let ServerMessage::MicReleased {
                    reason: ReleaseReason::TimedOut,
                    ..
                } = msg
                {
                    self.notice = Some("The floor was released: silence".into());
                }
                self.floor = match &self.floor {
                    Floor::Queued { position, .. } => Floor::Queued {
                        holder: None,
                        position: *position,
                    },
                    _ => Floor::Free,
                };
                self.set_talking(None);
            }
            ServerMessage::Chat {
                id,
                ts_ms,
                from,
                text,
                private,
                to,
                ..
            } => self.push_chat(ChatLine {
                id: *id,
                ts_ms: *ts_ms,
                from: from.clone(),
                text: text.clone(),
                private: *private,
                to: to.clone(),
            }),
            ServerMessage::ChatHistory { messages, .. } => {
                for ChatEntry {
                    id,
                    ts_ms,
                    from,
                    text,
                    ..
                } in messages
                {
                    if !self.chat.iter().any(|c| c.id == *id && *id > 0) {
                        self.push_chat(ChatLine {
                            id: *id,
                            ts_ms: *ts_ms,
                            from: from.clone(),
                            text: text.clone(),
                            private: false,
                            to: None,
                        });
                    }
                }
                self.chat.sort_by_key(|c| c.id);
            }
            ServerMessage::Muted { muted, .. } => {
                self.muted = *muted;
                self.notice = Some(if *muted {
                    "You were muted".into()
                } else {
                    "You were unmuted".into()
                });
            }
            ServerMessage::CallStarted { peer, .. } => self.call_peer = Some(peer.clone()),
            ServerMessage::CallEnded { peer, reason, .. } => {
                self.call_peer = None;
                self.notice = Some(format!("Call with {peer} ended ({})", leave_words(*reason)));
            }
            ServerMessage::MeetingCreated { code, .. } => self.code = Some(code.clone()),
            ServerMessage::HostChanged { session_id, .. } => self.host = Some(*session_id),
            ServerMessage::Lobby { waiting, .. } => self.lobby = waiting.clone(),
            ServerMessage::MediaState {
                session_id,
                audio,
                video,
                ..
            } => {
                self.media.insert(*session_id, (*audio, *video));
                if let Some(m) = self
                    .members
                    .iter_mut()
                    .find(|m| m.session_id == *session_id)
                {
                    m.audio = *audio;
                    m.video = *video;
                }
            }
            ServerMessage::VideoLevel { level, .. } => self.video_level = Some(level.clone()),
            ServerMessage::FileStarted {
                transfer_id,
                receivers,
                chunks,
                ..
            } => {
                // The name was set when we offered it (see `offered`).
                let name = self
                    .transfers
                    .remove(&0)
                    .map(|t| t.name)
                    .unwrap_or_else(|| "file".into());
                self.transfers.insert(
                    *transfer_id,
                    Transfer {
                        id: *transfer_id,
                        name,
                        outgoing: true,
                        peer: receivers.join(", "),
                        done: 0,
                        total: *chunks,
                        cwnd: None,
                        state: TransferState::Running,
                    },
                );
            }
            ServerMessage::FileOffered {
                transfer_id,
                from,
                name,
                chunks,
                ..
            } => {
                self.transfers.insert(
                    *transfer_id,
                    Transfer {
                        id: *transfer_id,
                        name: name.clone(),
                        outgoing: false,
                        peer: from.clone(),
                        done: 0,
                        total: *chunks,
                        cwnd: None,
                        state: TransferState::Running,
                    },
                );
            }
            ServerMessage::FileAck {
                transfer_id,
                next_seq,
            } => {
                if let Some(t) = self.transfers.get_mut(transfer_id) {
                    t.done = t.done.max(*next_seq);
                }
            }
            ServerMessage::FileResult {
                transfer_id,
                nickname,
                ok,
                message,
            } => {
                if let Some(t) = self.transfers.get_mut(transfer_id) {
                    t.state = if *ok {
                        t.done = t.total;
                        TransferState::Done(None)
                    } else {
                        TransferState::Failed(format!(
                            "{nickname}: {}",
                            message.as_deref().unwrap_or("refused")
                        ))
                    };
                }
            }
            ServerMessage::FileAborted {
                transfer_id,
                reason,
            } => {
                if let Some(t) = self.transfers.get_mut(transfer_id) {
                    t.state = TransferState::Failed(reason.clone());
                }
            }
            _ => return false,
        }
        true
    }

    /// We offered a file: remember its name until FILE_STARTED gives the id.
    pub fn offered(&mut self, name: &str) {
        self.transfers.insert(
            0,
            Transfer {
                id: 0,
                name: name.into(),
                outgoing: true,
                peer: String::new(),
                done: 0,
                total: 0,
                cwnd: None,
                state: TransferState::Running,
            },
        );
    }

    /// Progress of a transfer (from the file drivers). The first report
    /// of one we offered gives it its id.
    pub fn progress(&mut self, id: u64, done: u64, total: u64, cwnd: Option<f64>) {
        if !self.transfers.contains_key(&id)
            && let Some(mut t) = self.transfers.remove(&0)
        {
            t.id = id;
            t.total = total;
            t.peer = "the meeting".into();
            self.transfers.insert(id, t);
        }
        if let Some(t) = self.transfers.get_mut(&id) {
            t.done = t.done.max(done);
            if cwnd.is_some() {
                t.cwnd = cwnd;
            }
        }
    }

    /// A transfer ended here (received and checked, or failed).
    pub fn finished(&mut self, id: u64, result: Result<Option<std::path::PathBuf>, String>) {
        if let Some(t) = self.transfers.get_mut(&id) {
            t.state = match result {
                Ok(p) => {
                    t.done = t.total;
                    TransferState::Done(p)
                }
                Err(e) => TransferState::Failed(e),
            };
        }
    }

    fn push_chat(&mut self, line: ChatLine) {
        self.chat.push(line);
        if self.chat.len() > MAX_CHAT_LINES {
            let extra = self.chat.len() - MAX_CHAT_LINES;
            self.chat.drain(..extra);
        }
    }

    fn set_users(&mut self, users: &[UserInfo]) {
        let meeting = self.is_meeting();
        self.members = users
            .iter()
            .map(|u| {
                let (audio, video) = self
                    .media
                    .get(&u.session_id)
                    .copied()
                    .unwrap_or((!meeting, false));
                Member {
                    session_id: u.session_id,
                    nickname: u.nickname.clone(),
                    talking: u.talking,
                    muted: u.muted,
                    audio,
                    video,
                    audio_ssrc: u.ssrcs.audio,
                    video_ssrc: u.ssrcs.video,
                }
            })
            .collect();
        let present: Vec<u64> = self.members.iter().map(|m| m.session_id).collect();
        self.media.retain(|id, _| present.contains(id));
    }

    fn set_talking(&mut self, holder: Option<u64>) {
        if !self.has_floor() {
            return;
        }
        for m in &mut self.members {
            m.talking = Some(m.session_id) == holder;
        }
    }

    /// The status line at `now`.
    pub fn status(&self, now: Instant) -> Status {
        let plain = |text: String, tone| Status {
            text,
            tone,
            countdown: None,
        };
        if self.muted {
            return plain("Muted by the host".into(), Tone::Red);
        }
        if !self.has_floor() {
            return match (&self.call_peer, self.kind.as_str()) {
                (Some(peer), _) => plain(format!("In a call with {peer}"), Tone::Green),
                (None, "meeting") => plain(
                    match &self.code {
                        Some(code) => format!("Meeting {code}"),
                        None => "In the meeting".into(),
                    },
                    Tone::Neutral,
                ),
                _ => plain("Open voice: everyone hears everyone".into(), Tone::Neutral),
            };
        }
        match &self.floor {
            Floor::Free => plain("Hold Space to talk".into(), Tone::Neutral),
            Floor::Requesting => plain("Asking for the floor…".into(), Tone::Neutral),
            Floor::Mine { until } => Status {
                text: "You can speak".into(),
                tone: Tone::Green,
                countdown: until.map(|u| u.saturating_duration_since(now)),
            },
            Floor::Taken { holder } => plain(format!("{holder} is speaking"), Tone::Red),
            Floor::Queued { position, .. } => {
                plain(format!("Floor busy — queued #{position}"), Tone::Red)
            }
        }
    }

    /// Nicknames a private message can go to (everyone but us).
    pub fn others(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.session_id != self.me)
            .map(|m| m.nickname.clone())
            .collect()
    }
}

/// Why someone left, in words.
pub fn leave_words(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Left => "left",
        LeaveReason::Disconnected => "disconnected",
        LeaveReason::TimedOut => "timed out",
        LeaveReason::Kicked => "removed",
        LeaveReason::RoomClosed => "room closed",
    }
}
