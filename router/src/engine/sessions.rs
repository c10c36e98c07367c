//! The sessions: who is connected, with which identity (nickname, SSRCs,
//! media token), where its media is bound, and its budgets (bad lines, join
//! attempts per address). The session state owner: everything here is
//! about one session or the indexes over them (tokens, bound addresses,
//! SSRCs in use), never about rooms.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use plugin_api::{SessionId, TokenBucket};
use proto::control::{self, Ssrcs};
use rand::{Rng, rngs::StdRng};

use super::WorkerId;

#[derive(Debug)]
pub(super) struct Identity {
    pub(super) nickname: String,
    pub(super) ssrcs: Ssrcs,
    pub(super) token: String,
    /// Presented in a later HELLO, gives this session back to a new
    /// connection (rotated at each use).
    pub(super) resume: String,
    /// How it hears of its room's members.
    pub(super) lists: MemberLists,
    /// What it may do, and the token that said so.
    pub(super) access: Access,
    /// With `stun_integrity`: its public STUN USERNAME (the media token is
    /// then the MESSAGE-INTEGRITY key).
    pub(super) media_id: Option<String>,
    /// It asked for `srtp` on a TLS connection: it may join secure rooms.
    pub(super) srtp: bool,
}

/// Binding transactions remembered per session, to refuse replays.
pub(super) const STUN_SEEN: usize = 64;

/// What a session may do (its token's grants, or an open router's), and
/// the identity and token id it may be revoked by.
#[derive(Debug, Clone)]
pub(super) struct Access {
    pub(super) grants: std::sync::Arc<crate::auth::Grants>,
    /// The token's identity and id; `None` without a token.
    pub(super) token: Option<(String, Option<String>)>,
}

/// How a session hears of its room's members (HELLO's features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberLists {
    /// The whole `USERLIST` on every change (protocol version 1's default).
    Whole,
    /// `member_deltas`: the whole list once, then deltas.
    Deltas,
    /// `member_pages`: as `Deltas` in a listed room; in a large one, counts,
    /// and pages on request.
    Pages,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) identity: Option<Identity>,
    pub(super) room: Option<String>,
    /// The room whose admission this session waits for.
    pub(super) waiting: Option<String>,
    pub(super) peer: SocketAddr,
    pub(super) joined_at: Instant,
    pub(super) last_seen: Instant,
    /// The UDP address bound with STUN, and the worker it was bound at.
    pub(super) media: Option<(WorkerId, SocketAddr)>,
    /// A seed front-end's session.
    pub(super) legacy: bool,
    error_budget: u32,
    last_refill: Instant,
    /// Whether this connection has counted a strike for malformed input
    /// before HELLO (one per connection).
    pub(super) struck: bool,
    /// Refused commands ([`super::EngineConfig::rates`]`.refusals`).
    pub(super) refusals: TokenBucket,
    /// Commands by [`super::RateKind`].
    pub(super) rates: [TokenBucket; 3],
    /// Its connection dropped; it may be resumed until then.
    pub(super) detached: Option<Instant>,
    /// Its latest signed Binding transactions and where each came from.
    pub(super) stun_seen: std::collections::VecDeque<([u8; 12], SocketAddr)>,
    /// The nonce a move of its media to a new address must carry.
    pub(super) nonce: Option<String>,
    /// Its control connection is TLS (the driver said so before any line).
    pub(super) encrypted: bool,
    /// In a secure room: the SRTP master key and salt it sends with, made
    /// when it entered and forgotten when it leaves.
    pub(super) srtp_key: Option<[u8; proto::control::SRTP_KEY_BYTES]>,
}

impl Session {
    pub(super) fn new(peer: SocketAddr, now: Instant, cfg: &super::EngineConfig) -> Self {
        let r = &cfg.rates;
        let error_burst = cfg.error_burst;
        Self {
            struck: false,
            legacy: false,
            refusals: TokenBucket::full(r.refusals.burst, now),
            rates: [
                TokenBucket::full(r.membership.burst, now),
                TokenBucket::full(r.floor.burst, now),
                TokenBucket::full(r.create.burst, now),
            ],
            identity: None,
            room: None,
            waiting: None,
            peer,
            joined_at: now,
            last_seen: now,
            media: None,
            detached: None,
            stun_seen: std::collections::VecDeque::new(),
            nonce: None,
            encrypted: false,
            srtp_key: None,
            error_budget: error_burst,
            last_refill: now,
        }
    }

