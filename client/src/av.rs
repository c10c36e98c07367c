//! Real audio and video: GStreamer pipelines built from definition files
//! (the `pipelines` crate), wired to a session's UDP socket.
//!
//! [`Av`] runs one *lane* per media kind, each a GStreamer pipeline:
//!
//! ```text
//! send     {source} ! encoder ! payloader(ssrc) ! valve ─▶ rtpsession ─▶ appsink ─▶ UDP
//! receive  UDP ─▶ appsrc ─▶ rtpsession ─▶ rtpssrcdemux ─┬▶ rtpjitterbuffer ! depay ! decoder ─┐
//!                                                      └▶ one such chain per remote SSRC ───┴▶ audiomixer ! {sink}
//! RTCP     UDP ─▶ appsrc ─▶ rtpsession ─▶ appsink ─▶ UDP   (sender and receiver reports)
//! ```
//!
//! `rtpsession` does RTCP the standard way: it sends sender reports for our
//! stream and receiver reports for the streams we hear, and computes the
//! round-trip time from the reports others send about us. Each remote
//! sender gets its own receive chain built from the definition, so its own
//! jitter buffer and decoder state (loss concealment); audio chains meet in
//! an `audiomixer`, video chains end in their own sink. [`Av::stats`] reads
//! `rtpsession` and every jitter buffer into one [`StatsSnapshot`].
//!
//! A lane's codec is fixed when it starts: RTP whose payload type is not one
//! of the lanes' is dropped and counted.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use pipelines::{Definition, Media as Kind, Sink, Source};
use proto::media::{PacketKind, classify, rtcp_sender_ssrc, rtp_header};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Media;

/// The processing deadline of the audio output sink (GStreamer's default
/// is 20 ms, added to the mouth-to-ear latency).
pub const PROCESSING_DEADLINE: Duration = Duration::from_millis(10);

/// What one lane sends and plays.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub definition: Definition,
    /// Overrides of the definition's `[params]`.
    pub params: BTreeMap<String, String>,
    /// What to send; `None` receives only.
    pub source: Option<Source>,
    /// Where received media goes (audio: after mixing; video: one per sender).
    pub sink: Sink,
    /// Where to show what is sent, too (a video preview).
    pub preview: Option<Sink>,
    /// Audio: a tone generator mixed into what is played, silent until
    /// [`Av::beep`] (talk permit and end tones go where the room's audio
    /// goes).
    pub tones: bool,
}

impl LaneConfig {
    pub fn new(definition: Definition, source: Option<Source>, sink: Sink) -> Self {
        Self {
            definition,
            params: BTreeMap::new(),
            source,
            sink,
            preview: None,
            tones: false,
        }
    }
}

/// Options for [`Av::start`].
#[derive(Debug, Clone)]
pub struct AvOptions {
    /// Shortest interval between RTCP reports (RFC 3550 suggests 5 s; the
    /// reduced minimum is allowed for unicast and gives statistics sooner).
    pub rtcp_interval: Duration,
    /// The CNAME in RTCP SDES.
    pub cname: String,
    /// The session's keys ([`crate::Session::keyring`]): when it holds a
    /// key of our own (the room is secure) when media starts, everything
    /// sent is SRTP/SRTCP and everything received is checked and decrypted
    /// with its sender's key; otherwise media is plain RTP.
    pub srtp: Option<crate::srtp::Keyring>,
}

impl Default for AvOptions {
    fn default() -> Self {
        Self {
            rtcp_interval: Duration::from_secs(1),
            cname: "switchboard".into(),
            srtp: None,
        }
    }
}

/// Why media could not start.
#[derive(Debug, thiserror::Error)]
pub enum AvError {
    #[error(transparent)]
    Build(#[from] pipelines::BuildError),
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("two lanes for {0}")]
    DuplicateLane(Kind),
    #[error("two lanes use payload type {0}")]
    DuplicatePayloadType(u8),
}

fn gst_err(e: impl std::fmt::Display) -> AvError {
    AvError::Gst(e.to_string())
}

/// Figures for a stream we send, from `rtpsession` and the receiver reports
/// others sent about it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SendStats {
    pub kind: String,
    pub ssrc: u32,
    pub packets_sent: u64,
    pub octets_sent: u64,
    /// The last receiver report about this stream from each listener.
    pub reports: Vec<RemoteReport>,
}

/// One receiver report block about our stream (RFC 3550 6.4.2).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RemoteReport {
    /// The listener that sent it.
    pub from_ssrc: u32,
    /// Fraction lost since the previous report, 0 to 1.
    pub fraction_lost: f64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    /// Round trip from LSR/DLSR; `None` until a report refers to one of our
    /// sender reports.
    pub rtt_ms: Option<f64>,
}

/// What the receivers' reports say about our video, as a meeting's
/// `VIDEO_STATS` carries it.
pub fn video_reports(stats: &StatsSnapshot) -> Vec<proto::control::ReceptionReport> {
    stats
        .sent
        .iter()
        .filter(|s| s.kind == "video")
        .flat_map(|s| &s.reports)
        .map(|r| proto::control::ReceptionReport {
            from_ssrc: r.from_ssrc,
            fraction_lost: r.fraction_lost.clamp(0.0, 1.0),
            rtt_ms: r.rtt_ms.filter(|v| (0.0..=60_000.0).contains(v)),
        })
        .collect()
}

