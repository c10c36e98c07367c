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

pub use super::chat::ChatLine;
pub use super::transfers::{Transfer, TransferState};

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
    /// Lines ever added to `chat`, and a number that changes whenever
    /// `chat` is reordered (history merged in): a view appends the last
    /// `chat_total - seen` lines, or starts again when the epoch changed.
    pub chat_total: u64,
    pub chat_epoch: u64,
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
    /// The talk key, as the status line names it.
    pub talk_key: String,
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
            chat_total: 0,
            chat_epoch: 0,
            host: None,
            lobby: Vec::new(),
            code: None,
            call_peer: None,
            muted: false,
            video_level: None,
            transfers: BTreeMap::new(),
            notice: None,
            talk_key: "Space".into(),
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
                operator,
                ..
            } => self.push_chat(ChatLine {
                id: *id,
                ts_ms: *ts_ms,
                from: from.clone(),
                text: text.clone(),
                private: *private,
                to: to.clone(),
                operator: *operator,
            }),
            ServerMessage::ChatHistory { messages, .. } => {
                for ChatEntry {
                    id,
                    ts_ms,
                    from,
                    text,
                    operator,
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
                            operator: *operator,
                        });
                    }
                }
                self.chat.sort_by_key(|c| c.id);
                self.chat_epoch += 1;
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
            _ => return self.apply_file(msg),
        }
        true
    }

    fn push_chat(&mut self, line: ChatLine) {
        self.chat.push(line);
        self.chat_total += 1;
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
            Floor::Free => plain(format!("Hold {} to talk", self.talk_key), Tone::Neutral),
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
