//! `chat`: a chat room with exclusive voice.
//!
//! Text goes through [`ChatLog`] (numbered, time-stamped, history for
//! joiners, private messages, size and rate limits); voice is `ptt`'s
//! [`ExclusiveVoice`], so the floor rules, queue and burst limit are the same
//! code, and USERLIST's `talking` shows the floor holder.

mod log;

use std::time::Instant;

use plugin_api::{
    AdminCommand, AdminError, CommandError, LeaveReason, Member, OptionError, OptionReader,
    Options, Outbox, PluginFactory, PluginInfo, RelayPlugin, RoomCommand, RoomInfo, SessionId,
    TimerKey,
};
use ptt::ExclusiveVoice;

pub use log::{ChatConfig, ChatLog, check_text};

/// Registry name of the kind.
pub const KIND: &str = "chat";

/// One chat room.
#[derive(Debug)]
pub struct ChatRoom {
    chat: ChatLog,
    voice: ExclusiveVoice,
}

impl ChatRoom {
    pub fn chat(&self) -> &ChatLog {
        &self.chat
    }
}

impl RelayPlugin for ChatRoom {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_join(&mut self, now: Instant, member: &Member, out: &mut Outbox) {
        self.voice.on_join(now, member, out);
        self.chat.on_join(now, member, out);
    }

    fn on_leave(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: LeaveReason,
        out: &mut Outbox,
    ) {
        self.voice.on_leave(now, session, reason, out);
        self.chat.on_leave(session);
    }

    fn on_command(
        &mut self,
        now: Instant,
        session: SessionId,
        cmd: &RoomCommand,
        out: &mut Outbox,
    ) -> Result<(), CommandError> {
        if let RoomCommand::Chat { text, to } = cmd {
            return self.chat.on_chat(now, session, text, to.as_deref(), out);
        }
        if self.voice.on_command(now, session, cmd, out)? {
            Ok(())
        } else {
            Err(CommandError::not_supported(KIND))
        }
    }

    fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox) {
        self.voice.on_timer(now, key, out);
    }

    fn is_talking(&self, session: SessionId) -> bool {
        self.voice.is_talking(session)
    }

    fn on_admin(
        &mut self,
        now: Instant,
        cmd: AdminCommand,
        out: &mut Outbox,
    ) -> Result<(), AdminError> {
        match cmd {
            AdminCommand::Chat { to, text } => {
                self.chat.admin_chat(now, to, &text, out);
                Ok(())
            }
            AdminCommand::Lobby { .. } => Err(AdminError::NotSupported(
                "rooms of kind `chat` have no lobby".into(),
            )),
            other => self.voice.on_admin(now, other, out),
        }
    }
}

/// Makes `chat` rooms.
#[derive(Debug, Default)]
pub struct ChatFactory;

impl PluginFactory for ChatFactory {
    fn info(&self) -> PluginInfo {
        let mut options = ChatConfig::option_info();
        options.extend(ptt::floor_option_info());
        PluginInfo {
            kind: KIND,
            description: "chat with exclusive voice: text chat with history and private messages; one speaker at a time as in ptt",
            options,
        }
    }

    fn create(
        &self,
        room: &RoomInfo<'_>,
        options: &Options,
    ) -> Result<Box<dyn RelayPlugin>, OptionError> {
        let mut r = OptionReader::new(options);
        let chat = ChatConfig::read(&mut r)?;
        let floor = ptt::floor_options(&mut r)?;
        r.finish()?;
        Ok(Box::new(ChatRoom {
            chat: ChatLog::new(chat, room.clock),
            voice: ExclusiveVoice::new(room.name, floor),
        }))
    }
}

#[cfg(test)]
mod tests;