/// Figures for a stream we receive: RTCP-style counters from `rtpsession`
/// and what its jitter buffer saw.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReceiveStats {
    pub kind: String,
    pub ssrc: u32,
    pub packets_received: u64,
    pub octets_received: u64,
    /// Expected minus received (RFC 3550 A.3).
    pub packets_lost: i64,
    /// Interarrival jitter (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Jitter buffer: packets pushed on, declared lost, arrived too late,
    /// duplicates; its own average jitter.
    pub jb_pushed: u64,
    pub jb_lost: u64,
    pub jb_late: u64,
    pub jb_duplicates: u64,
    pub jb_avg_jitter_ms: f64,
    /// Buffers (video: frames) the chain's sink rendered.
    pub rendered: u64,
}

/// Every stream's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub unix_ms: u64,
    pub sent: Vec<SendStats>,
    pub received: Vec<ReceiveStats>,
    /// RTP dropped because its payload type belongs to no lane.
    pub unknown_payload_type: u64,
    /// RTCP packets sent and received, all lanes.
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
}

struct Chain {
    jitter: Option<gst::Element>,
    out: Option<gst_app::AppSink>,
    /// The element named `view` (a [`Sink::Element`]).
    view: Option<gst::Element>,
    /// The chain's last element, whose `stats` count rendered frames.
    sink: Option<gst::Element>,
    /// Audio: the mixer's pad for this sender (its `volume` is this
    /// sender's playback volume).
    mix_pad: Option<gst::Pad>,
}

/// Audio: what is heard from each sender and how loud it is played.
#[derive(Default)]
struct Loudness {
    /// The last level measured, by SSRC, 0 (silence, -60 dBFS or less) to
    /// 1 (full scale).
    levels: HashMap<u32, (f64, std::time::Instant)>,
    /// Playback volumes chosen for senders, applied when they appear.
    volumes: HashMap<u32, f64>,
}

/// An RMS level in dBFS on a meter from 0 (-60 dB and below) to 1 (0 dB).
pub fn meter(db: f64) -> f64 {
    ((db + 60.0) / 60.0).clamp(0.0, 1.0)
}

/// How often each sender's level is measured.
pub const LEVEL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Counters {
    rtp_sent: Arc<AtomicU64>,
    rtcp_sent: Arc<AtomicU64>,
    rtcp_received: AtomicU64,
}

struct Lane {
    kind: Kind,
    local_ssrc: u32,
    counters: Counters,
    definition: Definition,
    pipeline: gst::Pipeline,
    session: gst::Element,
    rtp_in: gst_app::AppSrc,
    rtcp_in: gst_app::AppSrc,
    gate: Option<gst::Element>,
    source: Option<gst::Element>,
    out: Option<gst_app::AppSink>,
    final_sink: Option<gst::Element>,
    preview: Option<gst::Element>,
    chains: Arc<Mutex<BTreeMap<u32, Chain>>>,
    errors: Arc<Mutex<Vec<String>>>,
    loudness: Arc<Mutex<Loudness>>,
    stop: Arc<AtomicBool>,
    send_done: Arc<AtomicBool>,
    /// SRTP in a secure room.
    srtp: Option<crate::srtp::elements::Protection>,
}

/// Running media for a session. Dropping it stops everything; call
/// [`Av::stop`] to finish files (a WAV needs its header written).
pub struct Av {
    lanes: Vec<Arc<Lane>>,
    recv_task: JoinHandle<()>,
    unknown_pt: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends one datagram to the router from the session's socket. Called on
/// GStreamer streaming threads, so it is a plain non-blocking `sendto`; a
/// full socket buffer drops the packet as UDP would.
fn send_datagram(socket: &UdpSocket, to: SocketAddr, sample: &gst::Sample) {
    let Some(buffer) = sample.buffer() else {
        return;
    };
    let Ok(map) = buffer.map_readable() else {
        return;
    };
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.send_to(map.as_slice(), &to.into())
        && e.kind() != std::io::ErrorKind::WouldBlock
    {
        tracing::debug!(error = %e, "media send failed");
    }
}

fn net_appsink(
    name: &str,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    count: Arc<AtomicU64>,
) -> gst_app::AppSink {
    gst_app::AppSink::builder()
        .name(name)
        .sync(false)
        .async_(false)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    send_datagram(&socket, to, &sample);
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        )
        .build()
}

fn net_appsrc(name: &str, caps: &gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .caps(caps)
        .is_live(true)
        .format(gst::Format::Time)
        .do_timestamp(true)
        // Never block the socket task; a stalled pipeline loses packets.
        .block(false)
        .max_bytes(4 * 1024 * 1024)
        .build()
}

