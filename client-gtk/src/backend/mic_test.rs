//! "Test my microphone": the chosen microphone played back on the chosen
//! speaker, its level measured ten times a second and reported as
//! [`Event::MicLevel`]. Stopped when dropped.

use gst::prelude::*;
use pipelines::Media as Kind;

use super::{Emitter, Event, MediaChoice};

pub(crate) struct MicTest {
    pipeline: gst::Pipeline,
}

impl MicTest {
    pub(crate) fn start(choice: &MediaChoice, out: Emitter) -> Result<MicTest, String> {
        let desc = format!(
            "{} ! audioconvert ! level name=miclevel interval={} post-messages=true ! audioconvert ! audioresample ! {}",
            choice.microphone.fragment(Kind::Audio),
            client::av::LEVEL_INTERVAL.as_nanos(),
            choice.speaker.fragment(Kind::Audio),
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| format!("microphone test: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "microphone test: not a pipeline".to_string())?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| "microphone test: no bus".to_string())?;
        // Level messages, on GStreamer's thread: the event channel is
        // thread-safe and never blocks.
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Element(e) = msg.view()
                && let Some(s) = e.structure()
                && s.name() == "level"
                && let Ok(rms) = s.get::<gst::glib::ValueArray>("rms")
            {
                let db = rms
                    .iter()
                    .filter_map(|v| v.get::<f64>().ok())
                    .fold(f64::NEG_INFINITY, f64::max);
                out.emit(Event::MicLevel(client::av::meter(db)));
            }
            if let gst::MessageView::Error(e) = msg.view() {
                out.emit(Event::MediaError(format!("microphone test: {}", e.error())));
            }
            gst::BusSyncReply::Drop
        });
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("microphone test: {e}"))?;
        tracing::info!("microphone test started");
        Ok(MicTest { pipeline })
    }
}

impl Drop for MicTest {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        tracing::info!("microphone test stopped");
    }
}
