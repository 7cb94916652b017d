//! [`Core`]: the state one coordinator shares among its handles, guards, watched
//! futures and waits, and its counting. The tree of scopes is in `scopes.rs`.
//!
//! Invariants:
//! - The lifecycle is the state word (`state.rs`); every phase change is one
//!   `fetch_or` on it, and each phase's waiters are woken by one
//!   `event_listener::Event` per phase, notified after the bit is set.
//! - The release that drains a scope is the only one that sees the word go from
//!   "triggered, one left" to empty: it wakes the drained waiters and releases
//!   the scope's hold on its parent, which may drain that one in turn (a loop up
//!   the tree, never recursion).

use std::sync::{Arc, Weak};

use event_listener::Event;
use slab::Slab;

use super::outcome::Refused;
use super::phase::Phase;
use super::report::{Registry, Report, WatcherKind};
use super::state::{FORCED, HOLD, TRIGGERED, WATCHER, check_overflow, is_drained};
use super::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, Shared, lock, shared};
use super::wake::{PhaseEvents, Wakes};

/// No key in the parent's children slab yet.
pub(super) const NO_KEY: usize = usize::MAX;

/// A counted reference to a [`Core`]: an `Arc`. Under loom its drop also does a
/// release that the `Core`'s destructor acquires, because loom cannot see how std's
/// `Arc` (kept for its `Weak`) orders the final drop after other threads' accesses.
#[derive(Clone)]
pub(crate) struct CoreRef(pub(super) Arc<Core>);

impl std::ops::Deref for CoreRef {
    type Target = Core;

    #[inline]
    fn deref(&self) -> &Core {
        &self.0
    }
}

impl CoreRef {
    pub(super) fn new(core: Core) -> CoreRef {
        CoreRef(Arc::new(core))
    }

    pub(super) fn downgrade(&self) -> Weak<Core> {
        Arc::downgrade(&self.0)
    }

    /// The `Core` itself if this was its last reference.
    pub(super) fn into_last(self) -> Option<Core> {
        let arc = Arc::clone(&self.0);
        drop(self);
        Arc::try_unwrap(arc).ok()
    }
}

impl PhaseEvents for CoreRef {
    fn event(&self, phase: Phase) -> &Event {
        self.0.event(phase)
    }
}

#[cfg(wind_down_loom)]
impl Drop for CoreRef {
    fn drop(&mut self) {
        self.0.drops.fetch_add(1, Ordering::Release);
    }
}

pub(crate) struct Core {
    pub(super) word: Shared<AtomicU64>,
    /// Live `Shutdown` handles of a root; the last one dropped triggers it.
    handles: Shared<AtomicUsize>,
    /// One per waitable phase, in [`Phase`] order from `Announced`.
    events: [Event; 4],
    /// What was still running when this scope was forced: stored before FORCED is
    /// set, so whoever sees the bit finds it.
    pub(super) forced_report: Shared<Mutex<Option<Report>>>,
    /// Labelled watchers; only labelled ones take this lock.
    pub(super) registry: Shared<Mutex<Registry>>,
    pub(super) children: Shared<Mutex<Slab<Weak<Core>>>>,
    pub(super) parent: Option<ParentLink>,
    /// Under loom: one release per dropped [`CoreRef`], acquired by the destructor.
    #[cfg(wind_down_loom)]
    pub(super) drops: AtomicUsize,
}

pub(super) struct ParentLink {
    pub(super) core: CoreRef,
    /// This scope's key in the parent's children slab.
    pub(super) key: Shared<AtomicUsize>,
    /// Whether this scope still holds one hold on the parent.
    pub(super) held: Shared<AtomicBool>,
}

impl Core {
    pub(super) fn new(parent: Option<ParentLink>) -> Core {
        Core {
            word: shared(AtomicU64::new(0)),
            handles: shared(AtomicUsize::new(1)),
            events: [Event::new(), Event::new(), Event::new(), Event::new()],
            forced_report: shared(Mutex::new(None)),
            registry: shared(Mutex::new(Registry::default())),
            children: shared(Mutex::new(Slab::new())),
            parent,
            #[cfg(wind_down_loom)]
            drops: AtomicUsize::new(0),
        }
    }

