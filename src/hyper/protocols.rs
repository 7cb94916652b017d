//! [`Protocols`]: hyper's HTTP/1 and HTTP/2 connection builders, and the choice
//! between them for each connection ([`ReadVersion`]).
//!
//! Invariants:
//! - set to HTTP/2 only, every connection is served as HTTP/2;
//! - with both protocols, a connection is served as HTTP/2 when ALPN chose `h2`
//!   or its first 24 bytes are HTTP/2's connection preface, and as HTTP/1 when
//!   ALPN chose `http/1.1`, a byte differs from the preface, or the peer closed
//!   first; with one protocol, every connection is served with it;
//! - deciding reads at most 24 bytes and stops at the first byte that differs;
//!   the bytes read are read again, first, to the protocol chosen ([`Rewind`]),
//!   so it sees the stream from its first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(all(feature = "http1", feature = "http2"))]
use hyper::rt::ReadBuf;
use hyper::rt::{Read, ReadBufCursor, Write};
#[cfg(feature = "http1")]
use hyper::server::conn::http1;
#[cfg(feature = "http2")]
use hyper::server::conn::http2;

#[cfg(feature = "http1")]
use super::runtime::HEADER_READ_TIMEOUT;
use super::runtime::HyperRuntime;
#[cfg(feature = "http2")]
use super::streams::StreamExec;

/// HTTP/2's connection preface, which every HTTP/2 client sends first.
#[cfg(all(feature = "http1", feature = "http2"))]
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection is served with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.x.
    #[cfg(feature = "http1")]
    Http1,
    /// HTTP/2.
    #[cfg(feature = "http2")]
    Http2,
}

/// The protocol of every connection when only one is built.
#[cfg(all(feature = "http1", feature = "http2"))]
const ONLY: Option<Protocol> = None;
#[cfg(all(feature = "http1", not(feature = "http2")))]
const ONLY: Option<Protocol> = Some(Protocol::Http1);
#[cfg(all(feature = "http2", not(feature = "http1")))]
const ONLY: Option<Protocol> = Some(Protocol::Http2);

impl Protocol {
    /// The protocol ALPN chose, or the only one built; `None` when the first
    /// bytes must tell.
    pub(crate) fn known(alpn: Option<&[u8]>) -> Option<Protocol> {
        match alpn {
            #[cfg(feature = "http2")]
            Some(b"h2") => Some(Protocol::Http2),
            #[cfg(feature = "http1")]
            Some(b"http/1.1") => Some(Protocol::Http1),
            _ => ONLY,
        }
    }

    /// The ALPN protocol names of the protocols built, preferred first.
    #[cfg(feature = "tls")]
    pub(crate) fn alpn_names() -> Vec<Vec<u8>> {
        let names: [Option<&[u8]>; 2] = [
            cfg!(feature = "http2").then_some(b"h2"),
            cfg!(feature = "http1").then_some(b"http/1.1"),
        ];
        names.into_iter().flatten().map(<[u8]>::to_vec).collect()
    }
}

/// The connection builders of the protocols the features enable, set up for a
/// runtime: its timer on both, [`HEADER_READ_TIMEOUT`] for HTTP/1, and a
/// [`StreamExec`] spawning HTTP/2 streams on the runtime.
#[derive(Clone, Debug)]
pub(crate) struct Protocols<R> {
    #[cfg(feature = "http1")]
    pub(crate) http1: http1::Builder,
    #[cfg(feature = "http2")]
    pub(crate) http2: http2::Builder<StreamExec<R>>,
    #[cfg(not(feature = "http2"))]
    _runtime: std::marker::PhantomData<fn() -> R>,
    /// Every connection is served as HTTP/2, whatever its ALPN or first bytes.
    #[cfg(feature = "http2")]
    pub(crate) http2_only: bool,
}

impl<R: HyperRuntime> Protocols<R> {
    pub(crate) fn new(runtime: &R) -> Self {
        #[cfg(feature = "http1")]
        let http1 = {
            let mut builder = http1::Builder::new();
            builder
                .timer(runtime.hyper_timer())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder
        };
        #[cfg(feature = "http2")]
        let http2 = {
            let mut builder = http2::Builder::new(StreamExec(runtime.clone()));
            builder.timer(runtime.hyper_timer());
            builder
        };
        #[cfg(not(feature = "http2"))]
        let _ = runtime;
        Protocols {
            #[cfg(feature = "http1")]
            http1,
            #[cfg(feature = "http2")]
            http2,
            #[cfg(not(feature = "http2"))]
            _runtime: std::marker::PhantomData,
            #[cfg(feature = "http2")]
            http2_only: false,
        }
    }

    /// The protocol of a connection whose ALPN protocol is `alpn`: HTTP/2 for
    /// every one when HTTP/2 only, else as [`Protocol::known`] says.
    pub(crate) fn choose(&self, alpn: Option<&[u8]>) -> Option<Protocol> {
        #[cfg(feature = "http2")]
        if self.http2_only {
            return Some(Protocol::Http2);
        }
        Protocol::known(alpn)
    }
}

