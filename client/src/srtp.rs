//! The SRTP keys of the secure room a session is in (docs/security.md,
//! "Secure rooms").
//!
//! The router hands every member a key of its own in JOINED and the other
//! members' keys in `SRTP_KEYS`; a [`Keyring`] follows those messages as
//! they arrive (in the session's reader, before the events are read), so
//! the media pipelines find a sender's key by SSRC when its first packet
//! comes. The keys never leave this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use base64::Engine as _;
use proto::control::{SRTP_KEY_BYTES, SRTP_PROFILE, ServerMessage, SrtpKey};

/// An SRTP master key and salt ([`proto::control::SRTP_PROFILE`]).
pub type Key = [u8; SRTP_KEY_BYTES];

/// What changed in a [`Keyring`], for pipelines that cache keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// Our own key (a new stay in a secure room).
    Own,
    /// The key of the sender of this SSRC was replaced.
    Peer(u32),
    /// We left the room: no keys any more.
    Cleared,
}

/// Told of every [`KeyChange`] while it is alive ([`Keyring::watch`]).
pub type Watcher = dyn Fn(KeyChange) + Send + Sync;

#[derive(Default)]
struct Ring {
    room: Option<String>,
    own: Option<Key>,
    peers: HashMap<u32, Key>,
    watchers: Vec<Weak<Watcher>>,
}

/// The keys of the room we are in: ours, and each other sender's by SSRC.
/// Cheap to clone; clones share the keys.
#[derive(Clone, Default)]
pub struct Keyring(Arc<Mutex<Ring>>);

impl std::fmt::Debug for Keyring {
    // Never prints a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.lock();
        f.debug_struct("Keyring")
            .field("room", &r.room)
            .field("own", &r.own.is_some())
            .field("peers", &r.peers.len())
            .finish()
    }
}

/// A key as the router sends it; `None` for another profile or a key of
/// the wrong length (which a pipeline could not use).
pub fn decode(key: &SrtpKey) -> Option<Key> {
    if key.profile != SRTP_PROFILE {
        tracing::warn!(profile = %key.profile, "SRTP key of an unknown profile ignored");
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&key.key)
        .ok()?;
    bytes.try_into().ok()
}

