//! [`GracefulConnection`] and [`Watched`]: running a connection under a coordinator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::guard::Guard;
use super::outcome::{Refused, Stopped};
use super::phase::Phase;
use super::report::WatcherKind;
use super::state::{FORCED, TRIGGERED};
use super::wake::Listening;

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

/// A watched future's count: held while it runs.
enum Admission {
    Counted(Guard),
    Refused(Refused),
    Released,
}

pin_project! {
    /// A connection run under a coordinator, returned by
    /// [`Shutdown::watch`](crate::Shutdown::watch) and
    /// [`Shutdown::track`](crate::Shutdown::track).
    ///
    /// It counts as one watcher from its creation until it completes or is dropped.
    /// Resolves to:
    /// - `Ok(output)` when the connection completes, gracefully or not;
    /// - `Err(Stopped::Forced)` when the drain is forced first: the connection is
    ///   dropped in place, inside this poll, before the watcher count is released;
    /// - `Err(Stopped::Refused(..))` when the coordinator had already drained (or
    ///   was forced) at creation: the connection is dropped unpolled.
    ///
    /// Once the coordinator is triggered, the next poll calls
    /// [`GracefulConnection::graceful_shutdown`] exactly once, before polling the
    /// connection, also when the trigger came before the first poll.
    #[must_use = "futures do nothing unless polled"]
    pub struct Watched<C> {
        // Declared first: dropped before the count.
        #[pin]
        conn: Option<C>,
        admission: Admission,
        kind: WatcherKind,
        // Listens for the trigger until graceful shutdown was asked, then for the force.
        listener: Option<Listening>,
        asked_graceful: bool,
    }
}

impl<C> Watched<C> {
    pub(crate) fn new(conn: C, guard: Result<Guard, Refused>, kind: WatcherKind) -> Self {
        Watched {
            conn: Some(conn),
            admission: match guard {
                Ok(guard) => Admission::Counted(guard),
                Err(refused) => Admission::Refused(refused),
            },
            kind,
            listener: None,
            asked_graceful: false,
        }
    }

    /// Names this connection or task in [reports](crate::Report) while it runs (see
    /// [`Guard::with_label`]); the [`Server`](crate::Server) labels its connections
    /// with their peer address. Costs one allocation.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        if let Admission::Counted(guard) = self.admission {
            self.admission = Admission::Counted(guard.labelled(self.kind, label.into()));
        }
        self
    }

    /// `true` once graceful shutdown was requested from the connection.
    pub fn is_shutting_down(&self) -> bool {
        self.asked_graceful
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = Result<C::Output, Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        assert!(this.conn.is_some(), "`Watched` polled after completion");
        let word = match &*this.admission {
            Admission::Counted(guard) => guard.core().word(),
            Admission::Refused(refused) => {
                let refused = *refused;
                this.conn.set(None);
                return Poll::Ready(Err(Stopped::Refused(refused)));
            }
            Admission::Released => unreachable!("released only with the connection"),
        };
        let mut word = word;
        let mut poll_conn = true;
        // Bounded: each round returns, or consumes a phase change (trigger, force:
        // at most two), or a notification, which comes only after its bit is set.
        loop {
            if word & FORCED != 0 {
                this.conn.set(None);
                *this.admission = Admission::Released;
                *this.listener = None;
                return Poll::Ready(Err(Stopped::Forced));
            }
            if word & TRIGGERED != 0 && !*this.asked_graceful {
                *this.asked_graceful = true;
                *this.listener = None;
                if let Some(conn) = this.conn.as_mut().as_pin_mut() {
                    conn.graceful_shutdown();
                }
                poll_conn = true;
            }
            if std::mem::take(&mut poll_conn) {
                if let Some(conn) = this.conn.as_mut().as_pin_mut() {
                    if let Poll::Ready(out) = conn.poll(cx) {
                        this.conn.set(None);
                        *this.admission = Admission::Released;
                        *this.listener = None;
                        return Poll::Ready(Ok(out));
                    }
                }
            }
            let Admission::Counted(guard) = &*this.admission else {
                unreachable!("a running `Watched` holds its count");
            };
            let core = guard.core();
            match this.listener {
                None => {
                    let next = if *this.asked_graceful {
                        Phase::Forced
                    } else {
                        Phase::Triggered
                    };
                    *this.listener = Some(Listening::new(core.event(next)));
                }
                Some(listener) => match listener.poll(cx) {
                    Poll::Ready(()) => *this.listener = None,
                    Poll::Pending => return Poll::Pending,
                },
            }
            word = core.word();
        }
    }
}

impl<C> fmt::Debug for Watched<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("running", &self.conn.is_some())
            .field("asked_graceful", &self.asked_graceful)
            .finish()
    }
}