/// Copies a datagram into an app source; a full or stopped source drops it,
/// as the network would.
fn push(src: &gst_app::AppSrc, data: &[u8]) {
    let _ = src.push_buffer(gst::Buffer::from_slice(data.to_vec()));
}

/// Calls `f` when an end-of-stream event passes `pad`.
fn on_eos(pad: &gst::Pad, f: impl Fn() + Send + Sync + 'static) {
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data
            && ev.type_() == gst::EventType::Eos
        {
            f();
        }
        gst::PadProbeReturn::Ok
    });
}

fn link(a: &gst::Pad, b: &gst::Pad) -> Result<(), AvError> {
    a.link(b)
        .map(|_| ())
        .map_err(|e| AvError::Gst(format!("linking {} to {}: {e:?}", a.name(), b.name())))
}

fn request(el: &gst::Element, name: &str) -> Result<gst::Pad, AvError> {
    el.request_pad_simple(name)
        .ok_or_else(|| AvError::Gst(format!("no pad {name} on {}", el.name())))
}

fn static_pad(el: &gst::Element, name: &str) -> Result<gst::Pad, AvError> {
    el.static_pad(name)
        .ok_or_else(|| AvError::Gst(format!("no pad {name} on {}", el.name())))
}

/// Links `from` to `to` through `srtpenc` (its `what` = `rtp` or `rtcp`
/// pair) when there is one.
fn link_protected(
    from: &gst::Pad,
    enc: Option<&gst::Element>,
    what: &str,
    to: &gst::Pad,
) -> Result<(), AvError> {
    match enc {
        Some(enc) => {
            link(from, &request(enc, &format!("{what}_sink_0"))?)?;
            link(&static_pad(enc, &format!("{what}_src_0"))?, to)
        }
        None => link(from, to),
    }
}

/// The caps of what arrives from the network: RTP (or RTCP) itself, or its
/// SRTP (SRTCP) form in a secure room.
fn network_caps(rtp: &str, secure: bool) -> Result<(gst::Caps, gst::Caps), AvError> {
    let mut caps = gst::Caps::from_str(rtp).map_err(gst_err)?;
    if !secure {
        return Ok((caps, gst::Caps::new_empty_simple("application/x-rtcp")));
    }
    if let Some(s) = caps.make_mut().structure_mut(0) {
        s.set_name("application/x-srtp");
    }
    Ok((caps, gst::Caps::new_empty_simple("application/x-srtcp")))
}

