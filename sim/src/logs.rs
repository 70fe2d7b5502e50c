//! The shipped code's own log lines (`log` macros in the node and the
//! client), captured into the trace of the seed being replayed, stamped
//! with virtual time. Off unless asked for (`--log debug`): formatting every
//! line of every seed would cost more than the seeds themselves.

use std::cell::RefCell;

use log::{LevelFilter, Log, Metadata, Record};

use crate::executor::SimHandle;

thread_local! {
    static SINK: RefCell<Option<(SimHandle, Vec<String>)>> = const { RefCell::new(None) };
}

struct Capture;

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        SINK.with(|s| {
            if let Some((sim, lines)) = s.borrow_mut().as_mut() {
                let t = sim.now().as_secs_f64() * 1e3;
                lines.push(format!(
                    "{t:>10.3} ms  [{} {}] {}",
                    record.level(),
                    record.target(),
                    record.args()
                ));
            }
        });
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Captures log lines up to `level` from now on (process-wide).
pub fn enable(level: LevelFilter) {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(level);
    }
}

/// Starts collecting this thread's lines, stamped by `sim`'s clock.
pub fn begin(sim: SimHandle) {
    SINK.with(|s| *s.borrow_mut() = Some((sim, Vec::new())));
}

/// The lines collected since [`begin`].
pub fn end() -> Vec<String> {
    SINK.with(|s| s.borrow_mut().take().map(|(_, l)| l).unwrap_or_default())
}
