//! What a shutdown signal does while no `Signals` wants it: its default action.
//!
//! A runtime's signal handler, once installed, stays for the life of the process:
//! tokio never uninstalls its handlers, and dropping async-signal's registration
//! leaves the process-wide handler in place. Without more, a SIGTERM after the
//! last `Signals` is gone would be swallowed. So the first [`Interest`] registers,
//! through signal-hook, one process-wide action per signal (SIGINT, SIGTERM) that
//! runs the signal's default action while no `Interest` lives. It runs inside the
//! signal handler: no thread, no wait, no claim.
//!
//! Invariants:
//! 1. `NOBODY` is `true` exactly while no `Interest` lives. The count changes
//!    under `REGISTRY`'s lock only; the signal handler only reads `NOBODY`.
//! 2. An `Interest` is counted only once its source's own registrations exist
//!    ([`Interest::register`] runs them first), so a delivery that the action
//!    leaves to the sources always reaches one. A delivery before that has the
//!    default action, as if the source had never been created.
//! 3. The action is registered before any source's registration, so no delivery
//!    finds a runtime's handler without it.
//! 4. A signal that the process inherited as ignored (a background job of a
//!    non-interactive shell has SIGINT ignored) gets no action: with no source,
//!    it stays ignored.
//! 5. A dropped `Interest` only lowers the count: it decides nothing for the
//!    deliveries of another.
//!
//! Outside these invariants: signal-hook-registry installs the process's first
//! handler for a signal before it publishes the table its handler reads, and a
//! delivery in between finds neither an action nor a previous handler to call,
//! so it is dropped. That window lies inside the first `Signals::new()`, before
//! it returns; closing it would take blocking the signal in every thread.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Whether no [`Interest`] lives: read by the signal handler.
static NOBODY: AtomicBool = AtomicBool::new(true);

/// The live [`Interest`]s, and whether the process-wide action is registered.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: 0,
    installed: false,
});

struct Registry {
    live: usize,
    installed: bool,
}

/// A live `Signals`' interest in the process's shutdown signals: while one lives,
/// each delivery is left to the sources; while none does, it has its default
/// action.
#[derive(Debug)]
pub(crate) struct Interest(());

impl Interest {
    /// Runs `register` (the source's own registrations), then counts the
    /// source as interested. The process-wide action is registered first, on the
    /// first call.
    pub(crate) fn register<T>(
        register: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<(T, Interest)> {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if !registry.installed {
            install()?;
            registry.installed = true;
        }
        let sources = register()?;
        registry.live += 1;
        NOBODY.store(false, Ordering::SeqCst);
        Ok((sources, Interest(())))
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry.live -= 1;
        if registry.live == 0 {
            NOBODY.store(true, Ordering::SeqCst);
        }
    }
}

/// Registers the default action, run while `NOBODY` holds, for each shutdown
/// signal the process did not inherit as ignored. A failure part-way leaves an
/// action registered; registering it again on the next call is harmless (both
/// read the same flag).
#[cfg(unix)]
fn install() -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Read once, before anything is registered: on Linux the `SigIgn` mask of
    // /proc/self/status; elsewhere nothing is taken as ignored.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for signal in [SIGINT, SIGTERM] {
        if !ignored_in_status(&status, signal) {
            signal_hook::flag::register_conditional_default(signal, &NOBODY)?;
        }
    }
    Ok(())
}

/// Elsewhere a runtime's handler for a console event stays, as it always did.
#[cfg(not(unix))]
fn install() -> io::Result<()> {
    Ok(())
}

/// Whether the `SigIgn:` mask of a `/proc/<pid>/status` text has `signal`.
#[cfg(unix)]
fn ignored_in_status(status: &str, signal: std::ffi::c_int) -> bool {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match (mask, u32::try_from(signal)) {
        (Some(mask), Ok(n @ 1..=64)) => mask & (1 << (n - 1)) != 0,
        _ => false,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::ignored_in_status;

    #[test]
    fn sigign_mask_is_read_by_signal_number() {
        let status = "Name:\tx\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000002\nSigCgt:\t0\n";
        assert!(ignored_in_status(status, 2), "SIGINT is bit 1");
        assert!(!ignored_in_status(status, 15));
        assert!(!ignored_in_status(status, 1));
        let both = "SigIgn:\t0000000000004002\n";
        assert!(ignored_in_status(both, 2) && ignored_in_status(both, 15));
        assert!(!ignored_in_status("SigIgn:\tnot hex\n", 2));
        assert!(!ignored_in_status("no mask here\n", 2));
    }
}
