//! The audio codecs a room may declare (room option `codec`), as wire
//! facts: the RTP payload type, encoding and clock rate its media carries.
//!
//! Clients build their pipelines from definition files (`pipelines`); each
//! built-in audio definition is one of these, with the same payload type
//! and clock rate (checked by the pipelines crate's tests). The router uses
//! the catalog to know a room's RTP clock rate (jitter statistics), which
//! payload type its members must send when seed clients share the room, and
//! how its seed front-ends re-frame PCM.

/// One audio codec as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// The name rooms and definitions use (`codec = "l16-44k"`).
    pub name: &'static str,
    /// RTP payload type (dynamic, the same in every Switchboard client).
    pub payload_type: u8,
    /// RTP encoding name (RFC 3551 / RFC 7587).
    pub encoding: &'static str,
    pub clock_rate: u32,
    pub channels: u8,
}

impl Codec {
    /// Raw 16-bit PCM (RFC 3551 L16, big-endian samples): what seed front-ends
    /// re-frame into and out of.
    pub fn is_l16(&self) -> bool {
        self.encoding == "L16"
    }
}

/// The codec of a room that declares none.
pub const DEFAULT: &str = "opus";

/// Every audio codec a room may declare.
pub const AUDIO: &[Codec] = &[
    Codec {
        name: "opus",
        payload_type: 111,
        encoding: "OPUS",
        clock_rate: 48_000,
        channels: 2,
    },
    Codec {
        name: "l16",
        payload_type: 112,
        encoding: "L16",
        clock_rate: 48_000,
        channels: 1,
    },
    Codec {
        name: "l16-44k",
        payload_type: 113,
        encoding: "L16",
        clock_rate: 44_100,
        channels: 1,
    },
    Codec {
        name: "l16-20k",
        payload_type: 114,
        encoding: "L16",
        clock_rate: 20_000,
        channels: 1,
    },
    Codec {
        name: "l16-16k",
        payload_type: 115,
        encoding: "L16",
        clock_rate: 16_000,
        channels: 1,
    },
];

/// The audio codec called `name`.
pub fn audio(name: &str) -> Option<&'static Codec> {
    AUDIO.iter().find(|c| c.name == name)
}

/// The names of every audio codec, for error texts.
pub fn names() -> String {
    AUDIO.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_payload_types_are_unique_and_dynamic() {
        for (i, a) in AUDIO.iter().enumerate() {
            assert!((96..=127).contains(&a.payload_type), "{a:?}");
            for b in &AUDIO[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.payload_type, b.payload_type);
            }
        }
        assert!(audio(DEFAULT).is_some());
        assert_eq!(audio("l16-20k").map(|c| c.clock_rate), Some(20_000));
        assert!(audio("mp3").is_none());
    }
}
