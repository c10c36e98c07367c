//! The statistics window (`SbStatsWindow`, from `stats_window.ui`): one
//! live plot per figure of the statistics model, drawn with cairo.

use std::cell::RefCell;
use std::rc::Rc;

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{cairo, glib};

use crate::model::stats::{Plot, StatsModel, WINDOW_SECS};

/// A plot's drawing area, its caption and the data it draws.
type PlotArea = (
    gtk::DrawingArea,
    gtk::Label,
    Rc<RefCell<Option<(Plot, f64)>>>,
);

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "stats_window.ui")]
    pub struct SbStatsWindow {
        #[template_child]
        pub plots: TemplateChild<gtk::Grid>,
        pub areas: RefCell<Vec<PlotArea>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SbStatsWindow {
        const NAME: &'static str = "SbStatsWindow";
        type Type = super::SbStatsWindow;
        type ParentType = gtk::Window;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for SbStatsWindow {}
    impl WidgetImpl for SbStatsWindow {}
    impl WindowImpl for SbStatsWindow {}
}

glib::wrapper! {
    pub struct SbStatsWindow(ObjectSubclass<imp::SbStatsWindow>)
        @extends gtk::Window, gtk::Widget,
        @implements gtk::Accessible, gtk::Buildable, gtk::ConstraintTarget, gtk::Native,
            gtk::Root, gtk::ShortcutManager;
}

impl Default for SbStatsWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// Line colours, per series.
const COLOURS: [(f64, f64, f64); 3] = [(0.10, 0.45, 0.85), (0.90, 0.40, 0.10), (0.2, 0.6, 0.2)];

impl SbStatsWindow {
    pub fn new() -> Self {
        glib::Object::builder().build()
    }

    /// Redraws every plot from the model.
    pub fn update(&self, model: &StatsModel) {
        let imp = self.imp();
        if imp.areas.borrow().is_empty() {
            for (i, _) in model.plots.iter().enumerate() {
                let cell = gtk::Box::new(gtk::Orientation::Vertical, 2);
                let caption = gtk::Label::new(None);
                caption.set_xalign(0.0);
                caption.add_css_class("caption-heading");
                let area = gtk::DrawingArea::new();
                area.set_vexpand(true);
                area.set_hexpand(true);
                area.set_content_height(140);
                let data: Rc<RefCell<Option<(Plot, f64)>>> = Rc::default();
                let d = data.clone();
                area.set_draw_func(move |_, cr, w, h| {
                    if let Some((p, now)) = d.borrow().as_ref() {
                        draw(cr, w, h, p, *now);
                    }
                });
                cell.append(&caption);
                cell.append(&area);
                imp.plots
                    .attach(&cell, (i % 2) as i32, (i / 2) as i32, 1, 1);
                imp.areas.borrow_mut().push((area, caption, data));
            }
        }
        for ((area, caption, data), plot) in imp.areas.borrow().iter().zip(&model.plots) {
            caption.set_text(&plot.caption());
            *data.borrow_mut() = Some((plot.clone(), model.now));
            area.queue_draw();
        }
    }
}

fn draw(cr: &cairo::Context, w: i32, h: i32, plot: &Plot, now: f64) {
    let (w, h) = (f64::from(w), f64::from(h));
    let (left, bottom) = (44.0, 16.0);
    cr.set_source_rgb(0.98, 0.98, 0.98);
    cr.rectangle(0.0, 0.0, w, h);
    let _ = cr.fill();
    let ymax = nice(plot.y_max(1.0) * 1.1);
    // Now is the right edge; older points scroll left.
    let right = 24.0;
    let x = |t: f64| left + (t - (now - WINDOW_SECS)) / WINDOW_SECS * (w - left - right);
    let y = |v: f64| (h - bottom) - v / ymax * (h - bottom - 6.0);
    // Grid and labels.
    cr.set_line_width(1.0);
    cr.set_font_size(10.0);
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        cr.set_source_rgb(0.85, 0.85, 0.85);
        cr.move_to(left, y(v));
        cr.line_to(w - right, y(v));
        let _ = cr.stroke();
        cr.set_source_rgb(0.35, 0.35, 0.35);
        cr.move_to(2.0, y(v) + 3.0);
        let text = if ymax < 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        };
        let _ = cr.show_text(&text);
    }
    for s in [60.0, 45.0, 30.0, 15.0, 0.0] {
        cr.move_to(x(now - s) - 8.0, h - 3.0);
        let _ = cr.show_text(&if s == 0.0 {
            "now".to_owned()
        } else {
            format!("-{s:.0}s")
        });
    }
    // Lines, with a legend.
    cr.set_line_width(2.0);
    for (i, s) in plot.series.iter().enumerate() {
        let (r, g, b) = COLOURS[i % COLOURS.len()];
        cr.set_source_rgb(r, g, b);
        let mut first = true;
        for &(t, v) in &s.points {
            if first {
                cr.move_to(x(t), y(v));
                first = false;
            } else {
                cr.line_to(x(t), y(v));
            }
        }
        let _ = cr.stroke();
        cr.move_to(left + 8.0 + 80.0 * i as f64, 12.0);
        let _ = cr.show_text(s.label);
    }
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}
