//! Media pipelines as data: each codec is a TOML file describing a GStreamer
//! send pipeline (a source to `appsink name=rtp`, yielding RTP packets) and a
//! receive pipeline (`appsrc name=rtp` taking RTP through `rtpjitterbuffer` to
//! a sink), with its payload type and clock rate.
//!
//! Sources and sinks are placeholders (`{source}`, `{sink}`), filled at run
//! time with a microphone, a test tone or pattern, a file, or an app sink for
//! tests ([`Source`], [`Sink`]). Other placeholders are the definition's
//! `[params]` (bitrate, quality, …), overridable by the caller, and `{pt}`,
//! `{clock_rate}`, `{caps}`, `{latency_ms}`.
//!
//! Built-in definitions are embedded in the binary; a user directory of
//! `*.toml` files adds to them or overrides one by name, so a codec is
//! swapped without recompiling. A definition that does not parse, uses an
//! unknown placeholder or names an element that is not installed is refused
//! with the file, the line and the element's name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use gst::prelude::*;

mod source;
pub use source::{Sink, Source};

/// Built-in definitions: (name, file text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("opus", include_str!("../defs/opus.toml")),
    ("l16", include_str!("../defs/l16.toml")),
    ("l16-44k", include_str!("../defs/l16-44k.toml")),
    ("l16-20k", include_str!("../defs/l16-20k.toml")),
    ("l16-16k", include_str!("../defs/l16-16k.toml")),
    ("jpeg", include_str!("../defs/jpeg.toml")),
    ("vp8", include_str!("../defs/vp8.toml")),
];

/// The default audio and video definitions.
pub const DEFAULT_AUDIO: &str = "opus";
pub const DEFAULT_VIDEO: &str = "jpeg";

/// Environment variable naming the user definition directory.
pub const USER_DIR_ENV: &str = "SWITCHBOARD_PIPELINES";

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Audio,
    Video,
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Media::Audio => "audio",
            Media::Video => "video",
        })
    }
}

/// A definition that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DefinitionError {
    /// The file, or `builtin:<name>`.
    pub file: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
    /// The element that is not installed, if that is the problem.
    pub element: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: String,
    media: Media,
    encoding_name: String,
    payload_type: u8,
    clock_rate: u32,
    #[serde(default)]
    channels: Option<u32>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    send: Half,
    receive: Half,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Half {
    pipeline: toml::Spanned<String>,
    #[serde(default)]
    latency_ms: Option<u32>,
}

/// The default jitter-buffer latency when a definition gives none: voice
/// wants 40–60 ms, not GStreamer's 200 ms.
pub const DEFAULT_LATENCY_MS: u32 = 50;

/// One codec, checked and ready to build pipelines from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub description: String,
    pub media: Media,
    pub encoding_name: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub channels: Option<u32>,
    /// Default values of the definition's own placeholders.
    pub params: BTreeMap<String, String>,
    /// Jitter-buffer latency of the receive pipeline.
    pub latency_ms: u32,
    send: String,
    receive: String,
    /// Where it came from (`builtin:opus` or a path).
    pub origin: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Replaces `{name}` with `vars[name]`; unknown names are an error.
fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("unclosed `{` in pipeline".into());
        };
        let name = &after[..close];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => {
                let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; known: {}",
                    known.join(", ")
                ));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The element factory names a `gst-launch` description uses: the first word
/// of each link, skipping caps (`audio/x-raw,…`), properties (`k=v`) and pad
/// references (`t.`).
pub fn element_names(description: &str) -> Vec<String> {
    let mut names = Vec::new();
    for link in split_outside_quotes(description, '!') {
        // A link starts with an element (or caps, or a pad reference); after a
        // reference such as `t.` a new element may follow in the same link.
        let mut expect_element = true;
        for word in split_words(&link) {
            if word.ends_with('.') {
                expect_element = true;
            } else if word.contains('=') || word.starts_with('"') {
                continue;
            } else if word.contains('/') || word.starts_with('(') {
                expect_element = false;
            } else if expect_element && word.chars().all(is_factory_char) {
                names.push(word);
                expect_element = false;
            }
        }
    }
    names
}

