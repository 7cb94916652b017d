//! The shared state behind [`Shutdown`](crate::Shutdown): one atomic word and three events.
//!
//! The state word packs the whole lifecycle so that every transition is a single
//! atomic operation:
//!
//! ```text
//! bit 0      TRIGGERED   set once, never cleared (implies ANNOUNCED)
//! bit 1      FORCED      set once, never cleared (implies TRIGGERED)
//! bit 2      ANNOUNCED   set once, never cleared: not ready any more
//! bit 3      HOLDS_REF   set by the first acquisition: the counted watchers hold one
//!                        strong reference to this `Inner`, together
//! bits 4..   count       live guards, watched futures and undrained child scopes
//! ```
//!
//! Guards do not hold an `Arc` each. The first acquisition ever takes one strong
//! reference on behalf of all counted watchers (HOLDS_REF), and the step that drains
//! the coordinator gives it back. No watcher can be added after the drain, so while
//! any guard lives the coordinator is not drained and that reference keeps `Inner`
//! alive: a guard costs one atomic operation to take and one to give back.
//!
//! *Drained* is derived, not stored: `TRIGGERED && count == 0`. Acquiring refuses
//! once drained or forced, so a drained coordinator stays drained.

use std::ptr::NonNull;
use std::sync::{Arc, Weak};

use crate::event::{Event, EventListener};

use crate::Cancelled;
use crate::report::{Registry, Report};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};

pub(crate) const TRIGGERED: usize = 1;
pub(crate) const FORCED: usize = 2;
pub(crate) const ANNOUNCED: usize = 4;
pub(crate) const HOLDS_REF: usize = 8;
pub(crate) const ONE: usize = 16;
/// Counts above this abort the process, like `Arc`'s reference count does.
const MAX_STATE: usize = usize::MAX / 2;

pub(crate) const fn count(state: usize) -> usize {
    state / ONE
}

pub(crate) const fn is_drained(state: usize) -> bool {
    state & TRIGGERED != 0 && count(state) == 0
}

/// Which latched condition a waiter waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Latch {
    Announced,
    Triggered,
    Forced,
    Drained,
}

impl Latch {
    pub(crate) fn reached(self, state: usize) -> bool {
        match self {
            Latch::Announced => state & ANNOUNCED != 0,
            Latch::Triggered => state & TRIGGERED != 0,
            Latch::Forced => state & FORCED != 0,
            Latch::Drained => is_drained(state),
        }
    }
}

pub(crate) struct Inner {
    state: AtomicUsize,
    /// Live [`Shutdown`](crate::Shutdown) handles; the last one dropped triggers.
    handles: AtomicUsize,
    announced: Event,
    triggered: Event,
    forced: Event,
    drained: Event,
    children: Mutex<Vec<Weak<Inner>>>,
    /// What was running at the moment FORCED was set; written under this lock in
    /// the same critical section as the bit, so whoever sees FORCED finds it here.
    forced_at: Mutex<Option<Report>>,
    /// Labelled watchers; only labelled ones ever take this lock.
    registry: Mutex<Registry>,
    parent: Option<Arc<Inner>>,
    /// Whether this scope still holds one count on `parent`.
    holds_parent: AtomicBool,
}

impl Inner {
    pub(crate) fn new_root() -> Arc<Inner> {
        Arc::new(Inner::with_parent(None, false))
    }

    fn with_parent(parent: Option<Arc<Inner>>, holds_parent: bool) -> Inner {
        Inner {
            state: AtomicUsize::new(0),
            handles: AtomicUsize::new(1),
            announced: Event::new(),
            triggered: Event::new(),
            forced: Event::new(),
            drained: Event::new(),
            children: Mutex::new(Vec::new()),
            forced_at: Mutex::new(None),
            registry: Mutex::new(Registry::default()),
            parent,
            holds_parent: AtomicBool::new(holds_parent),
        }
    }

