//! What the device and codec menus offer: the system's microphones,
//! speakers and cameras (GStreamer's device monitor), test sources, and
//! the pipeline definitions of each media kind.

use gst::prelude::*;

/// One menu entry: what it reads, and the value saved in settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub label: String,
    pub value: String,
}

fn choice(label: &str, value: &str) -> Choice {
    Choice {
        label: label.into(),
        value: value.into(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Choices {
    pub microphones: Vec<Choice>,
    pub speakers: Vec<Choice>,
    pub cameras: Vec<Choice>,
    pub audio_codecs: Vec<Choice>,
    pub video_codecs: Vec<Choice>,
}

impl Choices {
    pub fn discover(with_tests: bool) -> Self {
        let mut c = Choices {
            microphones: vec![choice("Default microphone", "mic")],
            speakers: vec![
                choice("Default speakers", "speakers"),
                choice("None (mute everything)", "discard"),
            ],
            cameras: vec![choice("Default camera", "camera")],
            audio_codecs: vec![Choice {
                label: crate::i18n::tr("Automatic (the room's codec)"),
                value: crate::backend::ROOM_CODEC.into(),
            }],
            ..Default::default()
        };
        for (class, list) in [
            ("Audio/Source", &mut c.microphones),
            ("Audio/Sink", &mut c.speakers),
            ("Video/Source", &mut c.cameras),
        ] {
            list.extend(devices(class));
        }
        c.microphones
            .push(choice("Test tone (440 Hz)", "tone:440:0.3"));
        c.cameras
            .push(choice("Test pattern (ball)", "pattern:ball"));
        c.cameras
            .push(choice("Test pattern (colour bars)", "pattern:smpte"));
        if with_tests {
            c.microphones
                .push(choice("Test tone (660 Hz)", "tone:660:0.3"));
        }
        if let Ok(catalog) = pipelines::Catalog::load_default() {
            for d in catalog.iter() {
                let entry = Choice {
                    label: format!("{} — {}", d.name, d.description),
                    value: d.name.clone(),
                };
                match d.media {
                    pipelines::Media::Audio => c.audio_codecs.push(entry),
                    pipelines::Media::Video => c.video_codecs.push(entry),
                }
            }
        }
        c
    }
}

/// Devices of a class as `element:FACTORY device=…` choices.
fn devices(class: &str) -> Vec<Choice> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some(class), None);
    if monitor.start().is_err() {
        return Vec::new();
    }
    let found = monitor
        .devices()
        .iter()
        .filter_map(|d| {
            let el = d.create_element(None).ok()?;
            let factory = el.factory()?.name().to_string();
            let value = if el.find_property("device").is_some() {
                let dev = el.property_value("device");
                let dev: String = dev.get::<Option<String>>().ok().flatten()?;
                format!("element:{factory} device={dev}")
            } else {
                format!("element:{factory}")
            };
            // Only what the pipelines crate accepts.
            value.parse::<pipelines::Source>().ok()?;
            Some(Choice {
                label: d.display_name().to_string(),
                value,
            })
        })
        .collect();
    monitor.stop();
    found
}
