//! [`EndAtTrigger`]: a streaming response body that ends cleanly at the trigger.
//!
//! Invariants:
//! - until the trigger, every frame is the inner body's, in order;
//! - from the first poll that sees the trigger on, the inner body is never polled
//!   again: the final chunk, if any, is sent, then the body ends (`None`), which is
//!   a clean end of a chunked HTTP/1 body or an HTTP/2 stream, not a reset;
//! - the size is always reported unknown, so the response is never framed by a
//!   `content-length` that an early end would break.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::coordinator::Shutdown;
use crate::coordinator::wait::Wait;

pin_project! {
    /// A response body that ends when `shutdown` is triggered, optionally after a
    /// final chunk: an endless stream (server-sent events, a log tail) then ends
    /// cleanly for its client at the trigger, and its connection closes right
    /// after (an HTTP/1 one within [`CLOSE_GRACE`](super::CLOSE_GRACE)) instead of
    /// holding the drain until the deadline.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use hyper::body::{Bytes, Frame};
    /// use wind_down::{Shutdown, hyper::EndAtTrigger};
    ///
    /// futures_lite::future::block_on(async {
    ///     let shutdown = Shutdown::new();
    ///     // An endless stream of events.
    ///     let events = futures_lite::stream::repeat_with(|| {
    ///         Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"data: tick\n\n")))
    ///     });
    ///     let mut body = EndAtTrigger::new(StreamBody::new(events), &shutdown)
    ///         .with_final_chunk(Bytes::from_static(b"event: shutdown\ndata: bye\n\n"));
    ///     let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    ///     assert_eq!(first, "data: tick\n\n");
    ///     shutdown.trigger();
    ///     let last = body.frame().await.unwrap().unwrap().into_data().unwrap();
    ///     assert_eq!(last, "event: shutdown\ndata: bye\n\n");
    ///     assert!(body.frame().await.is_none(), "ended");
    /// });
    /// ```
    #[derive(Debug)]
    pub struct EndAtTrigger<B: Body> {
        #[pin]
        inner: B,
        triggered: Wait,
        final_chunk: Option<B::Data>,
        ended: bool,
    }
}

impl<B: Body> EndAtTrigger<B> {
    /// `body`, until `shutdown` (the server's, or one of its scopes) is triggered.
    pub fn new(body: B, shutdown: &Shutdown) -> Self {
        EndAtTrigger {
            inner: body,
            triggered: shutdown.triggered(),
            final_chunk: None,
            ended: false,
        }
    }

    /// Sends `chunk` as the last data frame when the trigger ends the body (for
    /// example an SSE `event: shutdown`). Not sent if the inner body ends first.
    pub fn with_final_chunk(mut self, chunk: B::Data) -> Self {
        self.final_chunk = Some(chunk);
        self
    }
}

impl<B: Body> Body for EndAtTrigger<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if Pin::new(&mut *this.triggered).poll(cx).is_ready() {
            *this.ended = true;
            return Poll::Ready(this.final_chunk.take().map(|c| Ok(Frame::data(c))));
        }
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = frame {
            *this.ended = true;
            *this.final_chunk = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
