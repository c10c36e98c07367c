//! Media for the room we are in: one [`Av`] with an audio lane and, in
//! meetings, a video lane whose remote senders and preview end in video
//! sink elements handed to the window. Floor rooms open the microphone
//! only while we hold the floor; open voice and meetings follow the
//! microphone and camera toggles.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use client::av::{Av, AvOptions, LaneConfig, video_reports};
use client::{Control, Media, Session};
use pipelines::{Catalog, Media as Kind, Sink, Source};
use proto::control::ClientMessage;

use super::{Emitter, Event, Options, Shared, lock};

/// Devices and codecs.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaChoice {
    pub microphone: Source,
    pub speaker: Sink,
    pub camera: Source,
    /// Pipeline definition names; the audio one may be [`ROOM_CODEC`].
    pub audio_codec: String,
    pub video_codec: String,
    /// Beeps on floor grant and release.
    pub tones: bool,
}

impl Default for MediaChoice {
    fn default() -> Self {
        Self {
            microphone: Source::Device,
            speaker: Sink::Device,
            camera: Source::Device,
            audio_codec: ROOM_CODEC.into(),
            video_codec: "jpeg".into(),
            tones: true,
        }
    }
}

/// The audio codec choice that follows each room's codec (`settings.codec`
/// in JOINED): the matching pipeline definition, whatever the room.
pub const ROOM_CODEC: &str = "auto";

/// The audio definition for a room speaking `room_codec`: the room's own
/// with [`ROOM_CODEC`], the chosen one otherwise (a warning when it does not
/// match the room's, which other members may not hear, and which a room
/// with seed members refuses).
pub fn audio_definition(
    catalog: &Catalog,
    chosen: &str,
    room_codec: &str,
) -> Result<pipelines::Definition, String> {
    if chosen == ROOM_CODEC {
        return catalog
            .for_room_codec(room_codec)
            .cloned()
            .map_err(|e| format!("{}: {e}", crate::i18n::tr("No audio in this room")));
    }
    let d = catalog.require(chosen)?;
    let fits = catalog
        .for_room_codec(room_codec)
        .is_ok_and(|r| r.payload_type == d.payload_type && r.clock_rate == d.clock_rate);
    if !fits {
        tracing::warn!(
            chosen,
            room_codec,
            "media: the chosen audio codec is not the room's; members may not hear it"
        );
    }
    Ok(d.clone())
}

impl MediaChoice {
    /// From saved settings; names that do not parse fall back to devices.
    pub fn from_settings(s: &crate::model::settings::Settings) -> Self {
        Self {
            microphone: s.microphone.parse().unwrap_or(Source::Device),
            speaker: s.speaker.parse().unwrap_or(Sink::Device),
            camera: s.camera.parse().unwrap_or(Source::Device),
            audio_codec: s.audio_codec.clone(),
            video_codec: s.video_codec.clone(),
            tones: s.tones,
        }
    }
}

/// Media while in a room.
pub(crate) struct Running {
    av: Arc<Av>,
    kind: String,
    /// Floor rooms send only while holding the floor.
    floor: bool,
    shown: BTreeSet<u32>,
    preview_sent: bool,
    /// Pipeline errors already reported.
    errors_seen: usize,
    tones: bool,
}

impl Running {
    /// One speaker at a time: the talk key asks for the floor.
    pub(crate) fn has_floor(&self) -> bool {
        self.floor
    }

    pub(crate) fn is_meeting(&self) -> bool {
        self.kind == "meeting"
    }

    /// Opens or closes the microphone for a floor grant, with the talk
    /// permit tone (880 Hz) or the end tone (440 Hz) in the speaker.
    pub(crate) fn talk(&self, on: bool) {
        self.av.transmit(Kind::Audio, on);
        if self.tones {
            let freq = if on { PERMIT_TONE_HZ } else { END_TONE_HZ };
            self.av.beep(freq, TONE_LENGTH);
            tracing::info!(freq, "tone");
        }
    }

    /// A keyframe from the camera now (a viewer joined the meeting).
    pub(crate) fn keyframe(&self) {
        if self.av.request_keyframe(Kind::Video) {
            tracing::debug!("keyframe requested");
        }
    }

    /// One sender's playback volume here.
    pub(crate) fn set_volume(&self, ssrc: u32, volume: f64) {
        self.av.set_volume(ssrc, volume);
    }

    /// The microphone and camera toggles (rooms without a floor).
    pub(crate) fn apply_toggles(&self, audio: bool, video: bool) {
        if !self.floor {
            self.av.transmit(Kind::Audio, audio);
        }
        self.av.transmit(Kind::Video, video);
    }
}

/// The talk permit tone, the end tone, and how long each sounds.
pub const PERMIT_TONE_HZ: f64 = 880.0;
pub const END_TONE_HZ: f64 = 440.0;
pub const TONE_LENGTH: Duration = Duration::from_millis(160);

