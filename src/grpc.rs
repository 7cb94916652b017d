//! gRPC with tonic (feature `grpc`): a tonic server whose drain always ends.
//!
//! Serve tonic's `Routes` (`tonic::service::Routes`, or any tower service)
//! through the HTTP layer's one entry, [`Http::serve`](crate::hyper::Http::serve),
//! with [`EndAtTriggerLayer`] around it:
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run(routes: tonic::service::Routes) -> std::io::Result<()> {
//! use tower::ServiceBuilder;
//! use wind_down::{Server, grpc::EndAtTriggerLayer, hyper::Http, tokio::{Signals, Tokio}};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
//! let service = ServiceBuilder::new().layer(EndAtTriggerLayer).service(routes);
//! let server = Server::new(Tokio::current(), listener).signals(Signals::new()?);
//! Http::new(server).serve(service).await?;
//! # Ok(()) }
//! ```
//!
//! Any combination of HTTP features works: with `hyper` (or `http1` and
//! `http2`) the protocol is detected per connection, which tonic clients (HTTP/2
//! with prior knowledge) pass; with `http2` alone the server speaks HTTP/2 only.
//! On smol, tonic's services and tonic-health run without tokio's runtime
//! (tonic-health uses tokio's runtime-free `sync` channels); handlers that sleep
//! or do I/O use smol's timers and sockets there.
//!
//! What a client sees, as gRPC's own guide asks: at the announcement (the first
//! signal) the health service says NOT_SERVING ([`not_serving_at_announcement`])
//! and the HTTP/2 connection gets GOAWAY; during the drain delay RPCs are still
//! served; at the trigger, streams end with UNAVAILABLE, which clients retry
//! elsewhere, while unary RPCs in flight finish; at the grace period's end what is
//! left is forced and named in the report.
//!
//! Invariants:
//! - a gRPC response (content type `application/grpc`, `application/grpc+proto`,
//!   ...) through [`EndAtTriggerLayer`] ends once the server's coordinator is
//!   triggered and its body has no frame ready: with trailers `grpc-status: 14`
//!   (UNAVAILABLE) and `grpc-message: server shutting down`. A frame that is
//!   ready is sent first, and a body that ends by itself (a unary response, a
//!   stream that finished) keeps its own status; other responses are untouched;
//! - a stream through [`end_at_trigger`] yields `Status::unavailable` at the
//!   trigger and ends, even when its own items are always ready;
//! - nothing here keeps a connection open: a client that stops reading a stream
//!   (flow control full) is not polled, so it is forced at the grace period's end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response};
use pin_project_lite::pin_project;

use crate::coordinator::Shutdown;
use crate::coordinator::wait::Wait;
use crate::hyper::Connection;

/// The message of the UNAVAILABLE status a stream ends with at the trigger.
pub const SHUTTING_DOWN: &str = "server shutting down";

/// A tower layer that ends every gRPC response stream at the trigger with
/// UNAVAILABLE (see the [module docs](self)). It finds the server's
/// [`Shutdown`] through the [`Connection`] in each request's extensions, where
/// the HTTP layer puts it; a request without one passes through untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndAtTriggerLayer;

impl<S> tower_layer::Layer<S> for EndAtTriggerLayer {
    type Service = EndAtTriggerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndAtTriggerService { inner }
    }
}

/// The service of [`EndAtTriggerLayer`].
#[derive(Clone, Debug)]
pub struct EndAtTriggerService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for EndAtTriggerService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<EndAtTriggerBody<ResBody>>;
    type Error = S::Error;
    type Future = EndAtTriggerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let connection = request.extensions().get::<Connection>();
        let shutdown = connection.map(|connection| connection.shutdown().clone());
        EndAtTriggerFuture {
            inner: self.inner.call(request),
            shutdown,
        }
    }
}

pin_project! {
    /// The response future of [`EndAtTriggerService`].
    pub struct EndAtTriggerFuture<F> {
        #[pin]
        inner: F,
        shutdown: Option<Shutdown>,
    }
}

