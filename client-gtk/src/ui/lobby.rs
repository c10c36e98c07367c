//! A meeting host's lobby: the guests waiting (`SbLobbyPanel`, one
//! `SbLobbyRow` each, with Allow and Deny).

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::backend::Command;
use crate::i18n::tr;
use crate::state::SbSession;
use crate::state::items::SbLobbyItem;

mod panel_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "lobby_panel.ui")]
    pub struct SbLobbyPanel {
        #[template_child]
        pub lobby_list: TemplateChild<gtk::ListBox>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbLobbyPanel {
        const NAME: &'static str = "SbLobbyPanel";
        type Type = super::SbLobbyPanel;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbLobbyPanel {}
    impl WidgetImpl for SbLobbyPanel {}
    impl BoxImpl for SbLobbyPanel {}
}

glib::wrapper! {
    pub struct SbLobbyPanel(ObjectSubclass<panel_imp::SbLobbyPanel>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbLobbyPanel {
    pub fn bind(&self, session: &SbSession) {
        let s = session.clone();
        self.imp()
            .lobby_list
            .bind_model(Some(&session.stores().lobby), move |item| match item
                .downcast_ref::<SbLobbyItem>()
            {
                Some(i) => SbLobbyRow::new(i, &s).upcast(),
                None => gtk::Label::new(None).upcast(),
            });
        session
            .bind_property("lobby-visible", self, "visible")
            .sync_create()
            .build();
    }
}

mod row_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "lobby_row.ui")]
    pub struct SbLobbyRow {
        #[template_child]
        pub avatar: TemplateChild<adw::Avatar>,
        #[template_child]
        pub allow_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub deny_button: TemplateChild<gtk::Button>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbLobbyRow {
        const NAME: &'static str = "SbLobbyRow";
        type Type = super::SbLobbyRow;
        type ParentType = adw::ActionRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbLobbyRow {}
    impl WidgetImpl for SbLobbyRow {}
    impl ListBoxRowImpl for SbLobbyRow {}
    impl PreferencesRowImpl for SbLobbyRow {}
    impl ActionRowImpl for SbLobbyRow {}
}

glib::wrapper! {
    pub struct SbLobbyRow(ObjectSubclass<row_imp::SbLobbyRow>)
        @extends adw::ActionRow, adw::PreferencesRow, gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Accessible, gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl SbLobbyRow {
    pub fn new(item: &SbLobbyItem, session: &SbSession) -> Self {
        let row: Self = glib::Object::new();
        let imp = row.imp();
        item.bind_property("nickname", &row, "title")
            .sync_create()
            .build();
        item.bind_property("nickname", &*imp.avatar, "text")
            .sync_create()
            .build();
        let name = item.nickname();
        row.set_widget_name(&format!("lobby-{name}"));
        imp.allow_button
            .update_property(&[gtk::accessible::Property::Label(
                &tr("Let {name} in").replace("{name}", &name),
            )]);
        imp.deny_button
            .update_property(&[gtk::accessible::Property::Label(
                &tr("Turn {name} away").replace("{name}", &name),
            )]);
        let id = item.session_id();
        let s = session.clone();
        imp.allow_button.connect_clicked(move |_| {
            tracing::info!(id, "ui: allow");
            s.send(Command::Allow(id))
        });
        let s = session.clone();
        imp.deny_button.connect_clicked(move |_| {
            tracing::info!(id, "ui: deny");
            s.send(Command::Deny(id))
        });
        row
    }
}
