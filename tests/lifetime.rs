//! Guards keep their coordinator alive without an `Arc` each: the first
//! acquisition takes one shared reference that the drain gives back. These cases
//! outlive every handle and waiter on purpose; under miri they also check that
//! nothing is freed early and nothing leaks.

use std::thread;

use futures_lite::future::block_on;
use wind_down::{Outcome, Shutdown};

#[test]
fn guards_outlive_every_handle() {
    let (guard, drained) = {
        let shutdown = Shutdown::new();
        (shutdown.guard().unwrap(), shutdown.drained())
    };
    // The last handle is gone: the coordinator is triggered, the guard still counts.
    assert_eq!(guard.watchers(), 1);
    let clone = guard.clone();
    drop(guard);
    assert_eq!(clone.watchers(), 1);
    let waiter = thread::spawn(move || block_on(drained));
    drop(clone);
    waiter.join().unwrap();
}

#[test]
fn the_last_guard_alone_frees_the_coordinator() {
    let guard = Shutdown::new().guard().unwrap();
    let clones: Vec<_> = (0..8).map(|_| guard.clone()).collect();
    drop(guard);
    let threads: Vec<_> = clones
        .into_iter()
        .map(|g| thread::spawn(move || drop(g)))
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_coordinator_reused_across_idle_periods_stays_consistent() {
    let shutdown = Shutdown::new();
    for _ in 0..100 {
        let g = shutdown.guard().unwrap();
        assert_eq!(shutdown.watchers(), 1);
        drop(g);
        assert_eq!(shutdown.watchers(), 0);
    }
    let last = shutdown.guard().unwrap();
    shutdown.trigger();
    assert!(!shutdown.is_drained(), "a guard is alive");
    let dropper = thread::spawn(move || drop(last));
    let outcome = block_on(shutdown.drain_until(futures_lite::future::pending::<()>()));
    dropper.join().unwrap();
    assert_eq!(outcome, Outcome::Drained);
    assert!(shutdown.guard().is_err(), "drained for good");
}
