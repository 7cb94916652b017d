//! The coordinator: [`Shutdown`], the handle to one shared shutdown state.
//!
//! - `state.rs`: the state word (phases and counts in one atomic);
//! - `core.rs`: the shared state and its counting;
//! - `scopes.rs`: the tree of scopes, transitions carried down it, the report;
//! - `shard.rs`: per-thread shards of a root's count, and one watcher's count;
//! - `wake.rs`: waking a phase's waiters once its state change is complete;
//! - `guard.rs`, `watch.rs`, `wait.rs`, `until.rs`: what the handle hands out;
//! - `phase.rs`, `outcome.rs`, `report.rs`: what it tells.

pub(crate) mod core;
pub(crate) mod guard;
pub(crate) mod outcome;
pub(crate) mod phase;
pub(crate) mod report;
mod scopes;
pub(crate) mod shard;
pub(crate) mod state;
pub(crate) mod sync;
pub(crate) mod until;
pub(crate) mod wait;
pub(crate) mod wake;
pub(crate) mod watch;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use self::core::{Core, CoreRef};
use self::guard::Guard;
use self::outcome::{Outcome, Refused};
use self::phase::Phase;
use self::report::{Report, WatcherKind};
use self::shard::{Count, Shards, shards_per_root};
use self::state::{ANNOUNCED, TRIGGERED};
use self::until::Until;
use self::wait::Wait;
use self::watch::{GracefulConnection, Tracked, Watched};

/// The shutdown coordinator: a cloneable handle to one shared shutdown state.
///
/// A coordinator goes through latched phases, each reached at most once and never
/// left (see [`Phase`]): **announced** (readiness turns `false`), **triggered**
/// (shutdown was asked for), optionally **forced** (the drain was cut short), and
/// **drained** (triggered, and no watcher is left). The *watchers* it counts are
/// live [`Guard`]s and [`Watched`] connections and tracked futures, in it and in its
/// child scopes.
///
/// Dropping the last handle of a root coordinator triggers it (nobody could
/// trigger it any more): waiters on [`triggered`](Shutdown::triggered) resolve, and
/// [`drained`](Shutdown::drained) resolves once the remaining watchers finish. A
/// child scope is not triggered when its handles are dropped: its parent still can.
///
/// ```
/// use wind_down::{Phase, Shutdown};
///
/// futures_lite::future::block_on(async {
///     let shutdown = Shutdown::new();
///     let guard = shutdown.guard().unwrap();
///     assert!(shutdown.trigger());                    // first trigger
///     assert!(!shutdown.trigger());                   // idempotent
///     assert_eq!(shutdown.phase(), Phase::Triggered);  // the guard is still alive
///     drop(guard);
///     shutdown.drained().await;                       // ready: triggered, no watchers
/// });
/// ```
pub struct Shutdown {
    core: CoreRef,
    /// A root's per-thread shards of its count; `None` for a child scope.
    shards: Option<Arc<Shards>>,
}

impl Shutdown {
    /// Creates a new, untriggered root coordinator with no watchers.
    ///
    /// It allocates one 128-byte-aligned shard of its count per available CPU
    /// (rounded up to a power of two, at least 2, at most 32; the environment
    /// variable `WIND_DOWN_SHARDS` sets another power of two up to 32), so that
    /// guards taken on different threads do not contend; see [`Guard`].
    pub fn new() -> Shutdown {
        let core = Core::new_root();
        let shards = Some(Arc::new(Shards::new(&core, shards_per_root())));
        Shutdown { core, shards }
    }

