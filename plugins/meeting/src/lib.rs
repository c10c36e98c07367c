//! `meeting`: a meeting with a host.
//!
//! - **Lobby.** Everyone but the first member asks to join (JOIN, or
//!   REQUEST_JOIN with the meeting's 6-digit code, which the engine
//!   resolves and rate-limits); the request waits (`JOIN_PENDING`) until the
//!   host answers (`ALLOW_JOIN`/`DENY_JOIN`, or an operator's
//!   ApproveJoin/DenyJoin), or the lobby timeout rejects it. The host sees
//!   the waiting list (`LOBBY`) on every change.
//! - **Host.** The creator. When the host leaves, the longest-present
//!   participant becomes host (`HOST_CHANGED`), unless the meeting was made
//!   to end with its host. The host may mute (`MUTE`) and remove (`REMOVE`).
//! - **Media.** Audio and video of every participant go to every other,
//!   forwarded untouched. Camera and microphone state is announced
//!   (`MEDIA_STATE`).
//! - **Chat** as in `chat` rooms ([`chat::ChatLog`]), **files** through
//!   [`files`], **adaptive video** through [`video`].

pub mod files;
pub mod video;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chat::{ChatConfig, ChatLog};
use plugin_api::{
    AdminCommand, AdminError, CommandError, Effect, ErrorCode, FileOffer, JoinPolicy, LeaveReason,
    LobbyEntry, Member, Notice, OptionError, OptionInfo, OptionReader, OptionType, Options, Outbox,
    PluginFactory, PluginInfo, REASON_MAX_CHARS, Receivers, RejectReason, RelayPlugin, RoomCommand,
    RoomInfo, SessionId, TimerKey,
};

use files::{FileConfig, Files};
use video::{Adaptive, LEVELS};

/// Registry name of the kind.
pub const KIND: &str = "meeting";
/// Timer keys of lobby requests: this bit plus the session id.
const LOBBY_BIT: TimerKey = 1 << 61;
/// Timer key of the adaptive-video rule.
const VIDEO_TIMER: TimerKey = 1;

/// How a meeting behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingConfig {
    pub end_with_host: bool,
    pub lobby_timeout: Duration,
    pub chat: ChatConfig,
    pub files: FileConfig,
}

struct Waiting {
    member: Member,
    since: Instant,
}

/// One meeting.
pub struct MeetingRoom {
    cfg: MeetingConfig,
    host: Option<SessionId>,
    /// Participants in the order they joined (the first is the
    /// longest-present).
    members: Vec<Member>,
    lobby: Vec<Waiting>,
    /// (microphone, camera) per participant.
    media: BTreeMap<SessionId, (bool, bool)>,
    chat: ChatLog,
    files: Files,
    video: Adaptive,
}

impl MeetingRoom {
    pub fn new(room: &RoomInfo<'_>, cfg: MeetingConfig) -> Self {
        Self {
            cfg,
            host: None,
            members: Vec::new(),
            lobby: Vec::new(),
            media: BTreeMap::new(),
            chat: ChatLog::new(cfg.chat, room.clock),
            files: Files::new(cfg.files),
            video: Adaptive::default(),
        }
    }

    pub fn host(&self) -> Option<SessionId> {
        self.host
    }

