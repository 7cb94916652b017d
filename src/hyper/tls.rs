//! TLS for the HTTP layer (feature `tls`): rustls, with tokio-rustls on tokio and
//! futures-rustls on smol; [`Server::serve_https`].
//!
//! Invariants:
//! - the handshake runs inside the watched connection: a trigger during a
//!   handshake closes the connection within [`CLOSE_GRACE`] (a handshake that
//!   ends meanwhile is served, asked to close: a request sent with the client's
//!   last flight is answered), and the handshake is bounded by its own timeout as
//!   well as by the grace period;
//! - a failed or timed-out handshake ends that connection with an error reported
//!   like any connection error, never the server;
//! - the negotiated ALPN protocol picks the HTTP version: `h2` serves HTTP/2 only,
//!   `http/1.1` HTTP/1 only, none detects it from the first bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::Service;
use hyper::{Request, Response};
pub use rustls;
use rustls::ServerConfig;

use super::Http;
use super::builder::Served;
use super::go_away::{CLOSE_GRACE, Departure, NoRequest, Sleep, Timer};
use super::runtime::{BoxError, HyperRuntime, IntoHyperIo};
use super::tower::TowerConnection;
use crate::coordinator::outcome::Outcome;
use crate::coordinator::watch::GracefulConnection;
use crate::server::runtime::Listener;
use crate::server::{ServeError, Server};

/// The default bound on a TLS handshake: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of [`Server::serve_https`]: a rustls server configuration and
/// a handshake timeout.
#[derive(Clone, Debug)]
pub struct Tls {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl Tls {
    /// TLS with `config` (certificates, versions) and [`DEFAULT_HANDSHAKE_TIMEOUT`].
    /// Without ALPN protocols in `config`, offers `h2` and `http/1.1`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        let config = if config.alpn_protocols.is_empty() {
            let mut with_alpn = (*config).clone();
            with_alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(with_alpn)
        } else {
            config
        };
        Tls {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Bounds each handshake by `timeout` (the grace period bounds it too once
    /// draining). Zero is refused: [`Server::serve_https`] returns an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error before serving.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// A connection a runtime adapter runs a TLS handshake on: tokio's and smol's TCP
/// streams.
pub trait TlsAccept: Send + 'static {
    /// The TLS stream, for hyper.
    type Io: Read + Write + Unpin + Send + 'static;

    /// Runs the server side of the handshake with `config`; resolves to the
    /// stream and the negotiated ALPN protocol.
    fn accept_tls(
        self,
        config: Arc<ServerConfig>,
    ) -> impl Future<Output = io::Result<(Self::Io, Option<Vec<u8>>)>> + Send;
}

impl<R, L> Server<R, L>
where
    R: HyperRuntime,
    L: Listener,
    L::Io: TlsAccept + IntoHyperIo,
{
    /// Serves `service` over TLS: each connection's handshake (bounded by the
    /// handshake timeout), then HTTP/2 or HTTP/1 as ALPN says, otherwise as
    /// [`serve_http`](Server::serve_http). A trigger during a handshake closes that
    /// connection within [`CLOSE_GRACE`](super::CLOSE_GRACE) (reported as closed
    /// before its first request); a failed handshake is a connection error (see
    /// [`on_connection_error`](Server::on_connection_error)).
    pub async fn serve_https<S, B>(self, tls: Tls, service: S) -> Result<Outcome, ServeError>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve_tls(tls, move |io, http, _, departure| {
            let conn = http.serve_for_server(io, service.clone(), departure);
            Box::pin(conn) as Pin<Box<dyn Served>>
        })
        .await
    }

    /// Serves a tower make-service over TLS, as [`serve_tower`](Server::serve_tower)
    /// does over plain TCP (axum's `Router`, with `ConnectInfo`); otherwise as
    /// [`serve_https`](Server::serve_https).
    pub async fn serve_tower_https<M, S, B>(self, tls: Tls, make: M) -> Result<Outcome, ServeError>
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
        self.serve_tls(tls, move |io, http, peer, departure| {
            let conn = TowerConnection::new::<_, _, _, _, _, R>(
                make.clone(),
                peer,
                io,
                http,
                departure.clone(),
            );
            Box::pin(conn) as Pin<Box<dyn Served>>
        })
        .await
    }

    /// Each connection: its handshake, bounded by the timeout, then `serve` on the
    /// TLS stream with the builder that ALPN chose and the server's departure.
    async fn serve_tls<F>(self, tls: Tls, serve: F) -> Result<Outcome, ServeError>
    where
        F: Fn(
                <L::Io as TlsAccept>::Io,
                Http<R::Executor>,
                L::Addr,
                &Departure,
            ) -> Pin<Box<dyn Served>>
            + Clone
            + Send
            + 'static,
    {
        if tls.handshake_timeout.is_zero() {
            let error = io::Error::new(
                io::ErrorKind::InvalidInput,
                "Tls::handshake_timeout is zero: every handshake would time out",
            );
            return Err(ServeError::refused(error));
        }
        let http = Http::new(self.runtime());
        let departure = self.departure();
        let timer = departure.timer.clone();
        self.serve_reported(move |io: L::Io, peer: L::Addr| {
            let (http, serve, departure) = (http.clone(), serve.clone(), departure.clone());
            let config = tls.config.clone();
            let handshake = Box::pin(async move {
                let (io, alpn) = io.accept_tls(config).await?;
                let http = match alpn.as_deref() {
                    Some(b"h2") => http.http2_only(),
                    Some(b"http/1.1") => http.http1_only(),
                    _ => http,
                };
                Ok(serve(io, http, peer, &departure))
            });
            TlsConnection {
                handshake: Some((handshake, timer(tls.handshake_timeout))),
                conn: None,
                timer: timer.clone(),
                triggered: false,
            }
        })
        .await
    }
}

type Handshake = Pin<Box<dyn Future<Output = io::Result<Pin<Box<dyn Served>>>> + Send>>;

/// A connection in its TLS handshake, then served.
struct TlsConnection {
    handshake: Option<(Handshake, Sleep)>,
    conn: Option<Pin<Box<dyn Served>>>,
    /// The runtime's timer, for the grace a handshake gets at the trigger.
    timer: Timer,
    /// The trigger came: a handshake still running gets [`CLOSE_GRACE`] to end,
    /// and the connection it makes is asked to close at once.
    triggered: bool,
}

impl Future for TlsConnection {
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some((handshake, timeout)) = this.handshake.as_mut() {
            match handshake.as_mut().poll(cx) {
                Poll::Ready(Ok(mut conn)) => {
                    if this.triggered {
                        conn.as_mut().ask_graceful();
                    }
                    this.handshake = None;
                    this.conn = Some(conn);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(Box::new(error))),
                Poll::Pending => {
                    if timeout.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.triggered {
                        return Poll::Ready(Err(Box::new(NoRequest)));
                    }
                    let error = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
                    return Poll::Ready(Err(Box::new(error)));
                }
            }
        }
        match this.conn.as_mut() {
            Some(conn) => conn.as_mut().poll(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl GracefulConnection for TlsConnection {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.triggered = true;
        match (this.conn.as_mut(), this.handshake.as_mut()) {
            (Some(conn), _) => conn.as_mut().ask_graceful(),
            // A client whose handshake is nearly done may have sent its request
            // with its last flight: a moment to finish, not the full timeout.
            (None, Some((_, timeout))) => *timeout = (this.timer)(CLOSE_GRACE),
            (None, None) => {}
        }
    }
}
