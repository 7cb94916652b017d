//! [`HttpConnection`]: one connection of the HTTP layer, from its accept to its
//! end, as one future with explicit states:
//!
//! ```text
//! Handshake ─▶ Making ─▶ [Detecting] ─▶ Http1 | Http2 ─▶ Ended
//! ```
//!
//! - `Handshake`: the transport's (TLS, bounded by its timeout; plain TCP is
//!   ready at once);
//! - `Making`: the connection's service is made (a tower make-service; other
//!   services are ready at once);
//! - `Detecting`: with both protocols and no ALPN choice, its first bytes tell
//!   HTTP/1 from HTTP/2 (`protocols.rs`);
//! - `Http1`, `Http2`: hyper serves it;
//! - `Ended`: its error, if any, was reported.
//!
//! Beside the state, [`Closing`] says whether it was asked to close, and why; the
//! rules are the invariants of `go_away.rs`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, Write};
use pin_project_lite::pin_project;

use super::go_away::{CLOSE_GRACE, GoAwayService, NoRequest};
use super::protocols::{Detect, Http1Connection, Http2Connection, Protocol, Protocols, Rewind};
use super::report::{ErrorHook, report};
use super::request::Connection;
use super::runtime::{BoxError, HyperRuntime};
use super::service::ConnectionService;
use crate::coordinator::Shutdown;
use crate::coordinator::wait::Wait;
use crate::coordinator::watch::GracefulConnection;
use crate::server::runtime::Runtime;

/// What every connection of one HTTP layer shares.
pub(crate) struct Shared<R, A> {
    pub(crate) runtime: R,
    pub(crate) protocols: Protocols<R>,
    pub(crate) shutdown: Shutdown,
    /// Whether connections go away at the announcement.
    pub(crate) go_away: bool,
    pub(crate) pre_request_grace: Duration,
    pub(crate) on_error: Option<ErrorHook<A>>,
}

type Sleep<R> = Pin<Box<<R as Runtime>::Sleep>>;

pin_project! {
    /// Where a connection is, from its accept to its end.
    #[project = StateProj]
    enum State<R, H, Mk, I, S>
    where
        S: ConnectionService,
    {
        Handshake {
            #[pin]
            handshake: H,
            making: Option<Mk>,
        },
        Making {
            #[pin]
            making: Mk,
            io: Option<(I, Option<Protocol>)>,
        },
        Detecting {
            #[pin]
            read: Detect<I>,
            service: Option<GoAwayService<S>>,
        },
        Http1 {
            #[pin]
            conn: Http1Connection<I, GoAwayService<S>>,
        },
        // Boxed: an h2 connection is twice the size of an HTTP/1 one, and every
        // connection's task would carry the larger size inline.
        Http2 {
            conn: Pin<Box<Http2Connection<R, I, GoAwayService<S>>>>,
        },
        Ended,
    }
}

/// Whether a connection was asked to close, and why.
enum Closing<R: Runtime> {
    /// Not asked. `announced` waits for the announcement when going away.
    Open { announced: Option<Wait> },
    /// Asked at the announcement (HTTP/2's GOAWAY); the trigger has not come.
    WentAway,
    /// The trigger came; its ask is held back until a request starts beyond
    /// `requests`, or `grace` ends.
    HeldBack { grace: Sleep<R>, requests: u64 },
    /// The trigger came, and the connection was asked.
    Asked,
}

pin_project! {
    /// One connection of the HTTP layer; see the module.
    pub(crate) struct HttpConnection<R, A, H, Mk, I, S>
    where
        R: Runtime,
        S: ConnectionService,
    {
        #[pin]
        state: State<R, H, Mk, I, S>,
        closing: Closing<R>,
        // The trigger came before the first request: closed when this ends.
        no_request_by: Option<Sleep<R>>,
        connection: Connection,
        shared: Arc<Shared<R, A>>,
        peer: A,
    }
}

impl<R, A, H, Mk, I, S> HttpConnection<R, A, H, Mk, I, S>
where
    R: HyperRuntime,
    S: ConnectionService,
{
    /// The connection from `peer`: `handshake`, then `making` its service.
    pub(crate) fn new(shared: Arc<Shared<R, A>>, peer: A, handshake: H, making: Mk) -> Self {
        let connection = Connection::new(shared.shutdown.clone(), shared.go_away);
        let announced = shared.go_away.then(|| shared.shutdown.announced());
        HttpConnection {
            state: State::Handshake {
                handshake,
                making: Some(making),
            },
            closing: Closing::Open { announced },
            no_request_by: None,
            connection,
            shared,
            peer,
        }
    }
}