    /// Creates a child scope. The child holds one count on `self` until it is drained,
    /// and is triggered (or forced) whenever `self` is.
    pub(crate) fn new_child(self: &Arc<Inner>) -> Arc<Inner> {
        let holds = Inner::acquire(self).is_ok();
        let child = Arc::new(Inner::with_parent(Some(self.clone()), holds));
        {
            let mut children = lock(&self.children);
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child));
        }
        // The parent sets its bits before walking `children` under the same lock, so
        // either it saw this child in the list or this load sees its bits.
        let parent_state = self.state();
        if parent_state & FORCED != 0 {
            child.force();
        } else if parent_state & TRIGGERED != 0 {
            child.trigger();
        } else if parent_state & ANNOUNCED != 0 {
            child.announce();
        }
        child
    }

    pub(crate) fn state(&self) -> usize {
        self.state.load(Ordering::Acquire)
    }

    /// Adds one to the count unless the coordinator is drained or forced, and
    /// returns a pointer that stays valid while that count is held.
    pub(crate) fn acquire(this: &Arc<Inner>) -> Result<NonNull<Inner>, Cancelled> {
        if this.try_acquire()? {
            // The first acquisition: take the watchers' shared strong reference,
            // given back at the drain. Our own count keeps the drain away until then.
            // SAFETY: `this` is a live `Arc`.
            unsafe { Arc::increment_strong_count(Arc::as_ptr(this)) };
        }
        // `Arc::as_ptr` keeps the provenance of the whole allocation, which
        // `Arc::decrement_strong_count` needs at the drain.
        Ok(NonNull::new(Arc::as_ptr(this).cast_mut()).expect("Arc pointers are non-null"))
    }

    /// Adds one to the count unless the coordinator is drained or forced. Returns
    /// `true` if this was the first acquisition ever (it set HOLDS_REF).
    fn try_acquire(&self) -> Result<bool, Cancelled> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & FORCED != 0 {
                return Err(Cancelled::Forced);
            }
            if is_drained(cur) {
                return Err(Cancelled::Drained);
            }
            if cur > MAX_STATE {
                std::process::abort();
            }
            match self.state.compare_exchange_weak(
                cur,
                (cur + ONE) | HOLDS_REF,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(cur & HOLDS_REF == 0),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds one to a count that the caller already holds one of, so it cannot be zero.
    pub(crate) fn acquire_held(&self) {
        let prev = self.state.fetch_add(ONE, Ordering::Relaxed);
        if prev > MAX_STATE {
            std::process::abort();
        }
    }

    /// Gives one count back; the release that empties a triggered coordinator drains
    /// it, and then gives back the watchers' shared reference, possibly freeing it.
    ///
    /// # Safety
    ///
    /// `ptr` comes from [`Inner::acquire`] (or is an `Arc` pointer of a coordinator
    /// whose count the caller holds), and the caller gives back one count it holds.
    /// `ptr` must not be used afterwards.
    pub(crate) unsafe fn release(ptr: NonNull<Inner>) {
        let drained_with_ref = {
            // SAFETY: the count we still hold keeps the coordinator undrained, so the
            // watchers' shared reference keeps it alive until our `fetch_sub`, and
            // until the end of this block if that made it drained.
            let inner = unsafe { ptr.as_ref() };
            let prev = inner.state.fetch_sub(ONE, Ordering::AcqRel);
            debug_assert!(count(prev) > 0, "wind-down: count released below zero");
            if prev & TRIGGERED != 0 && count(prev) == 1 {
                inner.on_drained();
                prev & HOLDS_REF != 0
            } else {
                false
            }
        };
        if drained_with_ref {
            // SAFETY: taken in `acquire`, given back exactly once (the drain happens
            // once); no reference to the coordinator is used after this.
            unsafe { Arc::decrement_strong_count(ptr.as_ptr()) };
        }
    }

    /// Sets ANNOUNCED. Returns `true` if this call set it.
    pub(crate) fn announce(self: &Arc<Self>) -> bool {
        self.transition(ANNOUNCED) & ANNOUNCED == 0
    }

    /// Sets TRIGGERED (and ANNOUNCED). Returns `true` if this call set TRIGGERED.
    pub(crate) fn trigger(self: &Arc<Self>) -> bool {
        self.transition(TRIGGERED | ANNOUNCED) & TRIGGERED == 0
    }

    /// Sets TRIGGERED, ANNOUNCED and FORCED. Returns the count at that moment.
    pub(crate) fn force(self: &Arc<Self>) -> usize {
        let bits = TRIGGERED | ANNOUNCED | FORCED;
        let prev = {
            // Only the bit flip and the snapshot happen under the lock: no waker runs
            // while it is held. Lock order: `forced_at`, then `registry`.
            let mut forced_at = lock(&self.forced_at);
            let prev = self.state.fetch_or(bits, Ordering::AcqRel);
            if prev & FORCED == 0 {
                *forced_at = Some(lock(&self.registry).snapshot(count(prev)));
            }
            prev
        };
        self.after_transition(bits, prev);
        count(prev)
    }

    /// What was running when the coordinator was forced, or `None` if it was not.
    pub(crate) fn forced_report(&self) -> Option<Report> {
        if self.state() & FORCED == 0 {
            return None;
        }
        lock(&self.forced_at).clone()
    }

    /// The count at the moment the coordinator was forced, or `None` if it was not.
    pub(crate) fn forced_at(&self) -> Option<usize> {
        if self.state() & FORCED == 0 {
            return None;
        }
        lock(&self.forced_at).as_ref().map(|r| r.remaining)
    }

    pub(crate) fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut lock(&self.registry))
    }

    /// Sets `bits` (never FORCED: see [`force`](Inner::force)) and runs
    /// [`after_transition`](Inner::after_transition). Returns the previous state.
    fn transition(self: &Arc<Self>, bits: usize) -> usize {
        debug_assert_eq!(bits & FORCED, 0, "wind-down: FORCED is set by force()");
        let prev = self.state.fetch_or(bits, Ordering::AcqRel);
        self.after_transition(bits, prev);
        prev
    }

    /// Wakes waiters of every phase newly reached by setting `bits` over `prev`, and
    /// carries the transition to live child scopes.
    fn after_transition(self: &Arc<Self>, bits: usize, prev: usize) {
        let new = bits & !prev;
        if new == 0 {
            return;
        }
        if new & ANNOUNCED != 0 {
            self.announced.notify(usize::MAX);
        }
        if new & TRIGGERED != 0 {
            self.triggered.notify(usize::MAX);
        }
        if new & FORCED != 0 {
            self.forced.notify(usize::MAX);
        }
        let children: Vec<Arc<Inner>> = lock(&self.children)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for child in children {
            if bits & FORCED != 0 {
                child.force();
            } else if bits & TRIGGERED != 0 {
                child.trigger();
            } else {
                child.announce();
            }
        }
        if new & TRIGGERED != 0 && count(prev) == 0 {
            self.on_drained();
            if prev & HOLDS_REF != 0 {
                // Every caller of a transition holds an `Arc` of its own (a handle, a
                // parent's list entry, a new child), so this never frees `self`.
                // SAFETY: taken in `acquire`, given back once, at the drain.
                unsafe { Arc::decrement_strong_count(Arc::as_ptr(self)) };
            }
        }
    }

    /// Runs exactly once per coordinator: at the step that made it drained.
    fn on_drained(&self) {
        self.drained.notify(usize::MAX);
        self.release_parent();
    }

    fn release_parent(&self) {
        if self.holds_parent.swap(false, Ordering::AcqRel) {
            if let Some(parent) = &self.parent {
                // SAFETY: this scope holds one count on `parent` (`holds_parent`),
                // given back exactly once; `self.parent` keeps it alive besides.
                let ptr = NonNull::new(Arc::as_ptr(parent).cast_mut()).expect("non-null");
                unsafe { Inner::release(ptr) };
            }
        }
    }

    pub(crate) fn listen(&self, latch: Latch) -> EventListener {
        match latch {
            Latch::Announced => self.announced.listen(),
            Latch::Triggered => self.triggered.listen(),
            Latch::Forced => self.forced.listen(),
            Latch::Drained => self.drained.listen(),
        }
    }

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops one handle; the last one triggers.
    pub(crate) fn drop_handle(self: &Arc<Self>) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.trigger();
        }
    }

    #[cfg(test)]
    pub(crate) fn total_listeners(&self) -> usize {
        self.announced.total_listeners()
            + self.triggered.total_listeners()
            + self.forced.total_listeners()
            + self.drained.total_listeners()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Normally released at the drained step; this covers a scope that is torn
        // down some other way (for example while unwinding).
        self.release_parent();
    }
}

fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    // No code runs user callbacks under this lock, so poisoning carries no broken
    // invariant; recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
