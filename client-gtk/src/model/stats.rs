//! Network statistics over the last minute, as the statistics window plots
//! them: RTT, loss, jitter, bitrate, frame rate and the file-transfer
//! window. Fed with the media backend's snapshots; rates are differences
//! between consecutive snapshots.

use std::collections::VecDeque;

use client::av::StatsSnapshot;

/// How much history the plots show, in seconds.
pub const WINDOW_SECS: f64 = 60.0;

/// One line of a plot: (seconds, value) points, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub label: &'static str,
    pub points: VecDeque<(f64, f64)>,
}

impl Series {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            points: VecDeque::new(),
        }
    }

    fn push(&mut self, t: f64, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.points.push_back((t, v));
        while self
            .points
            .front()
            .is_some_and(|(t0, _)| t - t0 > WINDOW_SECS)
        {
            self.points.pop_front();
        }
    }

    pub fn last(&self) -> Option<f64> {
        self.points.back().map(|p| p.1)
    }
}

/// One plot: a title, a unit and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<Series>,
}

impl Plot {
    fn new(title: &'static str, unit: &'static str, labels: &[&'static str]) -> Self {
        Self {
            title,
            unit,
            series: labels.iter().map(|l| Series::new(l)).collect(),
        }
    }

    /// The largest value shown (for the y axis), at least `floor`.
    pub fn y_max(&self, floor: f64) -> f64 {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(floor, f64::max)
    }

    /// The latest values, as a caption.
    pub fn caption(&self) -> String {
        let parts: Vec<String> = self
            .series
            .iter()
            .filter_map(|s| s.last().map(|v| format!("{} {v:.1}", s.label)))
            .collect();
        if parts.is_empty() {
            format!("{} ({}): no data yet", self.title, self.unit)
        } else {
            format!("{} ({}): {}", self.title, self.unit, parts.join(", "))
        }
    }
}

pub const RTT: usize = 0;
pub const LOSS: usize = 1;
pub const JITTER: usize = 2;
pub const BITRATE: usize = 3;
pub const FPS: usize = 4;
pub const CWND: usize = 5;

/// Every plot of the statistics window.
#[derive(Debug, Clone)]
pub struct StatsModel {
    pub plots: Vec<Plot>,
    /// The time of the newest figure: the right edge of every plot.
    pub now: f64,
    last: Option<(f64, StatsSnapshot)>,
}

impl Default for StatsModel {
    fn default() -> Self {
        Self {
            plots: vec![
                Plot::new("Round-trip time", "ms", &["audio", "video"]),
                Plot::new("Loss", "%", &["received", "reported"]),
                Plot::new("Jitter", "ms", &["audio", "video"]),
                Plot::new("Bitrate", "kbit/s", &["in", "out"]),
                Plot::new("Frame rate", "fps", &["received"]),
                Plot::new("File window", "chunks", &["cwnd"]),
            ],
            now: 0.0,
            last: None,
        }
    }
}

/// For folding the largest of some values (none: `None`).
fn max_of(m: Option<f64>, v: f64) -> Option<f64> {
    Some(m.map_or(v, |m| m.max(v)))
}

fn sum<T>(items: &[T], f: impl Fn(&T) -> f64) -> f64 {
    items.iter().map(f).sum()
}

impl StatsModel {
    /// Takes a snapshot taken `t` seconds after the window opened.
    pub fn push(&mut self, t: f64, snap: &StatsSnapshot) {
        self.now = self.now.max(t);
        for (i, kind) in ["audio", "video"].into_iter().enumerate() {
            let rtt = snap
                .sent
                .iter()
                .filter(|s| s.kind == kind)
                .flat_map(|s| &s.reports)
                .filter_map(|r| r.rtt_ms)
                .fold(None, max_of);
            if let Some(rtt) = rtt {
                self.plots[RTT].series[i].push(t, rtt);
            }
            let jitter = snap
                .received
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.jitter_ms)
                .fold(None, max_of);
            if let Some(j) = jitter {
                self.plots[JITTER].series[i].push(t, j);
            }
        }
        let reported = snap
            .sent
            .iter()
            .flat_map(|s| &s.reports)
            .map(|r| r.fraction_lost * 100.0)
            .fold(None, max_of);
        if let Some(l) = reported {
            self.plots[LOSS].series[1].push(t, l);
        }
        if let Some((t0, prev)) = &self.last {
            let dt = t - t0;
            if dt > 0.0 {
                let got = sum(&snap.received, |r| r.packets_received as f64)
                    - sum(&prev.received, |r| r.packets_received as f64);
                let lost = sum(&snap.received, |r| r.packets_lost as f64)
                    - sum(&prev.received, |r| r.packets_lost as f64);
                if got + lost > 0.0 {
                    self.plots[LOSS].series[0]
                        .push(t, (lost.max(0.0) / (got + lost.max(0.0))) * 100.0);
                }
                let bytes_in = sum(&snap.received, |r| r.octets_received as f64)
                    - sum(&prev.received, |r| r.octets_received as f64);
                let bytes_out = sum(&snap.sent, |s| s.octets_sent as f64)
                    - sum(&prev.sent, |s| s.octets_sent as f64);
                self.plots[BITRATE].series[0].push(t, (bytes_in.max(0.0) * 8.0 / 1000.0) / dt);
                self.plots[BITRATE].series[1].push(t, (bytes_out.max(0.0) * 8.0 / 1000.0) / dt);
                // Frames per second of the best-served video sender.
                let fps = snap
                    .received
                    .iter()
                    .filter(|r| r.kind == "video")
                    .filter_map(|r| {
                        prev.received
                            .iter()
                            .find(|p| p.ssrc == r.ssrc)
                            .map(|p| r.rendered.saturating_sub(p.rendered) as f64 / dt)
                    })
                    .fold(None, max_of);
                if let Some(fps) = fps {
                    self.plots[FPS].series[0].push(t, fps);
                }
            }
        }
        self.last = Some((t, snap.clone()));
    }

    /// A file sender's congestion window at `t`.
    pub fn push_cwnd(&mut self, t: f64, cwnd: f64) {
        self.now = self.now.max(t);
        self.plots[CWND].series[0].push(t, cwnd);
    }
}