impl<R, A, H, Mk, I, S> HttpConnection<R, A, H, Mk, I, S>
where
    R: HyperRuntime,
    A: fmt::Debug,
    H: Future<Output = io::Result<(I, Option<Vec<u8>>)>>,
    I: Read + Write + Unpin + Send + 'static,
    Mk: Future<Output = Result<S, BoxError>>,
    S: ConnectionService,
{
    /// Drives the state to hyper's connection, and that to its end.
    fn poll_state(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Bounded: each round moves the state forward, at most four times.
        loop {
            let this = self.as_mut().project();
            let next = match this.state.project() {
                StateProj::Handshake { handshake, making } => {
                    let (io, alpn) = std::task::ready!(handshake.poll(cx))?;
                    let making = making.take().expect("made once");
                    let protocol = Protocol::known(alpn.as_deref());
                    State::Making {
                        making,
                        io: Some((io, protocol)),
                    }
                }
                StateProj::Making { making, io } => {
                    let service = std::task::ready!(making.poll(cx))?;
                    let service = GoAwayService::new(service, this.connection.clone());
                    let (io, protocol) = io.take().expect("made once");
                    match protocol {
                        Some(protocol) => serve(this.shared, protocol, Rewind::new(io), service),
                        #[cfg(all(feature = "http1", feature = "http2"))]
                        None => State::Detecting {
                            read: Detect::new(io),
                            service: Some(service),
                        },
                        #[cfg(not(all(feature = "http1", feature = "http2")))]
                        None => unreachable!("one protocol is always known"),
                    }
                }
                StateProj::Detecting { read, service } => {
                    let (protocol, io) = std::task::ready!(read.poll(cx))?;
                    let service = service.take().expect("detected once");
                    serve(this.shared, protocol, io, service)
                }
                StateProj::Http1 { conn } => return conn.poll(cx).map_err(Into::into),
                StateProj::Http2 { conn } => return conn.as_mut().poll(cx).map_err(Into::into),
                StateProj::Ended => return Poll::Ready(Ok(())),
            };
            self.as_mut().project().state.set(next);
            // hyper's connection asked before it existed: asked once it does.
            let this = self.as_mut().project();
            if matches!(this.closing, Closing::Asked) {
                ask(this.state);
            }
        }
    }

    /// Whether hyper serves the connection yet.
    fn serving(&self) -> bool {
        matches!(self.state, State::Http1 { .. } | State::Http2 { .. })
    }

    fn http2(&self) -> bool {
        matches!(self.state, State::Http2 { .. })
    }

    /// Ends the connection with `result`, reporting its error.
    fn end(mut self: Pin<&mut Self>, result: Result<(), BoxError>) -> Poll<()> {
        let this = self.as_mut().project();
        let triggered = matches!(this.closing, Closing::HeldBack { .. } | Closing::Asked);
        // Ended at shutdown before its first request: reported as such.
        let result = if triggered && this.connection.requests() == 0 {
            Err(Box::new(NoRequest) as BoxError)
        } else {
            result
        };
        if let Err(error) = result {
            report(this.peer, &*error, this.shared.on_error.as_ref());
        }
        self.project().state.set(State::Ended);
        Poll::Ready(())
    }
}

/// hyper's connection of `protocol` on `io`, serving `service`.
fn serve<R, A, H, Mk, I, S>(
    shared: &Shared<R, A>,
    protocol: Protocol,
    io: Rewind<I>,
    service: GoAwayService<S>,
) -> State<R, H, Mk, I, S>
where
    R: HyperRuntime,
    I: Read + Write + Unpin + Send + 'static,
    S: ConnectionService,
{
    match protocol {
        #[cfg(feature = "http1")]
        Protocol::Http1 => State::Http1 {
            conn: shared
                .protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades(),
        },
        #[cfg(feature = "http2")]
        Protocol::Http2 => State::Http2 {
            conn: Box::pin(shared.protocols.http2.serve_connection(io, service)),
        },
    }
}

/// Asks hyper's connection, if there is one yet, to close gracefully.
fn ask<R, H, Mk, I, S>(state: Pin<&mut State<R, H, Mk, I, S>>)
where
    R: HyperRuntime,
    I: Read + Write + Unpin + Send + 'static,
    S: ConnectionService,
{
    match state.project() {
        StateProj::Http1 { conn } => conn.graceful_shutdown(),
        StateProj::Http2 { conn } => conn.as_mut().graceful_shutdown(),
        _ => {}
    }
}

