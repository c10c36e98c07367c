//! Chat (`SbChatPanel`): the room's messages (one `SbChatRow` each, from
//! the session's chat list, appended as they come), whom to write to, and
//! the entry (Alt+W).

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::backend::Command;
use crate::state::SbSession;
use crate::state::items::{SbChatItem, SbNameItem};

mod panel_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "chat_panel.ui")]
    pub struct SbChatPanel {
        #[template_child]
        pub chat_scroller: TemplateChild<gtk::ScrolledWindow>,
        #[template_child]
        pub chat_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub chat_to: TemplateChild<gtk::DropDown>,
        #[template_child]
        pub chat_entry: TemplateChild<gtk::Entry>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbChatPanel {
        const NAME: &'static str = "SbChatPanel";
        type Type = super::SbChatPanel;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbChatPanel {}
    impl WidgetImpl for SbChatPanel {}
    impl BoxImpl for SbChatPanel {}
}

glib::wrapper! {
    pub struct SbChatPanel(ObjectSubclass<panel_imp::SbChatPanel>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbChatPanel {
    pub fn bind(&self, session: &SbSession) {
        let imp = self.imp();
        let store = &session.stores().chat;
        imp.chat_list.bind_model(Some(store), |item| {
            match item.downcast_ref::<SbChatItem>() {
                Some(i) => SbChatRow::new(i).upcast(),
                None => gtk::Label::new(None).upcast(),
            }
        });
        let empty = gtk::Label::new(Some(&crate::i18n::tr("No messages yet")));
        empty.add_css_class("dim-label");
        empty.set_margin_top(24);
        imp.chat_list.set_placeholder(Some(&empty));
        // New lines scroll into view.
        let adj = imp.chat_scroller.vadjustment();
        store.connect_items_changed(move |_, _, _, added| {
            if added > 0 {
                let adj = adj.clone();
                glib::idle_add_local_once(move || adj.set_value(adj.upper()));
            }
        });
        imp.chat_to
            .set_expression(Some(gtk::PropertyExpression::new(
                SbNameItem::static_type(),
                None::<gtk::Expression>,
                "name",
            )));
        imp.chat_to.set_model(Some(&session.stores().recipients));
        session
            .bind_property("has-chat", self, "visible")
            .sync_create()
            .build();
        let s = session.clone();
        let to = imp.chat_to.clone();
        imp.chat_entry.connect_activate(move |e| {
            let text = e.text().trim().to_owned();
            if text.is_empty() {
                return;
            }
            let to = s.recipient(to.selected());
            tracing::info!(private = to.is_some(), "ui: chat sent");
            s.send(Command::Chat { text, to });
            e.set_text("");
        });
    }

    /// Whom a file or message goes to (None: everyone).
    pub fn recipient(&self, session: &SbSession) -> Option<String> {
        session.recipient(self.imp().chat_to.selected())
    }
}

mod row_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "chat_row.ui")]
    pub struct SbChatRow {
        #[template_child]
        pub avatar: TemplateChild<adw::Avatar>,
        #[template_child]
        pub from_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub meta_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub text_label: TemplateChild<gtk::Label>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbChatRow {
        const NAME: &'static str = "SbChatRow";
        type Type = super::SbChatRow;
        type ParentType = gtk::ListBoxRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbChatRow {}
    impl WidgetImpl for SbChatRow {}
    impl ListBoxRowImpl for SbChatRow {}
}

glib::wrapper! {
    pub struct SbChatRow(ObjectSubclass<row_imp::SbChatRow>)
        @extends gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Accessible, gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl SbChatRow {
    pub fn new(item: &SbChatItem) -> Self {
        let row: Self = glib::Object::new();
        let imp = row.imp();
        for (prop, target, name) in [
            ("from", imp.avatar.upcast_ref::<glib::Object>(), "text"),
            ("from", imp.from_label.upcast_ref(), "label"),
            ("meta", imp.meta_label.upcast_ref(), "label"),
            ("text", imp.text_label.upcast_ref(), "label"),
        ] {
            item.bind_property(prop, target, name).sync_create().build();
        }
        if item.private() {
            row.add_css_class("sb-private");
        }
        row
    }
}