fn is_factory_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn split_words(s: &str) -> Vec<String> {
    split_outside_quotes(s.trim(), ' ')
        .into_iter()
        .map(|w| w.trim().to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

impl Definition {
    /// Parses and checks one definition file's text.
    pub fn parse(name: &str, origin: &str, text: &str) -> Result<Self, DefinitionError> {
        let err = |line: Option<usize>, message: String| DefinitionError {
            file: origin.to_owned(),
            line,
            message,
            element: None,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(line, e.message().trim().to_owned())
        })?;
        if file.clock_rate == 0 {
            return Err(err(None, "clock_rate must be above 0".into()));
        }
        if file.payload_type > 127 {
            return Err(err(None, "payload_type must be 0 to 127".into()));
        }
        let latency_ms = file.receive.latency_ms.unwrap_or(DEFAULT_LATENCY_MS);
        let def = Definition {
            name: name.to_owned(),
            description: file.description,
            media: file.media,
            encoding_name: file.encoding_name,
            payload_type: file.payload_type,
            clock_rate: file.clock_rate,
            channels: file.channels,
            params: file.params,
            latency_ms,
            send: file.send.pipeline.get_ref().clone(),
            receive: file.receive.pipeline.get_ref().clone(),
            origin: origin.to_owned(),
        };
        for (half, spanned) in [
            ("send", &file.send.pipeline),
            ("receive", &file.receive.pipeline),
        ] {
            let line = Some(line_of(text, spanned.span().start));
            let probe = def
                .vars(&Source::Silence, &Sink::Discard, &BTreeMap::new())
                .and_then(|v| render(spanned.get_ref(), &v))
                .map_err(|m| err(line, format!("[{half}] pipeline: {m}")))?;
            check_elements(&probe).map_err(|element| DefinitionError {
                file: origin.to_owned(),
                line,
                message: format!(
                    "[{half}] pipeline: element `{element}` is not installed (gst-inspect-1.0 {element})"
                ),
                element: Some(element),
            })?;
            let contract = if half == "send" {
                "appsink name=rtp"
            } else {
                "appsrc name=rtp"
            };
            if !probe.contains(contract) {
                return Err(err(
                    line,
                    format!("[{half}] pipeline must contain `{contract}`"),
                ));
            }
        }
        Ok(def)
    }

    /// The RTP caps of this codec, for the receive pipeline's appsrc.
    pub fn rtp_caps(&self) -> String {
        let mut caps = format!(
            "application/x-rtp,media={},clock-rate={},encoding-name={},payload={}",
            self.media, self.clock_rate, self.encoding_name, self.payload_type
        );
        if let Some(ch) = self.channels {
            caps.push_str(&format!(",channels={ch}"));
        }
        caps
    }

    fn vars(
        &self,
        source: &Source,
        sink: &Sink,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut vars = self.params.clone();
        for (k, v) in overrides {
            if !self.params.contains_key(k) {
                let known: Vec<&str> = self.params.keys().map(String::as_str).collect();
                return Err(format!(
                    "`{}` takes no parameter `{k}`; it takes: {}",
                    self.name,
                    known.join(", ")
                ));
            }
            if v.contains(['!', '"', '{', '}']) {
                return Err(format!("parameter `{k}`: value may not contain ! \" {{ }}"));
            }
            vars.insert(k.clone(), v.clone());
        }
        vars.insert("source".into(), source.fragment(self.media));
        vars.insert("sink".into(), sink.fragment(self.media));
        vars.insert("pt".into(), self.payload_type.to_string());
        vars.insert("clock_rate".into(), self.clock_rate.to_string());
        vars.insert("caps".into(), self.rtp_caps());
        vars.insert("latency_ms".into(), self.latency_ms.to_string());
        Ok(vars)
    }

    /// The send pipeline's description with everything filled in.
    pub fn send_description(
        &self,
        source: &Source,
        params: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        render(&self.send, &self.vars(source, &Sink::Discard, params)?)
    }

    /// The receive pipeline's description with everything filled in.
    pub fn receive_description(
        &self,
        sink: &Sink,
        params: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        render(&self.receive, &self.vars(&Source::Silence, sink, params)?)
    }

    /// Builds the send pipeline: `source` → encoder → payloader → the
    /// `rtp` appsink, which yields one RTP packet per buffer.
    pub fn build_send(
        &self,
        source: &Source,
        params: &BTreeMap<String, String>,
    ) -> Result<SendPipeline, BuildError> {
        let desc = self
            .send_description(source, params)
            .map_err(BuildError::Params)?;
        let pipeline = launch(&desc)?;
        let rtp = named(&pipeline, "rtp").ok_or(BuildError::Contract("appsink name=rtp"))?;
        Ok(SendPipeline { pipeline, rtp })
    }

    /// Builds the receive pipeline: the `rtp` appsrc → `rtpjitterbuffer` →
    /// depayloader → decoder → `sink`.
    pub fn build_receive(
        &self,
        sink: &Sink,
        params: &BTreeMap<String, String>,
    ) -> Result<ReceivePipeline, BuildError> {
        let desc = self
            .receive_description(sink, params)
            .map_err(BuildError::Params)?;
        let pipeline = launch(&desc)?;
        let rtp = named(&pipeline, "rtp").ok_or(BuildError::Contract("appsrc name=rtp"))?;
        let jitter = pipeline.by_name("jitter");
        let out = named(&pipeline, "out");
        Ok(ReceivePipeline {
            pipeline,
            rtp,
            jitter,
            out,
        })
    }
}

impl Definition {
    /// The send half as a bin for a larger pipeline: the `rtp` appsink is
    /// taken out and the payloader's output becomes the bin's `src` pad. The
    /// payloader is returned too, to set its `ssrc`.
    pub fn send_bin(
        &self,
        source: &Source,
        params: &BTreeMap<String, String>,
    ) -> Result<(gst::Bin, gst::Element), BuildError> {
        self.send_bin_with_preview(source, params, None)
    }

    /// [`Definition::send_bin`] with the source also shown locally: a `tee`
    /// after the source feeds `preview` (its element named `view` when it
    /// is a [`Sink::Element`]) through a leaky queue, so a slow preview
    /// never holds up what is sent.
    pub fn send_bin_with_preview(
        &self,
        source: &Source,
        params: &BTreeMap<String, String>,
        preview: Option<&Sink>,
    ) -> Result<(gst::Bin, gst::Element), BuildError> {
        let desc = match preview {
            None => self.send_description(source, params),
            Some(sink) => self.vars(source, &Sink::Discard, params).and_then(|mut vars| {
                let teed = format!(
                    "{} ! tee name=preview_tee ! queue max-size-buffers=2 leaky=downstream",
                    source.fragment(self.media)
                );
                vars.insert("source".into(), teed);
                render(&self.send, &vars).map(|d| {
                    let convert = match self.media {
                        Media::Video => "videoconvert ! videoscale",
                        Media::Audio => "audioconvert ! audioresample",
                    };
                    format!(
                        "{d} preview_tee. ! queue max-size-buffers=2 leaky=downstream ! {convert} ! {}",
                        sink.fragment(self.media)
                    )
                })
            }),
        }
        .map_err(BuildError::Params)?;
        let bin = parse_bin(&desc)?;
        let upstream = cut_out(&bin, "rtp", "sink")?;
        let payloader = upstream
            .parent_element()
            .ok_or(BuildError::Contract("appsink name=rtp"))?;
        ghost(&bin, &upstream, "src")?;
        Ok((bin, payloader))
    }

    /// The receive half as a bin for one remote sender: the `rtp` appsrc is
    /// taken out and the jitter buffer's input becomes the bin's `sink` pad.
    /// With [`Sink::Tail`] the decoded output is the bin's `src` pad.
    pub fn receive_bin(
        &self,
        sink: &Sink,
        params: &BTreeMap<String, String>,
    ) -> Result<ReceiveBin, BuildError> {
        let desc = self
            .receive_description(sink, params)
            .map_err(BuildError::Params)?;
        let bin = parse_bin(&desc)?;
        let downstream = cut_out(&bin, "rtp", "src")?;
        ghost(&bin, &downstream, "sink")?;
        if *sink == Sink::Tail {
            let tail = bin
                .by_name("tail")
                .and_then(|t| t.static_pad("src"))
                .ok_or(BuildError::Contract("identity name=tail"))?;
            ghost(&bin, &tail, "src")?;
        }
        let jitter = bin.by_name("jitter");
        let out = bin
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
        Ok(ReceiveBin { bin, jitter, out })
    }
}

/// One remote sender's receive chain, ready to add to a pipeline.
pub struct ReceiveBin {
    /// `sink` takes RTP; `src` (with [`Sink::Tail`]) gives decoded media.
    pub bin: gst::Bin,
    /// The `rtpjitterbuffer` (named `jitter`), for statistics.
    pub jitter: Option<gst::Element>,
    /// The decoded output when the sink is [`Sink::App`].
    pub out: Option<gst_app::AppSink>,
}

fn parse_bin(desc: &str) -> Result<gst::Bin, BuildError> {
    init()?;
    gst::parse::bin_from_description(desc, false).map_err(|e| BuildError::Launch(e.to_string()))
}

/// Removes the element `name` from `bin` and returns the pad it was linked
/// to through its `pad` (`sink` of an appsink, `src` of an appsrc).
fn cut_out(bin: &gst::Bin, name: &str, pad: &str) -> Result<gst::Pad, BuildError> {
    let contract = if pad == "sink" {
        "appsink name=rtp"
    } else {
        "appsrc name=rtp"
    };
    let element = bin.by_name(name).ok_or(BuildError::Contract(contract))?;
    let own = element
        .static_pad(pad)
        .ok_or(BuildError::Contract(contract))?;
    let peer = own.peer().ok_or(BuildError::Contract(contract))?;
    let unlinked = if pad == "sink" {
        peer.unlink(&own)
    } else {
        own.unlink(&peer)
    };
    unlinked.map_err(|e| BuildError::Launch(e.to_string()))?;
    bin.remove(&element)
        .map_err(|e| BuildError::Launch(e.to_string()))?;
    Ok(peer)
}

fn ghost(bin: &gst::Bin, target: &gst::Pad, name: &str) -> Result<(), BuildError> {
    let pad = gst::GhostPad::builder_with_target(target)
        .map_err(|e| BuildError::Launch(e.to_string()))?
        .name(name)
        .build();
    bin.add_pad(&pad)
        .map_err(|e| BuildError::Launch(e.to_string()))
}

/// The element called `name`, if it is a `T`.
fn named<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> Option<T> {
    pipeline.by_name(name).and_then(|e| e.downcast::<T>().ok())
}

fn launch(desc: &str) -> Result<gst::Pipeline, BuildError> {
    init()?;
    let element = gst::parse::launch(desc).map_err(|e| BuildError::Launch(e.to_string()))?;
    element
        .downcast::<gst::Pipeline>()
        .map_err(|_| BuildError::Launch("the description is not a pipeline".into()))
}

/// Initialises GStreamer once.
pub fn init() -> Result<(), BuildError> {
    gst::init().map_err(|e| BuildError::Init(e.to_string()))
}

/// Returns the first element factory that is not installed.
fn check_elements(description: &str) -> Result<(), String> {
    if init().is_err() {
        return Err("gstreamer".into());
    }
    for name in element_names(description) {
        if gst::ElementFactory::find(&name).is_none() {
            return Err(name);
        }
    }
    Ok(())
}

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("{0}")]
    Params(String),
    #[error("bad pipeline: {0}")]
    Launch(String),
    #[error("the pipeline has no `{0}`")]
    Contract(&'static str),
}