    /// The sender's adaptive video level, e.g. `360p`.
    pub fn video_level(&self, session: SessionId) -> Option<&'static str> {
        self.video.level(session).map(|l| LEVELS[l].0)
    }

    fn nickname(&self, session: SessionId) -> String {
        self.members
            .iter()
            .find(|m| m.session == session)
            .map(|m| m.nickname.clone())
            .unwrap_or_default()
    }

    /// The member a host command names, by nickname (case-insensitive).
    fn named(&self, nickname: &str) -> Result<SessionId, CommandError> {
        self.chat.find(nickname).ok_or_else(|| {
            CommandError::new(
                ErrorCode::UnknownParticipant,
                format!("nobody named `{}` is in this meeting", shown(nickname)),
            )
        })
    }

    fn require_host(&self, session: SessionId) -> Result<(), CommandError> {
        if self.host == Some(session) {
            Ok(())
        } else {
            Err(CommandError::new(
                ErrorCode::NotHost,
                "only the meeting's host may do this",
            ))
        }
    }

    fn send_lobby(&self, now: Instant, out: &mut Outbox) {
        if let Some(host) = self.host {
            out.notify(
                host,
                Notice::LobbyWaiting {
                    waiting: self
                        .lobby
                        .iter()
                        .map(|w| LobbyEntry {
                            session: w.member.session,
                            nickname: w.member.nickname.clone(),
                            waited_ms: now.saturating_duration_since(w.since).as_millis() as u64,
                        })
                        .collect(),
                },
            );
        }
    }

    /// Admits or rejects a waiting session; `false` if it is not waiting.
    fn decide(
        &mut self,
        now: Instant,
        session: SessionId,
        verdict: Option<(RejectReason, String)>,
        out: &mut Outbox,
    ) -> bool {
        let Some(i) = self.lobby.iter().position(|w| w.member.session == session) else {
            return false;
        };
        self.lobby.remove(i);
        out.cancel_timer(LOBBY_BIT | session);
        out.push(match verdict {
            None => Effect::Admit { session },
            Some((reason, message)) => Effect::Reject {
                session,
                reason,
                message,
            },
        });
        self.send_lobby(now, out);
        true
    }

    fn not_waiting(session: SessionId) -> CommandError {
        CommandError::new(
            ErrorCode::UnknownParticipant,
            format!("session {session} is not waiting in the lobby"),
        )
    }

    fn set_host(&mut self, session: SessionId, out: &mut Outbox) {
        self.host = Some(session);
        out.notify_all(Notice::HostChanged {
            session,
            nickname: self.nickname(session),
        });
    }

    fn file_command(
        &mut self,
        now: Instant,
        session: SessionId,
        cmd: &RoomCommand,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        match cmd {
            RoomCommand::FileOffer(FileOffer {
                to,
                name,
                size,
                sha256,
                chunk_size,
            }) => {
                let receivers: BTreeMap<SessionId, String> =
                    match to {
                        Some(nick) => {
                            let r = self.chat.find(nick).filter(|r| *r != session).ok_or_else(
                                || {
                                    let shown: String = nick.chars().take(40).collect();
                                    CommandError::new(
                                        ErrorCode::UnknownParticipant,
                                        format!("nobody else named `{shown}` is in this meeting"),
                                    )
                                },
                            )?;
                            [(r, self.nickname(r))].into_iter().collect()
                        }
                        None => self
                            .members
                            .iter()
                            .filter(|m| m.session != session)
                            .map(|m| (m.session, m.nickname.clone()))
                            .collect(),
                    };
                let me = self.nickname(session);
                self.files.offer(
                    now,
                    (session, &me),
                    receivers,
                    name,
                    *size,
                    sha256,
                    *chunk_size,
                    out,
                )
            }
            RoomCommand::FileChunk {
                transfer,
                seq,
                data,
            } => self.files.chunk(now, session, *transfer, *seq, data, out),
            RoomCommand::FileAck { transfer, next_seq } => {
                self.files.ack(now, session, *transfer, *next_seq, out)
            }
            RoomCommand::FileEnd { transfer } => self.files.end(now, session, *transfer, out),
            RoomCommand::FileResult {
                transfer,
                ok,
                message,
            } => self
                .files
                .result(session, *transfer, *ok, message.as_deref(), out),
            RoomCommand::FileCancel { transfer, reason } => {
                self.files
                    .cancel(session, *transfer, reason.as_deref(), out)
            }
            _ => Err(CommandError::not_supported(KIND)),
        }
    }
}

impl RelayPlugin for MeetingRoom {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_join_request(&mut self, now: Instant, member: &Member, out: &mut Outbox) -> JoinPolicy {
        // An empty meeting without a host (one made in the config file) takes
        // its first member as host.
        if self.host.is_none() && self.members.is_empty() {
            return JoinPolicy::Admit;
        }
        self.lobby.push(Waiting {
            member: member.clone(),
            since: now,
        });
        out.set_timer(LOBBY_BIT | member.session, now + self.cfg.lobby_timeout);
        out.notify(
            member.session,
            Notice::JoinPending {
                timeout_ms: self.cfg.lobby_timeout.as_millis() as u64,
            },
        );
        self.send_lobby(now, out);
        JoinPolicy::Wait
    }

    fn on_join_withdrawn(&mut self, now: Instant, session: SessionId, out: &mut Outbox) {
        if let Some(i) = self.lobby.iter().position(|w| w.member.session == session) {
            self.lobby.remove(i);
            out.cancel_timer(LOBBY_BIT | session);
            self.send_lobby(now, out);
        }
    }

