//! The shared state behind [`Shutdown`](crate::Shutdown): one atomic word, per-thread
//! shards of its count, and the waiters of each phase.
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
//! bits 4..    direct     watchers counted here: guards of child scopes, guards
//!                        taken where no shard was open, undrained child scopes
//! top 6 bits  holds      shards that hold a count here for their own guards
//! ```
//!
//! A root coordinator has per-thread shards (`shard.rs`): a guard counts on its
//! thread's shard, and the shard holds one count here (in `holds`) for all of its
//! guards. The watchers are the direct count plus the shards' own counts; `holds`
//! only keeps the coordinator from draining while a shard may still have guards.
//!
//! Guards do not hold an `Arc` each. The first acquisition ever takes one strong
//! reference on behalf of all counted watchers (HOLDS_REF), and the step that drains
//! the coordinator gives it back. No watcher can be added after the drain, so while
//! any guard lives the coordinator is not drained and that reference keeps `Inner`
//! alive: a guard costs one atomic operation to take and one to give back.
//!
//! *Drained* is derived, not stored: `TRIGGERED`, and `direct` and `holds` both
//! zero. Acquiring refuses once drained or forced, so a drained coordinator stays
//! drained.

use std::ptr::NonNull;
use std::sync::{Arc, Weak};

use crate::waiters::Waiters;

use crate::Cancelled;
use crate::report::{Registry, Report};
use crate::shard::{self, Shard};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};

pub(crate) const TRIGGERED: usize = 1;
pub(crate) const FORCED: usize = 2;
pub(crate) const ANNOUNCED: usize = 4;
pub(crate) const HOLDS_REF: usize = 8;
/// One direct watcher.
pub(crate) const ONE: usize = 16;
/// One shard's hold: the top 6 bits (at most 32 shards).
pub(crate) const HOLD_ONE: usize = 1 << (usize::BITS - 6);
/// Direct counts above this abort the process, like `Arc`'s reference count does.
const MAX_DIRECT: usize = HOLD_ONE / ONE / 2;
/// The most holds the field takes. At most 32 shards hold at once, but arrivals
/// that race each take one for a moment; one that finds the field full counts
/// directly instead.
const MAX_HOLDS: usize = usize::MAX / HOLD_ONE;

/// The watchers counted on the state word directly.
pub(crate) const fn direct(state: usize) -> usize {
    (state & (HOLD_ONE - 1)) / ONE
}

/// The shards holding a count on the state word (and arrivals in progress).
const fn holds(state: usize) -> usize {
    state / HOLD_ONE
}

/// Whether nothing is counted: no direct watcher and no holding shard.
const fn empty(state: usize) -> bool {
    state < ONE
}

pub(crate) const fn is_drained(state: usize) -> bool {
    state & TRIGGERED != 0 && empty(state)
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
    announced: Waiters,
    triggered: Waiters,
    forced: Waiters,
    drained: Waiters,
    children: Mutex<Vec<Weak<Inner>>>,
    /// What was running at the moment FORCED was set; written under this lock in
    /// the same critical section as the bit, so whoever sees FORCED finds it here.
    forced_at: Mutex<Option<Report>>,
    /// Labelled watchers; only labelled ones ever take this lock.
    registry: Mutex<Registry>,
    /// Per-thread shards of the count; empty for child scopes.
    shards: Box<[Shard]>,
    parent: Option<Arc<Inner>>,
    /// Whether this scope still holds one count on `parent`.
    holds_parent: AtomicBool,
}

impl Inner {
    pub(crate) fn new_root() -> Arc<Inner> {
        Arc::new_cyclic(|weak: &Weak<Inner>| {
            // The pointer of the allocation being made; a shard only uses it while a
            // count it holds keeps the coordinator alive.
            let this = NonNull::new(weak.as_ptr().cast_mut()).expect("Arc pointers are non-null");
            let shards = (0..shard::shards_per_root())
                .map(|_| Shard::new(this))
                .collect();
            Inner::with_parent(None, false, shards)
        })
    }

    fn with_parent(parent: Option<Arc<Inner>>, holds_parent: bool, shards: Box<[Shard]>) -> Inner {
        Inner {
            state: AtomicUsize::new(0),
            handles: AtomicUsize::new(1),
            announced: Waiters::new(),
            triggered: Waiters::new(),
            forced: Waiters::new(),
            drained: Waiters::new(),
            children: Mutex::new(Vec::new()),
            forced_at: Mutex::new(None),
            registry: Mutex::new(Registry::default()),
            shards,
            parent,
            holds_parent: AtomicBool::new(holds_parent),
        }
    }

