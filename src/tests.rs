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

/// A resolved `Until` panics when polled again, with a message that says so, as
/// its docs promise (both ways it can resolve).
#[test]
fn until_polled_after_completion_panics_with_a_message() {
    for triggered in [false, true] {
        let shutdown = Shutdown::new();
        if triggered {
            shutdown.trigger();
        }
        let mut until = Box::pin(shutdown.run_until_triggered(async { 7 }));
        let first = future::block_on(until.as_mut());
        assert_eq!(first, if triggered { None } else { Some(7) });
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future::block_on(future::poll_once(until.as_mut()))
        }));
        let message = again.expect_err("polled after completion must panic");
        let message = message.downcast_ref::<&str>().copied().unwrap_or_default();
        assert_eq!(message, "`Until` polled after completion");
    }
}
