//! hyper 1.x connections (feature `hyper` for HTTP/1 and HTTP/2, or `http1` or
//! `http2` alone; with `tokio` and/or `smol`).
//!
//! - [`GracefulConnection`] for hyper's HTTP/1 and HTTP/2 server connections and
//!   hyper-util's `auto` (HTTP/1 or HTTP/2, detected) connections.
//! - [`HyperRuntime`]: the executor and timer hyper needs, supplied by each runtime
//!   adapter (hyper-util's on tokio, smol-hyper's on smol).
//! - [`Http`] and [`Server::serve_http`]: serve a `hyper::service::Service` in one
//!   call; [`Server::serve_tower`]: serve a tower make-service (an axum `Router`'s
//!   `into_make_service()`, or `into_make_service_with_connect_info::<SocketAddr>()`
//!   for axum's `ConnectInfo`), as `axum::serve` does.
//! - Connection errors are reported, not dropped: see
//!   [`Server::on_connection_error`].
//!
//! [`Http::new`] sets the runtime's timer on both protocols, so HTTP/1's header read
//! timeout (30 s) applies: without a timer, a peer that sends half a request header
//! would hold its connection forever. A peer that misbehaves anyway is cut at the
//! server's grace period.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
#[cfg(feature = "http1")]
use hyper::server::conn::http1;
#[cfg(feature = "http2")]
use hyper::server::conn::http2;
use hyper::service::{HttpService, Service};
use hyper::{Request, Response};
#[cfg(all(feature = "http1", feature = "http2"))]
use hyper_util::server::conn::auto;

mod body;
mod builder;
mod connection;
mod go_away;
#[cfg(feature = "http1")]
mod health;
mod reported;
pub(crate) mod runtime;
mod streams;
#[cfg(feature = "tls")]
pub mod tls;
mod tower;

pub use self::body::EndAtTrigger;
pub use self::builder::Http;
pub use self::connection::Connection;
use self::go_away::Departure;
pub use self::go_away::{CLOSE_GRACE, DEFAULT_PRE_REQUEST_GRACE};
#[cfg(feature = "http1")]
use self::health::alongside;
use self::reported::Reported;
use self::runtime::BoxError;
pub use self::runtime::{HEADER_READ_TIMEOUT, HyperRuntime, IntoHyperIo};
pub use self::streams::{BoxTask, StreamExec};
use self::tower::TowerConnection;
use crate::coordinator::outcome::Outcome;
use crate::coordinator::watch::GracefulConnection;
use crate::server::runtime::Listener;
use crate::server::{ServeError, Server};