/// A running send pipeline's handles.
pub struct SendPipeline {
    pub pipeline: gst::Pipeline,
    /// Yields RTP packets.
    pub rtp: gst_app::AppSink,
}

/// A receive pipeline's handles.
pub struct ReceivePipeline {
    pub pipeline: gst::Pipeline,
    /// Takes RTP packets.
    pub rtp: gst_app::AppSrc,
    /// The `rtpjitterbuffer` (named `jitter`), for statistics.
    pub jitter: Option<gst::Element>,
    /// The decoded output when the sink is [`Sink::App`].
    pub out: Option<gst_app::AppSink>,
}

/// Every definition available: the built-ins, then a user directory's.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    defs: BTreeMap<String, Definition>,
}

impl Catalog {
    /// The built-in definitions only.
    pub fn builtin() -> Result<Self, DefinitionError> {
        let mut c = Self::default();
        for (name, text) in BUILTIN {
            let def = Definition::parse(name, &format!("builtin:{name}"), text)?;
            c.defs.insert((*name).to_owned(), def);
        }
        Ok(c)
    }

    /// The built-ins, plus every `*.toml` in `dir` (a file named like a
    /// built-in replaces it). A broken file is an error, never skipped.
    pub fn load(dir: Option<&Path>) -> Result<Self, DefinitionError> {
        let mut c = Self::builtin()?;
        let Some(dir) = dir else { return Ok(c) };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(e) => {
                return Err(DefinitionError {
                    file: dir.display().to_string(),
                    line: None,
                    message: e.to_string(),
                    element: None,
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| DefinitionError {
                file: shown.clone(),
                line: None,
                message: e.to_string(),
                element: None,
            })?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let def = Definition::parse(&name, &shown, &text)?;
            c.defs.insert(name, def);
        }
        Ok(c)
    }

    /// The built-ins plus the directory named by `SWITCHBOARD_PIPELINES`, or
    /// else `$XDG_CONFIG_HOME/switchboard/pipelines` (`~/.config/…`).
    pub fn load_default() -> Result<Self, DefinitionError> {
        Self::load(user_dir().as_deref())
    }

    pub fn get(&self, name: &str) -> Option<&Definition> {
        self.defs.get(name)
    }

    /// Like [`Catalog::get`], with an error listing what exists.
    pub fn require(&self, name: &str) -> Result<&Definition, String> {
        self.get(name).ok_or_else(|| {
            format!(
                "no pipeline definition `{name}`; available: {}",
                self.names().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The audio definition a room declaring codec `room_codec` (JOINED
    /// `settings.codec`) needs: the one of that name when it carries that
    /// codec's payload type and clock rate, else any audio definition that
    /// does. The error says what the room speaks and that nothing here
    /// matches, for the user to read.
    pub fn for_room_codec(&self, room_codec: &str) -> Result<&Definition, String> {
        let Some(codec) = proto::codec::audio(room_codec) else {
            return Err(format!(
                "the room speaks `{room_codec}`, a codec this client does not know (it knows {})",
                proto::codec::names()
            ));
        };
        let fits = |d: &&Definition| {
            d.media == Media::Audio
                && d.payload_type == codec.payload_type
                && d.clock_rate == codec.clock_rate
                && d.encoding_name.eq_ignore_ascii_case(codec.encoding)
        };
        self.get(room_codec)
            .filter(fits)
            .or_else(|| self.iter().find(fits))
            .ok_or_else(|| {
                format!(
                    "the room speaks `{room_codec}` ({}/{}, payload type {}) and no pipeline definition here matches it",
                    codec.encoding, codec.clock_rate, codec.payload_type
                )
            })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Definition> {
        self.defs.values()
    }
}

/// The user definition directory, if one is configured or conventional.
pub fn user_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(USER_DIR_ENV) {
        return Some(PathBuf::from(d));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("switchboard").join("pipelines"))
}

/// `name=value` pairs (from a CLI) into a parameter map.
pub fn parse_params<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, String> {
    pairs
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("parameter `{p}`: expected name=value"))
        })
        .collect()
}

impl FromStr for Media {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "audio" => Ok(Media::Audio),
            "video" => Ok(Media::Video),
            _ => Err(format!("expected audio or video, got `{s}`")),
        }
    }
}

#[cfg(test)]
mod tests;
