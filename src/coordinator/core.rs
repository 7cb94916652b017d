//! [`Core`]: the state one coordinator shares among its handles, guards, watched
//! futures and waits; and the tree of scopes.
//!
//! Invariants:
//! - The lifecycle is the state word (`state.rs`); every phase change is one
//!   `fetch_or` on it, and each phase's waiters are woken by one
//!   `event_listener::Event` per phase, notified after the bit is set.
//! - A transition is carried to every scope below with an explicit stack, never by
//!   recursion, and every state change of a transition (bits, shards, the parent's
//!   hold, the report) is complete before any waker runs (`wake.rs`).
//! - A child scope holds one *hold* on its parent from its creation until it
//!   drains (or is dropped), so the parent drains after it. A hold is not a
//!   watcher: counts and reports name real watchers only.
//! - A child is triggered, announced and forced with its parent: the parent sets
//!   its bits before it walks its children under the children lock, and a child is
//!   entered in that list under the same lock at which it reads the parent's bits.
//! - A scope's memory is freed when its last handle, guard and wait are gone; its
//!   entry in the parent's list goes with it (a slab: O(1) to add and remove).

use std::sync::{Arc, Weak};

use event_listener::Event;
use slab::Slab;

use super::outcome::{Outcome, Refused};
use super::phase::Phase;
use super::report::{Registry, Report, WatcherKind};
use super::shard::Shards;
use super::state::{
    ANNOUNCED, FORCED, HOLD, TRIGGERED, WATCHER, check_overflow, is_drained, is_empty, watchers,
};
use super::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, Shared, lock, shared};
use super::wake::Wakes;

/// No key in the parent's children slab yet.
const NO_KEY: usize = usize::MAX;

/// A counted reference to a [`Core`]: an `Arc`. Under loom its drop also does a
/// release that the `Core`'s destructor acquires, because loom cannot see how std's
/// `Arc` (kept for its `Weak`) orders the final drop after other threads' accesses.
#[derive(Clone)]
pub(crate) struct CoreRef(Arc<Core>);

impl std::ops::Deref for CoreRef {
    type Target = Core;

    #[inline]
    fn deref(&self) -> &Core {
        &self.0
    }
}

impl CoreRef {
    fn new(core: Core) -> CoreRef {
        CoreRef(Arc::new(core))
    }

    fn downgrade(&self) -> Weak<Core> {
        Arc::downgrade(&self.0)
    }

    /// The `Core` itself if this was its last reference.
    fn into_last(self) -> Option<Core> {
        let arc = Arc::clone(&self.0);
        drop(self);
        Arc::try_unwrap(arc).ok()
    }
}

#[cfg(wind_down_loom)]
impl Drop for CoreRef {
    fn drop(&mut self) {
        self.0.drops.fetch_add(1, Ordering::Release);
    }
}

pub(crate) struct Core {
    word: Shared<AtomicU64>,
    /// Live `Shutdown` handles of a root; the last one dropped triggers it.
    handles: Shared<AtomicUsize>,
    /// One per waitable phase, in [`Phase`] order from `Announced`.
    events: [Event; 4],
    /// What was still running when this scope was forced: stored before FORCED is
    /// set, so whoever sees the bit finds it.
    forced_report: Shared<Mutex<Option<Report>>>,
    /// Labelled watchers; only labelled ones take this lock.
    registry: Shared<Mutex<Registry>>,
    children: Shared<Mutex<Slab<Weak<Core>>>>,
    parent: Option<ParentLink>,
    /// Under loom: one release per dropped [`CoreRef`], acquired by the destructor.
    #[cfg(wind_down_loom)]
    drops: AtomicUsize,
}

struct ParentLink {
    core: CoreRef,
    /// This scope's key in the parent's children slab.
    key: Shared<AtomicUsize>,
    /// Whether this scope still holds one hold on the parent.
    held: Shared<AtomicBool>,
}