    /// Spends one bad line of the budget (`burst`, one back per `refill`);
    /// `false` when none was left.
    pub(super) fn spend_error(&mut self, now: Instant, burst: u32, refill: Duration) -> bool {
        let refill = refill.as_nanos().max(1);
        let earned = (now.saturating_duration_since(self.last_refill).as_nanos() / refill) as u32;
        if earned > 0 {
            self.error_budget = (self.error_budget + earned).min(burst);
            self.last_refill = now;
        }
        if self.error_budget == 0 {
            return false;
        }
        self.error_budget -= 1;
        true
    }
}

/// What a STUN binding changed.
#[derive(Debug, Default)]
pub(super) struct Rebind {
    /// The session that held the address before (a client restarted on the
    /// same port): it is unbound now.
    pub(super) displaced: Option<SessionId>,
    /// The binding this session had before, now gone.
    pub(super) previous: Option<(WorkerId, SocketAddr)>,
}

/// Every session and the indexes over them.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    map: HashMap<SessionId, Session>,
    tokens: HashMap<String, SessionId>,
    /// Public STUN ids (`stun_integrity`).
    media_ids: HashMap<String, SessionId>,
    /// Which session each (worker, address) is bound to.
    addr_owner: HashMap<(WorkerId, SocketAddr), SessionId>,
    used_ssrcs: HashSet<u32>,
    /// `REQUEST_JOIN`/`CREATE_ROOM` budget per IP address.
    join_budget: HashMap<IpAddr, TokenBucket>,
    /// Connections open per IP address, welcomed or not.
    per_address: HashMap<IpAddr, usize>,
    /// Sessions that have said HELLO.
    welcomed: usize,
    /// Resume tokens of welcomed sessions.
    resumes: HashMap<String, SessionId>,
    /// A resumed session is spoken to through a connection of another id:
    /// connection → session, and session → connection.
    session_of: HashMap<SessionId, SessionId>,
    connection_of: HashMap<SessionId, SessionId>,
    /// Sessions without a connection, waiting to be resumed.
    detached: HashSet<SessionId>,
    /// Ended sessions whose connection is still to be told their end.
    stale: Vec<SessionId>,
}

impl Sessions {
    pub(super) fn get(&self, id: &SessionId) -> Option<&Session> {
        self.map.get(id)
    }
    pub(super) fn get_mut(&mut self, id: &SessionId) -> Option<&mut Session> {
        self.map.get_mut(id)
    }
    pub(super) fn contains_key(&self, id: &SessionId) -> bool {
        self.map.contains_key(id)
    }
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
    /// The session bound to `addr` at `worker`.
    pub(super) fn owner(&self, worker: WorkerId, addr: SocketAddr) -> Option<SessionId> {
        self.addr_owner.get(&(worker, addr)).copied()
    }
    pub(super) fn ids(&self) -> Vec<SessionId> {
        self.map.keys().copied().collect()
    }
    pub(super) fn insert(&mut self, id: SessionId, s: Session) {
        *self.per_address.entry(s.peer.ip()).or_default() += 1;
        if let Some(old) = self.map.insert(id, s) {
            self.forget_address(old.peer.ip());
        }
    }

    fn forget_address(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
    }

    /// Connections open from `ip`.
    pub(super) fn connections_from(&self, ip: IpAddr) -> usize {
        self.per_address.get(&ip).copied().unwrap_or(0)
    }

    /// Sessions that said HELLO, and those that have not yet.
    pub(super) fn welcomed(&self) -> usize {
        self.welcomed
    }

    pub(super) fn pending(&self) -> usize {
        self.map.len() - self.welcomed
    }