    pub(crate) fn new_root() -> CoreRef {
        CoreRef::new(Core::new(None))
    }

    pub(crate) fn word(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// The event notified when `phase` is reached (`Announced` and later).
    pub(crate) fn event(&self, phase: Phase) -> &Event {
        &self.events[phase.event_index()]
    }

    /// Adds `amount` (a watcher or a hold) unless drained or forced.
    pub(crate) fn try_add(&self, amount: u64) -> Result<(), Refused> {
        let mut cur = self.word();
        // Lock-free, not wait-free: each failed exchange means another thread
        // changed the word.
        loop {
            if cur & FORCED != 0 {
                return Err(Refused::Forced);
            }
            if is_drained(cur) {
                return Err(Refused::Drained);
            }
            check_overflow(cur);
            match self.word.compare_exchange_weak(
                cur,
                cur + amount,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `amount` for a caller that holds a count here already: never refused,
    /// since that count keeps the word from draining.
    pub(crate) fn add_held(&self, amount: u64) {
        check_overflow(self.word.fetch_add(amount, Ordering::Relaxed));
    }

    /// Releases `amount`; the release that drains `this` wakes its drained
    /// waiters and lets go of its parent.
    pub(crate) fn release(this: &CoreRef, amount: u64) {
        let mut wakes = Wakes::default();
        Core::release_with(this, amount, &mut wakes);
        wakes.run();
    }

    /// [`release`](Core::release), with the wake-ups left to the caller.
    pub(crate) fn release_with(this: &CoreRef, amount: u64, wakes: &mut Wakes<CoreRef>) {
        let prev = this.word.fetch_sub(amount, Ordering::AcqRel);
        debug_assert!(
            prev >= amount + (prev & (WATCHER - 1)),
            "released below zero"
        );
        if drains(prev, amount) {
            Core::drained(this, wakes);
        }
    }

    /// `this` just drained: its drained waiters are due, and it lets go of its
    /// parent, which may drain in turn, up the tree.
    pub(super) fn drained(this: &CoreRef, wakes: &mut Wakes<CoreRef>) {
        let mut core = this.clone();
        // Bounded by the depth of the tree: each round moves one level up.
        loop {
            let parent = core.let_go_of_parent();
            wakes.drained(core);
            match parent {
                Some(parent) => core = parent,
                None => return,
            }
        }
    }

    /// Gives back this scope's hold on its parent, once. Returns the parent if
    /// that drained it.
    fn let_go_of_parent(&self) -> Option<CoreRef> {
        let link = self.parent.as_ref()?;
        if !link.held.swap(false, Ordering::AcqRel) {
            return None;
        }
        let prev = link.core.word.fetch_sub(HOLD, Ordering::AcqRel);
        drains(prev, HOLD).then(|| link.core.clone())
    }

    /// Enters a labelled watcher; returns its key.
    pub(crate) fn register(&self, kind: WatcherKind, label: String) -> u64 {
        lock(&self.registry).insert(kind, label)
    }

    pub(crate) fn unregister(&self, key: u64) {
        lock(&self.registry).remove(key);
    }

    pub(crate) fn relabel(&self, key: u64, label: String) {
        lock(&self.registry).relabel(key, label);
    }

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops one handle. Returns `true` for the last one.
    pub(crate) fn drop_handle(&self) -> bool {
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// Whether giving back `amount` from `prev` drains: triggered, and that was all.
fn drains(prev: u64, amount: u64) -> bool {
    prev & TRIGGERED != 0 && prev - (prev & (WATCHER - 1)) == amount
}

#[cfg(test)]
impl Core {
    pub(crate) fn listeners(&self) -> usize {
        self.events.iter().map(Event::total_listeners).sum()
    }
}
