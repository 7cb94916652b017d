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

use hyper::rt::{Read, Write};
use pin_project_lite::pin_project;

use super::go_away::{CLOSE_GRACE, GoAwayService, NoRequest};
use super::protocols::{Detect, Http1Connection, Http2Connection, Protocol, Rewind};
use super::report::report;
use super::request::Connection;
use super::runtime::{BoxError, HyperRuntime};
use super::service::ConnectionService;
use super::shared::Shared;
use crate::coordinator::wait::Wait;
use crate::coordinator::watch::GracefulConnection;
use crate::server::runtime::Runtime;

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
    A: fmt::Debug,
    H: Future<Output = io::Result<(I, Option<Vec<u8>>)>>,
    I: Read + Write + Unpin + Send + 'static,
    Mk: Future<Output = Result<S, BoxError>>,
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

    /// Drives the state to hyper's connection, and that to its end.
    fn poll_state(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            // Bounded: each round moves the state forward, at most four times.
            let this = self.as_mut().project();
            let next = match this.state.project() {
                StateProj::Handshake { handshake, making } => {
                    let (io, alpn) = std::task::ready!(handshake.poll(cx))?;
                    let making = making.take().expect("made once");
                    let protocol = this.shared.protocols.choose(alpn.as_deref());
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
                        Some(protocol) => {
                            State::serve(this.shared, protocol, Rewind::new(io), service)
                        }
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
                    State::serve(this.shared, protocol, io, service)
                }
                StateProj::Http1 { conn } => return conn.poll(cx).map_err(Into::into),
                StateProj::Http2 { conn } => return conn.as_mut().poll(cx).map_err(Into::into),
                StateProj::Ended => return Poll::Ready(Ok(())),
            };
            self.as_mut().project().state.set(next);
            // hyper's connection asked before it existed: asked once it does.
            let this = self.as_mut().project();
            if matches!(this.closing, Closing::Asked) {
                this.state.ask();
            }
        }
    }

    /// Whether hyper serves the connection yet, and whether over HTTP/2.
    fn serving(&self) -> (bool, bool) {
        let http2 = matches!(self.state, State::Http2 { .. });
        (http2 || matches!(self.state, State::Http1 { .. }), http2)
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

impl<R, H, Mk, I, S> State<R, H, Mk, I, S>
where
    R: HyperRuntime,
    I: Read + Write + Unpin + Send + 'static,
    S: ConnectionService,
{
    /// hyper's connection of `protocol` on `io`, serving `service`.
    fn serve<A>(
        shared: &Shared<R, A>,
        protocol: Protocol,
        io: Rewind<I>,
        service: GoAwayService<S>,
    ) -> Self {
        let protocols = &shared.protocols;
        match protocol {
            #[cfg(feature = "http1")]
            Protocol::Http1 => State::Http1 {
                conn: protocols
                    .http1
                    .serve_connection(io, service)
                    .with_upgrades(),
            },
            #[cfg(feature = "http2")]
            Protocol::Http2 => State::Http2 {
                conn: Box::pin(protocols.http2.serve_connection(io, service)),
            },
        }
    }

    /// Asks hyper's connection, if there is one yet, to close gracefully.
    fn ask(self: Pin<&mut Self>) {
        match self.project() {
            StateProj::Http1 { conn } => conn.graceful_shutdown(),
            StateProj::Http2 { conn } => conn.as_mut().graceful_shutdown(),
            _ => {}
        }
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
            let (serving, http2) = self.serving();
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
                    this.state.ask();
                }
                Closing::Open {
                    announced: Some(announced),
                } if http2 && this.connection.requests() > 0 => {
                    if Pin::new(announced).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *this.closing = Closing::WentAway;
                    this.state.ask();
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
    /// The trigger's ask, and the pre-request grace for a connection without a
    /// request yet, by `go_away.rs`'s rules (the next poll follows at once).
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        let serving_or_detecting =
            !matches!(self.state, State::Handshake { .. } | State::Making { .. });
        let (_, http2) = self.serving();
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
            this.state.ask();
        } else {
            let grace = Box::pin(runtime.sleep(CLOSE_GRACE));
            *this.closing = Closing::HeldBack { grace, requests };
        }
    }
}

#[cfg(all(test, feature = "tokio", feature = "http1"))]
mod tests;
