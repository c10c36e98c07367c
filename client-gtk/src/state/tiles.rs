//! Video tiles: one per remote sender (named after its member once the
//! member list says whose SSRC it is) and our own camera first.

use gtk::gdk;
use gtk::subclass::prelude::*;

use super::SbSession;
use super::items::SbTileItem;
use crate::i18n::tr;

impl SbSession {
    pub(super) fn add_tile(&self, ssrc: u32, paintable: Option<gdk::Paintable>) {
        let Some(p) = paintable else { return };
        let name = if ssrc == 0 {
            tr("You")
        } else {
            self.inner()
                .room
                .as_ref()
                .and_then(|r| r.by_video_ssrc(ssrc).map(|m| m.nickname.clone()))
                .unwrap_or_else(|| format!("SSRC {ssrc:08x}"))
        };
        let tile = SbTileItem::new(ssrc, &name, Some(&p));
        let tiles = &self.stores().tiles;
        if let Some(old) = self
            .imp()
            .tiles_by_ssrc
            .borrow_mut()
            .insert(ssrc, tile.clone())
            && let Some(i) = tiles.find(&old)
        {
            tiles.remove(i);
        }
        if ssrc == 0 {
            tiles.insert(0, &tile);
        } else {
            tiles.append(&tile);
            let n = self
                .imp()
                .tiles_by_ssrc
                .borrow()
                .keys()
                .filter(|s| **s != 0)
                .count();
            tracing::info!(ssrc, name, tiles = n, "ui: video tile");
        }
    }

    pub(super) fn clear_tiles(&self) {
        self.imp().tiles_by_ssrc.borrow_mut().clear();
        self.stores().tiles.remove_all();
    }
}

pub(super) fn paintable_of(sink: &gst::Element) -> Option<gdk::Paintable> {
    use gst::prelude::ObjectExt as _;
    sink.find_property("paintable")?;
    Some(sink.property::<gdk::Paintable>("paintable"))
}
