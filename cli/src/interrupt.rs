//! Ctrl-C during generation: the first one asks the generation loop to stop
//! after the token in progress (the text so far and the timings are then
//! printed, and the exit code is 130); a second one exits at once with 130
//! (a long prompt evaluation cannot be stopped half way).
//!
//! `asdsl tune` installs [`exit_on_ctrl_c`] instead: Ctrl-C ends it at once
//! with 130, except while it writes a file ([`hold`]); the exit then waits
//! for the write to finish. Its plan goes to a temporary file renamed over
//! the plan, so an interrupt never leaves a partial plan behind. Installing
//! a handler (rather than relying on the default disposition) also makes
//! this hold when the process was started with SIGINT ignored, as a shell
//! without job control starts its background jobs.
//!
//! The other commands keep the default behaviour (the process ends at once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result};

use crate::exit::Exit;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
pub fn install() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(Exit::Interrupted as i32);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Held while a command writes a file that Ctrl-C must not cut short.
static WRITING: Mutex<()> = Mutex::new(());

/// Installs a Ctrl-C handler that ends the process with exit code 130 and
/// `message` on stderr, at once unless a [`hold`] is in force, in which
/// case when it is released.
pub fn exit_on_ctrl_c(message: &'static str) -> Result<()> {
    ctrlc::set_handler(move || {
        let _writing = hold();
        eprintln!("\n{message}");
        std::process::exit(Exit::Interrupted as i32);
    })
    .context("installing the Ctrl-C handler")
}

/// Defers an [`exit_on_ctrl_c`] exit until the returned guard is dropped.
pub fn hold() -> MutexGuard<'static, ()> {
    // a panic while holding the lock leaves nothing to protect: go on
    WRITING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether Ctrl-C was pressed since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
