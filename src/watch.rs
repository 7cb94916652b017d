//! [`GracefulConnection`] and [`Watched`]: running a connection under a coordinator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::Cancelled;
use crate::guard::Guard;
use crate::inner::{FORCED, Inner, Latch, TRIGGERED};
use crate::report::Registration;
use crate::waiters::Slot;

/// A future, typically a connection, that can be asked to finish gracefully.
///
/// This trait is open: implement it for your own protocol. With the `hyper` feature
/// it is implemented for hyper's HTTP/1 and HTTP/2 server connections and
/// hyper-util's `auto` connection.
///
/// [`Shutdown::watch`](crate::Shutdown::watch) calls
/// [`graceful_shutdown`](GracefulConnection::graceful_shutdown) at most once, then
/// keeps polling the future until it completes or the drain is forced.
pub trait GracefulConnection: Future {
    /// Starts a graceful close: stop taking new work (for HTTP: new requests), finish
    /// what is in flight, then complete.
    ///
    /// It may be called before the future was ever polled.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C: GracefulConnection + ?Sized> GracefulConnection for Pin<Box<C>> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.get_mut().as_mut().graceful_shutdown()
    }
}

pin_project! {
    /// A plain future seen as a connection whose graceful close does nothing: it
    /// runs until done or forced. Returned inside [`Shutdown::track`](crate::Shutdown::track).
    #[derive(Debug)]
    pub struct Tracked<F> {
        #[pin]
        future: F,
    }
}

impl<F> Tracked<F> {
    pub(crate) fn new(future: F) -> Self {
        Tracked { future }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

impl<F: Future> GracefulConnection for Tracked<F> {
    fn graceful_shutdown(self: Pin<&mut Self>) {}
}

pin_project! {
    /// A connection run under a coordinator, returned by
    /// [`Shutdown::watch`](crate::Shutdown::watch).
    ///
    /// It counts as one watcher from its creation until it completes or is dropped.
    /// Resolves to:
    /// - `Ok(output)` when the connection completes, gracefully or not;
    /// - `Err(Cancelled::Forced)` when the drain is forced first: the connection is
    ///   dropped in place, inside this poll, before the watcher count is released;
    /// - `Err(Cancelled::Drained)` (or `Forced`) when the coordinator was already
    ///   drained (or forced) at creation: the connection is dropped unpolled.
    ///
    /// Once the coordinator is triggered, the next poll calls
    /// [`GracefulConnection::graceful_shutdown`] exactly once, before polling the
    /// connection, also when the trigger came before the first poll.
    #[must_use = "futures do nothing unless polled"]
    pub struct Watched<C> {
        // Declared before `guard`: the connection is dropped first.
        #[pin]
        conn: Option<C>,
        // Removed from the registry after the connection is gone, before the count.
        registration: Option<Registration>,
        guard: Result<Guard, Cancelled>,
        // Registered with the trigger's waiters until graceful shutdown was asked,
        // then with the force's.
        slot: Slot,
        asked_graceful: bool,
    }

    impl<C> PinnedDrop for Watched<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            unregister(this.guard, this.slot, *this.asked_graceful);
        }
    }
}

impl<C> Watched<C> {
    pub(crate) fn new(
        conn: C,
        guard: Result<Guard, Cancelled>,
        registration: Option<Registration>,
    ) -> Self {
        Watched {
            conn: Some(conn),
            registration,
            guard,
            slot: Slot::new(),
            asked_graceful: false,
        }
    }

    /// `true` once graceful shutdown was requested from the connection.
    pub fn is_shutting_down(&self) -> bool {
        self.asked_graceful
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = Result<C::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Err(refused) = &*this.guard {
            let refused = *refused;
            assert!(this.conn.is_some(), "`Watched` polled after completion");
            this.conn.set(None);
            return Poll::Ready(Err(refused));
        }
        let mut poll_conn = true;
        // Bounded: each round returns, or consumes a phase change (trigger, force: at
        // most two), or finds a phase's waiters woken, which the next round sees as
        // that phase's bit (at most two).
        loop {
            let state = inner_of(this.guard).state();
            if state & FORCED != 0 {
                return Poll::Ready(Err(finish(
                    this.conn,
                    this.registration,
                    this.guard,
                    this.slot,
                    *this.asked_graceful,
                )));
            }
            if state & TRIGGERED != 0 && !*this.asked_graceful {
                unregister(this.guard, this.slot, false);
                *this.asked_graceful = true;
                match this.conn.as_mut().as_pin_mut() {
                    Some(conn) => conn.graceful_shutdown(),
                    None => panic!("`Watched` polled after completion"),
                }
                poll_conn = true;
            }
            if poll_conn {
                poll_conn = false;
                let conn = match this.conn.as_mut().as_pin_mut() {
                    Some(conn) => conn,
                    None => panic!("`Watched` polled after completion"),
                };
                if let Poll::Ready(out) = conn.poll(cx) {
                    finish(
                        this.conn,
                        this.registration,
                        this.guard,
                        this.slot,
                        *this.asked_graceful,
                    );
                    return Poll::Ready(Ok(out));
                }
            }
            let waiters = inner_of(this.guard).waiters(latch(*this.asked_graceful));
            if waiters.register(this.slot, cx.waker()) {
                return Poll::Pending;
            }
        }
    }
}

/// The phase a running watched future waits for: the trigger, then the force.
fn latch(asked_graceful: bool) -> Latch {
    if asked_graceful {
        Latch::Forced
    } else {
        Latch::Triggered
    }
}

/// Gives back the waiter slot, if the guard (and so the coordinator) is held.
fn unregister(guard: &Result<Guard, Cancelled>, slot: &mut Slot, asked_graceful: bool) {
    if let Ok(guard) = guard {
        guard
            .inner()
            .waiters(latch(asked_graceful))
            .unregister(slot);
    }
}

/// The coordinator of a running watched future (its guard is held while it runs).
fn inner_of(guard: &Result<Guard, Cancelled>) -> &Inner {
    match guard {
        Ok(guard) => guard.inner(),
        Err(_) => unreachable!("a running `Watched` holds its guard"),
    }
}

/// Drops the connection, then the guard, and reports `Forced` for the caller that
/// needs it.
fn finish<C>(
    mut conn: Pin<&mut Option<C>>,
    registration: &mut Option<Registration>,
    guard: &mut Result<Guard, Cancelled>,
    slot: &mut Slot,
    asked_graceful: bool,
) -> Cancelled {
    conn.set(None);
    *registration = None;
    unregister(guard, slot, asked_graceful);
    *guard = Err(Cancelled::Forced);
    Cancelled::Forced
}

impl<C> fmt::Debug for Watched<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("running", &self.conn.is_some())
            .field("asked_graceful", &self.asked_graceful)
            .finish()
    }
}
