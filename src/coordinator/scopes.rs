//! The tree of scopes: creating a child, carrying a transition (announce,
//! trigger, force) down the tree, the forced report, and leaving the parent.
//!
//! Invariants:
//! - A transition is carried to every scope below with an explicit stack, never by
//!   recursion, and every state change of a transition (bits, shards, the parent's
//!   hold, the report) is complete before any waker runs (`wake.rs`).
//! - A child scope holds one *hold* on its parent from its creation until it
//!   drains (or is dropped), so the parent drains after it. A hold is not a
//!   watcher: counts and reports name real watchers only.
//! - A child is triggered, announced and forced with its parent: the parent sets
//!   its bits before it walks its children under the children lock, and a child
//!   reads the parent's bits after it entered that list.
//! - A scope's memory is freed when its last handle, guard and wait are gone; its
//!   entry in the parent's list goes with it (a slab: O(1) to add and remove), and
//!   a chain of scopes is freed in a loop.
//! - A forced scope's report is stored before its FORCED bit is set, so whoever
//!   sees the bit finds it.
//! - A root's shards close before its bits are set, so a guard asked for after a
//!   bit was seen is counted on the state word, which refuses once forced.

use super::core::{Core, CoreRef, NO_KEY, ParentLink};
use super::outcome::Outcome;
use super::report::Report;
use super::shard::Shards;
use super::state::{ANNOUNCED, FORCED, HOLD, TRIGGERED, is_empty, watchers};
use super::sync::{AtomicBool, AtomicUsize, Ordering, lock, shared};
use super::wake::Wakes;

impl Core {
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

    /// Sets `bits` on `this` and every scope below it that lacks them; with
    /// TRIGGERED, also closes `shards` (the root's). Returns `this`'s word before.
    pub(crate) fn raise(this: &CoreRef, bits: u64, shards: Option<&Shards>) -> u64 {
        let mut wakes = Wakes::default();
        // The shards close before any bit is set: a guard asked for by a thread
        // that saw a bit falls back to the state word, which refuses once forced
        // (closing after would let a shard admit a guard after the force). Their
        // holds are released after the bits, as each shard's departure.
        let departures = match (shards, bits & TRIGGERED != 0) {
            (Some(shards), true) => shards.close(),
            _ => 0,
        };
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
        // Every trigger closes (idempotently): once it returns, the shards take no
        // guard and have released what they held, so the drain can come.
        for _ in 0..departures {
            Core::release_with(this, HOLD, &mut wakes);
        }
        wakes.run();
        before.unwrap_or_default()
    }

    /// Forces `this` and every scope below it. Returns what was running in them.
    pub(crate) fn force(this: &CoreRef, shards: Option<&Shards>) -> Outcome {
        // The report comes first, stored in each scope before its FORCED bit is
        // set; then the bits, with a fresh walk that also reaches new scopes.
        let report = Core::fold_reports(this, shards, Core::store_forced_report);
        Core::raise(this, ANNOUNCED | TRIGGERED | FORCED, shards);
        Outcome::from_report(report)
    }

    /// What runs in `this`'s subtree now (plus `shards`, the root's).
    pub(crate) fn report(this: &CoreRef, shards: Option<&Shards>) -> Report {
        Core::fold_reports(this, shards, |_, _| {})
    }

    /// What runs in `this`'s subtree now; `each` sees every scope with its own
    /// subtree's report, children before parents.
    fn fold_reports(
        this: &CoreRef,
        shards: Option<&Shards>,
        mut each: impl FnMut(&Core, &Report),
    ) -> Report {
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
            each(&nodes[index].0, &part);
            if let Some(parent) = nodes[index].1 {
                nodes[parent].2.absorb(part);
            }
        }
        let (core, _, mut report) = nodes.swap_remove(0);
        report.sort();
        each(&core, &report);
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

    /// Pushes this scope's live children.
    fn children_into(&self, out: &mut Vec<CoreRef>) {
        let children = lock(&self.children);
        out.extend(
            children
                .iter()
                .filter_map(|(_, c)| c.upgrade().map(CoreRef)),
        );
    }

    /// Leaves the parent: out of its list, and its hold released if still held.
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