impl Keyring {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows one server message: JOINED starts a new set of keys (ours,
    /// if the room is secure), `SRTP_KEYS` adds senders' keys, LEFT clears
    /// them all.
    pub fn observe(&self, m: &ServerMessage) {
        let changes = {
            let mut r = self.lock();
            match m {
                ServerMessage::Joined { room, srtp, .. } => {
                    r.room = Some(room.clone());
                    r.own = srtp.as_ref().and_then(decode);
                    r.peers.clear();
                    vec![KeyChange::Cleared, KeyChange::Own]
                }
                ServerMessage::SrtpKeys { room, keys } if r.room.as_ref() == Some(room) => {
                    let mut changes = Vec::new();
                    for k in keys {
                        let Some(key) = decode(&k.key) else { continue };
                        for &ssrc in &k.ssrcs {
                            if r.peers.insert(ssrc, key).is_some_and(|old| old != key) {
                                changes.push(KeyChange::Peer(ssrc));
                            }
                        }
                    }
                    changes
                }
                ServerMessage::Left { room, .. } if r.room.as_ref() == Some(room) => {
                    r.room = None;
                    r.own = None;
                    r.peers.clear();
                    vec![KeyChange::Cleared]
                }
                _ => return,
            }
        };
        if changes.is_empty() {
            return;
        }
        // Call the watchers outside the lock: they may read the ring.
        let watchers: Vec<Arc<Watcher>> = {
            let mut r = self.lock();
            r.watchers.retain(|w| w.strong_count() > 0);
            r.watchers.iter().filter_map(Weak::upgrade).collect()
        };
        for w in watchers {
            for &c in &changes {
                w(c);
            }
        }
    }

    /// Whether the room we are in is secure (we hold a key of our own).
    pub fn secure(&self) -> bool {
        self.lock().own.is_some()
    }

    /// The key everything we send is protected with.
    pub fn own(&self) -> Option<Key> {
        self.lock().own
    }

    /// The key of the member that sends with `ssrc`.
    pub fn peer(&self, ssrc: u32) -> Option<Key> {
        self.lock().peers.get(&ssrc).copied()
    }

    /// How many SSRCs we hold keys for.
    pub fn peers(&self) -> usize {
        self.lock().peers.len()
    }

    /// Calls `watcher` on every change for as long as the caller keeps the
    /// `Arc` (dropping it unsubscribes).
    pub fn watch(&self, watcher: &Arc<Watcher>) {
        self.lock().watchers.push(Arc::downgrade(watcher));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::control::SenderKey;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn wire(byte: u8) -> SrtpKey {
        SrtpKey {
            profile: SRTP_PROFILE.into(),
            key: base64::engine::general_purpose::STANDARD.encode([byte; SRTP_KEY_BYTES]),
        }
    }

    fn joined(room: &str, srtp: Option<SrtpKey>) -> ServerMessage {
        let line = serde_json::json!({
            "type": "JOINED", "room": room, "kind": "ptt", "udp_port": 1,
            "settings": {}, "secure": srtp.is_some(), "srtp": srtp,
        });
        match serde_json::from_value(line) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn keys(room: &str, ssrc: u32, byte: u8) -> ServerMessage {
        ServerMessage::SrtpKeys {
            room: room.into(),
            keys: vec![SenderKey {
                session_id: 9,
                ssrcs: vec![ssrc, ssrc + 1],
                key: wire(byte),
            }],
        }
    }

    #[test]
    fn follows_joined_srtp_keys_and_left() {
        let ring = Keyring::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let watcher: Arc<Watcher> = Arc::new(move |c| {
            if matches!(c, KeyChange::Peer(100)) {
                s.fetch_add(1, Ordering::Relaxed);
            }
        });
        ring.watch(&watcher);
        ring.observe(&joined("r", Some(wire(1))));
        assert_eq!(ring.own(), Some([1; SRTP_KEY_BYTES]));
        ring.observe(&keys("r", 100, 2));
        ring.observe(&keys("elsewhere", 200, 3));
        assert_eq!(ring.peer(101), Some([2; SRTP_KEY_BYTES]));
        assert_eq!((ring.peer(200), ring.peers()), (None, 2));
        // The same key again is no change; a new stay's key is.
        ring.observe(&keys("r", 100, 2));
        assert_eq!(seen.load(Ordering::Relaxed), 0);
        ring.observe(&keys("r", 100, 4));
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        assert_eq!(ring.peer(100), Some([4; SRTP_KEY_BYTES]));
        ring.observe(&ServerMessage::Left {
            room: "r".into(),
            reason: proto::control::LeaveReason::Left,
            message: None,
        });
        assert!(!ring.secure() && ring.peers() == 0);
        // A plain room has no key; a key of the wrong size or profile is
        // not taken.
        ring.observe(&joined("plain", None));
        assert!(!ring.secure());
        let short = SrtpKey {
            profile: SRTP_PROFILE.into(),
            key: base64::engine::general_purpose::STANDARD.encode([1u8; 16]),
        };
        let other = SrtpKey {
            profile: "AEAD_AES_256_GCM".into(),
            key: wire(1).key,
        };
        assert_eq!((decode(&short), decode(&other)), (None, None));
        // Dropping the watcher unsubscribes it.
        drop(watcher);
        ring.observe(&joined("r", Some(wire(1))));
        ring.observe(&keys("r", 100, 5));
        assert_eq!(seen.load(Ordering::Relaxed), 1);
    }
}

/// GStreamer's `srtpenc` and `srtpdec` set up for a secure room: RTP
/// encrypted and authenticated, RTCP authenticated only (the router reads
/// receiver reports), with our key and the senders' from the ring.
#[cfg(feature = "av")]
pub(crate) mod elements {
    use std::sync::Arc;

    use gst::prelude::*;

    use super::{Key, KeyChange, Keyring, Watcher};

    // RFC 3711 names in GStreamer's enums, for SRTP_PROFILE.
    const RTP_CIPHER: &str = "aes-128-icm";
    const AUTH: &str = "hmac-sha1-80";
    const RTCP_CIPHER: &str = "null";

    /// The two elements of a lane, and the watcher that keeps them keyed
    /// (alive while the lane is).
    pub(crate) struct Protection {
        pub enc: gst::Element,
        pub dec: gst::Element,
        pub _watcher: Arc<Watcher>,
    }

    fn key_buffer(key: &Key) -> gst::Buffer {
        gst::Buffer::from_slice(key.to_vec())
    }

    /// What `srtpdec` asks for by SSRC: the sender's key and profile.
    fn key_caps(key: &Key) -> gst::Caps {
        gst::Caps::builder("application/x-srtp")
            .field("srtp-key", key_buffer(key))
            .field("srtp-cipher", RTP_CIPHER)
            .field("srtp-auth", AUTH)
            .field("srtcp-cipher", RTCP_CIPHER)
            .field("srtcp-auth", AUTH)
            .build()
    }

    pub(crate) fn build(ring: &Keyring, own: Key) -> Result<Protection, gst::glib::BoolError> {
        let enc = gst::ElementFactory::make("srtpenc")
            .name("srtpenc")
            .property("key", key_buffer(&own))
            .property_from_str("rtp-cipher", RTP_CIPHER)
            .property_from_str("rtp-auth", AUTH)
            .property_from_str("rtcp-cipher", RTCP_CIPHER)
            .property_from_str("rtcp-auth", AUTH)
            .build()?;
        let dec = gst::ElementFactory::make("srtpdec")
            .name("srtpdec")
            .build()?;
        // A sender whose key has not come yet: its packets are dropped
        // (asked again for the next one), as a network would lose them.
        let keys = ring.clone();
        dec.connect("request-key", false, move |args| {
            let ssrc = args.get(1).and_then(|v| v.get::<u32>().ok());
            let caps = ssrc.and_then(|s| keys.peer(s)).map(|k| key_caps(&k));
            if caps.is_none() {
                tracing::debug!(?ssrc, "no SRTP key for this sender yet");
            }
            Some(caps.to_value())
        });
        let (enc_w, dec_w, keys) = (enc.downgrade(), dec.downgrade(), ring.clone());
        let watcher: Arc<Watcher> = Arc::new(move |change| match change {
            KeyChange::Own => {
                if let (Some(enc), Some(k)) = (enc_w.upgrade(), keys.own()) {
                    enc.set_property("key", key_buffer(&k));
                }
            }
            KeyChange::Peer(ssrc) => {
                if let Some(dec) = dec_w.upgrade() {
                    dec.emit_by_name::<()>("remove-key", &[&ssrc]);
                }
            }
            KeyChange::Cleared => {
                if let Some(dec) = dec_w.upgrade() {
                    dec.emit_by_name::<()>("clear-keys", &[]);
                }
            }
        });
        ring.watch(&watcher);
        Ok(Protection {
            enc,
            dec,
            _watcher: watcher,
        })
    }
}
