//! A meeting's video (`SbMeetingGrid`): one `SbVideoTile` per sender and
//! our own camera first, from the session's tile list.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::state::SbSession;
use crate::state::items::SbTileItem;

mod grid_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "meeting_grid.ui")]
    pub struct SbMeetingGrid {
        #[template_child]
        pub video_grid: TemplateChild<gtk::FlowBox>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbMeetingGrid {
        const NAME: &'static str = "SbMeetingGrid";
        type Type = super::SbMeetingGrid;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbMeetingGrid {}
    impl WidgetImpl for SbMeetingGrid {}
    impl BoxImpl for SbMeetingGrid {}
}

glib::wrapper! {
    pub struct SbMeetingGrid(ObjectSubclass<grid_imp::SbMeetingGrid>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbMeetingGrid {
    pub fn bind(&self, session: &SbSession) {
        self.imp()
            .video_grid
            .bind_model(Some(&session.stores().tiles), |item| {
                match item.downcast_ref::<SbTileItem>() {
                    Some(i) => SbVideoTile::new(i).upcast(),
                    None => gtk::Label::new(None).upcast(),
                }
            });
        session
            .bind_property("is-meeting", self, "visible")
            .sync_create()
            .build();
    }
}

mod tile_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "video_tile.ui")]
    pub struct SbVideoTile {
        #[template_child]
        pub picture: TemplateChild<gtk::Picture>,
        #[template_child]
        pub name_label: TemplateChild<gtk::Label>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbVideoTile {
        const NAME: &'static str = "SbVideoTile";
        type Type = super::SbVideoTile;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbVideoTile {}
    impl WidgetImpl for SbVideoTile {}
    impl BoxImpl for SbVideoTile {}
}

glib::wrapper! {
    pub struct SbVideoTile(ObjectSubclass<tile_imp::SbVideoTile>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbVideoTile {
    pub fn new(item: &SbTileItem) -> Self {
        let tile: Self = glib::Object::new();
        let imp = tile.imp();
        item.bind_property("paintable", &*imp.picture, "paintable")
            .sync_create()
            .build();
        item.bind_property("name", &*imp.name_label, "label")
            .sync_create()
            .build();
        tile.set_widget_name(&item.ssrc().to_string());
        tile
    }
}