pub(crate) async fn start(
    kind: &str,
    room_codec: &str,
    media: Media,
    out: &Emitter,
    shared: &Shared,
    opts: &Options,
    session: &Session,
) -> Result<(), String> {
    stop(shared);
    let control = &session.control();
    let (choice, mic_on, cam_on, volumes) = {
        let l = lock(shared);
        (l.choice.clone(), l.mic_on, l.cam_on, l.volumes.clone())
    };
    let catalog = Catalog::load_default().map_err(|e| e.to_string())?;
    let audio = audio_definition(&catalog, &choice.audio_codec, room_codec)?;
    let mut audio = LaneConfig::new(
        audio,
        Some(choice.microphone.clone()),
        choice.speaker.clone(),
    );
    audio.tones = choice.tones && matches!(kind, "ptt" | "chat");
    tracing::info!(
        codec = %audio.definition.name,
        room_codec,
        microphone = ?choice.microphone,
        speaker = ?choice.speaker,
        "media: audio pipeline"
    );
    let mut lanes = vec![audio];
    let meeting = kind == "meeting";
    if meeting {
        let video = catalog.require(&choice.video_codec)?.clone();
        let view = Sink::Element(opts.video_sink.clone());
        let mut lane = LaneConfig::new(video, Some(choice.camera.clone()), view.clone());
        lane.preview = Some(view);
        lanes.push(lane);
    }
    let av = Av::start(
        &media,
        lanes,
        AvOptions {
            // Meetings hear of loss quickly (adaptive video).
            rtcp_interval: Duration::from_millis(if meeting { 250 } else { 1000 }),
            // SRTP when the room is secure.
            srtp: Some(session.keyring().clone()),
            ..AvOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let floor = matches!(kind, "ptt" | "chat");
    let running = Running {
        av: Arc::new(av),
        kind: kind.into(),
        floor,
        shown: BTreeSet::new(),
        preview_sent: false,
        errors_seen: 0,
        tones: choice.tones && choice.speaker != Sink::Discard,
    };
    if !floor {
        running.apply_toggles(mic_on, meeting && cam_on);
    }
    for (ssrc, v) in volumes {
        running.set_volume(ssrc, v);
    }
    lock(shared).media = Some(running);
    if meeting {
        let _ = control
            .send(ClientMessage::MediaState {
                audio: mic_on,
                video: cam_on,
            })
            .await;
    }
    tick(out, shared, control).await;
    Ok(())
}

/// Stops media (leaving the room, losing the connection).
pub(crate) fn stop(shared: &Shared) {
    let running = {
        let mut l = lock(shared);
        l.holding = false;
        l.media.take()
    };
    if let Some(r) = running {
        // Stopping waits for the pipelines: not on the runtime's threads.
        std::thread::spawn(move || r.av.stop(Duration::from_millis(100)));
    }
}

/// Ten times a second: how loud each sender is heard (for the talking
/// rings).
pub(crate) fn levels(out: &Emitter, shared: &Shared) {
    let av = match lock(shared).media.as_ref() {
        Some(r) => r.av.clone(),
        None => return,
    };
    out.emit(Event::Levels(av.levels()));
}

/// Twice a second: new and gone video senders, the preview, statistics,
/// new pipeline errors, and in meetings our receivers' reports for
/// adaptive video. GStreamer is asked outside the shared lock, so a talk
/// key pressed meanwhile is not held up.
pub(crate) async fn tick(out: &Emitter, shared: &Shared, control: &Control) {
    let (av, report) = {
        let l = lock(shared);
        let Some(r) = l.media.as_ref() else { return };
        (r.av.clone(), r.is_meeting() && l.cam_on)
    };
    let views = av.views(Kind::Video);
    let preview = av.preview(Kind::Video);
    let stats = av.stats();
    let errors = av.errors();
    {
        let mut l = lock(shared);
        // Left the room meanwhile: nothing to show.
        let Some(r) = l.media.as_mut().filter(|r| Arc::ptr_eq(&r.av, &av)) else {
            return;
        };
        for (ssrc, sink) in &views {
            if r.shown.insert(*ssrc) {
                out.emit(Event::Video {
                    ssrc: *ssrc,
                    sink: sink.clone(),
                });
            }
        }
        let now: BTreeSet<u32> = views.iter().map(|v| v.0).collect();
        for gone in r.shown.difference(&now).copied().collect::<Vec<_>>() {
            r.shown.remove(&gone);
            out.emit(Event::VideoGone { ssrc: gone });
        }
        if !r.preview_sent
            && let Some(p) = preview
        {
            r.preview_sent = true;
            out.emit(Event::Preview(p));
        }
        for e in errors.iter().skip(r.errors_seen) {
            out.emit(Event::MediaError(e.clone()));
        }
        r.errors_seen = errors.len();
    }
    let reports = if report {
        video_reports(&stats)
    } else {
        Vec::new()
    };
    out.emit(Event::Stats(stats));
    if !reports.is_empty() {
        let _ = control.try_send(ClientMessage::VideoStats { reports });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_follows_the_room_and_an_explicit_choice_is_kept() {
        let catalog = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
        for room in ["opus", "l16-44k", "l16-20k", "l16-16k"] {
            let d = audio_definition(&catalog, ROOM_CODEC, room).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d.name, room);
        }
        let d = audio_definition(&catalog, "opus", "l16-44k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.name, "opus", "an explicit choice stays");
        let e = audio_definition(&catalog, ROOM_CODEC, "g722").err();
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("No audio in this room") && e.contains("g722")),
            "{e:?}"
        );
        assert!(audio_definition(&catalog, "nonesuch", "opus").is_err());
    }
}