impl<R, A, H, Mk, I, S> Future for HttpConnection<R, A, H, Mk, I, S>
where
    R: HyperRuntime,
    A: fmt::Debug,
    H: Future<Output = io::Result<(I, Option<Vec<u8>>)>>,
    I: Read + Write + Unpin + Send + 'static,
    Mk: Future<Output = Result<S, BoxError>>,
    S: ConnectionService,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // At most two rounds: the second after asking hyper to close.
        loop {
            if let Poll::Ready(result) = self.as_mut().poll_state(cx) {
                return self.end(result);
            }
            let serving = self.serving();
            let http2 = self.http2();
            let this = self.as_mut().project();
            if let Some(no_request_by) = this.no_request_by.as_mut() {
                if this.connection.requests() > 0 {
                    *this.no_request_by = None;
                } else if no_request_by.as_mut().poll(cx).is_ready() {
                    // Dropped with this future: half-sent headers and the like,
                    // which hyper's graceful close waits for.
                    return self.end(Err(Box::new(NoRequest)));
                }
            }
            match this.closing {
                // Asked before serving HTTP: nothing to finish.
                Closing::Asked if !serving => return self.end(Ok(())),
                Closing::HeldBack { grace, requests } => {
                    // A request started (during the poll above), or the grace is over.
                    let started = this.connection.requests() > *requests;
                    if !started && grace.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *this.closing = Closing::Asked;
                    ask(this.state);
                }
                Closing::Open {
                    announced: Some(announced),
                } if http2 && this.connection.requests() > 0 => {
                    if Pin::new(announced).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *this.closing = Closing::WentAway;
                    ask(this.state);
                }
                _ => return Poll::Pending,
            }
        }
    }
}

impl<R, A, H, Mk, I, S> GracefulConnection for HttpConnection<R, A, H, Mk, I, S>
where
    R: HyperRuntime,
    A: fmt::Debug,
    H: Future<Output = io::Result<(I, Option<Vec<u8>>)>>,
    I: Read + Write + Unpin + Send + 'static,
    Mk: Future<Output = Result<S, BoxError>>,
    S: ConnectionService,
{
    /// The trigger's ask: at once for HTTP/2 and for a connection idle for longer
    /// than [`CLOSE_GRACE`], held back for another; and the pre-request grace for
    /// a connection without a request yet (see `go_away.rs`; the next poll
    /// follows at once).
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        let serving_or_detecting =
            !matches!(self.state, State::Handshake { .. } | State::Making { .. });
        let http2 = self.http2();
        let this = self.as_mut().project();
        let runtime = &this.shared.runtime;
        let requests = this.connection.requests();
        if requests == 0 && this.no_request_by.is_none() {
            let grace = this.shared.pre_request_grace;
            *this.no_request_by = Some(Box::pin(runtime.sleep(grace)));
        }
        match this.closing {
            Closing::Open { .. } => {}
            // GOAWAY was sent at the announcement: nothing more to ask.
            Closing::WentAway => {
                *this.closing = Closing::Asked;
                return;
            }
            Closing::HeldBack { .. } | Closing::Asked => return,
        }
        let long_idle = serving_or_detecting
            && this
                .connection
                .idle_for()
                .is_some_and(|idle| idle >= CLOSE_GRACE);
        if long_idle || http2 {
            *this.closing = Closing::Asked;
            ask(this.state);
        } else {
            let grace = Box::pin(runtime.sleep(CLOSE_GRACE));
            *this.closing = Closing::HeldBack { grace, requests };
        }
    }
}

#[cfg(all(test, feature = "tokio", feature = "http1"))]
mod tests {
    //! The trigger's ask on a real hyper HTTP/1 connection over an in-memory
    //! stream, poll by poll, with timers that never fire: whether it is asked at
    //! once (an idle connection closes on the next poll) or held back (it stays)
    //! depends only on how long the connection has been idle.

    use std::convert::Infallible;
    use std::future::{Pending, Ready, pending, ready};
    use std::time::{Duration, Instant};

    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::hyper::go_away::CLOSE_GRACE;

    /// A runtime whose timers never fire, and that spawns nothing.
    #[derive(Clone)]
    struct Frozen;

    struct Never;

    impl Future for Never {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    impl hyper::rt::Sleep for Never {}

    impl hyper::rt::Timer for Frozen {
        fn sleep(&self, _: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(Never)
        }
        fn sleep_until(&self, _: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(Never)
        }
    }

    impl Runtime for Frozen {
        type Sleep = Pending<()>;
        fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
            unreachable!("HTTP/1 spawns nothing")
        }
        fn sleep(&self, _: Duration) -> Pending<()> {
            pending()
        }
    }

    impl HyperRuntime for Frozen {
        type Timer = Frozen;
        fn hyper_timer(&self) -> Frozen {
            Frozen
        }
    }

    /// Answers `/` at once; `/stuck` never.
    #[derive(Clone)]
    struct App;

