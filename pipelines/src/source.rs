//! What fills a definition's `{source}` and `{sink}` placeholders.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Media;

/// Where sent media comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Digital silence or a black picture.
    Silence,
    /// Audio: a sine tone (`tone:440`, `tone:440:0.5` for frequency and
    /// volume); video: a test pattern (`pattern:ball`).
    Tone {
        freq: f64,
        volume: f64,
    },
    Pattern(String),
    /// The default microphone or camera.
    Device,
    /// Any file GStreamer can decode (`file:talk.wav`).
    File(PathBuf),
    /// An `appsrc name=src` the program pushes raw media into.
    App,
    /// A chosen device or element: a factory and its properties
    /// (`element:v4l2src device=/dev/video1`).
    Element(String),
}

/// Where received media goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// Speakers or a window.
    Device,
    /// A WAV file (audio only): `wav:heard.wav`.
    Wav(PathBuf),
    /// An `appsink name=out` the program pulls decoded media from.
    App,
    /// Thrown away.
    Discard,
    /// Left open: an `identity name=tail` whose output the program links
    /// itself (the client's audio mixer).
    Tail,
    /// A chosen device or element, named `view` so the program can find it
    /// (`element:gtk4paintablesink`, `element:pulsesink device=x`).
    Element(String),
}

/// Checks an `element:` description: a factory name, then `key=value`
/// properties, in characters that cannot break out of a launch line.
fn element(rest: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || " =._-/:,".contains(c);
    let factory = rest.split_whitespace().next().unwrap_or("");
    if factory.is_empty() || !rest.chars().all(ok) || factory.contains('=') {
        return Err("element: a factory and key=value properties are required, as in element:v4l2src device=/dev/video0".into());
    }
    if rest.split_whitespace().skip(1).any(|p| !p.contains('=')) {
        return Err("element: properties are key=value".into());
    }
    Ok(rest.to_owned())
}

fn quoted_path(p: &std::path::Path) -> String {
    format!("\"{}\"", p.display())
}

impl Source {
    /// The gst-launch fragment for `media`.
    pub fn fragment(&self, media: Media) -> String {
        match (self, media) {
            // 10 ms buffers (480 samples at 48 kHz), named `src` so a program
            // can change the volume while it runs.
            (Source::Silence, Media::Audio) => {
                "audiotestsrc name=src is-live=true samplesperbuffer=480 wave=silence".into()
            }
            (Source::Silence, Media::Video) => "videotestsrc is-live=true pattern=black".into(),
            (Source::Tone { freq, volume }, Media::Audio) => {
                format!(
                    "audiotestsrc name=src is-live=true samplesperbuffer=480 wave=sine freq={freq} volume={volume}"
                )
            }
            (Source::Tone { .. }, Media::Video) => "videotestsrc is-live=true pattern=smpte".into(),
            (Source::Pattern(p), Media::Video) => {
                format!("videotestsrc is-live=true pattern={p}")
            }
            (Source::Pattern(_), Media::Audio) => {
                "audiotestsrc is-live=true wave=sine freq=440".into()
            }
            (Source::Device, Media::Audio) => "autoaudiosrc".into(),
            (Source::Device, Media::Video) => "autovideosrc".into(),
            // A file is read as fast as the disk allows: pace it to the clock
            // so it is sent in real time.
            (Source::File(p), _) => format!(
                "filesrc location={} ! decodebin ! identity sync=true",
                quoted_path(p)
            ),
            (Source::App, _) => "appsrc name=src is-live=true format=time".into(),
            (Source::Element(e), _) => e.clone(),
        }
    }
}

impl Sink {
    /// The gst-launch fragment for `media`.
    pub fn fragment(&self, media: Media) -> String {
        match (self, media) {
            (Sink::Device, Media::Audio) => "autoaudiosink".into(),
            (Sink::Device, Media::Video) => "autovideosink".into(),
            (Sink::Wav(p), Media::Audio) => {
                format!("wavenc ! filesink location={}", quoted_path(p))
            }
            // A WAV file of video makes no sense: decode and drop.
            (Sink::Wav(_), Media::Video) | (Sink::Discard, _) => "fakesink sync=false".into(),
            (Sink::App, _) => "appsink name=out sync=false".into(),
            (Sink::Tail, _) => "identity name=tail".into(),
            (Sink::Element(e), _) => format!("{e} name=view"),
        }
    }
}

fn path(rest: &str, what: &str) -> Result<PathBuf, String> {
    if rest.is_empty() {
        return Err(format!("{what}: a path is required, as in {what}:PATH"));
    }
    if rest.contains('"') {
        return Err(format!("{what}: the path may not contain `\"`"));
    }
    Ok(PathBuf::from(rest))
}

impl FromStr for Source {
    type Err = String;
    /// `silence`, `tone[:FREQ[:VOLUME]]`, `pattern:NAME`, `mic`, `camera`,
    /// `file:PATH`, `app`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "silence" => Ok(Source::Silence),
            "tone" | "test" => {
                let mut it = rest.split(':').filter(|p| !p.is_empty());
                let num = |v: Option<&str>, default: f64, lo: f64, hi: f64, name: &str| match v
                    .map(str::parse::<f64>)
                {
                    None => Ok(default),
                    Some(Ok(x)) if (lo..=hi).contains(&x) => Ok(x),
                    _ => Err(format!("tone: {name} must be a number from {lo} to {hi}")),
                };
                let freq = num(it.next(), 440.0, 1.0, 20_000.0, "frequency")?;
                let volume = num(it.next(), 0.5, 0.0, 1.0, "volume")?;
                Ok(Source::Tone { freq, volume })
            }
            "pattern" => {
                if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(
                        "pattern: a videotestsrc pattern name is required, as in pattern:ball"
                            .into(),
                    );
                }
                Ok(Source::Pattern(rest.to_owned()))
            }
            "mic" | "camera" | "device" => Ok(Source::Device),
            "file" => Ok(Source::File(path(rest, "file")?)),
            "app" => Ok(Source::App),
            "element" => Ok(Source::Element(element(rest)?)),
            _ => Err(format!(
                "unknown source `{s}`; use silence, tone[:FREQ[:VOLUME]], pattern:NAME, mic, camera, file:PATH, element:FACTORY [KEY=VALUE…] or app"
            )),
        }
    }
}

impl FromStr for Sink {
    type Err = String;
    /// `speakers`, `screen`, `wav:PATH`, `app`, `discard`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "speakers" | "screen" | "device" => Ok(Sink::Device),
            "wav" => Ok(Sink::Wav(path(rest, "wav")?)),
            "app" => Ok(Sink::App),
            "discard" | "null" => Ok(Sink::Discard),
            "tail" => Ok(Sink::Tail),
            "element" => Ok(Sink::Element(element(rest)?)),
            _ => Err(format!(
                "unknown sink `{s}`; use speakers, screen, wav:PATH, element:FACTORY [KEY=VALUE…], app or discard"
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Silence => write!(f, "silence"),
            Source::Tone { freq, volume } => write!(f, "tone:{freq}:{volume}"),
            Source::Pattern(p) => write!(f, "pattern:{p}"),
            Source::Device => write!(f, "device"),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::App => write!(f, "app"),
            Source::Element(e) => write!(f, "element:{e}"),
        }
    }
}
