//! Shutdown signal sources, [`handle_signals`], and the default-action fallback
//! of the `tokio` and `smol` adapters' `Signals`.
//!
//! A runtime's signal handler, once installed, replaces the signal's default action
//! for the whole process. So that a `Signals` never swallows a signal, each one
//! runs a fallback listener of its own (its own registration, on a thread of its
//! own), with one policy for every runtime ([`run_fallback`]):
//! - while the source is not claimed (handed to a server or to
//!   [`handle_signals`]), a delivery ends the process with the default action's
//!   exit status (130 for SIGINT, 143 for SIGTERM), after a short wait for a claim:
//!   a signal right after start-up still drains once the server takes the source;
//! - once claimed, the first two deliveries are the server's (drain, then force),
//!   and the third ends the process;
//! - a source dropped after its claim (its server is done: drained, or forced)
//!   ends the process at the next delivery, also when cleanup after the drain
//!   hangs; one dropped unclaimed ends the process at the next delivery too.
//!   Deliveries are counted by the fallback and by the source's owner apart (each
//!   registration may coalesce two into one): a retiring source waits a moment
//!   for the fallback to count what its owner received, so a delivery the server
//!   acted on never ends the process afterwards;
//! - but a source that is not claimed now leaves every delivery to a live,
//!   claimed one, if the process has one (an unused `Signals` next to the
//!   server's, or an old one next to a new server's).

use std::future::Future;
use std::io;
#[cfg(any(feature = "tokio", feature = "smol"))]
use std::sync::Arc;
#[cfg(any(feature = "tokio", feature = "smol"))]
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
#[cfg(any(feature = "tokio", feature = "smol"))]
use std::time::Duration;

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

    /// Called once when a server ([`Server::signals`](crate::Server::signals)) or
    /// [`handle_signals`] takes the source: from then on its signals are heard.
    /// The adapters' `Signals` end the process on a signal nobody claimed.
    fn claim(&mut self) {}
}

