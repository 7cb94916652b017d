//! [`Http`]: the HTTP layer over a [`Server`]: its options, and the one entry
//! that serves every kind of service ([`Http::serve`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "http1")]
use hyper::server::conn::http1;
#[cfg(feature = "http2")]
use hyper::server::conn::http2;

use super::connection::HttpConnection;
use super::go_away::DEFAULT_PRE_REQUEST_GRACE;
#[cfg(feature = "http1")]
use super::health::Health;
use super::protocols::Protocols;
use super::report::ErrorHook;
use super::runtime::HyperRuntime;
use super::service::IntoHttpService;
use super::shared::Shared;
#[cfg(feature = "http2")]
use super::streams::StreamExec;
#[cfg(feature = "tls")]
use super::tls::Tls;
use super::transport::{Plain, Transport};
use crate::coordinator::outcome::Outcome;
use crate::server::runtime::Listener;
use crate::server::{ServeError, Server};

/// The HTTP layer over a [`Server`]: serves hyper 1.x HTTP/1 and HTTP/2 (detected
/// per connection, or chosen by ALPN), with the server's accept loop, signals,
/// drain delay and grace period.
///
/// ```no_run
/// # #[cfg(feature = "tokio")]
/// # async fn run() -> std::io::Result<()> {
/// use std::convert::Infallible;
/// use hyper::{Request, Response, body::Incoming, service::service_fn};
/// use wind_down::{Server, hyper::Http, tokio::{Signals, Tokio}};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let server = Server::new(Tokio::current(), listener).signals(Signals::new()?);
/// let outcome = Http::new(server)
///     .serve(service_fn(|_: Request<Incoming>| async {
///         Ok::<_, Infallible>(Response::new("hello\n".to_string()))
///     }))
///     .await?;
/// # Ok(()) }
/// ```
///
/// On shutdown, HTTP/1 connections finish their in-flight request and answer it
/// with `connection: close`; idle ones close at once, or, if active within
/// [`CLOSE_GRACE`](super::CLOSE_GRACE), once a request starts (it is served, with
/// `connection: close`: a request sent just before the shutdown is not lost) or
/// the grace passed; HTTP/2 connections send GOAWAY and finish their open
/// streams. During a [drain delay](Server::drain_delay), connections are told to
/// go away while the server still accepts: see
/// [`go_away_during_delay`](Http::go_away_during_delay).
///
/// Each request carries its [`Connection`](super::Connection) in its extensions,
/// and the connection the server's [`Shutdown`](crate::Shutdown)
/// ([`Connection::shutdown`](super::Connection::shutdown)), for handlers: a
/// [guard](crate::Shutdown::guard), [`Connection::track`](super::Connection::track)
/// for work that outlives the response (an upgraded WebSocket session),
/// [`triggered`](crate::Shutdown::triggered) to say goodbye, and
/// [`EndAtTrigger`](super::EndAtTrigger) for streaming bodies.
#[must_use = "an HTTP layer does nothing until `serve` is awaited"]
pub struct Http<R, L: Listener, T = Plain> {
    server: Server<R, L>,
    protocols: Protocols<R>,
    transport: T,
    go_away: bool,
    pre_request_grace: Duration,
    on_error: Option<ErrorHook<L::Addr>>,
    #[cfg(feature = "http1")]
    health: Option<Health>,
}

impl<R: HyperRuntime, L: Listener> Http<R, L> {
    /// The HTTP layer over `server`, plain TCP, with hyper's builders set up for
    /// the server's runtime: its timer on both protocols, and HTTP/1's header
    /// read timeout ([`HEADER_READ_TIMEOUT`](super::HEADER_READ_TIMEOUT), so a
    /// peer that sends half a request header cannot hold its connection forever).
    pub fn new(server: Server<R, L>) -> Self {
        let protocols = Protocols::new(server.runtime());
        Http {
            server,
            protocols,
            transport: Plain,
            go_away: true,
            pre_request_grace: DEFAULT_PRE_REQUEST_GRACE,
            on_error: None,
            #[cfg(feature = "http1")]
            health: None,
        }
    }

    /// Serves over TLS with `tls` (feature `tls`): each connection's handshake
    /// runs inside its watched connection, bounded by the handshake timeout; then
    /// HTTP/2 or HTTP/1 as ALPN says. A trigger during a handshake closes that
    /// connection within [`CLOSE_GRACE`](super::CLOSE_GRACE) (reported as closed
    /// before its first request); a failed handshake is a connection error (see
    /// [`on_connection_error`](Http::on_connection_error)).
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: Tls) -> Http<R, L, Tls> {
        Http {
            server: self.server,
            protocols: self.protocols,
            transport: tls,
            go_away: self.go_away,
            pre_request_grace: self.pre_request_grace,
            on_error: self.on_error,
            #[cfg(feature = "http1")]
            health: self.health,
        }
    }
}

impl<R: HyperRuntime, L: Listener, T> Http<R, L, T> {
    /// Whether connections are told to go away from the announcement on, while
    /// the [drain delay](Server::drain_delay) still accepts and serves: every
    /// HTTP/1 response completed from then on says `connection: close` (but an
    /// upgrade's 101), and every HTTP/2 connection gets GOAWAY (its open streams
    /// finish) once it made its first request. Connections accepted during the
    /// delay are served the same way; nothing is refused. Clients that follow the
    /// protocol reconnect, and by then the load balancer sends them to another
    /// instance. Idle HTTP/1 connections stay open until the trigger, so a request
    /// already on its way is not cut.
    ///
    /// On by default; `false` leaves connections alone until the trigger.
    pub fn go_away_during_delay(mut self, go_away: bool) -> Self {
        self.go_away = go_away;
        self
    }