    /// Creates a child scope. The child holds one count on `self` until it is drained,
    /// and is triggered (or forced) whenever `self` is.
    pub(crate) fn new_child(self: &Arc<Inner>) -> Arc<Inner> {
        // A direct count on the state word: `release_parent` gives it back there.
        let holds = Inner::acquire_main(self).is_ok();
        let child = Arc::new(Inner::with_parent(Some(self.clone()), holds, Box::new([])));
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

    /// Adds one watcher unless the coordinator is drained or forced: on this
    /// thread's shard while it is open, else on the state word.
    #[inline]
    pub(crate) fn acquire(this: &Arc<Inner>) -> Result<Held, Cancelled> {
        if let Some(shard) = this.thread_shard() {
            if shard.try_acquire_fast() {
                return Ok(Held::shard(shard));
            }
        }
        Inner::acquire_slow(this)
    }

    /// This thread's shard, if this coordinator has shards.
    #[inline]
    fn thread_shard(&self) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        let slot = shard::thread_slot()?;
        // The length is a power of two.
        self.shards.get(slot & (self.shards.len() - 1))
    }

    #[inline(never)]
    fn acquire_slow(this: &Arc<Inner>) -> Result<Held, Cancelled> {
        if let Some(shard) = this.thread_shard() {
            // SAFETY: `this` keeps the coordinator alive.
            let acquired = unsafe {
                shard.try_acquire(|| {
                    Inner::acquire_on_word(this, HOLD_ONE).map(|held| held.is_some())
                })
            };
            if let Some(acquired) = acquired {
                return acquired.map(|()| Held::shard(shard));
            }
        }
        Inner::acquire_main(this).map(Held::main)
    }

    /// Adds one to `shard` (of `self`), arriving on it if it does not hold yet, for
    /// a caller that holds a count on `self`. `false` if the shard is closed, the
    /// holds field is full, or the coordinator is forced: the caller counts where
    /// its own count is instead.
    #[inline(never)]
    fn arrive_held(&self, shard: &Shard) -> bool {
        // SAFETY: the caller's count keeps the coordinator alive.
        let acquired = unsafe {
            shard.try_acquire(|| {
                // That count also keeps HOLDS_REF set, so this is never the first
                // acquisition: no strong reference to take.
                let first = self.try_acquire(HOLD_ONE)?;
                debug_assert_ne!(first, Some(true), "a held count implies HOLDS_REF");
                Ok(first.is_some())
            })
        };
        matches!(acquired, Some(Ok(())))
    }

    /// Adds one direct watcher unless the coordinator is drained or forced, and
    /// returns a pointer that stays valid while that count is held.
    pub(crate) fn acquire_main(this: &Arc<Inner>) -> Result<NonNull<Inner>, Cancelled> {
        Inner::acquire_on_word(this, ONE).map(|held| held.expect("a direct count always fits"))
    }

    /// Adds `amount` (one direct watcher, [`ONE`], or one shard's hold,
    /// [`HOLD_ONE`]) unless the coordinator is drained or forced. `Ok(None)` if
    /// the holds field is full (for a hold only; nothing was added).
    fn acquire_on_word(
        this: &Arc<Inner>,
        amount: usize,
    ) -> Result<Option<NonNull<Inner>>, Cancelled> {
        let Some(first) = this.try_acquire(amount)? else {
            return Ok(None);
        };
        if first {
            // The first acquisition: take the watchers' shared strong reference,
            // given back at the drain. Our own count keeps the drain away until then.
            // SAFETY: `this` is a live `Arc`.
            unsafe { Arc::increment_strong_count(Arc::as_ptr(this)) };
        }
        Ok(Some(main_ptr(this)))
    }

