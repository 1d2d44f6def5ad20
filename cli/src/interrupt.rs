//! Ctrl-C during generation: the first one asks the generation loop to stop
//! after the token in progress (the text so far and the timings are then
//! printed, and the exit code is 130); a second one exits at once with 130
//! (a long prompt evaluation cannot be stopped half way).
//!
//! Only commands that install the handler ([`install`]) get this; the others
//! keep the default behaviour (the process ends at once). `asdsl tune` is one
//! of those: it writes its plan only at the end, to a temporary file renamed
//! over the plan, so an interrupt never leaves a partial plan behind.

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether Ctrl-C was pressed since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