/// Reads a connection's first bytes until they tell its protocol (with both
/// protocols built and no ALPN choice).
#[cfg(all(feature = "http1", feature = "http2"))]
pub(crate) struct ReadVersion<I> {
    io: Option<I>,
    read: [u8; 24],
    filled: u8,
}

#[cfg(all(feature = "http1", feature = "http2"))]
impl<I> ReadVersion<I> {
    pub(crate) fn new(io: I) -> Self {
        ReadVersion {
            io: Some(io),
            read: [0; 24],
            filled: 0,
        }
    }
}

#[cfg(all(feature = "http1", feature = "http2"))]
impl<I: Read + Unpin> std::future::Future for ReadVersion<I> {
    type Output = io::Result<(Protocol, Rewind<I>)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Bounded: each round reads at least one byte of 24, or ends.
        loop {
            let filled = usize::from(this.filled);
            let decided = if this.read[..filled] != PREFACE[..filled] {
                Some(false)
            } else if filled == PREFACE.len() {
                Some(true)
            } else {
                None
            };
            if let Some(http2) = decided {
                return Poll::Ready(Ok(this.decide(http2)));
            }
            let io = this
                .io
                .as_mut()
                .expect("ReadVersion polled after completion");
            let mut buf = ReadBuf::new(&mut this.read[filled..]);
            std::task::ready!(Pin::new(io).poll_read(cx, buf.unfilled()))?;
            let got = buf.filled().len();
            if got == 0 {
                // The peer closed before its protocol was told: HTTP/1 ends it.
                return Poll::Ready(Ok(this.decide(false)));
            }
            this.filled += u8::try_from(got).expect("at most 24 bytes");
        }
    }
}

#[cfg(all(feature = "http1", feature = "http2"))]
impl<I> ReadVersion<I> {
    /// The protocol for a preface seen (`http2`) or not, and the stream with
    /// what was read given back.
    fn decide(&mut self, http2: bool) -> (Protocol, Rewind<I>) {
        let io = self.io.take().expect("ReadVersion polled after completion");
        let rewind = Rewind {
            read: self.read,
            start: 0,
            end: self.filled,
            io,
        };
        let protocol = if http2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        (protocol, rewind)
    }
}

/// The future that tells a connection's protocol: [`ReadVersion`] with both
/// protocols, none with one.
#[cfg(all(feature = "http1", feature = "http2"))]
pub(crate) type Detect<I> = ReadVersion<I>;
#[cfg(not(all(feature = "http1", feature = "http2")))]
pub(crate) type Detect<I> = Absent<io::Result<(Protocol, Rewind<I>)>>;

/// hyper's HTTP/1 connection on `I` serving `S`, or none without `http1`.
#[cfg(feature = "http1")]
pub(crate) type Http1Connection<I, S> = http1::UpgradeableConnection<Rewind<I>, S>;
#[cfg(not(feature = "http1"))]
pub(crate) type Http1Connection<I, S> = Absent<Result<(), hyper::Error>, (I, S)>;

/// hyper's HTTP/2 connection on `I` serving `S` on `R`, or none without `http2`.
#[cfg(feature = "http2")]
pub(crate) type Http2Connection<R, I, S> =
    http2::Connection<Rewind<I>, S, super::streams::StreamExec<R>>;
#[cfg(not(feature = "http2"))]
pub(crate) type Http2Connection<R, I, S> = Absent<Result<(), hyper::Error>, (R, I, S)>;

/// A future of a protocol that is not built: it cannot exist, so a state holding
/// it cannot either.
#[cfg(not(all(feature = "http1", feature = "http2")))]
pub(crate) struct Absent<O, P = ()>(
    std::convert::Infallible,
    std::marker::PhantomData<fn() -> (O, P)>,
);

#[cfg(not(all(feature = "http1", feature = "http2")))]
impl<O, P> std::future::Future for Absent<O, P> {
    type Output = O;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<O> {
        match self.0 {}
    }
}

#[cfg(not(all(feature = "http1", feature = "http2")))]
impl<O, P> crate::coordinator::watch::GracefulConnection for Absent<O, P> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.0 {}
    }
}

/// A connection whose first bytes, read to tell its protocol, are read again.
pub(crate) struct Rewind<I> {
    read: [u8; 24],
    start: u8,
    end: u8,
    io: I,
}

impl<I> Rewind<I> {
    /// `io`, nothing read from it yet.
    pub(crate) fn new(io: I) -> Self {
        Rewind {
            read: [0; 24],
            start: 0,
            end: 0,
            io,
        }
    }
}

impl<I: Read + Unpin> Read for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let (start, end) = (usize::from(this.start), usize::from(this.end));
            let n = (end - start).min(buf.remaining());
            buf.put_slice(&this.read[start..start + n]);
            this.start += u8::try_from(n).expect("at most 24 bytes");
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(all(test, feature = "http1", feature = "http2"))]
mod tests;
