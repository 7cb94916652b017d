//! [`Http`]: the connection builder for the protocols the features enable:
//! hyper-util's `auto` builder, detecting HTTP/1 or HTTP/2 per connection
//! (features `http1` and `http2`, which `hyper` enables); hyper's HTTP/1 builder
//! (feature `http1` alone); or its HTTP/2 builder (feature `http2` alone). HTTP/2
//! streams are spawned through a [`StreamExec`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::Service;
use hyper::{Request, Response};
use pin_project_lite::pin_project;

use super::go_away::{Departure, GoAway, Leave, Leaving};
#[cfg(feature = "http1")]
use super::runtime::HEADER_READ_TIMEOUT;
use super::runtime::{BoxError, HyperRuntime};
#[cfg(feature = "http2")]
use super::streams::{BoxTask, StreamExec};
use crate::coordinator::watch::GracefulConnection;

/// The connection builder, set up for a runtime; clone it freely.
#[derive(Clone, Debug)]
pub struct Http<E> {
    #[cfg(all(feature = "http1", feature = "http2"))]
    builder: hyper_util::server::conn::auto::Builder<StreamExec<E>>,
    /// Serves HTTP/2 only (ALPN chose it).
    #[cfg(all(feature = "http1", feature = "http2"))]
    http2_only: bool,
    #[cfg(all(feature = "http1", not(feature = "http2")))]
    builder: hyper::server::conn::http1::Builder,
    #[cfg(all(feature = "http1", not(feature = "http2")))]
    _executor: std::marker::PhantomData<E>,
    #[cfg(all(feature = "http2", not(feature = "http1")))]
    builder: hyper::server::conn::http2::Builder<StreamExec<E>>,
}

#[cfg(all(feature = "http1", feature = "http2"))]
impl<E: Clone> Http<E> {
    /// A builder serving HTTP/1 and HTTP/2 (detected per connection) with
    /// `runtime`'s executor and timer, and [`HEADER_READ_TIMEOUT`] for HTTP/1.
    pub fn new<R: HyperRuntime<Executor = E>>(runtime: &R) -> Self {
        let mut builder =
            hyper_util::server::conn::auto::Builder::new(StreamExec(runtime.hyper_executor()));
        builder
            .http1()
            .timer(runtime.hyper_timer())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(runtime.hyper_timer());
        Http {
            builder,
            http2_only: false,
        }
    }

    /// This builder, serving HTTP/2 only (ALPN chose it).
    #[cfg(feature = "tls")]
    pub(crate) fn http2_only(self) -> Self {
        Http {
            builder: self.builder.http2_only(),
            http2_only: true,
        }
    }

    /// This builder, serving HTTP/1 only (ALPN chose it).
    #[cfg(feature = "tls")]
    pub(crate) fn http1_only(self) -> Self {
        Http {
            builder: self.builder.http1_only(),
            http2_only: false,
        }
    }

    /// The underlying builder (hyper-util's `auto::Builder` with both protocols;
    /// hyper's `http1::Builder` or `http2::Builder` with one protocol), to tune it:
    /// header limits, HTTP/2 keep-alive, `http2_only`.
    pub fn builder_mut(&mut self) -> &mut hyper_util::server::conn::auto::Builder<StreamExec<E>> {
        &mut self.builder
    }

    /// Serves `service` on `io`, with HTTP upgrades enabled. The returned connection
    /// owns a copy of the builder's settings.
    pub fn serve_connection<I, S, B>(
        &self,
        io: I,
        service: S,
    ) -> hyper_util::server::conn::auto::UpgradeableConnection<'static, I, S, StreamExec<E>>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
        S::Future: Send + 'static,
        B: Send,
        B::Data: Send,
        E: hyper::rt::Executor<BoxTask> + Clone + Send + Sync + 'static,
    {
        self.builder
            .serve_connection_with_upgrades(io, service)
            .into_owned()
    }

    /// Serves `service` on `io` for [`Server`](crate::Server), leaving as
    /// `departure` says (see `go_away.rs`).
    pub(crate) fn serve_for_server<I, S, B>(
        &self,
        io: I,
        service: S,
        departure: &Departure,
    ) -> Leaving<
        hyper_util::server::conn::auto::UpgradeableConnection<'static, I, GoAway<S>, StreamExec<E>>,
    >
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
        S::Future: Send + 'static,
        B: Send,
        B::Data: Send,
        E: hyper::rt::Executor<BoxTask> + Clone + Send + Sync + 'static,
    {
        let leave = Leave::new(departure, self.http2_only);
        let service = GoAway::new(service, leave.clone());
        Leaving::new(self.serve_connection(io, service), leave)
    }
}