    /// Adds `amount` unless the coordinator is drained or forced. Returns whether
    /// this was the first acquisition ever (it set HOLDS_REF), or `None` if
    /// `amount` is a hold and the holds field is full.
    fn try_acquire(&self, amount: usize) -> Result<Option<bool>, Cancelled> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & FORCED != 0 {
                return Err(Cancelled::Forced);
            }
            if is_drained(cur) {
                return Err(Cancelled::Drained);
            }
            if direct(cur) > MAX_DIRECT {
                std::process::abort();
            }
            if amount == HOLD_ONE && holds(cur) == MAX_HOLDS {
                return Ok(None);
            }
            match self.state.compare_exchange_weak(
                cur,
                (cur + amount) | HOLDS_REF,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Some(cur & HOLDS_REF == 0)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds one to a count that the caller already holds one of, so it cannot be zero.
    pub(crate) fn acquire_held(&self) {
        let prev = self.state.fetch_add(ONE, Ordering::Relaxed);
        if direct(prev) > MAX_DIRECT {
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
        // SAFETY: forwarded.
        unsafe { Inner::release_on_word(ptr, ONE) }
    }

    /// Gives back `amount` ([`ONE`] or [`HOLD_ONE`]), as [`release`](Inner::release).
    ///
    /// # Safety
    ///
    /// As [`release`](Inner::release), for a count of that kind.
    pub(crate) unsafe fn release_on_word(ptr: NonNull<Inner>, amount: usize) {
        let drained_with_ref = {
            // SAFETY: the count we still hold keeps the coordinator undrained, so the
            // watchers' shared reference keeps it alive until our `fetch_sub`, and
            // until the end of this block if that made it drained.
            let inner = unsafe { ptr.as_ref() };
            let prev = inner.state.fetch_sub(amount, Ordering::AcqRel);
            debug_assert!(
                prev & !(ONE - 1) >= amount,
                "wind-down: released below zero"
            );
            if prev & TRIGGERED != 0 && prev & !(ONE - 1) == amount {
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

    /// Sets TRIGGERED, ANNOUNCED and FORCED. Returns the number of watchers at
    /// that moment.
    pub(crate) fn force(self: &Arc<Self>) -> usize {
        let bits = TRIGGERED | ANNOUNCED | FORCED;
        let (prev, departs, remaining) = {
            // Only the bit flip, the shards' close and the snapshot happen under the
            // lock: no waker runs while it is held. Lock order: `forced_at`, then
            // `registry`.
            let mut forced_at = lock(&self.forced_at);
            let prev = self.state.fetch_or(bits, Ordering::AcqRel);
            // Closed here even if a trigger already started closing them: once
            // `force` returns, no shard takes a guard.
            let departs = self.close_shards();
            let remaining = self.watchers();
            if prev & FORCED == 0 {
                *forced_at = Some(lock(&self.registry).snapshot(remaining));
            }
            (prev, departs, remaining)
        };
        self.release_departed(departs);
        self.after_transition(bits, prev);
        remaining
    }

    /// Closes every shard; returns how many holds the caller must give back.
    fn close_shards(&self) -> usize {
        self.shards.iter().filter(|shard| shard.close()).count()
    }

    /// Gives back the holds of `departs` shards closed while empty.
    fn release_departed(self: &Arc<Self>, departs: usize) {
        for _ in 0..departs {
            // SAFETY: each departing shard held one hold, given back once, by its
            // closer; `self` keeps the coordinator alive.
            unsafe { Inner::release_on_word(main_ptr(self), HOLD_ONE) };
        }
    }

    /// The number of watchers: counted on the state word directly, plus counted on
    /// the shards. Exact when no watcher is being added or given back.
    pub(crate) fn watchers(&self) -> usize {
        let sharded: usize = self
            .shards
            .iter()
            .map(|shard| shard::shard_count(shard.load()))
            .sum();
        direct(self.state()) + sharded
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
        if bits & TRIGGERED != 0 {
            // Every trigger() closes (idempotently): once it returns, however it
            // raced another trigger, the shards take no guard and have given back
            // what they held, so the drained state is reachable.
            let departs = self.close_shards();
            self.release_departed(departs);
        }
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
            self.announced.wake_all();
        }
        if new & TRIGGERED != 0 {
            self.triggered.wake_all();
        }
        if new & FORCED != 0 {
            self.forced.wake_all();
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
        // A shard holding at `prev` keeps it non-empty; its departure is a release,
        // which drains if it is the last.
        if new & TRIGGERED != 0 && empty(prev) {
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
        self.drained.wake_all();
        self.release_parent();
    }

    fn release_parent(&self) {
        if self.holds_parent.swap(false, Ordering::AcqRel) {
            if let Some(parent) = &self.parent {
                // SAFETY: this scope holds one count on `parent` (`holds_parent`),
                // given back exactly once; `self.parent` keeps it alive besides.
                unsafe { Inner::release(main_ptr(parent)) };
            }
        }
    }

    /// The waiters of a phase. Its wake-up runs after its bit is set.
    pub(crate) fn waiters(&self, latch: Latch) -> &Waiters {
        match latch {
            Latch::Announced => &self.announced,
            Latch::Triggered => &self.triggered,
            Latch::Forced => &self.forced,
            Latch::Drained => &self.drained,
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
        self.announced.registered()
            + self.triggered.registered()
            + self.forced.registered()
            + self.drained.registered()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Normally released at the drained step; this covers a scope that is torn
        // down some other way (for example while unwinding).
        self.release_parent();
    }
}

/// The pointer for counts on the state word. `Arc::as_ptr` keeps the provenance of
/// the whole allocation, which `Arc::decrement_strong_count` needs at the drain.
fn main_ptr(this: &Arc<Inner>) -> NonNull<Inner> {
    NonNull::new(Arc::as_ptr(this).cast_mut()).expect("Arc pointers are non-null")
}

/// One watcher's count on a coordinator, on its state word or on one of its shards:
/// a pointer to the `Inner` (low bit clear) or to the `Shard` (low bit set; both are
/// at least 8-byte aligned). Valid while the count is held.
pub(crate) struct Held(NonNull<u8>);

impl Held {
    fn main(inner: NonNull<Inner>) -> Held {
        Held(inner.cast())
    }

    #[inline]
    fn shard(shard: &Shard) -> Held {
        Held(NonNull::from(shard).cast::<u8>().map_addr(|a| a | 1))
    }

    #[inline]
    fn as_shard(&self) -> Option<&Shard> {
        if self.0.addr().get() & 1 == 0 {
            return None;
        }
        // SAFETY: tagged by `Held::shard` (the byte below is the shard's start); the
        // count held keeps the coordinator, which owns the shard, alive.
        Some(unsafe { &*self.0.as_ptr().wrapping_sub(1).cast::<Shard>() })
    }

    /// The coordinator this count is held on.
    #[inline]
    pub(crate) fn inner(&self) -> &Inner {
        let ptr = match self.as_shard() {
            Some(shard) => shard.inner(),
            None => self.0.cast::<Inner>(),
        };
        // SAFETY: the count held keeps the coordinator undrained, so the watchers'
        // shared strong reference keeps it alive.
        unsafe { ptr.as_ref() }
    }

    /// One more count: on this thread's shard while it is open (so clones made on
    /// another thread do not contend with this one), else where this one is held.
    /// Never refused.
    #[inline]
    pub(crate) fn acquire_held(&self) -> Held {
        let inner = self.inner();
        if let Some(shard) = inner.thread_shard() {
            if shard.try_acquire_fast() || inner.arrive_held(shard) {
                return Held::shard(shard);
            }
        }
        match self.as_shard() {
            Some(shard) => shard.acquire_held(),
            None => self.inner().acquire_held(),
        }
        Held(self.0)
    }

    /// Gives the count back.
    ///
    /// # Safety
    ///
    /// The count was taken by [`Inner::acquire`] or [`Held::acquire_held`], and is
    /// given back once: `self` is not used afterwards.
    #[inline]
    pub(crate) unsafe fn release(&self) {
        let (main, amount) = match self.as_shard() {
            Some(shard) => {
                // Read before the release: after it, only a departing caller still
                // holds something on the coordinator (the shard's hold).
                let inner = shard.inner();
                if !shard.release() {
                    return;
                }
                (inner, HOLD_ONE)
            }
            None => (self.0.cast::<Inner>(), ONE),
        };
        // SAFETY: a count on the state word that this caller holds: the guard's own,
        // or the shard's hold, which this release emptied after its close.
        unsafe { Inner::release_on_word(main, amount) };
    }
}

fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    // No code runs user callbacks under this lock, so poisoning carries no broken
    // invariant; recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, not(wind_down_loom)))]
mod tests {
    use super::*;

    #[test]
    fn arrival_with_the_holds_field_full_counts_on_the_state_word() {
        let inner = Inner::new_root();
        // Fill the holds field, as many racing arrivals would for a moment.
        for _ in 0..MAX_HOLDS {
            assert!(Inner::acquire_on_word(&inner, HOLD_ONE).unwrap().is_some());
        }
        assert_eq!(
            Inner::acquire_on_word(&inner, HOLD_ONE),
            Ok(None),
            "no room for one more hold"
        );
        // This thread's shard never held: the guard's arrival finds no room and the
        // guard counts on the state word directly.
        let held = Inner::acquire(&inner).unwrap();
        assert!(held.as_shard().is_none());
        assert_eq!((direct(inner.state()), inner.watchers()), (1, 1));
        for _ in 0..MAX_HOLDS {
            // SAFETY: the holds taken above, given back once; `inner` keeps it alive.
            unsafe { Inner::release_on_word(main_ptr(&inner), HOLD_ONE) };
        }
        inner.trigger();
        assert!(!is_drained(inner.state()), "the guard is alive");
        // SAFETY: taken above, given back once.
        unsafe { held.release() };
        assert!(is_drained(inner.state()));
        assert_eq!(inner.watchers(), 0);
    }
}
