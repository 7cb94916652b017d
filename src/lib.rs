//! Graceful shutdown for async servers, on any runtime.
//!
//! A graceful shutdown stops taking new work while in-flight work completes, raced
//! against a deadline. The core of this crate is a runtime-free coordinator,
//! [`Shutdown`]: it counts *watchers* (on per-thread shards of one atomic state
//! word) and wakes whoever waits for a phase (from one waker list per phase, woken
//! all at once). It has no executor dependency and works on tokio, smol, or any
//! executor that polls futures.
//!
//! - [`Shutdown::guard`] hands out a [`Guard`]: in-flight work the drain waits for.
//! - [`Shutdown::watch`] runs a [`GracefulConnection`] (for example a hyper
//!   connection): on trigger it asks the connection to finish gracefully.
//! - [`Shutdown::track`] runs any future as in-flight work;
//!   [`Shutdown::run_until_triggered`] runs background work that stops at the trigger.
//! - [`Shutdown::drain_until`] waits for the drain against any deadline future and
//!   force-closes what is left: no timer or abort handle needed.
//! - [`Shutdown::child`] makes a scope that is triggered with its parent and that
//!   its parent waits for.
//! - [`Shutdown::announce`], [`Shutdown::is_ready`] and [`Shutdown::phase`] expose
//!   the lifecycle to health endpoints; [`Shutdown::forced_report`] names what a
//!   forced drain cut short.
//! - [`Server`] is the accept loop for every [`Runtime`]: connection limit, accept
//!   error back-off, drain delay, drain deadline, and signals through a
//!   [`SignalSource`] (the `tokio` and `smol` features supply them, and `hyper`
//!   serves hyper and tower services).
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
//!     shutdown.trigger();
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
//! 1. **Monotonic phases.** Triggered, forced and drained are each reached at most
//!    once and never left. Forced implies triggered. [`Shutdown::trigger`] returns
//!    `true` to at most one caller: exactly one, unless a [`Shutdown::force`] set
//!    the trigger first.
//! 2. **Drained means done.** [`Shutdown::drained`] resolves only when the
//!    coordinator is triggered and its count is zero, and then no watcher can be
//!    added any more: [`Shutdown::guard`] and [`Shutdown::watch`] refuse with
//!    [`Cancelled`]. A guard whose creation happened before the drain was observed
//!    is never outlived by that observation.
//! 3. **No lost wake-ups.** Phases are latched in one atomic state word, checked
//!    before registering a waker; the phase's waker list is woken after its bit is
//!    set and refuses registrations from then on, which the waiter takes as the
//!    phase reached. A [`Wait`] created after its phase was reached is ready on its
//!    first poll; every waiter is woken, and a waiter polled once and abandoned
//!    takes no wake-up from another.
//! 4. **Exact counts when quiet.** With no guard being created or dropped
//!    concurrently, [`Shutdown::watchers`] is the number of live guards, watched or
//!    tracked futures, and undrained child scopes.
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
//! 8. **Last handle triggers.** Dropping every [`Shutdown`] handle triggers the
//!    coordinator; waiters still resolve, nothing waits forever for a trigger that
//!    can no longer come.
//! 9. **Scopes nest.** A child is triggered and forced with its parent, and its
//!    parent drains only after it.
//! 10. **Cheap guards.** A [`Guard`] is one pointer; acquiring one is one
//!     compare-and-swap and releasing it one subtraction, on the calling thread's
//!     shard of the count (a cache line per shard, so guards on different threads
//!     do not contend): no reference count of its own, no allocation, no lock.
//!     (The first guard on a shard takes one hold on the coordinator's state word
//!     for all of that shard's guards, the first guard ever one shared reference;
//!     the trigger and the release that drains give them back and wake drain
//!     waiters, without allocating. A child scope's guards count on its state word
//!     directly: it has no shards.)

#![warn(missing_docs)]

mod accept;
mod guard;
mod inner;
mod log;
mod outcome;
mod phase;
mod report;
mod runtime;
mod serve;
mod shard;
mod shutdown;
mod signal;
mod sync;
mod until;
mod wait;
mod waiters;
mod watch;

#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use guard::{Guard, LabelledGuard};
pub use outcome::{Cancelled, Outcome};
pub use phase::Phase;
pub use report::{Report, Straggler, WatcherKind};
pub use runtime::{Listener, Runtime};
pub use serve::{DEFAULT_DRAIN_DEADLINE, ServeError, Server};
pub use shutdown::Shutdown;
pub use signal::{Signal, SignalSource, handle_signals};
pub use until::Until;
pub use wait::Wait;
pub use watch::{GracefulConnection, Tracked, Watched};

#[cfg(test)]
mod tests;
