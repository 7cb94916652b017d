//! What the HTTP layer serves: [`IntoHttpService`], implemented for the three
//! kinds of service an application has, told apart by a marker type from [`via`]
//! that the compiler infers:
//!
//! - a hyper [`Service`](hyper::service::Service) (`hyper::service::service_fn`):
//!   cloned for each connection;
//! - a tower service of requests (an axum `Router`, tonic's `Routes`): cloned
//!   for each connection;
//! - a tower make-service, called with each connection's peer address to make
//!   its service, as `axum::serve` does (an axum `Router`'s `into_make_service()`,
//!   or `into_make_service_with_connect_info::<SocketAddr>()` for `ConnectInfo`).

use std::error::Error as StdError;
use std::future::{Future, Ready, ready};
use std::pin::Pin;

use http_body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::service::TowerToHyperService;

/// A boxed error, as hyper's connections and services give them.
type BoxError = Box<dyn StdError + Send + Sync>;

/// The service of one connection: a hyper service whose futures, errors and
/// response bodies can be sent to the runtime's threads. Implemented for every
/// such service; [`IntoHttpService`] makes one for each connection.
pub trait ConnectionService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + 'static
{
    /// The response body.
    type Body: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> ConnectionService for S
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

/// The marker types that tell [`IntoHttpService`]'s implementations apart; the
/// compiler infers them.
pub mod via {
    /// A hyper service.
    #[derive(Debug)]
    pub enum Hyper {}
    /// A tower service of requests.
    #[derive(Debug)]
    pub enum Tower {}
    /// A tower make-service, called with each connection's peer address.
    #[derive(Debug)]
    pub enum MakeService {}
}

/// What [`Http::serve`](super::Http::serve) serves: makes each connection's
/// [`ConnectionService`] from its peer address `A`. Implemented for three kinds
/// of service, told apart by `Via`, one of [`via`]'s markers, which the compiler
/// infers:
///
/// - a hyper [`Service`](hyper::service::Service) (`hyper::service::service_fn`):
///   cloned for each connection;
/// - a tower service of requests (an axum `Router`, tonic's `Routes`): cloned
///   for each connection;
/// - a tower make-service, called with each connection's peer address to make
///   its service, as `axum::serve` does (an axum `Router`'s `into_make_service()`,
///   or `into_make_service_with_connect_info::<SocketAddr>()` for `ConnectInfo`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be served over HTTP by wind-down",
    label = "not a hyper service, a tower service of `Request<Incoming>`, or a tower make-service of the peer address",
    note = "a hyper `Service<Request<Incoming>>`, a tower `Service<Request<Incoming>>`, or a tower `Service<{A}>` that makes one, with `Send + 'static` futures, errors and bodies"
)]
pub trait IntoHttpService<A, Via>: Send + 'static {
    /// The service of one connection.
    type Service: ConnectionService;
    /// The future that makes it.
    type Making: Future<Output = Result<Self::Service, BoxError>> + Send + 'static;

    /// Makes the service of the connection from `peer`.
    fn make(&mut self, peer: &A) -> Self::Making;
}

impl<A, S> IntoHttpService<A, via::Hyper> for S
where
    S: ConnectionService + Clone,
{
    type Service = S;
    type Making = Ready<Result<S, BoxError>>;

    fn make(&mut self, _: &A) -> Self::Making {
        ready(Ok(self.clone()))
    }
}

impl<A, S, B> IntoHttpService<A, via::Tower> for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Service = TowerToHyperService<S>;
    type Making = Ready<Result<Self::Service, BoxError>>;

    fn make(&mut self, _: &A) -> Self::Making {
        ready(Ok(TowerToHyperService::new(self.clone())))
    }
}

impl<A, M, S, B> IntoHttpService<A, via::MakeService> for M
where
    A: Clone + Send + 'static,
    M: tower_service::Service<A, Response = S> + Clone + Send + 'static,
    M::Future: Send + 'static,
    M::Error: Into<BoxError>,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Service = TowerToHyperService<S>;
    type Making = Pin<Box<dyn Future<Output = Result<Self::Service, BoxError>> + Send>>;

    fn make(&mut self, peer: &A) -> Self::Making {
        // Readiness, then the call, on a clone: what `axum::serve` does.
        let mut make = self.clone();
        let peer = peer.clone();
        Box::pin(async move {
            futures_lite::future::poll_fn(|cx| make.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let service = make.call(peer).await.map_err(Into::into)?;
            Ok(TowerToHyperService::new(service))
        })
    }
}
