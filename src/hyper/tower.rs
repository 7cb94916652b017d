//! [`TowerConnection`]: a connection served by a tower service made for it, from
//! its peer address, by a tower make-service (what `axum::serve` takes: an axum
//! `Router`'s `into_make_service()`, or `into_make_service_with_connect_info::<C>()`
//! for axum's `ConnectInfo`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::{Request, Response};
use hyper_util::service::TowerToHyperService;
use tower_service::Service;

use super::builder::Http;
use super::builder::{ErrInto, Served};
use super::go_away::Departure;
use super::runtime::{BoxError, HyperRuntime};
use crate::coordinator::watch::GracefulConnection;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A connection whose service is being made, then served.
pub(crate) struct TowerConnection {
    state: State,
    /// Graceful shutdown was asked while the service was being made.
    graceful: bool,
}

enum State {
    Making(BoxFuture<Result<Pin<Box<dyn Served>>, BoxError>>),
    Serving(Pin<Box<dyn Served>>),
}

impl TowerConnection {
    /// Makes the service with `make` for `peer` (readiness first, then the call),
    /// then serves `io` with it, leaving as `departure` says.
    pub(crate) fn new<M, A, I, S, B, R>(
        mut make: M,
        peer: A,
        io: I,
        http: Http<R::Executor>,
        departure: Departure,
    ) -> Self
    where
        M: Service<A, Response = S> + Send + 'static,
        M::Future: Send + 'static,
        M::Error: Into<BoxError>,
        A: Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        I: Read + Write + Unpin + Send + 'static,
        R: HyperRuntime,
    {
        let making = Box::pin(async move {
            futures_lite::future::poll_fn(|cx| make.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let service = make.call(peer).await.map_err(Into::into)?;
            let service = TowerToHyperService::new(service);
            let conn = http.serve_for_server(io, service, &departure);
            let conn = ErrInto::new(conn);
            Ok(Box::pin(conn) as Pin<Box<dyn Served>>)
        });
        TowerConnection {
            state: State::Making(making),
            graceful: false,
        }
    }
}

impl Future for TowerConnection {
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // At most two rounds: the service is made once.
        loop {
            match &mut this.state {
                State::Making(making) => {
                    let mut conn = ready!(making.as_mut().poll(cx))?;
                    if this.graceful {
                        conn.as_mut().ask_graceful();
                    }
                    this.state = State::Serving(conn);
                }
                State::Serving(conn) => return conn.as_mut().poll(cx),
            }
        }
    }
}

impl GracefulConnection for TowerConnection {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        match &mut this.state {
            State::Making(_) => this.graceful = true,
            State::Serving(conn) => conn.as_mut().ask_graceful(),
        }
    }
}
