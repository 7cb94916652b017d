//! Unit tests that need crate internals.

use crate::Shutdown;
use futures_lite::future;

#[test]
fn waiter_churn_leaves_no_listener_behind() {
    let shutdown = Shutdown::new();
    let rounds = if cfg!(miri) { 100 } else { 100_000 };
    for _ in 0..rounds {
        let mut wait = shutdown.triggered();
        assert!(future::block_on(future::poll_once(&mut wait)).is_none());
        let mut drained = shutdown.drained();
        assert!(future::block_on(future::poll_once(&mut drained)).is_none());
    }
    assert_eq!(shutdown.listeners(), 0);
}

#[test]
fn pending_waiter_holds_exactly_one_listener_until_dropped() {
    let shutdown = Shutdown::new();
    let mut wait = shutdown.triggered();
    assert_eq!(
        shutdown.listeners(),
        0,
        "not registered before it must park"
    );
    assert!(future::block_on(future::poll_once(&mut wait)).is_none());
    assert_eq!(shutdown.listeners(), 1);
    drop(wait);
    assert_eq!(shutdown.listeners(), 0);
}