    pub(super) fn identity(&self, id: SessionId) -> Option<&Identity> {
        self.map.get(&id)?.identity.as_ref()
    }

    pub(super) fn nickname(&self, id: SessionId) -> String {
        self.identity(id)
            .map(|i| i.nickname.clone())
            .unwrap_or_default()
    }

    /// Gives a welcomed session its identity, with the HELLO features it
    /// was `granted`: two fresh SSRCs and a media token, drawn from `rng`.
    pub(super) fn welcome(
        &mut self,
        id: SessionId,
        nickname: String,
        granted: &[String],
        access: Access,
        rng: &mut StdRng,
    ) -> Option<&Identity> {
        if !self.map.contains_key(&id) {
            return None;
        }
        let has = |f: &str| granted.iter().any(|g| g == f);
        let lists = if has(control::FEATURE_MEMBER_PAGES) {
            MemberLists::Pages
        } else if has(control::FEATURE_MEMBER_DELTAS) {
            MemberLists::Deltas
        } else {
            MemberLists::Whole
        };
        let (stun_integrity, srtp) = (
            has(control::FEATURE_STUN_INTEGRITY),
            has(control::FEATURE_SRTP),
        );
        let ssrcs = Ssrcs {
            audio: self.fresh_ssrc(rng),
            video: self.fresh_ssrc(rng),
        };
        let token = format!("{:032x}", rng.random::<u128>());
        self.tokens.insert(token.clone(), id);
        let resume = format!("{:032x}", rng.random::<u128>());
        self.resumes.insert(resume.clone(), id);
        let media_id = stun_integrity.then(|| format!("{:016x}", rng.random::<u64>()));
        if let Some(m) = &media_id {
            self.media_ids.insert(m.clone(), id);
        }
        let s = self.map.get_mut(&id)?;
        if s.identity.is_none() {
            self.welcomed += 1;
        }
        s.identity = Some(Identity {
            nickname,
            ssrcs,
            token,
            resume,
            lists,
            access,
            media_id,
            srtp,
        });
        s.identity.as_ref()
    }

    fn fresh_ssrc(&mut self, rng: &mut StdRng) -> u32 {
        loop {
            let s: u32 = rng.random();
            if s != 0 && self.used_ssrcs.insert(s) {
                return s;
            }
        }
    }

    /// The session a public STUN id belongs to.
    pub(super) fn by_media_id(&self, id: &str) -> Option<SessionId> {
        self.media_ids.get(id).copied()
    }

    /// The session a media token belongs to.
    pub(super) fn by_token(&self, token: &str) -> Option<SessionId> {
        self.tokens.get(token).copied()
    }

    /// Binds `id`'s media to `addr` at `worker`; `None` when that is its
    /// binding already.
    pub(super) fn bind(
        &mut self,
        id: SessionId,
        worker: WorkerId,
        addr: SocketAddr,
    ) -> Option<Rebind> {
        let old = self.map.get(&id)?.media;
        let new = (worker, addr);
        if old == Some(new) {
            return None;
        }
        let mut change = Rebind::default();
        // An address belongs to one session.
        if let Some(prev) = self.addr_owner.insert(new, id)
            && prev != id
            && let Some(p) = self.map.get_mut(&prev)
        {
            p.media = None;
            change.displaced = Some(prev);
        }
        // One binding per session: binding elsewhere moves it.
        if let Some(o) = old {
            self.addr_owner.remove(&o);
            change.previous = Some(o);
        }
        if let Some(s) = self.map.get_mut(&id) {
            s.media = Some(new);
        }
        Some(change)
    }

    /// Forgets a session and its index entries; returns it.
    pub(super) fn remove(&mut self, id: SessionId) -> Option<Session> {
        let s = self.map.remove(&id)?;
        // A detached session's connection was forgotten when it dropped.
        if s.detached.is_none() {
            self.forget_address(s.peer.ip());
        }
        self.detached.remove(&id);
        // What was told to it last (LEFT, a closing ERROR) and its close are
        // still queued: its connection is forgotten once they are out.
        if self.connection_of.contains_key(&id) {
            self.stale.push(id);
        }
        if let Some(m) = s.media {
            self.addr_owner.remove(&m);
        }
        if let Some(ident) = &s.identity {
            self.welcomed -= 1;
            self.tokens.remove(&ident.token);
            self.resumes.remove(&ident.resume);
            if let Some(m) = &ident.media_id {
                self.media_ids.remove(m);
            }
            for ssrc in ident.ssrcs.iter() {
                self.used_ssrcs.remove(&ssrc);
            }
        }
        Some(s)
    }

