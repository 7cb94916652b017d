//! Going away while still accepting: from the announcement on (the drain delay),
//! every connection of the HTTP layer is told to leave, while the listener keeps
//! accepting and nothing is refused (see [`Server::go_away_during_delay`]).
//!
//! Invariants:
//! - an HTTP/1 response completed after the announcement (after the trigger, with
//!   the option off) says `connection: close` (but for an upgrade's
//!   `101 Switching Protocols`),
//!   so hyper closes its connection once it is written; a request in flight or
//!   still to come on a connection is served, never cut;
//! - an HTTP/2 connection (known from its first request, or from an HTTP/2-only
//!   builder) is asked for a graceful shutdown (GOAWAY, open streams finish) once,
//!   on its first poll after both the announcement and its first request;
//! - an idle HTTP/1 connection is left open until the trigger: closing it at the
//!   announcement would race a request already on its way;
//! - at the trigger, an HTTP/1 connection (or one whose protocol is not known
//!   yet) that was active within [`CLOSE_GRACE`] (accepted, or a response
//!   produced, with no request in flight since; or a request in flight) is asked
//!   to close only once a request starts on it or after `CLOSE_GRACE`, whichever
//!   is first: a request whose bytes were already sent (sitting in the socket, or
//!   in the runtime's not yet processed readiness events) is read and answered
//!   with `connection: close` instead of being lost with the connection
//!   (hyper#3792). One idle for longer than `CLOSE_GRACE` is asked at once: its
//!   client is not in the middle of a request-response loop, and a thousand idle
//!   keep-alive connections must not hold the exit. An HTTP/2 connection is asked
//!   at once (GOAWAY tells its client which streams were not taken);
//! - a connection that has not started a request by the trigger is closed once
//!   the pre-request grace passed without one (a silent peer, half-sent headers,
//!   an incomplete HTTP/2 preface), instead of holding the drain to its deadline;
//!   a connection that ends after the trigger without any request (closed this
//!   way or by hyper) ends with [`NoRequest`], reported as a connection error of
//!   the peer's;
//! - with the option off, nothing changes until the trigger;
//! - every request carries the server's [`Shutdown`] and its
//!   [`Connection`] in its extensions, for handlers (guards, upgraded sessions,
//!   [`EndAtTrigger`](super::EndAtTrigger)).
//!
//! [`Server::go_away_during_delay`]: crate::Server::go_away_during_delay

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::service::Service;
use hyper::{Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;

use super::connection::Connection;
use super::runtime::BoxError;
use crate::coordinator::Shutdown;
use crate::coordinator::phase::Phase;
use crate::coordinator::wait::Wait;
use crate::coordinator::watch::GracefulConnection;

/// How long, from the trigger, an HTTP/1 connection active within this time may
/// take to start a request whose bytes were already sent before it is asked to
/// close (200 ms); one idle for longer is asked at once.
pub const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long, from the trigger, a connection that has not started a request yet
/// (a silent peer, half-sent headers, an HTTP/2 preface without SETTINGS) may
/// take to start one before it is closed, by default (1 s).
pub const DEFAULT_PRE_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// A sleep on the server's runtime.
pub(crate) type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The server's runtime's timer.
pub(crate) type Timer = Arc<dyn Fn(Duration) -> Sleep + Send + Sync>;

/// What every connection of one server shares about leaving: the server's
/// coordinator, whether to go away at its announcement, the runtime's timer, and
/// the pre-request grace.
#[derive(Clone)]
pub(crate) struct Departure {
    pub(crate) shutdown: Shutdown,
    pub(crate) go_away: bool,
    pub(crate) timer: Timer,
    pub(crate) pre_request_grace: Duration,
}

/// One connection's part in going away: its server's [`Departure`], whether the
/// connection speaks HTTP/2, how many requests it started and answered, and when
/// it was last active.
pub(crate) struct Leave {
    departure: Departure,
    http2: AtomicBool,
    requests: AtomicU64,
    /// HTTP/1 requests whose response was produced.
    answered: AtomicU64,
    accepted_at: Instant,
    /// When it was last active (accepted, or a response produced), in
    /// nanoseconds after `accepted_at`; written before `answered` counts.
    last_active: AtomicU64,
}

/// Why a connection was closed at shutdown: it had not started a request (a
/// silent peer, half-sent headers, an incomplete HTTP/2 preface). Reported like
/// a connection error that the peer caused.
#[derive(Debug)]
pub(crate) struct NoRequest;

impl std::fmt::Display for NoRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed at shutdown before its first request")
    }
}

impl std::error::Error for NoRequest {}

