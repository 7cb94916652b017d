//! TLS for the HTTP layer (feature `tls`): rustls, with tokio-rustls on tokio and
//! futures-rustls on smol; [`Http::tls`](super::Http::tls).
//!
//! Invariants:
//! - the handshake runs inside the watched connection: a trigger during a
//!   handshake closes the connection within [`CLOSE_GRACE`](super::CLOSE_GRACE)
//!   (a handshake that ends meanwhile is served, asked to close: a request sent
//!   with the client's last flight is answered), and the handshake is bounded by
//!   its own timeout as well as by the grace period;
//! - a failed or timed-out handshake ends that connection with an error reported
//!   like any connection error, never the server;
//! - the negotiated ALPN protocol picks the HTTP version: `h2` serves HTTP/2 only,
//!   `http/1.1` HTTP/1 only, none detects it from the first bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
pub use rustls;
use rustls::ServerConfig;

use super::protocols::Protocol;
use super::runtime::HyperRuntime;
use super::transport::Transport;

/// The default bound on a TLS handshake: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of the HTTP layer ([`Http::tls`](super::Http::tls)): a rustls
/// server configuration and a handshake timeout.
#[derive(Clone, Debug)]
pub struct Tls {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl Tls {
    /// TLS with `config` (certificates, versions) and [`DEFAULT_HANDSHAKE_TIMEOUT`].
    /// Without ALPN protocols in `config`, offers those the features build: `h2`
    /// and `http/1.1`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        let config = if config.alpn_protocols.is_empty() {
            let mut with_alpn = (*config).clone();
            with_alpn.alpn_protocols = Protocol::alpn_names();
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
    /// draining). Zero is refused: [`Http::serve`](super::Http::serve) returns an
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

impl<Raw: TlsAccept> Transport<Raw> for Tls {
    type Io = Raw::Io;
    type Handshake = Pin<Box<dyn Future<Output = io::Result<(Raw::Io, Option<Vec<u8>>)>> + Send>>;

    fn check(&self) -> io::Result<()> {
        if self.handshake_timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Tls::handshake_timeout is zero: every handshake would time out",
            ));
        }
        Ok(())
    }

    fn handshake<R: HyperRuntime>(&self, io: Raw, runtime: &R) -> Self::Handshake {
        let handshake = io.accept_tls(self.config.clone());
        let timeout = runtime.sleep(self.handshake_timeout);
        Box::pin(futures_lite::future::or(handshake, async move {
            timeout.await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ))
        }))
    }
}
