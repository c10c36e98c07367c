//! The rooms: each room's plugin, members, routes, timers, lobby and member
//! list, and the indexes over them (names, meeting codes, placement on media
//! workers). The room state owner: it knows sessions only by id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use plugin_api::{Receivers, RelayPlugin, SessionId, TimerKey};

use super::{GroupId, RoomSpec, WorkerId, roster, routes};

pub(super) struct Room {
    pub(super) spec: RoomSpec,
    /// Its kind's options in force (told in JOINED).
    pub(super) settings: Arc<plugin_api::Options>,
    pub(super) plugin: Box<dyn RelayPlugin>,
    /// The media worker that forwards this room's packets.
    pub(super) worker: WorkerId,
    /// In joining order.
    pub(super) members: Vec<SessionId>,
    pub(super) routes: HashMap<SessionId, Receivers>,
    pub(super) timers: HashMap<TimerKey, Instant>,
    /// What the media worker holds for this room: its group and routes.
    pub(super) media: routes::RoomRoutes,
    /// Members that are seed front-ends' sessions: while there are any,
    /// audio in another codec than the room's is dropped and refused.
    pub(super) seed_members: usize,
    /// Its media is SRTP: only sessions that can key it join (never seed
    /// clients), each sending with a key of its own.
    pub(super) secure: bool,
    /// Members an operator muted: their media goes nowhere.
    pub(super) muted: HashSet<SessionId>,
    /// Sessions waiting for the plugin to admit or reject them.
    pub(super) waiting: Vec<SessionId>,
    /// The meeting code, for rooms made by `CREATE_MEETING`.
    pub(super) code: Option<String>,
    /// Closed when its last member leaves (rooms made by clients).
    pub(super) ephemeral: bool,
    /// The `seq` of the room's last event.
    pub(super) seq: u64,
    /// What members were told of each other.
    pub(super) roster: roster::Roster,
    /// More than `LARGE_ROOM` members (until it shrinks to
    /// `LARGE_ROOM_UNTIL`): `member_pages` clients get counts, not lists.
    pub(super) large: bool,
    /// Each member's member-list entry in its current state, shared by
    /// every list and delta that shows it (front-ends may keep what they
    /// render of it).
    pub(super) entries: HashMap<SessionId, Arc<proto::control::UserInfo>>,
    /// The nicknames of members and waiting sessions (by
    /// [`super::nickname_key`]), and back: a join checks its nickname in
    /// O(1), however large the room.
    nicknames: HashMap<String, SessionId>,
    nickname_of: HashMap<SessionId, String>,
}

impl Room {
    pub(super) fn nickname_taken(&self, nickname: &str) -> bool {
        self.nicknames.contains_key(&super::nickname_key(nickname))
    }

    /// `id` (waiting or a member) goes by `nickname` here.
    pub(super) fn claim_nickname(&mut self, id: SessionId, nickname: &str) {
        let key = super::nickname_key(nickname);
        self.nicknames.insert(key.clone(), id);
        self.nickname_of.insert(id, key);
    }

    /// `id` is neither waiting nor a member any more.
    pub(super) fn release_nickname(&mut self, id: SessionId) {
        if let Some(key) = self.nickname_of.remove(&id)
            && self.nicknames.get(&key) == Some(&id)
        {
            self.nicknames.remove(&key);
        }
    }
}

/// Every room and the indexes over them.
#[derive(Default)]
pub(super) struct Rooms {
    map: BTreeMap<String, Room>,
    /// Meeting code → room name.
    codes: HashMap<String, String>,
    /// The group id the last room got.
    last_group: GroupId,
}

impl Rooms {
    pub(super) fn get(&self, name: &str) -> Option<&Room> {
        self.map.get(name)
    }
    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.map.get_mut(name)
    }
    pub(super) fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
    pub(super) fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    /// The media worker a new room goes to: the one with the fewest rooms
    /// (the lowest on a tie), of `workers`. A room stays on its worker for
    /// life: its members bound there.
    pub(super) fn place(&self, workers: usize) -> WorkerId {
        let mut per_worker = vec![0usize; workers.max(1)];
        for r in self.map.values() {
            if let Some(n) = per_worker.get_mut(r.worker) {
                *n += 1;
            }
        }
        per_worker
            .iter()
            .enumerate()
            .min_by_key(|(i, n)| (**n, *i))
            .map_or(0, |(i, _)| i)
    }

    /// Adds a room made from `spec` with its `plugin` on `worker`.
    pub(super) fn insert(
        &mut self,
        spec: RoomSpec,
        plugin: Box<dyn RelayPlugin>,
        worker: WorkerId,
        code: Option<String>,
        ephemeral: bool,
        settings: plugin_api::Options,
    ) {
        self.last_group += 1;
        let name = spec.name.clone();
        // Checked when the plugin was made.
        let codec = crate::registry::room_codec(&spec.options).ok();
        let clock_rate = codec.map_or(proto::media::AUDIO_CLOCK_RATE, |c| c.clock_rate);
        let audio_pt = codec.map_or(111, |c| c.payload_type);
        let secure = crate::registry::room_secure(&spec.options).unwrap_or(false);
        if let Some(code) = &code {
            self.codes.insert(code.clone(), name.clone());
        }
        self.map.insert(
            name,
            Room {
                spec,
                settings: Arc::new(settings),
                plugin,
                worker,
                members: Vec::new(),
                routes: HashMap::new(),
                timers: HashMap::new(),
                media: routes::RoomRoutes::new(self.last_group, clock_rate, audio_pt),
                muted: HashSet::new(),
                secure,
                seed_members: 0,
                waiting: Vec::new(),
                code,
                ephemeral,
                seq: 0,
                roster: roster::Roster::default(),
                large: false,
                entries: HashMap::new(),
                nicknames: HashMap::new(),
                nickname_of: HashMap::new(),
            },
        );
    }

    /// Forgets a room and frees its code.
    pub(super) fn remove(&mut self, name: &str) -> Option<Room> {
        let r = self.map.remove(name)?;
        if let Some(code) = &r.code {
            self.codes.remove(code);
        }
        Some(r)
    }

    /// The room a meeting code names.
    pub(super) fn by_code(&self, code: &str) -> Option<String> {
        self.codes.get(code).cloned()
    }

    pub(super) fn code_taken(&self, code: &str) -> bool {
        self.codes.contains_key(code)
    }
}