impl Lane {
    fn build(
        config: &LaneConfig,
        ssrc: u32,
        media: &Media,
        opts: &AvOptions,
    ) -> Result<Lane, AvError> {
        pipelines::init()?;
        let def = &config.definition;
        let pipeline = gst::Pipeline::with_name(&format!("{}-lane", def.media));
        let session = gst::ElementFactory::make("rtpsession")
            .name("session")
            .property("rtcp-min-interval", opts.rtcp_interval.as_nanos() as u64)
            .build()
            .map_err(gst_err)?;
        let internal = session.property::<glib::Object>("internal-session");
        internal.set_property("internal-ssrc", ssrc);
        let sdes = gst::Structure::builder("application/x-rtp-source-sdes")
            .field("cname", opts.cname.as_str())
            .field("tool", "switchboard")
            .build();
        session.set_property("sdes", &sdes);
        let srtp = match opts.srtp.as_ref().and_then(|r| Some((r, r.own()?))) {
            Some((ring, own)) => Some(crate::srtp::elements::build(ring, own).map_err(gst_err)?),
            None => None,
        };
        let (caps, rtcp_caps) = network_caps(&def.rtp_caps(), srtp.is_some())?;
        let rtp_in = net_appsrc("rtp_in", &caps);
        let rtcp_in = net_appsrc("rtcp_in", &rtcp_caps);
        let counters = Counters::default();
        let rtp_out = net_appsink(
            "rtp_out",
            media.socket().clone(),
            media.server(),
            counters.rtp_sent.clone(),
        );
        let rtcp_out = net_appsink(
            "rtcp_out",
            media.socket().clone(),
            media.server(),
            counters.rtcp_sent.clone(),
        );
        let demux = gst::ElementFactory::make("rtpssrcdemux")
            .name("demux")
            .build()
            .map_err(gst_err)?;
        pipeline
            .add_many([
                &session,
                rtp_in.upcast_ref(),
                rtcp_in.upcast_ref(),
                rtp_out.upcast_ref(),
                rtcp_out.upcast_ref(),
                &demux,
            ])
            .map_err(gst_err)?;
        let (recv_rtp, recv_rtcp) = (
            request(&session, "recv_rtp_sink")?,
            request(&session, "recv_rtcp_sink")?,
        );
        let (rtp_net, rtcp_net) = match &srtp {
            // Checked and decrypted on the way in.
            Some(p) => {
                pipeline.add_many([&p.enc, &p.dec]).map_err(gst_err)?;
                link(&static_pad(&p.dec, "rtp_src")?, &recv_rtp)?;
                link(&static_pad(&p.dec, "rtcp_src")?, &recv_rtcp)?;
                (
                    static_pad(&p.dec, "rtp_sink")?,
                    static_pad(&p.dec, "rtcp_sink")?,
                )
            }
            None => (recv_rtp, recv_rtcp),
        };
        let enc = srtp.as_ref().map(|p| &p.enc);
        link(&static_pad(rtp_in.upcast_ref(), "src")?, &rtp_net)?;
        link(&static_pad(rtcp_in.upcast_ref(), "src")?, &rtcp_net)?;
        link(
            &static_pad(&session, "recv_rtp_src")?,
            &static_pad(&demux, "sink")?,
        )?;
        link_protected(
            &request(&session, "send_rtcp_src")?,
            enc,
            "rtcp",
            &static_pad(rtcp_out.upcast_ref(), "sink")?,
        )?;

        // Send half: the definition's encoder and payloader, behind a valve.
        let send_done = Arc::new(AtomicBool::new(false));
        let (gate, source, preview) = match &config.source {
            Some(src) => {
                let (bin, payloader) =
                    def.send_bin_with_preview(src, &config.params, config.preview.as_ref())?;
                if payloader.find_property("ssrc").is_some() {
                    payloader.set_property("ssrc", ssrc);
                }
                // A file source ends: note it before the valve, which may be
                // closed and would swallow the EOS.
                let done = send_done.clone();
                on_eos(&static_pad(bin.upcast_ref(), "src")?, move || {
                    done.store(true, Ordering::Relaxed);
                });
                let valve = gst::ElementFactory::make("valve")
                    .name("gate")
                    .property("drop", true)
                    .build()
                    .map_err(gst_err)?;
                pipeline
                    .add_many([bin.upcast_ref(), &valve])
                    .map_err(gst_err)?;
                link(
                    &static_pad(bin.upcast_ref(), "src")?,
                    &static_pad(&valve, "sink")?,
                )?;
                link(
                    &static_pad(&valve, "src")?,
                    &request(&session, "send_rtp_sink")?,
                )?;
                link_protected(
                    &static_pad(&session, "send_rtp_src")?,
                    enc,
                    "rtp",
                    &static_pad(rtp_out.upcast_ref(), "sink")?,
                )?;
                (Some(valve), bin.by_name("src"), bin.by_name("view"))
            }
            None => (None, None, None),
        };

        // Audio from every sender meets in one mixer.
        let (mixer, out, final_sink) = if def.media == Kind::Audio {
            let mix = gst::ElementFactory::make("audiomixer")
                .name("mix")
                .build()
                .map_err(gst_err)?;
            let desc = format!(
                "audioconvert ! audioresample ! {}",
                config.sink.fragment(Kind::Audio)
            );
            let bin = gst::parse::bin_from_description(&desc, true).map_err(gst_err)?;
            pipeline
                .add_many([&mix, bin.upcast_ref()])
                .map_err(gst_err)?;
            link(
                &static_pad(&mix, "src")?,
                &static_pad(bin.upcast_ref(), "sink")?,
            )?;
            if config.tones {
                let tone = gst::parse::bin_from_description(
                    "audiotestsrc name=tone is-live=true wave=sine volume=0 samplesperbuffer=480 ! capsfilter caps=audio/x-raw,format=S16LE,rate=48000,channels=1",
                    true,
                )
                .map_err(gst_err)?;
                pipeline.add(&tone).map_err(gst_err)?;
                link(
                    &static_pad(tone.upcast_ref(), "src")?,
                    &request(&mix, "sink_%u")?,
                )?;
            }
            let out = bin
                .by_name("out")
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
            let final_sink = bin
                .iterate_elements()
                .into_iter()
                .flatten()
                .find(|e| e.element_flags().contains(gst::ElementFlags::SINK));
            // A sink adds its processing deadline (20 ms by default) to the
            // pipeline latency; after a 10 ms mixer, 10 ms is plenty.
            if let Some(sink) = &final_sink
                && sink.find_property("processing-deadline").is_some()
            {
                sink.set_property("processing-deadline", PROCESSING_DEADLINE.as_nanos() as u64);
            }
            (Some(mix), out, final_sink)
        } else {
            (None, None, None)
        };

        let chains: Arc<Mutex<BTreeMap<u32, Chain>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let loudness: Arc<Mutex<Loudness>> = Arc::default();
        {
            let chains = chains.clone();
            let errors = errors.clone();
            let loudness = loudness.clone();
            let def = def.clone();
            let params = config.params.clone();
            let sink = if def.media == Kind::Audio {
                Sink::Tail
            } else {
                config.sink.clone()
            };
            let pipeline_weak = pipeline.downgrade();
            demux.connect_pad_added(move |_, pad| {
                let name = pad.name();
                let Some(ssrc) = name
                    .strip_prefix("src_")
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    return;
                };
                let Some(pipeline) = pipeline_weak.upgrade() else {
                    return;
                };
                match add_chain(&pipeline, pad, ssrc, &def, &params, &sink, mixer.as_ref()) {
                    Ok(chain) => {
                        tracing::debug!(ssrc, media = %def.media, "new sender");
                        if let (Some(p), Some(v)) =
                            (&chain.mix_pad, lock(&loudness).volumes.get(&ssrc))
                        {
                            p.set_property("volume", *v);
                        }
                        lock(&chains).insert(ssrc, chain);
                    }
                    Err(e) => {
                        tracing::warn!(ssrc, error = %e, "cannot receive from a sender");
                        lock(&errors).push(format!("SSRC {ssrc}: {e}"));
                    }
                }
            });
        }
        Ok(Lane {
            kind: def.media,
            local_ssrc: ssrc,
            counters,
            definition: def.clone(),
            pipeline,
            session,
            rtp_in,
            rtcp_in,
            gate,
            source,
            out,
            final_sink,
            preview,
            chains,
            errors,
            loudness,
            stop: Arc::new(AtomicBool::new(false)),
            send_done,
            srtp,
        })
    }

    fn start(self: &Arc<Self>) -> Result<(), AvError> {
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| AvError::Gst("pipeline has no bus".into()))?;
        let lane = Arc::downgrade(self);
        let stop = self.stop.clone();
        std::thread::Builder::new()
            .name(format!("{}-bus", self.kind))
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(msg) = bus.timed_pop_filtered(
                        gst::ClockTime::from_mseconds(100),
                        &[
                            gst::MessageType::Error,
                            gst::MessageType::Warning,
                            gst::MessageType::Element,
                        ],
                    ) else {
                        continue;
                    };
                    if let gst::MessageView::Element(e) = msg.view() {
                        if let (Some(s), Some(l)) = (e.structure(), lane.upgrade()) {
                            on_level(&msg, s, &l.loudness);
                        }
                        continue;
                    }
                    let text = match msg.view() {
                        gst::MessageView::Error(e) => format!(
                            "{}: {}",
                            msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
                            e.error()
                        ),
                        gst::MessageView::Warning(w) => {
                            tracing::debug!(warning = %w.error(), "pipeline warning");
                            continue;
                        }
                        _ => continue,
                    };
                    tracing::warn!(error = %text, "pipeline error");
                    match lane.upgrade() {
                        Some(l) => lock(&l.errors).push(text),
                        None => break,
                    }
                }
            })
            .map_err(gst_err)?;
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| AvError::Gst(format!("{} lane will not play: {e}", self.kind)))?;
        Ok(())
    }

    fn push_rtp(&self, data: &[u8]) {
        push(&self.rtp_in, data);
    }

    fn push_rtcp(&self, data: &[u8]) {
        self.counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
        push(&self.rtcp_in, data);
    }
}