    /// The session a connection speaks for: itself, unless it resumed one.
    pub(super) fn session_of(&self, connection: SessionId) -> SessionId {
        self.session_of
            .get(&connection)
            .copied()
            .unwrap_or(connection)
    }

    /// The connection a session is spoken to through (for outputs).
    pub(super) fn connection_of(&self, session: SessionId) -> SessionId {
        self.connection_of.get(&session).copied().unwrap_or(session)
    }

    /// Forgets the connections of ended sessions (their last outputs are
    /// out).
    pub(super) fn forget_stale(&mut self) {
        for id in std::mem::take(&mut self.stale) {
            if !self.map.contains_key(&id)
                && let Some(conn) = self.connection_of.remove(&id)
            {
                self.session_of.remove(&conn);
            }
        }
    }

    /// Sessions waiting to be resumed.
    pub(super) fn detached(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.detached.iter().copied()
    }

    /// Whether any session is spoken to through another connection id.
    pub(super) fn any_resumed(&self) -> bool {
        !self.connection_of.is_empty()
    }

    /// The detached session a resume token names.
    pub(super) fn by_resume(&self, token: &str) -> Option<SessionId> {
        self.resumes
            .get(token)
            .copied()
            .filter(|id| self.map.get(id).is_some_and(|s| s.detached.is_some()))
    }

    /// Its connection dropped: kept, without a connection, until `until`.
    pub(super) fn detach(&mut self, id: SessionId, until: Instant) {
        let Some(s) = self.map.get_mut(&id) else {
            return;
        };
        if s.detached.is_some() {
            return;
        }
        s.detached = Some(until);
        self.detached.insert(id);
        let ip = s.peer.ip();
        self.forget_address(ip);
        if let Some(conn) = self.connection_of.remove(&id) {
            self.session_of.remove(&conn);
        }
    }

    /// Detached session `id` continues on connection `conn` (a new,
    /// unwelcomed session, dropped here without a trace), with a fresh
    /// resume token.
    pub(super) fn adopt(
        &mut self,
        conn: SessionId,
        id: SessionId,
        rng: &mut StdRng,
    ) -> Option<String> {
        if self.map.get(&id).is_none_or(|s| s.detached.is_none()) {
            return None;
        }
        let new = self.map.remove(&conn)?;
        let fresh = format!("{:032x}", rng.random::<u128>());
        let s = self.map.get_mut(&id)?;
        s.detached = None;
        self.detached.remove(&id);
        // The connection's address count moves with it.
        s.peer = new.peer;
        s.struck = new.struck;
        s.encrypted = new.encrypted;
        let old = s
            .identity
            .as_mut()
            .map(|i| std::mem::replace(&mut i.resume, fresh.clone()));
        if let Some(old) = old {
            self.resumes.remove(&old);
        }
        self.resumes.insert(fresh.clone(), id);
        if conn != id {
            self.session_of.insert(conn, id);
            self.connection_of.insert(id, conn);
        }
        Some(fresh)
    }

    /// Spends one join attempt of `ip`, or says how long until the next.
    pub(super) fn take_join_attempt(
        &mut self,
        now: Instant,
        ip: IpAddr,
        burst: u32,
        refill: Duration,
    ) -> Result<(), Duration> {
        let burst = burst.max(1);
        // Forget addresses whose budget is full again, so the table stays small.
        if self.join_budget.len() > 4096 {
            let full = refill * burst;
            self.join_budget
                .retain(|_, b| now.saturating_duration_since(b.earned_at()) < full);
        }
        self.join_budget
            .entry(ip)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(now, burst, refill)
    }
}
