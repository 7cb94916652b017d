//! Unit tests that need crate internals.

use crate::coordinator::Shutdown;
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

/// A finished `run_until_triggered` kept alive holds no listener and is not woken
/// by a later trigger.
#[test]
fn finished_until_lets_go_of_the_coordinator() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let shutdown = Shutdown::new();
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut ready = false;
    let mut until = std::pin::pin!(shutdown.run_until_triggered(future::poll_fn(|_| {
        // Pending on the first poll, done on the second.
        std::mem::replace(&mut ready, true)
            .then_some(7)
            .map_or(Poll::Pending, Poll::Ready)
    })));
    assert!(until.as_mut().poll(&mut cx).is_pending());
    assert_eq!(shutdown.listeners(), 1, "parked on the trigger");
    assert_eq!(until.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
    assert_eq!(
        shutdown.listeners(),
        0,
        "a finished `Until` keeps no listener"
    );
    shutdown.trigger();
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        0,
        "woken after it finished"
    );
}
