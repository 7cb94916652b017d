//! Graceful shutdown for async servers, on any runtime.
//!
//! A graceful shutdown stops taking new work while in-flight work completes, raced
//! against a deadline. The crate has five parts, each in its own module:
//!
//! 1. **The coordinator** ([`Shutdown`]), runtime-free: it counts *watchers* on
//!    per-thread shards of one atomic state word and wakes whoever waits for a
//!    phase through `event-listener`. It has no executor dependency and works on
//!    tokio, smol, or any executor that polls futures.
//!    - [`Shutdown::guard`] hands out a [`Guard`]: in-flight work the drain waits for.
//!    - [`Shutdown::watch`] runs a [`GracefulConnection`] (for example a hyper
//!      connection): on trigger it asks the connection to finish gracefully.
//!    - [`Shutdown::track`] runs any future as in-flight work;
//!      [`Shutdown::run_until_triggered`] runs background work that stops at the
//!      trigger.
//!    - [`Shutdown::drain_until`] triggers, waits for the drain against any deadline
//!      future, and force-closes what is left, with a [`Report`] of it in the
//!      [`Outcome`]: no timer or abort handle needed.
//!    - [`Shutdown::child`] makes a scope that is triggered with its parent and that
//!      its parent waits for.
//!    - [`Shutdown::announce`], [`Shutdown::is_ready`] and [`Shutdown::phase`]
//!      expose the lifecycle to health endpoints; [`Shutdown::report`] says what
//!      is still running, at any time.
//! 2. **The server** ([`Server`]): the one accept loop for every [`Runtime`] and
//!    [`Listener`]: connection limit, accept-error back-off, drain delay, one grace
//!    period for the whole shutdown, signals through a [`SignalSource`], and its
//!    lifecycle told to each [`Observer`] (systemd, `tracing`, metrics).
//! 3. **The runtime adapters**, features `tokio` and `smol`: runtime, listeners and
//!    signals for each.
//! 4. **The HTTP layer**, feature `hyper` (or `http1` or `http2` alone):
//!    `hyper::Http` over a `Server`, whose one entry `Http::serve` serves a hyper
//!    service, a tower service (tonic) or a tower make-service (axum), with TLS
//!    (feature `tls`), a health listener and connection errors reported, on both
//!    runtimes; gRPC servers (tonic) whose drain always ends, feature `grpc`.
//! 5. **Deploys**: `upgrade` (feature `upgrade`, Unix) hands the listening
//!    sockets to a new process that serves while the old one drains;
//!    `systemd` (feature `systemd`) tells systemd about the lifecycle and takes
//!    socket-activated listeners.
//!
//! Coming from hyper-util, tokio-util, swansong, tokio-graceful, axum or tonic? The
//! [`migrating`] module maps their calls to these.
//!
//! # Background work
//!
//! Work that should stop at the trigger, finish what it was doing (a flush), and
//! be waited for by the drain: [track](Shutdown::track) the whole, and [run it
//! until the trigger](Shutdown::run_until_triggered) inside.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use wind_down::{Outcome, Shutdown};
//!
//! futures_lite::future::block_on(async {
//!     let shutdown = Shutdown::new();
//!     let flushed = Arc::new(AtomicBool::new(false));
//!     let (worker, done) = (shutdown.clone(), flushed.clone());
//!     let job = shutdown.track(async move {
//!         // The work loop: stops at the trigger.
//!         worker.run_until_triggered(std::future::pending::<()>()).await;
//!         // The flush: the drain waits for it.
//!         done.store(true, Ordering::SeqCst);
//!     });
//!     let job = std::thread::spawn(move || futures_lite::future::block_on(job));
//!     let outcome = shutdown.drain_until(std::future::pending::<()>()).await;
//!     assert_eq!(outcome, Outcome::Drained);
//!     assert!(flushed.load(Ordering::SeqCst), "drained before the flush");
//!     job.join().unwrap().unwrap();
//! });
//! ```
//!
//! Dropping a root's last [`Shutdown`] handle triggers it: a worker that holds a
//! clone keeps it alive; work created after the trigger never starts.
//!
//! ```
//! use std::time::Duration;
//! use wind_down::{Outcome, Shutdown};
//!
//! futures_lite::future::block_on(async {
//!     let shutdown = Shutdown::new();
//!
//!     // A request handler holds a guard while it works.
//!     let guard = shutdown.guard().expect("not drained yet");
//!     let worker = std::thread::spawn(move || {
//!         std::thread::sleep(Duration::from_millis(10));
//!         drop(guard); // work done
//!     });
//!
//!     let deadline = futures_lite::future::pending::<()>(); // a runtime's sleep in practice
//!     assert_eq!(shutdown.drain_until(deadline).await, Outcome::Drained);
//!     worker.join().unwrap();
//! });
//! ```
//!
//! # Guarantees
//!
//! These hold for every coordinator; the test suite checks them clause by clause
//! (`tests/invariants.rs`), loom models check the racy ones.
//!
//! 1. **Monotonic phases.** Announced, triggered, forced and drained are each
//!    reached at most once and never left. Forced implies triggered, triggered
//!    implies announced. [`Shutdown::trigger`] returns `true` to at most one caller:
//!    exactly one, unless a [`Shutdown::force`] set the trigger first.
//! 2. **Drained means done.** [`Shutdown::drained`] resolves only when the
//!    coordinator is triggered and no watcher is left in it or its child scopes,
//!    and then no watcher can be added any more: [`Shutdown::guard`] and
//!    [`Shutdown::watch`] are [`Refused`]. A guard whose creation happened before
//!    the drain was observed is never outlived by that observation.
//! 3. **No lost wake-ups.** Phases are latched in one atomic state word, checked
//!    before a waiter registers with the phase's `event_listener::Event` and again
//!    after; the event is notified, to every listener, after the bit is set. A
//!    [`Wait`] created after its phase was reached is ready on its first poll and
//!    allocates nothing; a waiter polled once and abandoned takes no wake-up from
//!    another.
//! 4. **Exact counts when quiet.** With no watcher being created or dropped
//!    concurrently, [`Shutdown::report`]'s `remaining` is the number of live guards,
//!    watched and tracked futures in the coordinator and its child scopes, and its
//!    stragglers are the labelled ones among them. A child scope is not a watcher.
//! 5. **Graceful once.** A watched connection has
//!    [`GracefulConnection::graceful_shutdown`] called exactly once, on its first
//!    poll after the trigger, including a trigger before its first poll.
//! 6. **Bounded by the deadline.** [`Shutdown::drain_until`] resolves no later than
//!    its deadline (plus one poll). A forced watched connection is dropped on its
//!    next poll, before its count is released; guards cannot be dropped for you and
//!    are reported as remaining.
//! 7. **Released after destruction.** A watched or tracked future gives its count
//!    back only after the inner future's destructor ran, also when it panics or is
//!    dropped mid-unwind.
//! 8. **Last root handle triggers.** Dropping every [`Shutdown`] handle of a root
//!    coordinator triggers it; waiters still resolve, nothing waits forever for a
//!    trigger that can no longer come. A child scope is not triggered by the drop
//!    of its handles (its parent can still trigger it): `parent.child().watch(conn)`
//!    keeps serving until the parent triggers.
//! 9. **Scopes nest.** A child is announced, triggered and forced with its parent,
//!    and its parent drains only after it. Creating and dropping a scope is O(1),
//!    and transitions are carried down any depth of scopes without recursion.
//! 10. **Transitions complete before wakers run.** Every state change of a
//!     transition or a release (phase bits, child scopes, the parent's count, the
//!     forced report) is done before any waker runs. A waker that panics does not
//!     keep other waiters from being woken; its panic is resumed to the caller
//!     afterwards.
//! 11. **Cheap guards, all safe code.** A [`Guard`] is 16 bytes; taking and
//!     releasing one is one atomic operation on the calling thread's shard of the
//!     count plus the shard's `Arc` reference count, both on cache lines of that
//!     shard alone: no allocation, no lock, no contention between threads. The crate
//!     forbids code that the compiler cannot check for memory safety.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod coordinator;
#[cfg(any(
    all(target_os = "linux", feature = "systemd"),
    all(unix, feature = "upgrade")
))]
mod inherited;
mod log;
pub mod migrating;
mod server;
mod signal;

#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(any(feature = "http1", feature = "http2"))]
pub mod hyper;
#[cfg(feature = "smol")]
#[path = "rt/smol.rs"]
pub mod smol;
#[cfg(feature = "systemd")]
pub mod systemd;
#[cfg(feature = "tokio")]
#[path = "rt/tokio.rs"]
pub mod tokio;
#[cfg(all(unix, feature = "upgrade"))]
pub mod upgrade;

pub use coordinator::Shutdown;
pub use coordinator::guard::Guard;
pub use coordinator::outcome::{Outcome, Refused, Stopped};
pub use coordinator::phase::Phase;
pub use coordinator::report::{Report, Straggler, WatcherKind};
pub use coordinator::until::Until;
pub use coordinator::wait::Wait;
pub use coordinator::watch::{GracefulConnection, Tracked, Watched};
pub use server::observer::Observer;
pub use server::runtime::{Listener, Runtime};
pub use server::{DEFAULT_GRACE_PERIOD, ServeError, Server};
pub use signal::{Signal, SignalSource, handle_signals};

#[cfg(test)]
mod tests;

/// The README's code blocks, compiled and run as doctests so that it cannot drift.
#[cfg(all(doctest, feature = "tokio", feature = "hyper"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
