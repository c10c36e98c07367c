//! A room's part of its media worker's forwarding table: its group (the
//! bound members' addresses) and each member's two routes. Pure state: it is
//! told what a member looks like now and answers with the commands that
//! bring the worker in line, only the differences.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use plugin_api::{Receivers, SessionId};
use proto::control::Ssrcs;

use super::{Fanout, GroupId, MediaCommand, Route};

/// One member as its routes depend on it.
#[derive(Debug, Clone, Copy)]
pub struct MemberMedia<'a> {
    pub session: SessionId,
    /// In the room and bound at the room's worker: the address its media
    /// comes from. `None` takes it out of the table.
    pub addr: Option<SocketAddr>,
    pub ssrcs: Option<Ssrcs>,
    pub muted: bool,
    /// The plugin's route for it.
    pub receivers: &'a Receivers,
}

/// What the worker holds for one room.
#[derive(Debug)]
pub struct RoomRoutes {
    pub group: GroupId,
    /// RTP clock rate of the room's audio (its codec's).
    audio_clock_rate: u32,
    /// Payload type of the room's audio codec, and whether the worker
    /// drops audio of other payload types (while seed clients are in).
    audio_pt: u8,
    enforce_pt: bool,
    installed: HashMap<u32, Route>,
    grouped: HashMap<SessionId, SocketAddr>,
    /// Members whose route lists receivers one by one: they depend on the
    /// others' bindings.
    listed: HashSet<SessionId>,
}

impl RoomRoutes {
    pub fn new(group: GroupId, audio_clock_rate: u32, audio_pt: u8) -> Self {
        Self {
            group,
            audio_clock_rate,
            audio_pt,
            enforce_pt: false,
            installed: HashMap::new(),
            grouped: HashMap::new(),
            listed: HashSet::new(),
        }
    }

    /// Whether audio must be in the room's codec; true when it changed
    /// (every member's routes then need a resync).
    pub fn enforce_codec(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.enforce_pt, on) != on
    }

    /// Members whose routes list receivers one by one.
    pub fn listed(&self) -> Vec<SessionId> {
        self.listed.iter().copied().collect()
    }

    /// Brings one member's group entry and routes in line with `m`;
    /// `addr_of` gives another member's address, for listed receivers.
    /// Costs O(1) for routes to the group, whatever the room's size.
    pub fn resync(
        &mut self,
        m: MemberMedia<'_>,
        addr_of: impl Fn(SessionId) -> Option<SocketAddr>,
        out: &mut Vec<MediaCommand>,
    ) {
        let group = self.group;
        let media = if m.muted {
            Fanout::Nobody
        } else {
            match m.receivers {
                Receivers::Nobody => Fanout::Nobody,
                Receivers::AllOthers => Fanout::Group(group),
                Receivers::Only(list) => Fanout::List(
                    list.iter()
                        .filter(|o| **o != m.session)
                        .filter_map(|o| addr_of(*o))
                        .collect::<Arc<[SocketAddr]>>(),
                ),
            }
        };
        if matches!(m.receivers, Receivers::Only(_)) && m.addr.is_some() {
            self.listed.insert(m.session);
        } else {
            self.listed.remove(&m.session);
        }
        let had = self.grouped.get(&m.session).copied();
        if had != m.addr {
            if let Some(a) = had {
                self.grouped.remove(&m.session);
                out.push(MediaCommand::GroupRemove { group, addr: a });
            }
            if let Some(a) = m.addr {
                self.grouped.insert(m.session, a);
                out.push(MediaCommand::GroupAdd { group, addr: a });
            }
        }
        let Some(ssrcs) = m.ssrcs else { return };
        let audio_pt = self.enforce_pt.then_some(self.audio_pt);
        for (ssrc, clock_rate, payload_type) in [
            (ssrcs.audio, self.audio_clock_rate, audio_pt),
            (ssrcs.video, proto::media::VIDEO_CLOCK_RATE, None),
        ] {
            let want = m.addr.map(|source| Route {
                source,
                media: media.clone(),
                rtcp: Fanout::Group(group),
                clock_rate,
                payload_type,
            });
            match want {
                Some(route) if self.installed.get(&ssrc) != Some(&route) => {
                    self.installed.insert(ssrc, route.clone());
                    out.push(MediaCommand::SetRoute { ssrc, route });
                }
                None if self.installed.remove(&ssrc).is_some() => {
                    out.push(MediaCommand::RemoveRoute { ssrc });
                }
                _ => {}
            }
        }
    }

    /// Everything the room holds at the worker, removed (the room closes).
    pub fn clear(self, out: &mut Vec<MediaCommand>) {
        for ssrc in self.installed.into_keys() {
            out.push(MediaCommand::RemoveRoute { ssrc });
        }
        for addr in self.grouped.into_values() {
            out.push(MediaCommand::GroupRemove {
                group: self.group,
                addr,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn a_member_costs_one_group_entry_and_two_routes_and_only_changes_are_sent() {
        let mut r = RoomRoutes::new(7, proto::media::AUDIO_CLOCK_RATE, 111);
        let ssrcs = Ssrcs { audio: 1, video: 2 };
        let all = Receivers::AllOthers;
        let m = MemberMedia {
            session: 1,
            addr: Some(a(5000)),
            ssrcs: Some(ssrcs),
            muted: false,
            receivers: &all,
        };
        let mut out = Vec::new();
        r.resync(m, |_| None, &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(out[0], MediaCommand::GroupAdd { group: 7, .. }));
        out.clear();
        r.resync(m, |_| None, &mut out);
        assert!(out.is_empty(), "nothing changed: {out:?}");
        // Muted: the media route goes nowhere; RTCP still to the group.
        r.resync(MemberMedia { muted: true, ..m }, |_| None, &mut out);
        assert!(
            out.iter()
                .all(|c| matches!(c, MediaCommand::SetRoute { route, .. }
            if route.media == Fanout::Nobody && route.rtcp == Fanout::Group(7)))
        );
        out.clear();
        // Gone: out of the group, routes removed.
        r.resync(MemberMedia { addr: None, ..m }, |_| None, &mut out);
        assert_eq!(out.len(), 3);
        assert!(matches!(out[0], MediaCommand::GroupRemove { group: 7, .. }));
        out.clear();
        r.clear(&mut out);
        assert!(out.is_empty());
    }
}