#[cfg(all(feature = "http1", not(feature = "http2")))]
impl<E: Clone> Http<E> {
    /// A builder serving HTTP/1 with `runtime`'s timer and [`HEADER_READ_TIMEOUT`].
    pub fn new<R: HyperRuntime<Executor = E>>(runtime: &R) -> Self {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(runtime.hyper_timer())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        Http {
            builder,
            _executor: std::marker::PhantomData,
        }
    }

    /// The underlying builder, to tune it (header limits, keep-alive).
    pub fn builder_mut(&mut self) -> &mut hyper::server::conn::http1::Builder {
        &mut self.builder
    }

    /// Serves `service` on `io`, with HTTP upgrades enabled.
    pub fn serve_connection<I, S, B>(
        &self,
        io: I,
        service: S,
    ) -> hyper::server::conn::http1::UpgradeableConnection<I, S>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
    {
        self.builder.serve_connection(io, service).with_upgrades()
    }

    /// Serves `service` on `io` for [`Server`](crate::Server), leaving as
    /// `departure` says (see `go_away.rs`).
    pub(crate) fn serve_for_server<I, S, B>(
        &self,
        io: I,
        service: S,
        departure: &Departure,
    ) -> Leaving<hyper::server::conn::http1::UpgradeableConnection<I, GoAway<S>>>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
    {
        let leave = Leave::new(departure, false);
        let service = GoAway::new(service, leave.clone());
        Leaving::new(self.serve_connection(io, service), leave)
    }
}

#[cfg(all(feature = "http2", not(feature = "http1")))]
impl<E: Clone> Http<E> {
    /// A builder serving HTTP/2 with `runtime`'s executor and timer.
    pub fn new<R: HyperRuntime<Executor = E>>(runtime: &R) -> Self {
        let mut builder =
            hyper::server::conn::http2::Builder::new(StreamExec(runtime.hyper_executor()));
        builder.timer(runtime.hyper_timer());
        Http { builder }
    }

    /// The underlying builder, to tune it (stream limits, keep-alive).
    pub fn builder_mut(&mut self) -> &mut hyper::server::conn::http2::Builder<StreamExec<E>> {
        &mut self.builder
    }

    /// Serves `service` on `io`.
    pub fn serve_connection<I, S, B>(
        &self,
        io: I,
        service: S,
    ) -> hyper::server::conn::http2::Connection<I, S, StreamExec<E>>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
        S::Future: Send + 'static,
        B: Send,
        B::Data: Send,
        E: hyper::rt::Executor<BoxTask> + Clone + Send + Sync + 'static,
    {
        self.builder.serve_connection(io, service)
    }

    /// Serves `service` on `io` for [`Server`](crate::Server), leaving as
    /// `departure` says (see `go_away.rs`).
    pub(crate) fn serve_for_server<I, S, B>(
        &self,
        io: I,
        service: S,
        departure: &Departure,
    ) -> Leaving<hyper::server::conn::http2::Connection<I, GoAway<S>, StreamExec<E>>>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
        S::Future: Send + 'static,
        B: Send,
        B::Data: Send,
        E: hyper::rt::Executor<BoxTask> + Clone + Send + Sync + 'static,
    {
        // Every connection is HTTP/2.
        let leave = Leave::new(departure, true);
        let service = GoAway::new(service, leave.clone());
        Leaving::new(self.serve_connection(io, service), leave)
    }
}

/// A served connection, its types erased.
pub(crate) trait Served: Future<Output = Result<(), BoxError>> + Send {
    fn ask_graceful(self: Pin<&mut Self>);
}

impl<C> Served for C
where
    C: GracefulConnection<Output = Result<(), BoxError>> + Send,
{
    fn ask_graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

pin_project! {
    /// A served connection whose error is a boxed error, whatever the builder.
    pub(crate) struct ErrInto<C> {
        #[pin]
        conn: C,
    }
}

impl<C> ErrInto<C> {
    pub(crate) fn new(conn: C) -> Self {
        ErrInto { conn }
    }
}

impl<C, E> Future for ErrInto<C>
where
    C: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().conn.poll(cx)).map_err(Into::into))
    }
}

impl<C, E> GracefulConnection for ErrInto<C>
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.project().conn.graceful_shutdown();
    }
}
