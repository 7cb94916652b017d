//! loom models of the coordinator's races (run with `--cfg wind_down_loom`).
//!
//! Under that cfg the crate's atomics, locks and its notification primitive are
//! loom's, so every interleaving of the state-word protocol is explored. A lost
//! wake-up shows up as a loom deadlock; a broken guarantee as a failed assertion.

#![cfg(wind_down_loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use wind_down::{Outcome, Shutdown};

/// A waiter on `triggered()` against `trigger()` on another thread: the waiter
/// always wakes.
#[test]
fn waiting_vs_trigger() {
    loom::model(|| {
        let shutdown = Shutdown::new();
        let waiter = {
            let triggered = shutdown.triggered();
            thread::spawn(move || loom::future::block_on(triggered))
        };
        assert!(shutdown.trigger());
        waiter.join().unwrap();
    });
}

/// The last guard dropped, the trigger and a `drained()` waiter, on three threads:
/// the waiter completes in every interleaving, and only once both happened.
#[test]
fn last_guard_drop_vs_trigger_vs_drain_waiter() {
    loom::model(|| {
        let shutdown = Shutdown::new();
        let guard = shutdown.guard().unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let waiter = {
            let drained = shutdown.drained();
            let (probe, dropped) = (shutdown.guard(), dropped.clone());
            drop(probe); // a guard taken and released before: no effect on the result
            thread::spawn(move || {
                loom::future::block_on(drained);
                assert!(
                    dropped.load(Ordering::SeqCst),
                    "drained before the last guard went"
                );
            })
        };
        let dropper = {
            let dropped = dropped.clone();
            thread::spawn(move || {
                dropped.store(true, Ordering::SeqCst);
                drop(guard);
            })
        };
        shutdown.trigger();
        dropper.join().unwrap();
        waiter.join().unwrap();
        assert!(shutdown.is_drained());
        assert_eq!(shutdown.watchers(), 0);
    });
}

/// A new guard races the final emptiness check: if `guard()` succeeds, `drained()`
/// cannot resolve while that guard lives; if it fails, the drain had completed.
#[test]
fn new_guard_vs_final_emptiness_check() {
    loom::model(|| {
        let shutdown = Shutdown::new();
        let last = shutdown.guard().unwrap();
        shutdown.trigger();
        let alive = Arc::new(AtomicBool::new(false));
        let creator = {
            let (shutdown, alive) = (shutdown.clone(), alive.clone());
            thread::spawn(move || {
                if let Ok(guard) = shutdown.guard() {
                    alive.store(true, Ordering::SeqCst);
                    thread::yield_now();
                    alive.store(false, Ordering::SeqCst);
                    drop(guard);
                    true
                } else {
                    assert!(shutdown.is_drained(), "refused while not drained");
                    false
                }
            })
        };
        let waiter = {
            let (drained, alive) = (shutdown.drained(), alive.clone());
            thread::spawn(move || {
                loom::future::block_on(drained);
                assert!(!alive.load(Ordering::SeqCst), "drained while a guard lives");
            })
        };
        drop(last);
        creator.join().unwrap();
        waiter.join().unwrap();
        assert!(shutdown.is_drained());
    });
}

/// A child scope created while the parent is triggered on another thread: the child
/// is always triggered, and the parent drains only after the child does.
#[test]
fn child_creation_vs_parent_trigger() {
    loom::model(|| {
        let parent = Shutdown::new();
        let trigger = {
            let parent = parent.clone();
            thread::spawn(move || {
                parent.trigger();
            })
        };
        let child = parent.child();
        let work = child.guard();
        trigger.join().unwrap();
        loom::future::block_on(child.triggered());
        match work {
            Ok(guard) => {
                assert!(!parent.is_drained(), "parent drained before its child");
                drop(guard);
            }
            // The child may only refuse if it was already drained.
            Err(_) => assert!(child.is_drained()),
        }
        loom::future::block_on(parent.drained());
        assert!(child.is_drained());
    });
}

/// A deadline-forced drain while a watched future completes on another thread:
/// the outcome reports either a clean drain or exactly one forced watcher.
#[test]
fn force_vs_completion() {
    loom::model(|| {
        let shutdown = Shutdown::new();
        let guard = shutdown.guard().unwrap();
        shutdown.trigger();
        let finisher = thread::spawn(move || drop(guard));
        let outcome = loom::future::block_on(shutdown.drain_until(std::future::ready(())));
        finisher.join().unwrap();
        assert!(
            matches!(outcome, Outcome::Drained | Outcome::Forced { remaining: 1 }),
            "{outcome:?}"
        );
        assert!(shutdown.is_drained());
    });
}
