//! [`Transport`]: what runs on an accepted connection before HTTP: nothing
//! ([`Plain`]), or a TLS handshake ([`Tls`](super::tls::Tls), feature `tls`).

use std::future::{Future, Ready, ready};
use std::io;

use hyper::rt::{Read, Write};

use super::runtime::{HyperRuntime, IntoHyperIo};

/// What runs on each accepted connection `Raw` before HTTP, inside the watched
/// connection (never in the accept loop): [`Plain`] or, with the `tls` feature,
/// [`Tls`](super::tls::Tls). Chosen with [`Http::tls`](super::Http::tls).
pub trait Transport<Raw>: Clone + Send + Sync + 'static {
    /// The stream HTTP is served on.
    type Io: Read + Write + Unpin + Send + 'static;
    /// The handshake: resolves to the stream and the ALPN protocol negotiated.
    type Handshake: Future<Output = io::Result<(Self::Io, Option<Vec<u8>>)>> + Send + 'static;

    /// Refuses settings that cannot work, before anything is served.
    fn check(&self) -> io::Result<()> {
        Ok(())
    }

    /// Starts the handshake on `io`, with `runtime`'s timer for its timeout.
    fn handshake<R: HyperRuntime>(&self, io: Raw, runtime: &R) -> Self::Handshake;
}

/// No transport of its own: HTTP on the accepted stream (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<Raw: IntoHyperIo> Transport<Raw> for Plain {
    type Io = Raw::Io;
    type Handshake = Ready<io::Result<(Raw::Io, Option<Vec<u8>>)>>;

    fn handshake<R: HyperRuntime>(&self, io: Raw, _: &R) -> Self::Handshake {
        ready(Ok((io.into_hyper_io(), None)))
    }
}
