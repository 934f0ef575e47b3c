//! Interruption: SIGINT and SIGTERM during `up` make it stop at the next
//! step and roll back like any other failure, instead of dying halfway.
//!
//! Also the crash points the tests use to prove that a SIGKILL at any
//! window leaves nothing that `up` or `down` cannot finish:
//! `GRELAB_CRASH_AT=<point>` makes grelab kill itself there
//! (`GRELAB_CRASH_SIGNAL=INT|TERM` sends that signal instead).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Result;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

/// The signal that asked to stop, 0 while none did.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    CAUGHT.store(signal, Ordering::Relaxed);
}

/// From now on SIGINT and SIGTERM only ask this process to stop ([`check`]).
pub fn catch() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Restores the default SIGINT and SIGTERM: once the lab is built, an
/// interrupt just ends the command.
pub fn release() {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: restoring the default disposition.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// An error if a stop was asked for.
pub fn check() -> Result<()> {
    match CAUGHT.load(Ordering::Relaxed) {
        0 => Ok(()),
        s => Err(crate::error::check_failed(format!(
            "interrupted by {}",
            Signal::try_from(s).map_or("a signal", Signal::as_str)
        ))),
    }
}

/// A named crash point: kills this process when `GRELAB_CRASH_AT` names it
/// (for the crash-safety tests; nothing happens otherwise).
pub fn crash_point(name: &str) {
    static AT: OnceLock<Option<(String, Signal)>> = OnceLock::new();
    let at = AT.get_or_init(|| {
        let point = std::env::var("GRELAB_CRASH_AT").ok()?;
        let signal = match std::env::var("GRELAB_CRASH_SIGNAL").as_deref() {
            Ok("INT") => Signal::SIGINT,
            Ok("TERM") => Signal::SIGTERM,
            _ => Signal::SIGKILL,
        };
        Some((point, signal))
    });
    if let Some((point, signal)) = at
        && point == name
    {
        let _ = raise(*signal);
    }
}