/// A `level` element's message: the loudest channel's RMS, for the
/// sender its element is named after (`level-SSRC`).
fn on_level(msg: &gst::Message, s: &gst::StructureRef, loudness: &Mutex<Loudness>) {
    if s.name() != "level" {
        return;
    }
    let Some(ssrc) = msg.src().and_then(|e| {
        e.name()
            .strip_prefix("level-")
            .and_then(|n| n.parse::<u32>().ok())
    }) else {
        return;
    };
    let Ok(rms) = s.get::<glib::ValueArray>("rms") else {
        return;
    };
    let db = rms
        .iter()
        .filter_map(|v| v.get::<f64>().ok())
        .fold(f64::NEG_INFINITY, f64::max);
    lock(loudness)
        .levels
        .insert(ssrc, (meter(db), std::time::Instant::now()));
}

#[allow(clippy::too_many_arguments)]
fn add_chain(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    ssrc: u32,
    def: &Definition,
    params: &BTreeMap<String, String>,
    sink: &Sink,
    mixer: Option<&gst::Element>,
) -> Result<Chain, AvError> {
    let rb = def.receive_bin(sink, params)?;
    // A sink added to a playing pipeline would otherwise make it wait for
    // that sink to preroll: a sender whose media never decodes would then
    // stall every other sender of the lane.
    for e in rb.bin.iterate_recurse().into_iter().flatten() {
        if e.element_flags().contains(gst::ElementFlags::SINK) && e.find_property("async").is_some()
        {
            e.set_property("async", false);
        }
    }
    pipeline.add(&rb.bin).map_err(gst_err)?;
    let mut mix_pad = None;
    if let Some(mix) = mixer {
        // How loud this sender is, on the way to the mixer.
        let level = gst::ElementFactory::make("level")
            .name(format!("level-{ssrc}"))
            .property("interval", LEVEL_INTERVAL.as_nanos() as u64)
            .property("post-messages", true)
            .build()
            .map_err(gst_err)?;
        pipeline.add(&level).map_err(gst_err)?;
        let pad = request(mix, "sink_%u")?;
        link(
            &static_pad(rb.bin.upcast_ref(), "src")?,
            &static_pad(&level, "sink")?,
        )?;
        link(&static_pad(&level, "src")?, &pad)?;
        level.sync_state_with_parent().map_err(gst_err)?;
        mix_pad = Some(pad);
    }
    link(pad, &static_pad(rb.bin.upcast_ref(), "sink")?)?;
    rb.bin.sync_state_with_parent().map_err(gst_err)?;
    let last = rb
        .bin
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.element_flags().contains(gst::ElementFlags::SINK));
    Ok(Chain {
        jitter: rb.jitter,
        out: rb.out,
        view: rb.bin.by_name("view"),
        sink: last,
        mix_pad,
    })
}

