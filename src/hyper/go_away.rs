//! Going away: the service's part ([`GoAwayService`]), which counts a
//! connection's requests and answers in its [`Connection`] and says
//! `connection: close`. The connection's part, asking hyper to close, is in
//! `connection.rs`; the rules of both:
//!
//! Invariants:
//! - an HTTP/1 response completed after the announcement (after the trigger, with
//!   going away off) says `connection: close` (but for an upgrade's
//!   `101 Switching Protocols`), so hyper closes its connection once it is
//!   written; a request in flight or still to come on a connection is served,
//!   never cut;
//! - an HTTP/2 connection is asked for a graceful shutdown (GOAWAY, open streams
//!   finish) once, on its first poll after both the announcement and its first
//!   request (asked earlier, hyper would drop it mid-handshake);
//! - an idle HTTP/1 connection is left open until the trigger: closing it at the
//!   announcement would race a request already on its way;
//! - at the trigger, an HTTP/1 connection (or one whose protocol is not known
//!   yet) that was active within [`CLOSE_GRACE`] (accepted, or a response
//!   produced, with no request in flight since; or a request in flight; or in
//!   its TLS handshake) is asked to close only once a request starts on it or
//!   after `CLOSE_GRACE`, whichever is first: a request whose bytes were already
//!   sent (sitting in the socket, or in the runtime's not yet processed readiness
//!   events) is read and answered with `connection: close` instead of being lost
//!   with the connection (hyper#3792). One idle for longer than `CLOSE_GRACE` is
//!   asked at once: its client is not in the middle of a request-response loop,
//!   and a thousand idle keep-alive connections must not hold the exit. An HTTP/2
//!   connection is asked at once (GOAWAY tells its client which streams were not
//!   taken);
//! - a connection asked to close before it serves HTTP (in its TLS handshake,
//!   while its service is made, or before its first bytes told its protocol)
//!   ends then;
//! - a connection that has not started a request by the trigger is closed once
//!   the pre-request grace passed without one (a silent peer, half-sent headers,
//!   an incomplete HTTP/2 preface), instead of holding the drain to its deadline;
//!   a connection that ends after the trigger without any request (closed this
//!   way or by hyper) ends with [`NoRequest`], reported as a connection error of
//!   the peer's;
//! - with going away off, nothing changes until the trigger;
//! - every request carries its [`Connection`] in its extensions, with the
//!   server's [`Shutdown`](crate::Shutdown), for handlers (guards, upgraded
//!   sessions, [`EndAtTrigger`](super::EndAtTrigger)); one reference count of
//!   the connection's own is taken per request, none of the server's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::service::Service;
use hyper::{Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;

use super::request::Connection;

/// How long, from the trigger, an HTTP/1 connection active within this time may
/// take to start a request whose bytes were already sent before it is asked to
/// close (200 ms); one idle for longer is asked at once.
pub const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long, from the trigger, a connection that has not started a request yet
/// (a silent peer, half-sent headers, an HTTP/2 preface without SETTINGS) may
/// take to start one before it is closed, by default (1 s).
pub const DEFAULT_PRE_REQUEST_GRACE: Duration = Duration::from_secs(1);

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

/// A service served by the HTTP layer: each request carries the server's
/// coordinator and its connection in its extensions, and HTTP/1 responses say
/// `connection: close` once shutdown is announced (if going away).
pub(crate) struct GoAwayService<S> {
    inner: S,
    connection: Connection,
}

impl<S> GoAwayService<S> {
    pub(crate) fn new(inner: S, connection: Connection) -> Self {
        GoAwayService { inner, connection }
    }
}

impl<S, B> Service<Request<Incoming>> for GoAwayService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = GoAwayFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.connection.started();
        request.extensions_mut().insert(self.connection.clone());
        let http1 = request.version() < Version::HTTP_2;
        GoAwayFuture {
            inner: self.inner.call(request),
            connection: http1.then(|| self.connection.clone()),
        }
    }
}

pin_project! {
    /// The response future of a [`GoAwayService`]: the service's own, whose
    /// HTTP/1 response says `connection: close` when it completes after shutdown
    /// was announced (if going away; after the trigger, in any case).
    pub(crate) struct GoAwayFuture<F> {
        #[pin]
        inner: F,
        // For an HTTP/1 request only.
        connection: Option<Connection>,
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
        if let Some(connection) = this.connection.as_ref() {
            connection.answered();
        }
        if let (Ok(response), Some(connection)) = (&mut response, this.connection.as_ref()) {
            // An upgrade (a WebSocket) keeps its `connection: upgrade`.
            if connection.closing() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(response)
    }
}
