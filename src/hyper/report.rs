//! How a connection's error is reported, not dropped.
//!
//! A connection's error goes to the `tracing` feature (debug level for what a peer
//! causes: a reset, a malformed or incomplete request, a failed TLS or protocol
//! preface, an HTTP/2 protocol error of the peer or a GOAWAY or RST_STREAM it
//! sent; warn for the rest) and to the HTTP layer's
//! [`on_connection_error`](super::Http::on_connection_error) callback.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use crate::log;

/// The callback of [`Http::on_connection_error`](super::Http::on_connection_error).
pub(crate) type ErrorHook<A> = Arc<dyn Fn(&A, &(dyn StdError + 'static)) + Send + Sync>;

/// Reports the error a connection from `peer` ended with.
pub(crate) fn report<A: fmt::Debug>(
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