impl Av {
    /// Builds and starts one lane per config on `media`'s socket, which it
    /// then owns for reading. Nothing is sent until [`Av::transmit`].
    pub fn start(media: &Media, lanes: Vec<LaneConfig>, opts: AvOptions) -> Result<Av, AvError> {
        let mut built: Vec<Arc<Lane>> = Vec::new();
        for config in &lanes {
            let kind = config.definition.media;
            if built.iter().any(|l| l.kind == kind) {
                return Err(AvError::DuplicateLane(kind));
            }
            let pt = config.definition.payload_type;
            if built.iter().any(|l| l.definition.payload_type == pt) {
                return Err(AvError::DuplicatePayloadType(pt));
            }
            let ssrc = match kind {
                Kind::Audio => media.ssrcs().audio,
                Kind::Video => media.ssrcs().video,
            };
            built.push(Arc::new(Lane::build(config, ssrc, media, &opts)?));
        }
        for lane in &built {
            lane.start()?;
        }
        let unknown_pt = Arc::new(AtomicU64::new(0));
        let recv_task = tokio::spawn(receive_loop(
            media.socket().clone(),
            media.server(),
            built.clone(),
            unknown_pt.clone(),
        ));
        Ok(Av {
            lanes: built,
            recv_task,
            unknown_pt,
        })
    }

    fn lane(&self, kind: Kind) -> Option<&Arc<Lane>> {
        self.lanes.iter().find(|l| l.kind == kind)
    }

    /// Opens or closes the send valve of a lane (push-to-talk). Returns
    /// false if the lane has nothing to send.
    pub fn transmit(&self, kind: Kind, on: bool) -> bool {
        match self.lane(kind).and_then(|l| l.gate.as_ref()) {
            Some(gate) => {
                gate.set_property("drop", !on);
                true
            }
            None => false,
        }
    }

    /// Asks a lane's encoder for a keyframe now (the router's
    /// `KEYFRAME_REQUEST`: a viewer joined): GStreamer's upstream
    /// force-key-unit event, sent up from the send valve through the
    /// payloader to the encoder. Returns false if the lane sends nothing.
    pub fn request_keyframe(&self, kind: Kind) -> bool {
        let Some(gate) = self.lane(kind).and_then(|l| l.gate.as_ref()) else {
            return false;
        };
        let force = gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .build();
        gate.send_event(gst::event::CustomUpstream::new(force))
    }

    /// Sets the volume of a test-tone source (`audiotestsrc name=src`), for
    /// tests and benchmarks that need an onset at a known moment.
    pub fn set_source_volume(&self, volume: f64) -> bool {
        match self.lane(Kind::Audio).and_then(|l| l.source.as_ref()) {
            Some(src) if src.find_property("volume").is_some() => {
                src.set_property("volume", volume);
                true
            }
            _ => false,
        }
    }

    /// Plays a tone of `freq` Hz for `length` into the audio output (the
    /// lane must have been started with [`LaneConfig::tones`]).
    pub fn beep(&self, freq: f64, length: Duration) -> bool {
        let Some(tone) = self
            .lane(Kind::Audio)
            .and_then(|l| l.pipeline.by_name("tone"))
        else {
            return false;
        };
        tone.set_property("freq", freq);
        tone.set_property("volume", 0.3f64);
        std::thread::spawn(move || {
            std::thread::sleep(length);
            tone.set_property("volume", 0.0f64);
        });
        true
    }

    /// Plays one remote audio sender at `volume` (0: silent here, 1: as
    /// sent, up to 10), now or when it starts sending.
    pub fn set_volume(&self, ssrc: u32, volume: f64) {
        let volume = volume.clamp(0.0, 10.0);
        for lane in self.lanes.iter().filter(|l| l.kind == Kind::Audio) {
            lock(&lane.loudness).volumes.insert(ssrc, volume);
            if let Some(p) = lock(&lane.chains)
                .get(&ssrc)
                .and_then(|c| c.mix_pad.clone())
            {
                p.set_property("volume", volume);
            }
        }
    }

