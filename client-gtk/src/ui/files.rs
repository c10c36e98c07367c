//! Files in a meeting (`SbFilesPanel`): Send File… and one `SbFileRow` per
//! transfer, in or out, with its progress and, once a received file is
//! saved, Save As….

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{CompositeTemplate, glib};

use crate::i18n::tr;
use crate::state::SbSession;
use crate::state::items::SbTransferItem;

mod panel_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "files_panel.ui")]
    pub struct SbFilesPanel {
        #[template_child]
        pub file_list: TemplateChild<gtk::ListBox>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbFilesPanel {
        const NAME: &'static str = "SbFilesPanel";
        type Type = super::SbFilesPanel;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbFilesPanel {}
    impl WidgetImpl for SbFilesPanel {}
    impl BoxImpl for SbFilesPanel {}
}

glib::wrapper! {
    pub struct SbFilesPanel(ObjectSubclass<panel_imp::SbFilesPanel>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl SbFilesPanel {
    pub fn bind(&self, session: &SbSession) {
        let s = session.clone();
        self.imp()
            .file_list
            .bind_model(Some(&session.stores().transfers), move |item| match item
                .downcast_ref::<SbTransferItem>()
            {
                Some(i) => SbFileRow::new(i, &s).upcast(),
                None => gtk::Label::new(None).upcast(),
            });
        let empty = gtk::Label::new(Some(&tr(
            "No files yet: Send File… offers one to everyone, or to the person chosen for chat",
        )));
        empty.add_css_class("dim-label");
        empty.set_wrap(true);
        empty.set_margin_top(12);
        empty.set_margin_bottom(12);
        empty.set_margin_start(12);
        empty.set_margin_end(12);
        self.imp().file_list.set_placeholder(Some(&empty));
        session
            .bind_property("is-meeting", self, "visible")
            .sync_create()
            .build();
    }
}

mod row_imp {
    use super::*;

    #[derive(Debug, Default, CompositeTemplate)]
    #[template(file = "file_row.ui")]
    pub struct SbFileRow {
        #[template_child]
        pub icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub label: TemplateChild<gtk::Label>,
        #[template_child]
        pub progress: TemplateChild<gtk::ProgressBar>,
        #[template_child]
        pub save_button: TemplateChild<gtk::Button>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbFileRow {
        const NAME: &'static str = "SbFileRow";
        type Type = super::SbFileRow;
        type ParentType = gtk::ListBoxRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbFileRow {}
    impl WidgetImpl for SbFileRow {}
    impl ListBoxRowImpl for SbFileRow {}
}

glib::wrapper! {
    pub struct SbFileRow(ObjectSubclass<row_imp::SbFileRow>)
        @extends gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Accessible, gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl SbFileRow {
    pub fn new(item: &SbTransferItem, session: &SbSession) -> Self {
        let row: Self = glib::Object::new();
        let imp = row.imp();
        item.bind_property("label", &*imp.label, "label")
            .sync_create()
            .build();
        item.bind_property("fraction", &*imp.progress, "fraction")
            .sync_create()
            .build();
        item.bind_property("running", &*imp.progress, "visible")
            .sync_create()
            .build();
        item.bind_property("path", &*imp.save_button, "visible")
            .transform_to(|_, p: String| Some(!p.is_empty()))
            .sync_create()
            .build();
        let icon = imp.icon.clone();
        let set_icon = move |i: &SbTransferItem| {
            icon.set_icon_name(Some(match (i.failed(), i.running(), i.outgoing()) {
                (true, _, _) => "dialog-error-symbolic",
                (false, false, _) => "emblem-ok-symbolic",
                (false, true, true) => "document-send-symbolic",
                (false, true, false) => "folder-download-symbolic",
            }))
        };
        set_icon(item);
        let s2 = set_icon.clone();
        item.connect_running_notify(move |i| s2(i));
        item.connect_failed_notify(move |i| set_icon(i));
        let (item2, s) = (item.clone(), session.clone());
        imp.save_button
            .connect_clicked(move |b| save_as(b, &item2.path(), &s));
        row
    }
}

fn save_as(button: &gtk::Button, from: &str, session: &SbSession) {
    let from = std::path::PathBuf::from(from);
    let parent = button.root().and_downcast::<gtk::Window>();
    let dialog = gtk::FileChooserNative::new(
        Some(&tr("Save the file")),
        parent.as_ref(),
        gtk::FileChooserAction::Save,
        Some(&tr("_Save")),
        Some(&tr("_Cancel")),
    );
    if let Some(name) = from.file_name() {
        dialog.set_current_name(&name.to_string_lossy());
    }
    let s = session.clone();
    dialog.connect_response(move |d, resp| {
        if resp == gtk::ResponseType::Accept
            && let Some(to) = d.file().and_then(|f| f.path())
            && let Err(e) = std::fs::copy(&from, &to)
        {
            s.notify_user(
                &tr("Could not save {path}: {why}")
                    .replace("{path}", &to.display().to_string())
                    .replace("{why}", &e.to_string()),
            );
        }
    });
    dialog.show();
    // Kept alive by GTK until it answers.
    std::mem::forget(dialog);
}