/// Drives `shutdown` from `source`: the first signal triggers it, the second
/// forces it (see [`Shutdown::force`]). With the adapters' `Signals`, a third
/// ends the process (see their docs).
///
/// Resolves with the second signal, or with the source's error. A trigger from
/// elsewhere does not count as a signal: a first signal arriving during such a
/// drain triggers nothing new and the next one forces. Two deliveries of the same
/// signal that arrive before the first is observed may count as one (runtimes
/// coalesce pending signals).
pub async fn handle_signals<S: SignalSource>(shutdown: &Shutdown, mut source: S) -> io::Result<()> {
    source.claim();
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

/// How long a delivery nobody claimed waits for a claim before it ends the process.
#[cfg(any(feature = "tokio", feature = "smol"))]
const CLAIM_WAIT: Duration = Duration::from_secs(2);

#[cfg(any(feature = "tokio", feature = "smol"))]
const UNCLAIMED: u8 = 0;
#[cfg(any(feature = "tokio", feature = "smol"))]
const CLAIMED: u8 = 1;
/// Dropped without ever being claimed.
#[cfg(any(feature = "tokio", feature = "smol"))]
const GONE: u8 = 2;
/// Claimed, then dropped (its server is done with it).
#[cfg(any(feature = "tokio", feature = "smol"))]
const RETIRED: u8 = 3;

/// Sources claimed and not dropped, in the whole process: while there is one, a
/// fallback whose own source is unclaimed or gone leaves the signals to it.
#[cfg(any(feature = "tokio", feature = "smol"))]
static LIVE_CLAIMS: AtomicUsize = AtomicUsize::new(0);

/// A `Signals`' claim, shared with its fallback listener: its state, and how many
/// signals its owner received.
#[cfg(any(feature = "tokio", feature = "smol"))]
#[derive(Debug)]
pub(crate) struct ClaimState {
    /// Unclaimed, claimed, gone (dropped unclaimed) or retired (dropped after
    /// its claim).
    state: AtomicU8,
    /// Signals the source's owner received (the server: drain, force).
    received: AtomicU32,
    /// Deliveries the fallback listener counted as the owner's.
    heard: AtomicU32,
    /// Whether a fallback listener is running.
    listening: AtomicBool,
}

#[cfg(any(feature = "tokio", feature = "smol"))]
impl ClaimState {
    /// At the retirement: lets the fallback listener count the deliveries the
    /// owner received (it normally has; a starved thread may lag), so that the
    /// next delivery is known to come after the owner was done. If it cannot
    /// tell (its registration coalesced two deliveries, or it lags beyond the
    /// wait), it errs on the safe side: one more signal is needed, and none the
    /// owner acted on ends the process.
    fn catch_up(&self) {
        const STEP: Duration = Duration::from_millis(1);
        let received = self.received.load(Ordering::Acquire);
        for _ in 0..CATCH_UP.as_millis() / STEP.as_millis() {
            if !self.listening.load(Ordering::Acquire)
                || self.heard.load(Ordering::Acquire) >= received
            {
                break;
            }
            std::thread::sleep(STEP);
        }
    }
}

/// How long a retiring source waits for its fallback listener to count the
/// deliveries its owner received.
#[cfg(any(feature = "tokio", feature = "smol"))]
const CATCH_UP: Duration = Duration::from_secs(2);

/// The owner's side of a [`ClaimState`].
#[cfg(any(feature = "tokio", feature = "smol"))]
#[derive(Debug)]
pub(crate) struct Claim(Arc<ClaimState>);

#[cfg(any(feature = "tokio", feature = "smol"))]
impl Claim {
    pub(crate) fn new() -> Claim {
        Claim(Arc::new(ClaimState {
            state: AtomicU8::new(UNCLAIMED),
            received: AtomicU32::new(0),
            heard: AtomicU32::new(0),
            listening: AtomicBool::new(false),
        }))
    }

    /// The state, for the fallback listener.
    pub(crate) fn share(&self) -> Arc<ClaimState> {
        self.0.clone()
    }

    /// Marks the source claimed (once).
    pub(crate) fn claim(&self) {
        let claimed =
            self.0
                .state
                .compare_exchange(UNCLAIMED, CLAIMED, Ordering::AcqRel, Ordering::Acquire);
        if claimed.is_ok() {
            LIVE_CLAIMS.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Notes that the owner received a signal.
    pub(crate) fn received(&self) {
        self.0.received.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(any(feature = "tokio", feature = "smol"))]
impl Drop for Claim {
    fn drop(&mut self) {
        // While still claimed, so that the fallback counts what it catches up on
        // as its owner's.
        if self.0.state.load(Ordering::Acquire) == CLAIMED {
            self.0.catch_up();
        }
        let retired =
            self.0
                .state
                .compare_exchange(CLAIMED, RETIRED, Ordering::AcqRel, Ordering::Acquire);
        if retired.is_ok() {
            LIVE_CLAIMS.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.0.state.store(GONE, Ordering::Release);
        }
    }
}

/// The exit status of a process ended by `signal`'s default action, as a shell
/// reports it: 128 + the signal's number.
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn default_exit_status(signal: Signal) -> i32 {
    match signal {
        Signal::Terminate => 128 + 15,
        _ => 128 + 2,
    }
}

/// The fallback listener's policy (see the module docs), for the source whose
/// claim is `state`: `next` blocks for the next delivery, `None` once its
/// registration is gone. Returns only then; ends the process when the policy says
/// so.
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn run_fallback(claim: &ClaimState, mut next: impl FnMut() -> Option<Signal>) {
    claim.listening.store(true, Ordering::Release);
    // Bounded by the deliveries: each round consumes one.
    while let Some(signal) = next() {
        // An unclaimed source may be claimed (and even retired) while it waits.
        let now = match claim.state.load(Ordering::Acquire) {
            UNCLAIMED => wait_for_claim(&claim.state),
            now => now,
        };
        let others = LIVE_CLAIMS.load(Ordering::Acquire) > 0;
        let own = match now {
            CLAIMED => true,
            // Its server stopped listening (after its second signal, or when it
            // was done), unless another source hears signals.
            RETIRED => !others,
            _ => false,
        };
        if own {
            let heard = claim.heard.fetch_add(1, Ordering::AcqRel) + 1;
            // Retired: nothing of the server is left to drain or force, once it
            // received (and acted on) every signal it was going to. A delivery it
            // received itself just before retiring is not this one's to end.
            let after_retiring = now == RETIRED && heard > claim.received.load(Ordering::Acquire);
            if heard >= 3 || after_retiring {
                std::process::exit(default_exit_status(signal));
            }
        } else if LIVE_CLAIMS.load(Ordering::Acquire) == 0 {
            // Nobody hears this signal: what its default action would do.
            std::process::exit(default_exit_status(signal));
        }
    }
    claim.listening.store(false, Ordering::Release);
}

/// The source's state once it is no longer unclaimed, or after [`CLAIM_WAIT`].
#[cfg(any(feature = "tokio", feature = "smol"))]
fn wait_for_claim(state: &AtomicU8) -> u8 {
    const STEP: Duration = Duration::from_millis(10);
    for _ in 0..CLAIM_WAIT.as_millis() / STEP.as_millis() {
        let now = state.load(Ordering::Acquire);
        if now != UNCLAIMED {
            return now;
        }
        std::thread::sleep(STEP);
    }
    state.load(Ordering::Acquire)
}