    /// The level last heard from each remote audio sender, 0 to 1 (see
    /// [`meter`]), measured every [`LEVEL_INTERVAL`] before its volume; 0
    /// for a sender not heard for three intervals.
    pub fn levels(&self) -> Vec<(u32, f64)> {
        let stale = LEVEL_INTERVAL * 3;
        let mut out: Vec<(u32, f64)> = self
            .lanes
            .iter()
            .filter(|l| l.kind == Kind::Audio)
            .flat_map(|l| {
                lock(&l.loudness)
                    .levels
                    .iter()
                    .map(|(s, (v, at))| (*s, if at.elapsed() > stale { 0.0 } else { *v }))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|(s, _)| *s);
        out
    }

    /// The latency a lane's pipeline configured for its sinks (jitter
    /// buffer, decoder, mixer): how long after its capture time a received
    /// buffer is rendered.
    pub fn pipeline_latency(&self, kind: Kind) -> Option<Duration> {
        let lane = self.lane(kind)?;
        let mut q = gst::query::Latency::new();
        if !lane.pipeline.query(&mut q) {
            return None;
        }
        let (_, min, _) = q.result();
        Some(Duration::from_nanos(min.nseconds()))
    }

    /// True once a lane's source has ended (the end of a file).
    pub fn source_ended(&self, kind: Kind) -> bool {
        self.lane(kind)
            .is_some_and(|l| l.send_done.load(Ordering::Relaxed))
    }

    /// The media kinds this session sends.
    pub fn sending_kinds(&self) -> Vec<Kind> {
        self.lanes
            .iter()
            .filter(|l| l.gate.is_some())
            .map(|l| l.kind)
            .collect()
    }

    /// The remote SSRCs a lane has a receive chain for.
    pub fn senders(&self, kind: Kind) -> Vec<u32> {
        self.lane(kind)
            .map(|l| lock(&l.chains).keys().copied().collect())
            .unwrap_or_default()
    }

    /// The decoded-media app sinks of a lane when its sink is [`Sink::App`]:
    /// audio has one (after the mixer, SSRC `None`), video one per sender.
    pub fn app_sinks(&self, kind: Kind) -> Vec<(Option<u32>, gst_app::AppSink)> {
        let Some(lane) = self.lane(kind) else {
            return Vec::new();
        };
        if let Some(out) = &lane.out {
            return vec![(None, out.clone())];
        }
        lock(&lane.chains)
            .iter()
            .filter_map(|(ssrc, c)| c.out.clone().map(|o| (Some(*ssrc), o)))
            .collect()
    }

    /// The `view` elements ([`Sink::Element`]) of a lane, one per remote
    /// sender, by SSRC.
    pub fn views(&self, kind: Kind) -> Vec<(u32, gst::Element)> {
        self.lane(kind)
            .map(|l| {
                lock(&l.chains)
                    .iter()
                    .filter_map(|(ssrc, c)| c.view.clone().map(|v| (*ssrc, v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The preview element of a lane that shows what it sends.
    pub fn preview(&self, kind: Kind) -> Option<gst::Element> {
        self.lane(kind).and_then(|l| l.preview.clone())
    }

    /// Whether media is SRTP (the room was secure when it started).
    pub fn secure(&self) -> bool {
        self.lanes.iter().any(|l| l.srtp.is_some())
    }

    /// Errors the pipelines reported so far.
    pub fn errors(&self) -> Vec<String> {
        self.lanes
            .iter()
            .flat_map(|l| lock(&l.errors).clone())
            .collect()
    }

    /// Every stream's figures now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut snap = StatsSnapshot {
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            unknown_payload_type: self.unknown_pt.load(Ordering::Relaxed),
            ..Default::default()
        };
        for lane in &self.lanes {
            lane_stats(lane, &mut snap);
            snap.rtcp_sent += lane.counters.rtcp_sent.load(Ordering::Relaxed);
            snap.rtcp_received += lane.counters.rtcp_received.load(Ordering::Relaxed);
        }
        snap
    }

    /// A snapshot every `every` until the receiver is dropped or media stops.
    pub fn watch_stats(self: &Arc<Self>, every: Duration) -> mpsc::Receiver<StatsSnapshot> {
        let (tx, rx) = mpsc::channel(16);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(av) = me.upgrade() else { break };
                let snap = av.stats();
                drop(av);
                if tx.send(snap).await.is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Stops sending, lets received media drain to the sinks (so a WAV file
    /// gets its header), and shuts the pipelines down.
    pub fn stop(&self, drain: Duration) {
        let mut waits = Vec::new();
        for lane in &self.lanes {
            if let Some(gate) = &lane.gate {
                gate.set_property("drop", true);
            }
            if let Some(sink) = &lane.final_sink
                && let Some(pad) = sink.static_pad("sink")
            {
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let tx = Mutex::new(tx);
                on_eos(&pad, move || {
                    let _ = lock(&tx).send(());
                });
                waits.push(rx);
            }
            let _ = lane.rtp_in.end_of_stream();
            let _ = lane.rtcp_in.end_of_stream();
            // The mixer ends when all its inputs did, the tones' too.
            if let Some(tone) = lane.pipeline.by_name("tone") {
                tone.send_event(gst::event::Eos::new());
            }
        }
        let deadline = std::time::Instant::now() + drain;
        for rx in waits {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = rx.recv_timeout(left);
        }
        // The EOS reached the sink: give it a moment to handle it.
        std::thread::sleep(Duration::from_millis(50));
        self.shutdown();
    }

    fn shutdown(&self) {
        self.recv_task.abort();
        for lane in &self.lanes {
            lane.stop.store(true, Ordering::Relaxed);
            let _ = lane.pipeline.set_state(gst::State::Null);
        }
    }
}

impl Drop for Av {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn field<T: for<'a> glib::value::FromValue<'a> + 'static>(
    s: &gst::StructureRef,
    name: &str,
) -> Option<T> {
    s.get::<T>(name).ok()
}

fn lane_stats(lane: &Lane, snap: &mut StatsSnapshot) {
    let kind = lane.kind.to_string();
    let clock = f64::from(lane.definition.clock_rate.max(1));
    let stats = lane.session.property::<gst::Structure>("stats");
    let Ok(sources) = stats.get::<glib::ValueArray>("source-stats") else {
        return;
    };
    let sources: Vec<gst::Structure> = sources
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .collect();
    let chains = lock(&lane.chains);
    let mut sent = None;
    for s in &sources {
        let ssrc: u32 = field(s, "ssrc").unwrap_or(0);
        if field(s, "internal").unwrap_or(false) {
            if lane.gate.is_some() && ssrc == lane.local_ssrc {
                sent = Some(SendStats {
                    kind: kind.clone(),
                    ssrc,
                    packets_sent: field(s, "packets-sent").unwrap_or(0),
                    octets_sent: field(s, "octets-sent").unwrap_or(0),
                    reports: Vec::new(),
                });
            }
            continue;
        }
        let Some(chain) = chains.get(&ssrc) else {
            continue;
        };
        let mut r = ReceiveStats {
            kind: kind.clone(),
            ssrc,
            packets_received: field(s, "packets-received").unwrap_or(0),
            octets_received: field(s, "octets-received").unwrap_or(0),
            packets_lost: i64::from(field::<i32>(s, "packets-lost").unwrap_or(0)),
            jitter_ms: f64::from(field::<u32>(s, "jitter").unwrap_or(0)) * 1000.0 / clock,
            ..Default::default()
        };
        if let Some(jb) = &chain.jitter {
            let js = jb.property::<gst::Structure>("stats");
            r.jb_pushed = field(&js, "num-pushed").unwrap_or(0);
            r.jb_lost = field(&js, "num-lost").unwrap_or(0);
            r.jb_late = field(&js, "num-late").unwrap_or(0);
            r.jb_duplicates = field(&js, "num-duplicates").unwrap_or(0);
            r.jb_avg_jitter_ms = field::<u64>(&js, "avg-jitter").unwrap_or(0) as f64 / 1e6;
        }
        if let Some(sink) = &chain.sink
            && sink.find_property("stats").is_some()
        {
            r.rendered = field(&sink.property::<gst::Structure>("stats"), "rendered").unwrap_or(0);
        }
        snap.received.push(r);
    }
    // Reports about our stream are kept on the source that sent them.
    if let Some(mut sent) = sent {
        for s in &sources {
            let about_us = field::<u32>(s, "rb-ssrc") == Some(lane.local_ssrc);
            if field(s, "internal").unwrap_or(false)
                || !field::<bool>(s, "have-rb").unwrap_or(false)
                || !about_us
            {
                continue;
            }
            let lsr: u32 = field(s, "rb-lsr").unwrap_or(0);
            let rtt: u32 = field(s, "rb-round-trip").unwrap_or(0);
            sent.reports.push(RemoteReport {
                from_ssrc: field(s, "ssrc").unwrap_or(0),
                fraction_lost: f64::from(field::<u32>(s, "rb-fractionlost").unwrap_or(0)) / 256.0,
                packets_lost: i64::from(field::<i32>(s, "rb-packetslost").unwrap_or(0)),
                jitter_ms: f64::from(field::<u32>(s, "rb-jitter").unwrap_or(0)) * 1000.0 / clock,
                // In 1/65536 s; without an LSR the report refers to no SR.
                rtt_ms: (lsr != 0).then(|| f64::from(rtt) * 1000.0 / 65536.0),
            });
        }
        snap.sent.push(sent);
    }
}

/// Reads the socket and hands RTP to the lane of its payload type, RTCP to
/// the lane of its sender (or to every lane when the sender is unknown:
/// `rtpsession` ignores reports about sources it does not have).
async fn receive_loop(
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    lanes: Vec<Arc<Lane>>,
    unknown_pt: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; proto::media::MAX_DATAGRAM];
    let mut ssrc_lane: HashMap<u32, usize> = HashMap::new();
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "media receive failed");
                continue;
            }
        };
        if from != server {
            continue;
        }
        let data = &buf[..n];
        match classify(data) {
            PacketKind::Rtp => {
                let Some(h) = rtp_header(data) else { continue };
                let pt = data[1] & 0x7f;
                match lanes.iter().position(|l| l.definition.payload_type == pt) {
                    Some(i) => {
                        ssrc_lane.insert(h.ssrc, i);
                        lanes[i].push_rtp(data);
                    }
                    None => {
                        unknown_pt.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            PacketKind::Rtcp => match rtcp_sender_ssrc(data).and_then(|s| ssrc_lane.get(&s)) {
                Some(&i) => lanes[i].push_rtcp(data),
                None => {
                    for l in &lanes {
                        l.push_rtcp(data);
                    }
                }
            },
            _ => {}
        }
    }
}