    /// Creates a child scope: creating and dropping one costs O(1).
    ///
    /// The child is announced, triggered and forced whenever `self` is, also when
    /// `self` already was at this call; triggering or forcing the child does not
    /// affect `self`. `self` drains only after the child did, and its
    /// [`report`](Shutdown::report) includes the child's watchers (the scope
    /// itself is not a watcher). Dropping the child's last handle does not trigger
    /// it. A child has no shards: its guards count on one word, which suits the
    /// per-request or per-connection scopes children usually are.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            core: Core::new_child(&self.core),
            shards: None,
        }
    }

    /// Announces a coming shutdown without starting it: [`is_ready`](Shutdown::is_ready)
    /// turns `false` and [`announced`](Shutdown::announced) resolves, and nothing else
    /// changes. Returns `true` if this call was the first to announce it. Child scopes
    /// are announced too. [`trigger`](Shutdown::trigger) implies it.
    ///
    /// A [`Server`](crate::Server) with a [drain delay](crate::Server::drain_delay)
    /// keeps serving for that delay after the announcement, then triggers.
    pub fn announce(&self) -> bool {
        Core::raise(&self.core, ANNOUNCED, None) & ANNOUNCED == 0
    }

    /// Triggers shutdown. Returns `true` if this call was the first to trigger it.
    ///
    /// Wakes every waiter of [`triggered`](Shutdown::triggered), asks every watched
    /// connection to finish gracefully (on its next poll), triggers child scopes, and
    /// wakes [`drained`](Shutdown::drained) waiters if there are no watchers. Every
    /// state change is complete before any waker runs; a waker that panics does not
    /// keep the others from being woken, and its panic is resumed here afterwards.
    pub fn trigger(&self) -> bool {
        let prev = Core::raise(&self.core, ANNOUNCED | TRIGGERED, self.shards.as_deref());
        prev & TRIGGERED == 0
    }

    /// Forces shutdown now: triggers it if needed, then drops every watched
    /// connection and tracked future on its next poll (all are woken), and forces
    /// child scopes. Idempotent.
    ///
    /// Returns [`Outcome::Drained`] if no watcher was running at that moment, else
    /// [`Outcome::Forced`] with the report of what was.
    pub fn force(&self) -> Outcome {
        Core::force(&self.core, self.shards.as_deref())
    }

    /// The current [`Phase`].
    pub fn phase(&self) -> Phase {
        Phase::of(self.core.word())
    }

    /// Readiness, for a health endpoint: `true` until shutdown is announced or
    /// triggered, `false` ever after.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// What runs now in this coordinator and its child scopes, at any time: the
    /// number of live watchers (guards, watched connections and tracked futures;
    /// exact whenever none is being created or dropped concurrently), and each
    /// labelled one with its age, oldest first. It takes each scope's lock of
    /// labelled watchers for a moment.
    ///
    /// ```
    /// let shutdown = wind_down::Shutdown::new();
    /// let _export = shutdown.guard().unwrap().with_label("nightly export");
    /// let _plain = shutdown.guard().unwrap();
    /// let report = shutdown.report();
    /// assert_eq!(report.remaining, 2);
    /// assert_eq!(report.stragglers[0].label, "nightly export");
    /// ```
    pub fn report(&self) -> Report {
        Core::report(&self.core, self.shards.as_deref())
    }

    /// Resolves once shutdown is announced or triggered (at once if it already is).
    pub fn announced(&self) -> Wait {
        Wait::new(self.core.clone(), Phase::Announced)
    }

    /// Resolves once the coordinator is triggered (at once if it already is).
    pub fn triggered(&self) -> Wait {
        Wait::new(self.core.clone(), Phase::Triggered)
    }

    /// Resolves once the coordinator is forced (at once if it already is).
    pub(crate) fn forced(&self) -> Wait {
        Wait::new(self.core.clone(), Phase::Forced)
    }

    /// Resolves once the coordinator is triggered and has no watchers (at once if
    /// it already is). After a force it resolves only if every watcher does go: a
    /// leaked guard keeps it pending. Use [`drain_until`](Shutdown::drain_until) to
    /// bound the wait.
    pub fn drained(&self) -> Wait {
        Wait::new(self.core.clone(), Phase::Drained)
    }

    /// Takes a [`Guard`]: one unit of in-flight work that the drain waits for.
    ///
    /// Works before and after the trigger, until the coordinator is drained or
    /// forced; then it returns [`Refused`], so a guard that would not hold anything
    /// is never handed out. Name it in reports with [`Guard::with_label`].
    #[inline]
    pub fn guard(&self) -> Result<Guard, Refused> {
        Count::acquire(&self.core, self.shards.as_deref()).map(Guard::from_count)
    }

    /// Runs `conn` as a watched connection; see [`Watched`] for exactly when it
    /// resolves.
    ///
    /// It counts as a watcher from this call on (not from its first poll) until it
    /// completes or is dropped. Graceful shutdown is requested exactly once, on the
    /// first poll after the trigger. If the drain is forced, `conn` is dropped.
    pub fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        Watched::new(conn, self.guard(), WatcherKind::Connection)
    }

    /// Runs `future` as tracked work: like [`watch`](Shutdown::watch) for a future
    /// that has no graceful close. The drain waits for it; a force drops it.
    ///
    /// Background work that should stop at the trigger and finish what it was doing
    /// before the drain ends is `track(run_until_triggered(work))` followed by its
    /// flush; see [`run_until_triggered`](Shutdown::run_until_triggered).
    ///
    /// A forced drain (a second signal, or the grace period over) drops that
    /// future wherever it is, flush included: what it had not written is lost. Data
    /// that must survive a force is kept where the task is not the only owner, and
    /// flushed once the drain returned, whatever its outcome:
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use wind_down::Shutdown;
    ///
    /// futures_lite::future::block_on(async {
    ///     let shutdown = Shutdown::new();
    ///     let pending = Arc::new(Mutex::new(Vec::new())); // the worker's unflushed data
    ///     let (worker, buffer) = (shutdown.clone(), pending.clone());
    ///     let mut task = Box::pin(shutdown.track(async move {
    ///         worker
    ///             .run_until_triggered(async { buffer.lock().unwrap().push("record") })
    ///             .await;
    ///         std::future::pending::<()>().await; // a flush that never ends
    ///     }));
    ///     let _ = futures_lite::future::poll_once(&mut task).await; // it runs
    ///     // Forced: the deadline is already over.
    ///     let outcome = shutdown.drain_until(std::future::ready(())).await;
    ///     assert!(!outcome.is_drained());
    ///     drop(task); // a runtime drops a forced task; its flush never ran
    ///     // The flush that survives: after the drain, from the shared data.
    ///     let flushed: Vec<_> = pending.lock().unwrap().drain(..).collect();
    ///     assert_eq!(flushed, ["record"]);
    /// });
    /// ```
    pub fn track<F: Future>(&self, future: F) -> Watched<Tracked<F>> {
        Watched::new(Tracked::new(future), self.guard(), WatcherKind::Task)
    }

    /// Runs `future` until the coordinator is triggered, for background work that
    /// should just stop; see [`Until`]. It does not count as a watcher: wrap it in
    /// [`track`](Shutdown::track) if the drain should wait for it. Dropping a root's
    /// last handle triggers it, so work started after that never runs.
    pub fn run_until_triggered<F: Future>(&self, future: F) -> Until<F> {
        Until::new(future, self.triggered())
    }

    /// Triggers the coordinator (if not yet), then waits until it is drained, or
    /// until `deadline` completes, whichever is first, and forces the shutdown in
    /// the second case.
    ///
    /// `deadline` is any future: a runtime's sleep, a second signal, or both raced.
    /// Resolves to:
    /// - [`Outcome::Drained`] as soon as the coordinator is drained;
    /// - [`Outcome::Forced`] as soon as `deadline` completes first (the force happens
    ///   inside that poll) or someone else forces the coordinator, with the report
    ///   of what was running at the force.
    ///
    /// ```
    /// use wind_down::{Outcome, Shutdown, Stopped};
    ///
    /// futures_lite::future::block_on(async {
    ///     let shutdown = Shutdown::new();
    ///     let stuck = shutdown.track(std::future::pending::<()>());
    ///     // A deadline that has already passed: the stuck future is forced.
    ///     let outcome = shutdown.drain_until(std::future::ready(())).await;
    ///     assert_eq!(outcome.remaining(), 1);
    ///     assert_eq!(stuck.await, Err(Stopped::Forced));
    ///     shutdown.drained().await;
    /// });
    /// ```
    pub async fn drain_until<D: Future>(&self, deadline: D) -> Outcome {
        self.trigger();
        let drained = async {
            self.drained().await;
            false
        };
        let forced = async {
            self.forced().await;
            false
        };
        let deadline = async {
            deadline.await;
            true
        };
        if futures_lite::future::or(drained, futures_lite::future::or(forced, deadline)).await {
            self.force();
        }
        // A force, ours or an earlier one, reports what ran at that moment: the
        // forced watchers may be gone by now, and `drained` may have won the race.
        self.core.outcome()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Clone for Shutdown {
    fn clone(&self) -> Self {
        self.core.add_handle();
        Shutdown {
            core: self.core.clone(),
            shards: self.shards.clone(),
        }
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        if self.core.drop_handle() && self.core.is_root() {
            self.trigger();
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("phase", &self.phase())
            .field("watchers", &self.report().remaining)
            .finish()
    }
}

#[cfg(test)]
impl Shutdown {
    /// Listeners registered on this coordinator's events.
    pub(crate) fn listeners(&self) -> usize {
        self.core.listeners()
    }
}