impl Core {
    fn new(parent: Option<ParentLink>) -> Core {
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

    /// Creates a child scope of `this`, with `this`'s phase.
    pub(crate) fn new_child(this: &CoreRef) -> CoreRef {
        // Refused once `this` is drained or forced: such a child holds nothing.
        let held = this.try_add(HOLD).is_ok();
        let child = CoreRef::new(Core::new(Some(ParentLink {
            core: this.clone(),
            key: shared(AtomicUsize::new(NO_KEY)),
            held: shared(AtomicBool::new(held)),
        })));
        let parent_word = {
            let mut children = lock(&this.children);
            let key = children.insert(child.downgrade());
            if let Some(link) = &child.parent {
                link.key.store(key, Ordering::Relaxed);
            }
            // Read after entering the list: a transition of `this` sets its bits
            // before it walks the list, so either it sees the child or this sees
            // its bits (reading them before entering would miss a trigger).
            this.word()
        };
        if parent_word & FORCED != 0 {
            Core::force(&child, None);
        } else if parent_word & (ANNOUNCED | TRIGGERED) != 0 {
            Core::raise(&child, parent_word & (ANNOUNCED | TRIGGERED), None);
        }
        child
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

    /// Gives back `amount`; the release that drains `this` wakes its drained
    /// waiters and lets go of its parent.
    pub(crate) fn release(this: &CoreRef, amount: u64) {
        let mut wakes = Wakes::default();
        Core::give_back(this, amount, &mut wakes);
        wakes.run();
    }

    /// [`release`](Core::release), with the wake-ups left to the caller.
    pub(crate) fn give_back(this: &CoreRef, amount: u64, wakes: &mut Wakes) {
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
    fn drained(this: &CoreRef, wakes: &mut Wakes) {
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

    /// Sets `bits` on `this` and every scope below it that lacks them; with
    /// TRIGGERED, also closes `shards` (the root's). Returns `this`'s word before.
    pub(crate) fn raise(this: &CoreRef, bits: u64, shards: Option<&Shards>) -> u64 {
        let mut wakes = Wakes::default();
        let mut before = None;
        let mut next = Some(this.clone());
        let mut stack = Vec::new();
        // Bounded by the number of scopes: each is pushed once, by its parent.
        while let Some(core) = next.take().or_else(|| stack.pop()) {
            let prev = core.word.fetch_or(bits, Ordering::AcqRel);
            before.get_or_insert(prev);
            let new = bits & !prev;
            if new == 0 {
                // Its scopes have the bits already: they got them with it, or
                // read them when they were created.
                continue;
            }
            if new & FORCED != 0 {
                // A scope created since the force's snapshot: nothing of it ran then.
                lock(&core.forced_report).get_or_insert_with(Report::default);
            }
            core.children_into(&mut stack);
            if new & TRIGGERED != 0 && is_empty(prev) {
                Core::drained(&core, &mut wakes);
            }
            wakes.reached(core, new);
        }
        if let (Some(shards), true) = (shards, bits & TRIGGERED != 0) {
            // Every trigger closes (idempotently): once it returns, the shards take
            // no guard and have given back what they held, so the drain can come.
            for _ in 0..shards.close() {
                Core::give_back(this, HOLD, &mut wakes);
            }
        }
        wakes.run();
        before.unwrap_or_default()
    }

    /// Forces `this` and every scope below it. Returns what was running in them.
    pub(crate) fn force(this: &CoreRef, shards: Option<&Shards>) -> Outcome {
        // The report comes first, stored in each scope before its FORCED bit is
        // set; then the bits, with a fresh walk that also reaches new scopes.
        let report = Core::snapshot(this, shards, true);
        Core::raise(this, ANNOUNCED | TRIGGERED | FORCED, shards);
        Outcome::from_report(report)
    }

    /// What runs in `this`'s subtree now. With `store`, each scope not yet forced
    /// keeps its own subtree's part as its forced report.
    pub(crate) fn snapshot(this: &CoreRef, shards: Option<&Shards>, store: bool) -> Report {
        // Pre-order: every scope comes after its parent, so the reverse order
        // folds each subtree into its parent once it is complete.
        let mut nodes: Vec<(CoreRef, Option<usize>, Report)> = Vec::new();
        let mut stack = vec![(this.clone(), None)];
        let mut children = Vec::new();
        // Bounded by the number of scopes.
        while let Some((core, parent)) = stack.pop() {
            let index = nodes.len();
            core.children_into(&mut children);
            stack.extend(children.drain(..).map(|child| (child, Some(index))));
            let mut own = lock(&core.registry).snapshot();
            own.remaining = watchers(core.word()) as usize;
            if index == 0 {
                own.remaining += shards.map_or(0, Shards::count);
            }
            nodes.push((core, parent, own));
        }
        for index in (1..nodes.len()).rev() {
            let part = std::mem::take(&mut nodes[index].2);
            if store {
                nodes[index].0.store_forced_report(&part);
            }
            if let Some(parent) = nodes[index].1 {
                nodes[parent].2.absorb(part);
            }
        }
        let (core, _, mut report) = nodes.swap_remove(0);
        report.sort();
        if store {
            core.store_forced_report(&report);
        }
        report
    }

    fn store_forced_report(&self, report: &Report) {
        if self.word() & FORCED == 0 {
            let mut sorted = report.clone();
            sorted.sort();
            lock(&self.forced_report).get_or_insert(sorted);
        }
    }

    /// How the drain ended, as far as it has: forced with the report stored at the
    /// force, or drained.
    pub(crate) fn outcome(&self) -> Outcome {
        if self.word() & FORCED == 0 {
            return Outcome::Drained;
        }
        Outcome::from_report(lock(&self.forced_report).clone().unwrap_or_default())
    }

    /// The watchers counted in `this`'s subtree (plus `shards`, the root's).
    pub(crate) fn subtree_watchers(this: &CoreRef, shards: Option<&Shards>) -> usize {
        let mut total = shards.map_or(0, Shards::count);
        let mut stack = vec![this.clone()];
        // Bounded by the number of scopes.
        while let Some(core) = stack.pop() {
            total += watchers(core.word()) as usize;
            core.children_into(&mut stack);
        }
        total
    }

    /// Pushes this scope's live children.
    fn children_into(&self, out: &mut Vec<CoreRef>) {
        let children = lock(&self.children);
        out.extend(
            children
                .iter()
                .filter_map(|(_, c)| c.upgrade().map(CoreRef)),
        );
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

    /// Leaves the parent: out of its list, and its hold given back if still held.
    /// Returns the parent.
    fn detach(&mut self) -> Option<CoreRef> {
        let link = self.parent.take()?;
        let key = link.key.load(Ordering::Relaxed);
        if key != NO_KEY {
            lock(&link.core.children).try_remove(key);
        }
        if link.held.swap(false, Ordering::AcqRel) {
            Core::release(&link.core, HOLD);
        }
        Some(link.core)
    }
}

/// Whether giving back `amount` from `prev` drains: triggered, and that was all.
fn drains(prev: u64, amount: u64) -> bool {
    prev & TRIGGERED != 0 && prev - (prev & (WATCHER - 1)) == amount
}

impl Drop for Core {
    fn drop(&mut self) {
        // A long chain of scopes is freed in a loop, not by recursive drops: each
        // parent that this was the last owner of is detached here in turn.
        #[cfg(wind_down_loom)]
        self.drops.fetch_add(0, Ordering::Acquire);
        let mut next = self.detach();
        while let Some(parent) = next {
            next = parent.into_last().and_then(|mut core| core.detach());
        }
    }
}

#[cfg(test)]
impl Core {
    pub(crate) fn listeners(&self) -> usize {
        self.events.iter().map(Event::total_listeners).sum()
    }
}