impl<R, L> Server<R, L>
where
    R: HyperRuntime,
    L: Listener,
    L::Io: IntoHyperIo,
{
    /// Serves `service` over HTTP/1 and HTTP/2 with [`Http::new`]'s settings; see
    /// [`Server::serve`]. On shutdown, HTTP/1 connections finish their in-flight
    /// request and answer it with `connection: close`; idle ones close once a
    /// request starts (it is served, with `connection: close`: a request sent just
    /// before the shutdown is not lost) or [`CLOSE_GRACE`] passed; HTTP/2
    /// connections send GOAWAY and finish their open streams. During a
    /// [drain delay](Server::drain_delay), connections are told to go away while
    /// the server still accepts: see [`Server::go_away_during_delay`].
    ///
    /// Each request carries the server's [`Shutdown`](crate::Shutdown) and its
    /// [`Connection`] in its extensions (`request.extensions().get::<Shutdown>()`;
    /// axum's `Extension<Shutdown>`), for handlers: a [guard](crate::Shutdown::guard),
    /// [`Connection::track`] for work that outlives the response (an upgraded
    /// WebSocket session), [`triggered`](crate::Shutdown::triggered) to say
    /// goodbye, and [`EndAtTrigger`] for streaming bodies.
    pub async fn serve_http<S, B>(self, service: S) -> Result<Outcome, ServeError>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let http = Http::new(self.runtime());
        self.serve_http_with(http, service).await
    }

    /// Like [`serve_http`](Server::serve_http), with a builder you configured.
    pub async fn serve_http_with<S, B>(
        self,
        http: Http<R::Executor>,
        service: S,
    ) -> Result<Outcome, ServeError>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let departure = self.departure();
        self.serve_reported(move |io: L::Io, _| {
            let io = io.into_hyper_io();
            http.serve_for_server(io, service.clone(), &departure)
        })
        .await
    }

    /// Serves a tower make-service, as `axum::serve` does: for each connection,
    /// `make` is called with the peer's address and makes the connection's service
    /// (an axum `Router`'s `into_make_service()`; its
    /// `into_make_service_with_connect_info::<SocketAddr>()` gives handlers axum's
    /// `ConnectInfo`), which is served with [`Http::new`]'s settings. Otherwise as
    /// [`serve_http`](Server::serve_http).
    ///
    /// ```no_run
    /// # #[cfg(feature = "tokio")]
    /// # async fn run() -> std::io::Result<()> {
    /// use std::net::SocketAddr;
    /// use axum::{Router, extract::ConnectInfo, routing::get};
    /// use wind_down::{Server, tokio::{Signals, Tokio}};
    ///
    /// let router = Router::new().route(
    ///     "/",
    ///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("hello {peer}") }),
    /// );
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let outcome = Server::new(Tokio::current(), listener)
    ///     .signals(Signals::new()?)
    ///     .serve_tower(router.into_make_service_with_connect_info::<SocketAddr>())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve_tower<M, S, B>(self, make: M) -> Result<Outcome, ServeError>
    where
        M: tower_service::Service<L::Addr, Response = S> + Clone + Send + 'static,
        M::Future: Send + 'static,
        M::Error: Into<BoxError>,
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let http = Http::new(self.runtime());
        let departure = self.departure();
        self.serve_reported(move |io: L::Io, peer: L::Addr| {
            let io = io.into_hyper_io();
            TowerConnection::new::<_, _, _, _, _, R>(
                make.clone(),
                peer,
                io,
                http.clone(),
                departure.clone(),
            )
        })
        .await
    }

    /// How long, from the trigger, a connection that has not started a request
    /// yet may take to start one (a silent peer, half-sent headers, an HTTP/2
    /// preface without SETTINGS) before it is closed, instead of holding the drain
    /// until the grace period is over. Such a connection, closed this way or by
    /// hyper's graceful close, is reported as a connection error of the peer's
    /// ("closed at shutdown before its first request"; see
    /// [`on_connection_error`](Server::on_connection_error)). Defaults to
    /// [`DEFAULT_PRE_REQUEST_GRACE`], 1 s; the grace period still bounds it.
    pub fn pre_request_grace(mut self, grace: Duration) -> Self {
        self.pre_request_grace = grace;
        self
    }

    /// What the server's connections share about leaving.
    fn departure(&self) -> Departure {
        let runtime = self.runtime().clone();
        Departure {
            shutdown: self.shutdown(),
            go_away: self.goes_away(),
            timer: Arc::new(move |duration| Box::pin(runtime.sleep(duration))),
            pre_request_grace: self.pre_request_grace,
        }
    }

    /// The HTTP layer's [`serve`](Server::serve): each connection from `conn`,
    /// its error reported; the health listener beside, if any.
    #[cfg_attr(not(feature = "http1"), allow(unused_mut))]
    async fn serve_reported<H, C, E>(mut self, mut conn: H) -> Result<Outcome, ServeError>
    where
        H: FnMut(L::Io, L::Addr) -> C,
        C: GracefulConnection<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + Send,
    {
        let hook = self.connection_error_hook();
        #[cfg(feature = "http1")]
        let (runtime, health, shutdown) =
            (self.runtime().clone(), self.health.take(), self.shutdown());
        let main = self.serve(move |io: L::Io, peer: L::Addr| {
            Reported::new(conn(io, peer.clone()), peer, hook.clone())
        });
        #[cfg(feature = "http1")]
        let main = alongside(main, &runtime, health, shutdown);
        main.await
    }
}

#[cfg(feature = "http1")]
impl<I, S, B> GracefulConnection for http1::Connection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self)
    }
}

#[cfg(feature = "http1")]
impl<I, S, B> GracefulConnection for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

#[cfg(feature = "http2")]
impl<I, S, E, B> GracefulConnection for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self)
    }
}

#[cfg(all(feature = "http1", feature = "http2"))]
impl<I, S, E, B> GracefulConnection for auto::Connection<'_, I, S, E>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::Connection::graceful_shutdown(self)
    }
}

#[cfg(all(feature = "http1", feature = "http2"))]
impl<I, S, E, B> GracefulConnection for auto::UpgradeableConnection<'_, I, S, E>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self)
    }
}
