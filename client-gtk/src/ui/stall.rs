//! The main loop must never block: a tick ten times a second notices when
//! it came late, beyond what the machine made every thread wait meanwhile,
//! and logs a stall (the GUI tests fail on it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gtk::glib;

/// A main-loop tick later than this, beyond the machine's own delay, is a
/// stall.
const STALL: Duration = Duration::from_millis(400);

/// The longest a thread of this process waited past its wake-up time
/// since the main loop last looked, in µs: a probe thread sleeps 20 ms
/// again and again and records how late it woke. On a machine busy with
/// other work every thread wakes late, the main loop included; a main loop
/// late by much more than the probe was blocked by the window itself.
static SCHEDULING_DELAY_US: AtomicU64 = AtomicU64::new(0);

fn start_scheduling_probe() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("sched-probe".into())
            .spawn(|| {
                let nap = Duration::from_millis(20);
                loop {
                    let t = Instant::now();
                    std::thread::sleep(nap);
                    let late = t.elapsed().saturating_sub(nap).as_micros() as u64;
                    SCHEDULING_DELAY_US.fetch_max(late, Ordering::Relaxed);
                }
            });
    });
}

/// Calls `tick` ten times a second while it returns true, watching for
/// stalls.
pub fn every_100ms(mut tick: impl FnMut() -> bool + 'static) {
    start_scheduling_probe();
    let mut last = Instant::now();
    glib::timeout_add_local(Duration::from_millis(100), move || {
        let gap = std::mem::replace(&mut last, Instant::now()).elapsed();
        let machine = Duration::from_micros(SCHEDULING_DELAY_US.swap(0, Ordering::Relaxed));
        if gap.saturating_sub(machine) > STALL {
            tracing::warn!(
                ms = gap.as_millis() as u64,
                machine_ms = machine.as_millis() as u64,
                "ui: stall"
            );
        } else if gap > STALL {
            tracing::info!(
                ms = gap.as_millis() as u64,
                machine_ms = machine.as_millis() as u64,
                "ui: late tick on a busy machine (not a stall)"
            );
        }
        if tick() {
            glib::ControlFlow::Continue
        } else {
            glib::ControlFlow::Break
        }
    });
}