    impl hyper::service::Service<Request<Incoming>> for App {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;
        fn call(&self, request: Request<Incoming>) -> Self::Future {
            if request.uri().path() == "/stuck" {
                return Box::pin(pending());
            }
            Box::pin(ready(Ok(Response::new("hello\n".to_string()))))
        }
    }

    type Io = TokioIo<DuplexStream>;
    type Handshake = Ready<io::Result<(Io, Option<Vec<u8>>)>>;
    type Making = Ready<Result<App, BoxError>>;
    type Conn = Pin<Box<HttpConnection<Frozen, &'static str, Handshake, Making, Io, App>>>;

    /// A connection, accepted now, its client's end, and its server's coordinator.
    fn accept() -> (Conn, DuplexStream, Shutdown) {
        let (client, server) = tokio::io::duplex(4096);
        let shutdown = Shutdown::new();
        let shared = Arc::new(Shared {
            runtime: Frozen,
            protocols: Protocols::new(&Frozen),
            shutdown: shutdown.clone(),
            go_away: false,
            pre_request_grace: Duration::from_secs(1),
            on_error: None,
        });
        let handshake = ready(Ok((TokioIo::new(server), Some(b"http/1.1".to_vec()))));
        let conn = HttpConnection::new(shared, "peer", handshake, ready(Ok(App)));
        (Box::pin(conn), client, shutdown)
    }

    fn poll(conn: &mut Conn) -> Poll<()> {
        let waker = std::task::Waker::noop();
        conn.as_mut().poll(&mut Context::from_waker(waker))
    }

    /// Sends a request for `path` and polls the connection until it took it.
    fn request(conn: &mut Conn, client: &mut DuplexStream, path: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        futures_lite::future::block_on(client.write_all(request.as_bytes())).unwrap();
        assert!(poll(conn).is_pending(), "closed on a request");
    }

    /// Reads the answer of `/`.
    fn answer(client: &mut DuplexStream) -> String {
        let mut bytes = [0u8; 1024];
        let n = futures_lite::future::block_on(client.read(&mut bytes)).unwrap();
        String::from_utf8_lossy(&bytes[..n]).into_owned()
    }

    /// Triggers as the watcher does, then polls: whether the connection ended.
    fn trigger(mut conn: Conn, shutdown: &Shutdown) -> bool {
        assert!(poll(&mut conn).is_pending(), "ended before the trigger");
        shutdown.trigger();
        conn.as_mut().graceful_shutdown();
        poll(&mut conn).is_ready()
    }

    fn later() {
        std::thread::sleep(CLOSE_GRACE + Duration::from_millis(50));
    }

    #[test]
    fn a_fresh_connection_is_held_back() {
        let (mut conn, _client, shutdown) = accept();
        assert!(poll(&mut conn).is_pending());
        assert!(
            !trigger(conn, &shutdown),
            "closed within CLOSE_GRACE of its accept"
        );
    }

    #[test]
    fn a_connection_answered_just_now_is_held_back() {
        let (mut conn, mut client, shutdown) = accept();
        later();
        request(&mut conn, &mut client, "/");
        assert!(answer(&mut client).ends_with("hello\n"));
        assert!(!trigger(conn, &shutdown), "closed right after its response");
    }

    #[test]
    fn a_connection_idle_for_longer_than_the_grace_is_closed_at_once() {
        let (mut conn, mut client, shutdown) = accept();
        request(&mut conn, &mut client, "/");
        assert!(answer(&mut client).ends_with("hello\n"));
        later();
        assert!(trigger(conn, &shutdown), "held back although long idle");
    }

    #[test]
    fn a_silent_connection_older_than_the_grace_is_closed_at_once() {
        let (mut conn, _client, shutdown) = accept();
        assert!(poll(&mut conn).is_pending());
        later();
        assert!(
            trigger(conn, &shutdown),
            "held back although silent since its accept"
        );
    }

    #[test]
    fn a_request_in_flight_is_held_back_however_old() {
        let (mut conn, mut client, shutdown) = accept();
        request(&mut conn, &mut client, "/stuck");
        later();
        assert!(!trigger(conn, &shutdown), "closed with a request in flight");
    }

    #[test]
    fn a_held_back_connection_is_asked_when_a_request_starts() {
        let (mut conn, mut client, shutdown) = accept();
        assert!(poll(&mut conn).is_pending());
        shutdown.trigger();
        conn.as_mut().graceful_shutdown();
        assert!(poll(&mut conn).is_pending(), "not held back");
        // The request already on its way: served, with `connection: close`,
        // and the connection closes after it, in the same poll.
        let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        futures_lite::future::block_on(client.write_all(request)).unwrap();
        assert!(
            poll(&mut conn).is_ready(),
            "kept open after its last answer"
        );
        let answer = answer(&mut client);
        assert!(answer.ends_with("hello\n"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
}