    /// How long, from the trigger, a connection that has not started a request
    /// yet may take to start one (a silent peer, half-sent headers, an HTTP/2
    /// preface without SETTINGS) before it is closed, instead of holding the drain
    /// until the grace period is over. Such a connection, closed this way or by
    /// hyper's graceful close, is reported as a connection error of the peer's
    /// ("closed at shutdown before its first request"; see
    /// [`on_connection_error`](Http::on_connection_error)). Defaults to
    /// [`DEFAULT_PRE_REQUEST_GRACE`], 1 s; the grace period still bounds it.
    pub fn pre_request_grace(mut self, grace: Duration) -> Self {
        self.pre_request_grace = grace;
        self
    }

    /// Calls `callback` with the peer's address and the error of each connection
    /// that ends with one (a malformed request, a reset, a protocol error, a
    /// failed TLS handshake), for programs without the `tracing` feature, which
    /// reports them as events (debug level for what the peer caused, warn for the
    /// rest).
    pub fn on_connection_error(
        mut self,
        callback: impl Fn(&L::Addr, &(dyn std::error::Error + 'static)) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }

    /// hyper's HTTP/1 builder, to tune it (header limits, keep-alive) (feature
    /// `http1`).
    #[cfg(feature = "http1")]
    pub fn http1_mut(&mut self) -> &mut http1::Builder {
        &mut self.protocols.http1
    }

    /// Serves every connection as HTTP/2, as gRPC servers do (feature `http2`):
    /// an HTTP/1 client's connection ends with a protocol error instead of being
    /// served. Over TLS, offer only `h2` in the rustls configuration's
    /// `alpn_protocols` too. Off by default: with both protocols built, each
    /// connection's protocol is chosen by ALPN or by its first bytes.
    #[cfg(feature = "http2")]
    pub fn http2_only(mut self) -> Self {
        self.protocols.http2_only = true;
        self
    }

    /// hyper's HTTP/2 builder, to tune it (stream limits, keep-alive, window
    /// sizes) (feature `http2`).
    #[cfg(feature = "http2")]
    pub fn http2_mut(&mut self) -> &mut http2::Builder<StreamExec<R>> {
        &mut self.protocols.http2
    }

    /// Serves `service`, one of three kinds (see [`IntoHttpService`]): a hyper
    /// service, a tower service of requests (tonic's `Routes`, an axum `Router`),
    /// or a tower make-service called with each connection's peer address (an
    /// axum `Router`'s `into_make_service_with_connect_info::<SocketAddr>()`, for
    /// `ConnectInfo`), as `axum::serve` does. Otherwise as [`Server::serve`]:
    /// resolves to the drain's [`Outcome`] once every connection task ended, and
    /// the [health listener](Http::health), if any, closed.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`]'s, and [`InvalidInput`](std::io::ErrorKind::InvalidInput)
    /// before serving for a TLS handshake timeout of zero.
    pub async fn serve<Svc, Via>(self, mut service: Svc) -> Result<Outcome, ServeError>
    where
        T: Transport<L::Io>,
        Svc: IntoHttpService<L::Addr, Via>,
    {
        if let Err(error) = self.transport.check() {
            return Err(ServeError::refused(error));
        }
        let server = self.server;
        let shared = Arc::new(Shared {
            runtime: server.runtime().clone(),
            protocols: self.protocols,
            shutdown: server.shutdown(),
            go_away: self.go_away,
            pre_request_grace: self.pre_request_grace,
            on_error: self.on_error,
        });
        let transport = self.transport;
        #[cfg(feature = "http1")]
        let (health, of) = (self.health, server.shutdown());
        let main = server.serve(move |io: L::Io, peer: L::Addr| {
            let handshake = transport.handshake(io, &shared.runtime);
            let making = service.make(&peer);
            HttpConnection::new(shared.clone(), peer, handshake, making)
        });
        #[cfg(feature = "http1")]
        if let Some(health) = health {
            return health.alongside(main, of).await;
        }
        main.await
    }
}

#[cfg(feature = "http1")]
impl<R: HyperRuntime, L: Listener, T> Http<R, L, T> {
    /// Serves readiness and liveness on `listener`, a second address, for the
    /// whole shutdown (feature `http1`: probes speak HTTP/1):
    /// - `GET /ready`: `200 ready` while [`Shutdown::is_ready`](crate::Shutdown::is_ready),
    ///   then `503 draining` from the announcement on (during the drain delay and
    ///   the drain);
    /// - `GET /live`: `200 live` until the listener closes, when the drain ended.
    ///
    /// The main listener closes when accepting stops, so an orchestrator polling
    /// readiness there would see "connection refused" rather than "draining";
    /// this one stays. Its connections are not the server's in-flight work.
    pub fn health<H>(mut self, listener: H) -> Self
    where
        H: Listener,
        H::Io: super::IntoHyperIo,
    {
        self.health = Some(Health::new(self.server.runtime().clone(), listener));
        self
    }
}

impl<R, L: Listener, T: fmt::Debug> fmt::Debug for Http<R, L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("go_away_during_delay", &self.go_away)
            .field("pre_request_grace", &self.pre_request_grace)
            .finish_non_exhaustive()
    }
}
