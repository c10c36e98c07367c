//! `voice`: open voice. Every member's media goes to every other member;
//! nobody asks for a floor. A room whose capacity is two is a call: the
//! second member joining starts it ([`Notice::CallStarted`] to both, naming
//! the other), and either leaving ends it for the one who stays
//! ([`Notice::CallEnded`] with the reason), who may wait in the room for the
//! next call. A third member is refused by the engine (room full).

use std::time::Instant;

use plugin_api::{
    CommandError, LeaveReason, Member, Notice, OptionError, OptionReader, Options, Outbox,
    PluginFactory, PluginInfo, Receivers, RelayPlugin, RoomCommand, RoomInfo, SessionId, TimerKey,
};

pub const KIND: &str = "voice";

/// Makes `voice` rooms.
pub struct VoiceFactory;

impl PluginFactory for VoiceFactory {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            kind: KIND,
            description: "Open voice: everyone hears everyone; with max_participants 2 the room is a call (CALL_STARTED, CALL_ENDED)",
            options: Vec::new(),
        }
    }

    fn create(
        &self,
        room: &RoomInfo<'_>,
        options: &Options,
    ) -> Result<Box<dyn RelayPlugin>, OptionError> {
        OptionReader::new(options).finish()?;
        Ok(Box::new(VoiceRoom::new(room)))
    }
}

/// One open-voice room.
pub struct VoiceRoom {
    call: bool,
    /// Members in the order they joined.
    members: Vec<(SessionId, String)>,
}

impl VoiceRoom {
    pub fn new(room: &RoomInfo<'_>) -> Self {
        Self {
            call: room.max_participants == 2,
            members: Vec::new(),
        }
    }

    /// Whether this room is a two-person call.
    pub fn is_call(&self) -> bool {
        self.call
    }
}

impl RelayPlugin for VoiceRoom {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_join(&mut self, _now: Instant, member: &Member, out: &mut Outbox) {
        out.set_route(member.session, Receivers::AllOthers);
        self.members.push((member.session, member.nickname.clone()));
        if self.call && self.members.len() == 2 {
            for (i, (to, _)) in self.members.iter().enumerate() {
                let (peer_id, peer) = &self.members[1 - i];
                out.notify(
                    *to,
                    Notice::CallStarted {
                        peer: peer.clone(),
                        peer_session: *peer_id,
                    },
                );
            }
        }
    }

    fn on_leave(
        &mut self,
        _now: Instant,
        session: SessionId,
        reason: LeaveReason,
        out: &mut Outbox,
    ) {
        let Some(i) = self.members.iter().position(|(s, _)| *s == session) else {
            return;
        };
        let (_, peer) = self.members.remove(i);
        if self.call && self.members.len() == 1 {
            out.notify(
                self.members[0].0,
                Notice::CallEnded {
                    peer,
                    peer_session: session,
                    reason,
                },
            );
        }
    }

    fn on_command(
        &mut self,
        _now: Instant,
        _session: SessionId,
        _cmd: &RoomCommand,
        _out: &mut Outbox,
    ) -> Result<(), CommandError> {
        // Nothing to ask for: everyone may always talk.
        Err(CommandError::not_supported(KIND))
    }

    fn on_timer(&mut self, _now: Instant, _key: TimerKey, _out: &mut Outbox) {}

    fn is_talking(&self, _session: SessionId) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