impl<F, B, E> Future for EndAtTriggerFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<EndAtTriggerBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let grpc = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"application/grpc"));
        let triggered = match this.shutdown.take() {
            Some(shutdown) if grpc => Some(shutdown.triggered()),
            _ => None,
        };
        Poll::Ready(Ok(response.map(|inner| EndAtTriggerBody {
            inner,
            state: match triggered {
                Some(triggered) => State::Watching(triggered),
                None => State::Passing,
            },
        })))
    }
}

/// Where an [`EndAtTriggerBody`] is.
#[derive(Debug)]
enum State {
    /// Not a gRPC response: every frame passes, nothing is added.
    Passing,
    /// A gRPC response: ends with UNAVAILABLE at the trigger.
    Watching(Wait),
    /// Ended: by its own end or trailers, or at the trigger.
    Ended,
}

pin_project! {
    /// A response body of [`EndAtTriggerService`]: a gRPC one ends at the
    /// trigger with UNAVAILABLE once it has no frame ready.
    #[derive(Debug)]
    pub struct EndAtTriggerBody<B> {
        #[pin]
        inner: B,
        state: State,
    }
}

impl<B: Body> Body for EndAtTriggerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if let State::Ended = this.state {
            return Poll::Ready(None);
        }
        // The body's own frames first: a unary response's message and status, a
        // stream's item already produced.
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    *this.state = State::Ended;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                *this.state = State::Ended;
                Poll::Ready(other)
            }
            Poll::Pending => {
                let State::Watching(triggered) = this.state else {
                    return Poll::Pending;
                };
                if Pin::new(triggered).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.state = State::Ended;
                Poll::Ready(Some(Ok(Frame::trailers(unavailable()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Ended) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Passing => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// The trailers of an UNAVAILABLE status with [`SHUTTING_DOWN`].
fn unavailable() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    let code = tonic::Code::Unavailable as i32;
    trailers.insert(tonic::Status::GRPC_STATUS, HeaderValue::from(code));
    trailers.insert("grpc-message", HeaderValue::from_static(SHUTTING_DOWN));
    trailers
}

/// Ends `stream`, a server-streaming handler's response, at `shutdown`'s trigger:
/// it yields `Status::unavailable(`[`SHUTTING_DOWN`]`)` and ends, also when its
/// own items are always ready. Use the server's [`Shutdown`], which the request's
/// [`Connection`] in its extensions has:
/// `request.extensions().get::<Connection>().map(Connection::shutdown)`.
pub fn end_at_trigger<S, T>(stream: S, shutdown: &Shutdown) -> EndAtTriggerStream<S>
where
    S: Stream<Item = Result<T, tonic::Status>>,
{
    EndAtTriggerStream {
        inner: stream,
        triggered: Some(shutdown.triggered()),
    }
}

pin_project! {
    /// A stream that ends with UNAVAILABLE at the trigger: see [`end_at_trigger`].
    #[derive(Debug)]
    pub struct EndAtTriggerStream<S> {
        #[pin]
        inner: S,
        // `None` once ended.
        triggered: Option<Wait>,
    }
}

impl<S, T> Stream for EndAtTriggerStream<S>
where
    S: Stream<Item = Result<T, tonic::Status>>,
{
    type Item = Result<T, tonic::Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let Some(triggered) = this.triggered.as_mut() else {
            return Poll::Ready(None);
        };
        if Pin::new(triggered).poll(cx).is_ready() {
            *this.triggered = None;
            return Poll::Ready(Some(Err(tonic::Status::unavailable(SHUTTING_DOWN))));
        }
        let item = ready!(this.inner.poll_next(cx));
        if item.is_none() {
            *this.triggered = None;
        }
        Poll::Ready(item)
    }
}

/// Marks every service in `services` (`""` is the server as a whole) NOT_SERVING
/// in tonic-health once `shutdown` is announced (the first signal, at the start
/// of the [drain delay](crate::Server::drain_delay)), so that load balancers and
/// clients watching health stop sending before the listener closes. Spawn it
/// beside the server; it resolves after the update, or when `shutdown` is done
/// without an announcement.
pub async fn not_serving_at_announcement<I, N>(
    shutdown: Shutdown,
    reporter: tonic_health::server::HealthReporter,
    services: I,
) where
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    shutdown.announced().await;
    for service in services {
        reporter
            .set_service_status(service, tonic_health::ServingStatus::NotServing)
            .await;
    }
}

#[cfg(test)]
mod tests;