impl Leave {
    /// A connection's part; `http2` when its builder serves HTTP/2 only.
    pub(crate) fn new(departure: &Departure, http2: bool) -> Arc<Leave> {
        Arc::new(Leave {
            departure: departure.clone(),
            http2: AtomicBool::new(http2),
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            accepted_at: Instant::now(),
            last_active: AtomicU64::new(0),
        })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// Notes an HTTP/1 response produced now.
    fn answered(&self) {
        let now = u64::try_from(self.accepted_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_active.store(now, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Release);
    }

    /// How long the connection has been idle: since it was accepted or since its
    /// last response, with no request in flight; `None` while one is.
    fn idle_for(&self) -> Option<Duration> {
        let answered = self.answered.load(Ordering::Acquire);
        if answered < self.requests() {
            return None;
        }
        let since = Duration::from_nanos(self.last_active.load(Ordering::Relaxed));
        Some(self.accepted_at.elapsed().saturating_sub(since))
    }

    /// Whether an HTTP/1 response must say `connection: close`: once draining,
    /// and from the announcement on when going away.
    fn closing(&self) -> bool {
        let phase = self.departure.shutdown.phase();
        phase >= Phase::Draining || (self.departure.go_away && phase >= Phase::Announced)
    }
}

/// A service served by [`Server`](crate::Server)'s HTTP layer: each request
/// carries the server's coordinator in its extensions, and HTTP/1 responses say
/// `connection: close` once shutdown is announced (if going away).
pub(crate) struct GoAway<S> {
    inner: S,
    leave: Arc<Leave>,
}

impl<S> GoAway<S> {
    pub(crate) fn new(inner: S, leave: Arc<Leave>) -> Self {
        GoAway { inner, leave }
    }
}

impl<S, B> Service<Request<Incoming>> for GoAway<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = GoAwayFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let extensions = request.extensions_mut();
        let shutdown = &self.leave.departure.shutdown;
        extensions.insert(shutdown.clone());
        extensions.insert(Connection::current(shutdown));
        self.leave.requests.fetch_add(1, Ordering::AcqRel);
        let http1 = request.version() < Version::HTTP_2;
        if !http1 {
            self.leave.http2.store(true, Ordering::Relaxed);
        }
        GoAwayFuture {
            inner: self.inner.call(request),
            leave: http1.then(|| self.leave.clone()),
        }
    }
}

pin_project! {
    /// The response future of a service served by [`Server`](crate::Server)'s HTTP
    /// layer: the service's own, whose HTTP/1 response says `connection: close`
    /// when it completes after shutdown was announced (see
    /// [`Server::go_away_during_delay`](crate::Server::go_away_during_delay)).
    pub(crate) struct GoAwayFuture<F> {
        #[pin]
        inner: F,
        // For an HTTP/1 request only.
        leave: Option<Arc<Leave>>,
    }
}

impl<F, B, E> Future for GoAwayFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx));
        if let Some(leave) = this.leave.as_ref() {
            leave.answered();
        }
        if let (Ok(response), Some(leave)) = (&mut response, this.leave.as_ref()) {
            // An upgrade (a WebSocket) keeps its `connection: upgrade`.
            if leave.closing() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(response)
    }
}

pin_project! {
    /// A connection of the HTTP layer that, once it is known to be HTTP/2, sends
    /// GOAWAY at the announcement.
    pub(crate) struct Leaving<C> {
        #[pin]
        conn: C,
        leave: Arc<Leave>,
        announced: Option<Wait>,
        // Graceful shutdown was asked (here or by the trigger).
        asked: bool,
        // The trigger's ask, held back for `CLOSE_GRACE`: the grace timer and the
        // requests started by the trigger.
        held_back: Option<(Sleep, u64)>,
        // Triggered (the trigger's ask came).
        triggered: bool,
        // Triggered before its first request: closed when this sleep ends.
        no_request_by: Option<Sleep>,
    }
}

impl<C> Leaving<C> {
    pub(crate) fn new(conn: C, leave: Arc<Leave>) -> Self {
        let departure = &leave.departure;
        let announced = departure.go_away.then(|| departure.shutdown.announced());
        Leaving {
            conn,
            leave,
            announced,
            asked: false,
            held_back: None,
            triggered: false,
            no_request_by: None,
        }
    }
}

