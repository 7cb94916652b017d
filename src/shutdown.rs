//! [`Shutdown`]: the coordinator handle.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::guard::{Guard, LabelledGuard};
use crate::inner::{ANNOUNCED, FORCED, Inner, Latch, TRIGGERED, is_drained};
use crate::phase::Phase;
use crate::report::{Registration, Report, WatcherKind};
use crate::until::Until;
use crate::wait::Wait;
use crate::watch::{GracefulConnection, Tracked, Watched};
use crate::{Cancelled, Outcome};

/// The shutdown coordinator: a cloneable handle to one shared shutdown state.
///
/// A coordinator goes through three latched phases, each reached at most once and
/// never left: **triggered** (shutdown was asked for), **drained** (triggered, and
/// the count of watchers is zero), and optionally **forced** (the drain was cut
/// short). The *watchers* it counts are live [`Guard`]s, [`Watched`] connections and
/// tracked futures, and undrained child scopes.
///
/// Dropping the last `Shutdown` handle of a coordinator triggers it (nobody could
/// trigger it any more): waiters on [`triggered`](Shutdown::triggered) resolve, and
/// [`drained`](Shutdown::drained) resolves once the remaining watchers finish.
///
/// ```
/// use wind_down::Shutdown;
///
/// futures_lite::future::block_on(async {
///     let shutdown = Shutdown::new();
///     let guard = shutdown.guard().unwrap();
///     assert!(shutdown.trigger());      // first trigger
///     assert!(!shutdown.trigger());     // idempotent
///     assert!(!shutdown.is_drained());  // the guard is still alive
///     drop(guard);
///     shutdown.drained().await;         // ready: triggered and zero watchers
/// });
/// ```
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    /// Creates a new, untriggered coordinator with no watchers.
    ///
    /// It allocates one 128-byte shard of its count per available CPU (rounded up
    /// to a power of two, at least 2, at most 32), so that guards taken on different
    /// threads do not contend; see [`Guard`].
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Inner::new_root(),
        }
    }

    /// Creates a child scope.
    ///
    /// A child has no shards: its guards count on one word, which suits the
    /// short-lived, per-request or per-connection scopes children usually are.
    ///
    /// The child is triggered (and forced) whenever `self` is, also when `self`
    /// already was at this call; triggering or forcing the child does not affect
    /// `self`. Until the child is drained it counts as one watcher of `self`, so
    /// `self` drains only after the child does. A child created after `self` drained
    /// is already triggered and does not hold `self`.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            inner: self.inner.new_child(),
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
        self.inner.announce()
    }

    /// Triggers shutdown. Returns `true` if this call was the first to trigger it.
    ///
    /// Wakes every waiter of [`triggered`](Shutdown::triggered), asks every watched
    /// connection to finish gracefully (on its next poll), triggers child scopes, and
    /// wakes [`drained`](Shutdown::drained) waiters if there are no watchers.
    pub fn trigger(&self) -> bool {
        self.inner.trigger()
    }

    /// Forces shutdown now: triggers it if needed, then drops every watched
    /// connection and tracked future on its next poll (all are woken), and forces
    /// child scopes. Idempotent.
    ///
    /// Returns [`Outcome::Drained`] if the coordinator had no watchers at that
    /// moment, else [`Outcome::Forced`] with their count.
    pub fn force(&self) -> Outcome {
        match self.inner.force() {
            0 => Outcome::Drained,
            remaining => Outcome::Forced { remaining },
        }
    }

    /// Readiness, for a health endpoint: `true` until shutdown is announced or
    /// triggered, `false` ever after.
    pub fn is_ready(&self) -> bool {
        self.inner.state() & ANNOUNCED == 0
    }

    /// The current [`Phase`].
    pub fn phase(&self) -> Phase {
        Phase::of(self.inner.state())
    }

    /// What was still running when the coordinator was forced: the count and every
    /// labelled watcher with its age. `None` if it was not forced.
    pub fn forced_report(&self) -> Option<Report> {
        self.inner.forced_report()
    }

    /// `true` once the coordinator was triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.state() & TRIGGERED != 0
    }

    /// `true` once the coordinator was forced.
    pub fn is_forced(&self) -> bool {
        self.inner.state() & FORCED != 0
    }

    /// `true` once the coordinator was triggered and its count reached zero.
    pub fn is_drained(&self) -> bool {
        is_drained(self.inner.state())
    }

    /// The number of live watchers: guards, watched connections, tracked futures and
    /// undrained child scopes. Exact whenever no guard is being created or dropped
    /// concurrently.
    pub fn watchers(&self) -> usize {
        self.inner.watchers()
    }

    /// Resolves once shutdown is announced or triggered (at once if it already is).
    pub fn announced(&self) -> Wait {
        Wait::new(self.inner.clone(), Latch::Announced)
    }

    /// Resolves once the coordinator is triggered (at once if it already is).
    pub fn triggered(&self) -> Wait {
        Wait::new(self.inner.clone(), Latch::Triggered)
    }

    /// Resolves once the coordinator is forced (at once if it already is).
    pub fn forced(&self) -> Wait {
        Wait::new(self.inner.clone(), Latch::Forced)
    }

    /// Resolves once the coordinator is triggered and has no watchers (at once if
    /// it already is). After a force it resolves only if every watcher does go:
    /// a leaked guard keeps it pending. Use [`drain_until`](Shutdown::drain_until)
    /// to bound the wait.
    pub fn drained(&self) -> Wait {
        Wait::new(self.inner.clone(), Latch::Drained)
    }

    /// Takes a [`Guard`]: one unit of in-flight work that the drain waits for.
    ///
    /// Works before and after the trigger, until the coordinator is drained or
    /// forced; then it returns `Err(Cancelled::Drained)` or `Err(Cancelled::Forced)`,
    /// so a guard that would not hold anything is never handed out.
    #[inline]
    pub fn guard(&self) -> Result<Guard, Cancelled> {
        Inner::acquire(&self.inner).map(Guard::from_acquired)
    }

    /// Like [`guard`](Shutdown::guard), and the guard is listed under `label` in the
    /// [`forced_report`](Shutdown::forced_report) if it outlives the deadline.
    pub fn labelled_guard(&self, label: impl Into<String>) -> Result<LabelledGuard, Cancelled> {
        let guard = self.guard()?;
        let registration = Registration::new(self.inner.clone(), WatcherKind::Guard, label.into());
        Ok(LabelledGuard {
            _registration: registration,
            guard,
        })
    }

    /// Like [`watch`](Shutdown::watch), and the connection is listed under `label` in
    /// the [`forced_report`](Shutdown::forced_report) if it is forced.
    pub fn watch_labelled<C: GracefulConnection>(
        &self,
        conn: C,
        label: impl Into<String>,
    ) -> Watched<C> {
        self.watch_as(conn, Some((WatcherKind::Connection, label.into())))
    }

    /// Like [`track`](Shutdown::track), and the future is listed under `label` in the
    /// [`forced_report`](Shutdown::forced_report) if it is forced.
    pub fn track_labelled<F: Future>(
        &self,
        future: F,
        label: impl Into<String>,
    ) -> Watched<Tracked<F>> {
        self.watch_as(
            Tracked::new(future),
            Some((WatcherKind::Task, label.into())),
        )
    }

    fn watch_as<C: GracefulConnection>(
        &self,
        conn: C,
        label: Option<(WatcherKind, String)>,
    ) -> Watched<C> {
        let guard = self.guard();
        let registration = match (&guard, label) {
            (Ok(_), Some((kind, label))) => {
                Some(Registration::new(self.inner.clone(), kind, label))
            }
            _ => None,
        };
        Watched::new(conn, guard, registration)
    }

    /// Runs `conn` as a watched connection; see [`Watched`] for exactly when it
    /// resolves.
    ///
    /// It counts as a watcher from this call on (not from its first poll) until it
    /// completes or is dropped. Graceful shutdown is requested exactly once, on the
    /// first poll after the trigger. If the drain is forced, `conn` is dropped.
    pub fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        self.watch_as(conn, None)
    }

    /// Runs `future` as tracked work: like [`watch`](Shutdown::watch) for a future
    /// that has no graceful close. The drain waits for it; a force drops it.
    pub fn track<F: Future>(&self, future: F) -> Watched<Tracked<F>> {
        self.watch(Tracked::new(future))
    }

    /// Runs `future` until the coordinator is triggered, for background work that
    /// should just stop; see [`Until`]. It does not count as a watcher.
    pub fn run_until_triggered<F: Future>(&self, future: F) -> Until<F> {
        Until::new(future, self.triggered())
    }

    /// Waits until the coordinator is drained, or until `deadline` completes,
    /// whichever is first, and forces the shutdown in the second case.
    ///
    /// `deadline` is any future: a runtime's sleep, a second signal, or both raced.
    /// This does not trigger the coordinator; drain cannot complete until something
    /// does. Resolves to:
    /// - [`Outcome::Drained`] as soon as the coordinator is drained;
    /// - [`Outcome::Forced`] as soon as `deadline` completes first (the force happens
    ///   inside that poll) or someone else forces the coordinator, with the count of
    ///   watchers still alive at the force.
    ///
    /// ```
    /// use wind_down::{Outcome, Shutdown};
    ///
    /// futures_lite::future::block_on(async {
    ///     let shutdown = Shutdown::new();
    ///     let stuck = shutdown.track(std::future::pending::<()>());
    ///     shutdown.trigger();
    ///     // A deadline that has already passed: the stuck future is forced.
    ///     let outcome = shutdown.drain_until(std::future::ready(())).await;
    ///     assert_eq!(outcome, Outcome::Forced { remaining: 1 });
    ///     assert_eq!(stuck.await, Err(wind_down::Cancelled::Forced));
    ///     assert!(shutdown.is_drained());
    /// });
    /// ```
    pub async fn drain_until<D: Future>(&self, deadline: D) -> Outcome {
        enum Won {
            Drained,
            Forced,
            Deadline,
        }
        let drained = async {
            self.drained().await;
            Won::Drained
        };
        let forced = async {
            self.forced().await;
            Won::Forced
        };
        let deadline = async {
            deadline.await;
            Won::Deadline
        };
        let won = futures_lite::future::or(drained, futures_lite::future::or(forced, deadline));
        if let Won::Deadline = won.await {
            self.inner.force();
        }
        // A force, ours or an earlier one, reports the watchers alive at that moment:
        // the forced ones may be gone by now, and `drained` may have won the race.
        match self.inner.forced_at() {
            None | Some(0) => Outcome::Drained,
            Some(remaining) => Outcome::Forced { remaining },
        }
    }

    #[cfg(test)]
    pub(crate) fn total_listeners(&self) -> usize {
        self.inner.total_listeners()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Clone for Shutdown {
    fn clone(&self) -> Self {
        self.inner.add_handle();
        Shutdown {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.inner.drop_handle();
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("phase", &self.phase())
            .field("watchers", &self.watchers())
            .finish()
    }
}
