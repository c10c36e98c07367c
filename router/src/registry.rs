//! The plugin registry: room kinds by name, compiled in.
//!
//! Rust has no stable ABI, so plugins are crates linked into the router, not
//! shared objects; a room's kind is still chosen at run time by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use plugin_api::{
    OptionError, OptionInfo, OptionType, Options, PluginFactory, PluginInfo, RelayPlugin, RoomInfo,
};

/// Why a room could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("unknown room kind `{kind}`; available: {available}")]
    UnknownKind { kind: String, available: String },
    #[error("bad room name: {0}")]
    BadName(String),
    #[error("room `{0}` already exists")]
    Exists(String),
    #[error("the router hosts at most {0} rooms")]
    TooMany(usize),
    #[error(transparent)]
    Option(#[from] OptionError),
}

/// Room kinds by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn PluginFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every kind built into this router.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register(Arc::new(ptt::PttFactory));
        r.register(Arc::new(voice::VoiceFactory));
        r.register(Arc::new(chat::ChatFactory));
        r.register(Arc::new(meeting::MeetingFactory));
        r
    }

    pub fn register(&mut self, factory: Arc<dyn PluginFactory>) {
        self.kinds.insert(factory.info().kind, factory);
    }

    /// What each kind is and which options it takes (its own, then the
    /// options every room takes).
    pub fn list(&self) -> Vec<PluginInfo> {
        self.kinds
            .values()
            .map(|f| {
                let mut info = f.info();
                info.options.extend(common_options());
                info
            })
            .collect()
    }

    /// Each option of `kind` with its value in a room made with `options`:
    /// the given one, or the kind's default (typed as the option is).
    pub fn settings(&self, kind: &str, options: &Options) -> Options {
        let Some(factory) = self.kinds.get(kind) else {
            return Options::new();
        };
        factory
            .info()
            .options
            .iter()
            .chain(common_options().iter())
            .map(|o| {
                let value = options.get(o.name).cloned().unwrap_or_else(|| {
                    let d = o.default.as_str();
                    match o.ty {
                        OptionType::Bool => d.parse::<bool>().map_or(d.into(), Into::into),
                        OptionType::Integer => d.parse::<i64>().map_or(d.into(), Into::into),
                        OptionType::String => d.into(),
                    }
                });
                (o.name.to_owned(), value)
            })
            .collect()
    }

    pub fn create(
        &self,
        kind: &str,
        room: &RoomInfo<'_>,
        options: &Options,
    ) -> Result<Box<dyn RelayPlugin>, RoomError> {
        let factory = self.kinds.get(kind).ok_or_else(|| RoomError::UnknownKind {
            kind: kind.to_owned(),
            available: self.kinds.keys().copied().collect::<Vec<_>>().join(", "),
        })?;
        room_codec(options)?;
        room_secure(options)?;
        Ok(factory.create(room, options)?)
    }
}

/// The options every room takes ([`plugin_api::COMMON_OPTIONS`]).
fn common_options() -> Vec<OptionInfo> {
    vec![
        OptionInfo {
            name: "codec",
            ty: OptionType::String,
            default: proto::codec::DEFAULT.into(),
            help: "the room's audio codec: opus, l16, l16-44k, l16-20k or l16-16k (seed front-ends need their seed's L16 rate); told in JOINED",
        },
        OptionInfo {
            name: "secure",
            ty: OptionType::Bool,
            default: "false".into(),
            help: "media is SRTP keyed per sender by the router; only TLS sessions with the srtp and stun_integrity features join (never seed clients); true for every room of a router with secure = true; told in JOINED",
        },
    ]
}

/// Whether a room made with `options` is secure (its `secure` option,
/// `true` or `"true"` as gRPC's string options give it; false when absent).
pub fn room_secure(options: &Options) -> Result<bool, OptionError> {
    plugin_api::OptionReader::new(options).bool("secure", false)
}

/// The audio codec a room made with `options` declares.
pub fn room_codec(options: &Options) -> Result<&'static proto::codec::Codec, OptionError> {
    let name = match options.get("codec") {
        None => proto::codec::DEFAULT,
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(OptionError {
                name: "codec".into(),
                message: format!("expected a codec name, got {v}"),
            });
        }
    };
    proto::codec::audio(name).ok_or_else(|| OptionError {
        name: "codec".into(),
        message: format!(
            "unknown codec `{name}`; rooms speak {}",
            proto::codec::names()
        ),
    })
}
