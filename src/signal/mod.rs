//! Shutdown signals: the [`Signal`]s a [`SignalSource`] delivers, [`handle_signals`],
//! and what the process does with a signal that no source wants.
//!
//! The policy, for the `tokio` and `smol` adapters' `Signals` on Unix (SIGINT and
//! SIGTERM):
//! - from the moment `Signals::new()` returns until the value is dropped, each
//!   delivery goes to it (and to every other live `Signals`): nothing is lost, and
//!   none is decided by a source that is gone;
//! - a server ([`Server::signals`](crate::Server::signals)) or [`handle_signals`]
//!   drains at the first signal and forces at the second, then drops the source;
//!   a server also drops it once it is done (drained or forced);
//! - while no `Signals` lives, a signal has its default action: the process dies
//!   by it, as if no handler had ever been installed (see `disposition.rs`). So
//!   the third signal, or the next one once the server is done, ends the process
//!   by the signal, and a hanging cleanup can always be interrupted. A signal the
//!   process inherited as ignored stays ignored then.

#[cfg(any(feature = "tokio", feature = "smol"))]
mod disposition;

#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) use self::disposition::Interest;

use std::future::Future;
use std::io;

use crate::coordinator::Shutdown;

/// A process signal (or console event on Windows) that asks for shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT` on Unix (Ctrl-C in a terminal); `CTRL_C_EVENT` on Windows.
    Interrupt,
    /// `SIGTERM` on Unix (`kill`, `docker stop`, Kubernetes).
    Terminate,
    /// `CTRL_BREAK_EVENT` on Windows.
    CtrlBreak,
    /// `CTRL_CLOSE_EVENT` on Windows: the console window is closing.
    CtrlClose,
    /// `CTRL_SHUTDOWN_EVENT` on Windows: the system is shutting down.
    CtrlShutdown,
}

/// A source of shutdown signals, such as the process's SIGINT and SIGTERM.
///
/// Implementations register their handlers when they are created, not when first
/// polled, so that a signal arriving right after start-up is caught rather than
/// killing the process. Nothing in this crate creates one implicitly.
pub trait SignalSource: Send + 'static {
    /// Waits for the next signal. Deliveries that arrive before a call may be
    /// coalesced into one.
    fn recv(&mut self) -> impl Future<Output = io::Result<Signal>> + Send;
}

/// Drives `shutdown` from `source`: the first signal triggers it, the second
/// forces it (see [`Shutdown::force`]).
///
/// Resolves with the second signal, or with the source's error, and drops
/// `source` then: with the adapters' `Signals` and no other one alive, the next
/// signal has its default action and ends the process. A trigger from
/// elsewhere does not count as a signal: a first signal arriving during such a
/// drain triggers nothing new and the next one forces. Two deliveries of the same
/// signal that arrive before the first is observed may count as one (runtimes
/// coalesce pending signals).
pub async fn handle_signals<S: SignalSource>(shutdown: &Shutdown, source: S) -> io::Result<()> {
    signal_loop(shutdown, source, Shutdown::trigger).await
}

/// The first signal runs `first` (trigger, or announce for a drain delay); the
/// second forces.
pub(crate) async fn signal_loop<S: SignalSource>(
    shutdown: &Shutdown,
    mut source: S,
    first: fn(&Shutdown) -> bool,
) -> io::Result<()> {
    let signal = source.recv().await?;
    crate::log::info!("received {signal:?}: shutting down gracefully");
    first(shutdown);
    let signal = source.recv().await?;
    crate::log::warning!("received {signal:?} while shutting down: forcing shutdown");
    shutdown.force();
    Ok(())
}