impl<C, E> Future for Leaving<C>
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // At most two rounds: the second after asking for a graceful shutdown.
        loop {
            if let Poll::Ready(output) = this.conn.as_mut().poll(cx) {
                // Ended at shutdown before its first request: reported as such.
                if *this.triggered && this.leave.requests() == 0 {
                    return Poll::Ready(Err(Box::new(NoRequest)));
                }
                return Poll::Ready(output.map_err(Into::into));
            }
            if let Some(no_request_by) = this.no_request_by.as_mut() {
                if this.leave.requests() > 0 {
                    *this.no_request_by = None;
                } else if no_request_by.as_mut().poll(cx).is_ready() {
                    // Dropped with this future: half-sent headers and the like,
                    // which hyper's graceful close waits for.
                    return Poll::Ready(Err(Box::new(NoRequest)));
                }
            }
            if let Some((grace, requests)) = this.held_back.as_mut() {
                // A request started (during the poll above), or the grace is over.
                let started = this.leave.requests.load(Ordering::Acquire) > *requests;
                if started || grace.as_mut().poll(cx).is_ready() {
                    *this.held_back = None;
                    this.conn.as_mut().graceful_shutdown();
                    continue;
                }
                return Poll::Pending;
            }
            // Its first request (made during the poll above) tells HTTP/2.
            if *this.asked || !this.leave.http2.load(Ordering::Relaxed) {
                return Poll::Pending;
            }
            let Some(announced) = this.announced.as_mut() else {
                return Poll::Pending;
            };
            if Pin::new(announced).poll(cx).is_pending() {
                return Poll::Pending;
            }
            *this.asked = true;
            this.conn.as_mut().graceful_shutdown();
        }
    }
}

impl<C, E> GracefulConnection for Leaving<C>
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    /// The trigger's ask: at once for HTTP/2 and for an HTTP/1 connection idle
    /// for longer than [`CLOSE_GRACE`], held back for another HTTP/1 one; and the
    /// pre-request grace for a connection without a request yet (see the
    /// module's invariants; the next poll follows at once).
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.project();
        *this.triggered = true;
        let departure = &this.leave.departure;
        let requests = this.leave.requests();
        if requests == 0 && this.no_request_by.is_none() {
            *this.no_request_by = Some((departure.timer)(departure.pre_request_grace));
        }
        if *this.asked {
            return;
        }
        *this.asked = true;
        let long_idle = this
            .leave
            .idle_for()
            .is_some_and(|idle| idle >= CLOSE_GRACE);
        if long_idle || this.leave.http2.load(Ordering::Relaxed) {
            this.conn.graceful_shutdown();
        } else {
            *this.held_back = Some(((departure.timer)(CLOSE_GRACE), requests));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The trigger's ask on an HTTP/1 connection, poll by poll, with a timer that
    //! never fires: whether it is asked at once or held back depends only on how
    //! long the connection has been idle.

    use std::future::{Future, pending};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::{CLOSE_GRACE, Departure, Leave, Leaving};
    use crate::coordinator::Shutdown;
    use crate::coordinator::watch::GracefulConnection;

    /// A connection that only records whether it was asked to close.
    struct Asked(Arc<AtomicBool>);

    impl Future for Asked {
        type Output = Result<(), std::io::Error>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Pending
        }
    }

    impl GracefulConnection for Asked {
        fn graceful_shutdown(self: Pin<&mut Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn leave() -> Arc<Leave> {
        let departure = Departure {
            shutdown: Shutdown::new(),
            go_away: false,
            timer: Arc::new(|_| Box::pin(pending())),
            pre_request_grace: Duration::from_secs(1),
        };
        Leave::new(&departure, false)
    }

    /// Asks `leave`'s connection to close as the trigger does; returns whether
    /// the connection itself was asked at once.
    fn trigger(leave: Arc<Leave>) -> bool {
        let asked = Arc::new(AtomicBool::new(false));
        let mut conn = Box::pin(Leaving::new(Asked(asked.clone()), leave));
        conn.as_mut().graceful_shutdown();
        let waker = std::task::Waker::noop();
        assert!(
            conn.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        asked.load(Ordering::SeqCst)
    }

    #[test]
    fn a_fresh_connection_is_held_back() {
        assert!(!trigger(leave()), "asked within CLOSE_GRACE of its accept");
    }

    #[test]
    fn a_connection_answered_just_now_is_held_back() {
        let leave = leave();
        std::thread::sleep(CLOSE_GRACE + Duration::from_millis(50));
        leave.requests.fetch_add(1, Ordering::AcqRel);
        leave.answered();
        assert!(!trigger(leave), "asked right after its response");
    }

    #[test]
    fn a_connection_idle_for_longer_than_the_grace_is_asked_at_once() {
        let leave = leave();
        leave.requests.fetch_add(1, Ordering::AcqRel);
        leave.answered();
        std::thread::sleep(CLOSE_GRACE + Duration::from_millis(50));
        assert!(trigger(leave), "held back although long idle");
    }

    #[test]
    fn a_request_in_flight_is_held_back_however_old() {
        let leave = leave();
        leave.requests.fetch_add(1, Ordering::AcqRel);
        std::thread::sleep(CLOSE_GRACE + Duration::from_millis(50));
        assert!(!trigger(leave), "asked with a request in flight");
    }
}
