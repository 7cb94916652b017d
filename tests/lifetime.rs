//! Guards keep their coordinator alive without an `Arc` each: the first
//! acquisition takes one shared reference that the drain gives back. These cases
//! outlive every handle and waiter on purpose; under miri they also check that
//! nothing is freed early and nothing leaks.

use std::thread;

use futures_lite::future::{block_on, poll_once};
use wind_down::{Outcome, Phase, Refused, Shutdown};

#[test]
fn guards_outlive_every_handle() {
    let (guard, mut triggered, mut drained) = {
        let shutdown = Shutdown::new();
        let guard = shutdown.guard().unwrap();
        (guard, shutdown.triggered(), shutdown.drained())
    };
    // The last handle is gone: the coordinator is triggered, the guard still counts
    // (no handle is left to ask `report().remaining`: the drained waiter tells).
    assert_eq!(block_on(poll_once(&mut triggered)), Some(()));
    assert_eq!(block_on(poll_once(&mut drained)), None, "the guard counts");
    let clone = guard.clone();
    drop(guard);
    assert_eq!(block_on(poll_once(&mut drained)), None, "the clone counts");
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
        assert_eq!(shutdown.report().remaining, 1);
        drop(g);
        assert_eq!(shutdown.report().remaining, 0);
    }
    let last = shutdown.guard().unwrap();
    shutdown.trigger();
    assert_eq!(shutdown.phase(), Phase::Triggered, "a guard is alive");
    let dropper = thread::spawn(move || drop(last));
    let outcome = block_on(shutdown.drain_until(futures_lite::future::pending::<()>()));
    dropper.join().unwrap();
    assert_eq!(outcome, Outcome::Drained);
    assert_eq!(shutdown.phase(), Phase::Drained);
    assert_eq!(
        shutdown.guard().err(),
        Some(Refused::Drained),
        "drained for good"
    );
}