    fn on_join(&mut self, now: Instant, member: &Member, out: &mut Outbox) {
        let me = member.session;
        self.members.push(member.clone());
        out.set_route(me, Receivers::AllOthers);
        // Who hosts first, then the chat so far, then each participant's
        // media state (docs/protocol.md, "Meetings").
        match self.host {
            None => self.set_host(me, out),
            Some(h) => out.notify(
                me,
                Notice::HostChanged {
                    session: h,
                    nickname: self.nickname(h),
                },
            ),
        }
        self.chat.on_join(now, member, out);
        for (&s, &(audio, video)) in &self.media {
            out.notify(
                me,
                Notice::MediaState {
                    session: s,
                    nickname: self.nickname(s),
                    audio,
                    video,
                },
            );
        }
        // The video senders: a keyframe now, or the newcomer sees nothing
        // until their encoders' next one (up to 2 s with vp8.toml).
        for (&s, &(_, video)) in &self.media {
            if video {
                out.notify(s, Notice::KeyframeRequest);
            }
        }
        self.media.insert(me, (true, true));
        self.video.add(me);
        out.set_timer(VIDEO_TIMER, self.video.schedule(now));
    }

    fn on_leave(
        &mut self,
        now: Instant,
        session: SessionId,
        _reason: LeaveReason,
        out: &mut Outbox,
    ) {
        self.files.on_leave(now, session, out);
        self.members.retain(|m| m.session != session);
        self.media.remove(&session);
        self.video.remove(session);
        self.chat.on_leave(session);
        if self.host != Some(session) {
            return;
        }
        self.host = None;
        if self.cfg.end_with_host {
            out.push(Effect::CloseRoom {
                message: "the host ended the meeting".into(),
            });
            return;
        }
        if let Some(next) = self.members.first().map(|m| m.session) {
            self.set_host(next, out);
            self.send_lobby(now, out);
        }
    }

    fn on_command(
        &mut self,
        now: Instant,
        session: SessionId,
        cmd: &RoomCommand,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        match cmd {
            RoomCommand::Chat { text, to } => {
                self.chat.on_chat(now, session, text, to.as_deref(), out)
            }
            RoomCommand::LobbyAnswer {
                session: guest,
                admit,
                reason,
            } => {
                self.require_host(session)?;
                let verdict = (!admit).then(|| {
                    let message = reason_or(reason.as_deref(), "the host denied your request");
                    (RejectReason::Denied, message)
                });
                if self.decide(now, *guest, verdict, out) {
                    Ok(())
                } else {
                    Err(Self::not_waiting(*guest))
                }
            }
            RoomCommand::MediaState { audio, video } => {
                self.media.insert(session, (*audio, *video));
                out.notify_all(Notice::MediaState {
                    session,
                    nickname: self.nickname(session),
                    audio: *audio,
                    video: *video,
                });
                Ok(())
            }
            RoomCommand::Mute { nickname, muted } => {
                self.require_host(session)?;
                let target = self.named(nickname)?;
                out.push(Effect::Mute {
                    session: target,
                    muted: *muted,
                });
                Ok(())
            }
            RoomCommand::Remove { nickname, reason } => {
                self.require_host(session)?;
                let target = self.named(nickname)?;
                if target == session {
                    return Err(CommandError::new(
                        ErrorCode::BadField,
                        "the host leaves the meeting, it does not remove itself",
                    ));
                }
                let message = reason_or(reason.as_deref(), "removed by the host");
                out.push(Effect::Remove {
                    session: target,
                    message,
                });
                Ok(())
            }
            RoomCommand::VideoReports { reports } => {
                if reports.len() > video::MAX_REPORTS {
                    return Err(CommandError::new(
                        ErrorCode::BadField,
                        format!("at most {} reports", video::MAX_REPORTS),
                    ));
                }
                if let Some(r) = reports.iter().find(|r| {
                    !(0.0..=1.0).contains(&r.fraction_lost)
                        || r.rtt_ms.is_some_and(|v| !(0.0..=60_000.0).contains(&v))
                }) {
                    return Err(CommandError::new(
                        ErrorCode::BadField,
                        format!(
                            "fraction_lost must be 0 to 1 and rtt_ms 0 to 60000, got {} and {:?}",
                            r.fraction_lost, r.rtt_ms
                        ),
                    ));
                }
                self.video.report(session, reports);
                Ok(())
            }
            RoomCommand::FileOffer(_)
            | RoomCommand::FileChunk { .. }
            | RoomCommand::FileAck { .. }
            | RoomCommand::FileEnd { .. }
            | RoomCommand::FileResult { .. }
            | RoomCommand::FileCancel { .. } => self.file_command(now, session, cmd, out),
            _ => Err(CommandError::not_supported(KIND)),
        }
    }

    fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox) {
        if key == VIDEO_TIMER {
            for (session, change) in self.video.evaluate(now) {
                let (level, height) = LEVELS[change.level];
                out.notify(
                    session,
                    Notice::VideoLevel {
                        level,
                        height,
                        fraction_lost: change.fraction_lost,
                        rtt_ms: change.rtt_ms,
                    },
                );
            }
            if !self.members.is_empty() {
                out.set_timer(VIDEO_TIMER, self.video.schedule(now));
            }
        } else if key & files::TIMER_BIT != 0 {
            self.files.on_timer(key, out);
        } else if key & LOBBY_BIT != 0 {
            let session = key & !LOBBY_BIT;
            let secs = self.cfg.lobby_timeout.as_secs();
            self.decide(
                now,
                session,
                Some((
                    RejectReason::TimedOut,
                    format!("nobody let you in within {secs} s"),
                )),
                out,
            );
        }
    }

    fn is_talking(&self, _session: SessionId) -> bool {
        false
    }

    fn on_admin(
        &mut self,
        now: Instant,
        cmd: AdminCommand,
        out: &mut Outbox,
    ) -> Result<(), AdminError> {
        match cmd {
            AdminCommand::Mute { .. } => Ok(()),
            AdminCommand::Chat { to, text } => {
                self.chat.admin_chat(now, to, &text, out);
                Ok(())
            }
            AdminCommand::Lobby {
                session,
                approve,
                reason,
            } => {
                let verdict = (!approve).then_some((RejectReason::Denied, reason));
                if self.decide(now, session, verdict, out) {
                    Ok(())
                } else {
                    Err(AdminError::Precondition(format!(
                        "session {session} is not waiting in the lobby"
                    )))
                }
            }
            AdminCommand::GrantFloor { .. } | AdminCommand::RevokeFloor => Err(
                AdminError::NotSupported("meetings have no floor: everyone may speak".into()),
            ),
        }
    }

    fn member_stats(&self, session: SessionId) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(l) = self.video_level(session) {
            v.push(("video_level", l.to_owned()));
        }
        if let Some(&(audio, video)) = self.media.get(&session) {
            v.push(("microphone", if audio { "on" } else { "off" }.to_owned()));
            v.push(("camera", if video { "on" } else { "off" }.to_owned()));
        }
        if self.host == Some(session) {
            v.push(("host", "true".to_owned()));
        }
        v
    }
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A host's reason in words, trimmed and bounded; `default` when absent or
/// blank.
fn reason_or(reason: Option<&str>, default: &str) -> String {
    reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(default)
        .chars()
        .take(REASON_MAX_CHARS)
        .collect()
}

/// Makes `meeting` rooms.
#[derive(Debug, Default)]
pub struct MeetingFactory;

impl PluginFactory for MeetingFactory {
    fn info(&self) -> PluginInfo {
        let mut options = vec![
            OptionInfo {
                name: "end_with_host",
                ty: OptionType::Bool,
                default: "false".into(),
                help: "end the meeting for everyone when the host leaves (otherwise the longest-present participant becomes host)",
            },
            OptionInfo {
                name: "lobby_timeout_secs",
                ty: OptionType::Integer,
                default: "120".into(),
                help: "a join request nobody answers is rejected after this many seconds (5-3600)",
            },
            OptionInfo {
                name: "max_file_mb",
                ty: OptionType::Integer,
                default: "64".into(),
                help: "largest file a participant may send, in MiB (1-1024)",
            },
            OptionInfo {
                name: "file_stall_secs",
                ty: OptionType::Integer,
                default: "30".into(),
                help: "a transfer with no progress for this many seconds is aborted (5-600)",
            },
        ];
        options.extend(ChatConfig::option_info());
        PluginInfo {
            kind: KIND,
            description: "meeting: host-approval lobby (6-digit code), audio and video to all, chat, file transfer, adaptive video",
            options,
        }
    }

    fn create(
        &self,
        room: &RoomInfo<'_>,
        options: &Options,
    ) -> Result<Box<dyn RelayPlugin>, OptionError> {
        let mut r = OptionReader::new(options);
        let cfg = MeetingConfig {
            end_with_host: r.bool("end_with_host", false)?,
            lobby_timeout: Duration::from_secs(r.int("lobby_timeout_secs", 120, 5, 3600)?),
            files: FileConfig {
                max_bytes: r.int("max_file_mb", 64, 1, 1024)? << 20,
                stall: Duration::from_secs(r.int("file_stall_secs", 30, 5, 600)?),
            },
            chat: ChatConfig::read(&mut r)?,
        };
        r.finish()?;
        Ok(Box::new(MeetingRoom::new(room, cfg)))
    }
}

#[cfg(test)]
mod tests;
