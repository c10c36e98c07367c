//! [`ChatLog`]: a room's chat, reusable by every room kind with text chat.
//!
//! Messages are numbered per room and stamped with server time; public ones
//! are kept (the last `history` of them) and sent to each joiner
//! ([`Notice::ChatHistory`]); private ones go to their recipient with a copy to the
//! sender and are never logged. Each member may send `burst` messages at
//! once and one more every `60 / per_minute` seconds (a token bucket).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use plugin_api::{
    CHAT_MAX_CHARS, ChatLine, CommandError, ErrorCode, Member, Notice, OptionError, OptionInfo,
    OptionReader, OptionType, Outbox, SERVER_NICKNAME, SessionId, TokenBucket, WallClock,
};

/// Limits of a room's chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatConfig {
    /// Public messages kept for joiners.
    pub history: usize,
    /// Messages a member may send at once.
    pub burst: u32,
    /// Sustained messages per minute per member.
    pub per_minute: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            history: 50,
            burst: 5,
            per_minute: 30,
        }
    }
}

impl ChatConfig {
    /// Reads `history`, `chat_burst` and `chat_per_minute`.
    pub fn read(r: &mut OptionReader<'_>) -> Result<Self, OptionError> {
        let d = Self::default();
        Ok(Self {
            history: r.int("history", d.history as u64, 0, 1000)? as usize,
            burst: r.int("chat_burst", u64::from(d.burst), 1, 100)? as u32,
            per_minute: r.int("chat_per_minute", u64::from(d.per_minute), 1, 600)? as u32,
        })
    }

    /// Describes the options [`ChatConfig::read`] takes.
    pub fn option_info() -> Vec<OptionInfo> {
        vec![
            OptionInfo {
                name: "history",
                ty: OptionType::Integer,
                default: "50".into(),
                help: "public chat messages kept and sent to each joiner (0-1000)",
            },
            OptionInfo {
                name: "chat_burst",
                ty: OptionType::Integer,
                default: "5".into(),
                help: "chat messages a member may send at once (1-100)",
            },
            OptionInfo {
                name: "chat_per_minute",
                ty: OptionType::Integer,
                default: "30".into(),
                help: "sustained chat messages per minute per member (1-600); beyond: RATE_LIMITED",
            },
        ]
    }

    fn refill(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// A room's chat.
#[derive(Debug)]
pub struct ChatLog {
    cfg: ChatConfig,
    clock: WallClock,
    members: BTreeMap<SessionId, String>,
    buckets: HashMap<SessionId, TokenBucket>,
    history: VecDeque<ChatLine>,
    last_id: u64,
}

impl ChatLog {
    pub fn new(cfg: ChatConfig, clock: WallClock) -> Self {
        Self {
            cfg,
            clock,
            members: BTreeMap::new(),
            buckets: HashMap::new(),
            history: VecDeque::new(),
            last_id: 0,
        }
    }

    /// The kept public messages, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &ChatLine> {
        self.history.iter()
    }

    /// Records the member and sends it the history.
    pub fn on_join(&mut self, now: Instant, member: &Member, out: &mut Outbox) {
        self.members.insert(member.session, member.nickname.clone());
        self.buckets
            .insert(member.session, TokenBucket::full(self.cfg.burst, now));
        out.notify(
            member.session,
            Notice::ChatHistory {
                messages: self.history.iter().cloned().collect(),
            },
        );
    }

    pub fn on_leave(&mut self, session: SessionId) {
        self.members.remove(&session);
        self.buckets.remove(&session);
    }

    /// The member with this nickname (case-insensitive).
    pub fn find(&self, nickname: &str) -> Option<SessionId> {
        let wanted = nickname.to_lowercase();
        self.members
            .iter()
            .find(|(_, n)| n.to_lowercase() == wanted)
            .map(|(s, _)| *s)
    }

    /// A member's chat message: checks it, then delivers, numbers and logs it.
    pub fn on_chat(
        &mut self,
        now: Instant,
        session: SessionId,
        text: &str,
        to: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        check_text(text).map_err(|m| CommandError::new(ErrorCode::BadField, m))?;
        let to = match to {
            Some(nick) => Some(self.find(nick).ok_or_else(|| {
                let shown: String = nick.chars().take(40).collect();
                CommandError::new(
                    ErrorCode::UnknownParticipant,
                    format!("nobody named `{shown}` is in this room"),
                )
            })?),
            None => None,
        };
        self.take_token(now, session)?;
        let from = self.members.get(&session).cloned().unwrap_or_default();
        self.deliver(now, from, Some(session), text, to, out);
        Ok(())
    }

    /// An operator's message (`from` is `server`), logged like a member's.
    pub fn admin_chat(
        &mut self,
        now: Instant,
        to: Option<SessionId>,
        text: &str,
        out: &mut Outbox,
    ) {
        self.deliver(now, SERVER_NICKNAME.to_owned(), None, text, to, out);
    }

    fn take_token(&mut self, now: Instant, session: SessionId) -> Result<(), CommandError> {
        let burst = self.cfg.burst;
        let taken = self
            .buckets
            .entry(session)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(now, burst, self.cfg.refill());
        if let Err(wait) = taken {
            let wait = wait.as_secs_f32();
            return Err(CommandError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} messages a minute (bursts of {}); retry in {wait:.1} s",
                    self.cfg.per_minute, self.cfg.burst
                ),
            ));
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        now: Instant,
        from: String,
        session_id: Option<SessionId>,
        text: &str,
        to: Option<SessionId>,
        out: &mut Outbox,
    ) {
        self.last_id += 1;
        let line = ChatLine {
            id: self.last_id,
            ts_ms: self.clock.unix_ms(now),
            from,
            session: session_id,
            text: text.to_owned(),
        };
        match to {
            Some(t) => {
                let notice = Notice::ChatPosted {
                    line,
                    to: Some((t, self.members.get(&t).cloned().unwrap_or_default())),
                };
                // One notice to the recipient and the sender's copy.
                let mut audience = vec![t];
                audience.extend(session_id.filter(|s| *s != t));
                out.notify_some(audience, notice);
            }
            None => {
                if self.cfg.history > 0 {
                    if self.history.len() == self.cfg.history {
                        self.history.pop_front();
                    }
                    self.history.push_back(line.clone());
                }
                out.notify_all(Notice::ChatPosted { line, to: None });
            }
        }
    }
}

/// Chat text rules: not blank, at most [`CHAT_MAX_CHARS`] characters, no
/// control characters but newline and tab.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("field `text` is empty".into());
    }
    let n = text.chars().count();
    if n > CHAT_MAX_CHARS {
        return Err(format!(
            "field `text` has {n} characters; at most {CHAT_MAX_CHARS} are allowed"
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(format!(
            "field `text` may not contain the control character {c:?}"
        ));
    }
    Ok(())
}
