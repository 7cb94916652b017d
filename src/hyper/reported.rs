//! [`Reported`]: a served connection whose error is reported, not dropped.
//!
//! A connection's error goes to the `tracing` feature (debug level for what a peer
//! causes: a reset, a malformed or incomplete request, a failed TLS or protocol
//! preface, an HTTP/2 protocol error of the peer or a GOAWAY or RST_STREAM it
//! sent; warn for the rest) and to the server's
//! [`on_connection_error`](crate::Server::on_connection_error) callback.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::coordinator::watch::GracefulConnection;
use crate::log;

use crate::server::ConnectionErrorHook as ErrorHook;

pin_project! {
    /// A connection of the HTTP layer, reporting its error when it ends with one.
    pub(crate) struct Reported<C, A> {
        #[pin]
        conn: C,
        peer: A,
        hook: Option<ErrorHook<A>>,
    }
}

impl<C, A> Reported<C, A> {
    pub(crate) fn new(conn: C, peer: A, hook: Option<ErrorHook<A>>) -> Self {
        Reported { conn, peer, hook }
    }
}

impl<C, A, E> Future for Reported<C, A>
where
    C: Future<Output = Result<(), E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
    A: fmt::Debug,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Err(error) = ready!(this.conn.poll(cx)) {
            let error: Box<dyn StdError + Send + Sync> = error.into();
            report(this.peer, &*error, this.hook.as_ref());
        }
        Poll::Ready(())
    }
}

impl<C, A, E> GracefulConnection for Reported<C, A>
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
    A: fmt::Debug,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.project().conn.graceful_shutdown();
    }
}

fn report<A: fmt::Debug>(
    peer: &A,
    error: &(dyn StdError + Send + Sync + 'static),
    hook: Option<&ErrorHook<A>>,
) {
    if caused_by_peer(error) {
        log::debug!("connection error from {peer:?}: {error}");
    } else {
        log::warning!("connection error from {peer:?}: {error}");
    }
    if let Some(hook) = hook {
        hook(peer, error);
    }
}

/// Whether the peer caused `error`: a malformed, incomplete or interrupted request,
/// a reset connection, or (HTTP/2) a protocol error of the peer or an error it sent.
pub(crate) fn caused_by_peer(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    // Bounded by the length of the error's source chain.
    while let Some(err) = source {
        if err.is::<super::go_away::NoRequest>() {
            return true;
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            if hyper.is_parse() || hyper.is_incomplete_message() || hyper.is_parse_status() {
                return true;
            }
        }
        #[cfg(feature = "http2")]
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            // Received from the peer (its GOAWAY or RST_STREAM), or sent by h2 on a
            // protocol error of the peer's; not one sent by this side, nor a misuse
            // of h2. Its I/O error is not a source: judged here.
            if h2.is_remote() || h2.is_library() || h2.get_io().is_some_and(peer_io) {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if peer_io(io) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Whether the peer caused the I/O error `io`: a reset or cut connection, or bytes
/// that are not the protocol.
fn peer_io(io: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        io.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | InvalidData | TimedOut
    )
}
