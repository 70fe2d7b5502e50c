//! SIGTERM and SIGINT: the first asks the node to stop (it drains, see
//! `crate::server::drain`); a second while it drains ends the process at
//! once with status 1, for an operator who will not wait.
//!
//! The handlers are installed before the node starts, so a signal during
//! start is not lost (nor kills the process half-started): it is taken up
//! once the node serves. They only write to a pipe (`signal_hook`); the
//! work happens on an ordinary thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::server::Stopper;

/// The signals that stop a node, caught from [`StopSignals::install`] on.
pub struct StopSignals {
    signals: Signals,
}

impl StopSignals {
    /// Catches SIGTERM and SIGINT from now on.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            signals: Signals::new([SIGTERM, SIGINT])?,
        })
    }

    /// Hands the signals to `stopper` on a thread of their own: the first
    /// stops the node, a second exits the process with status 1.
    pub fn deliver_to(mut self, stopper: Stopper) -> std::io::Result<()> {
        let stopping = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name("trilog-signals".into())
            .spawn(move || {
                for signal in self.signals.forever() {
                    if stopping.swap(true, Ordering::AcqRel) {
                        tracing::warn!("{}: a second stop signal; exiting now", name(signal));
                        std::process::exit(1);
                    }
                    tracing::info!("{}: stopping (draining first)", name(signal));
                    stopper.stop(signal);
                }
            })?;
        Ok(())
    }
}

/// A signal's name, for the log.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}
