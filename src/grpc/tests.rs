//! The layer's bodies and the stream helper, poll by poll.

use std::convert::Infallible;
use std::future::ready;

use futures_lite::future::{block_on, poll_once};
use http_body::{Body, Frame};
use hyper::body::Bytes;
use hyper::{Request, Response};
use tower_service::Service;

use super::{EndAtTriggerBody, EndAtTriggerLayer, end_at_trigger};
use crate::coordinator::Shutdown;

/// A body that yields `frames`, then stays pending for ever if `then_pend`,
/// else ends.
struct Script {
    frames: std::collections::VecDeque<Frame<Bytes>>,
    then_pend: bool,
}

impl Body for Script {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.frames.pop_front() {
            Some(frame) => std::task::Poll::Ready(Some(Ok(frame))),
            None if self.then_pend => std::task::Poll::Pending,
            None => std::task::Poll::Ready(None),
        }
    }
}

fn trailers(status: &'static str) -> Frame<Bytes> {
    let mut map = hyper::HeaderMap::new();
    map.insert("grpc-status", status.parse().unwrap());
    Frame::trailers(map)
}

/// Serves one request through the layer with a connection of `shutdown` in
/// its extensions (if any) and a response of `content_type` with `body`.
fn serve(
    shutdown: Option<&Shutdown>,
    content_type: &'static str,
    body: Script,
) -> EndAtTriggerBody<Script> {
    let mut response = Some(body);
    let inner = tower::service_fn(move |_: Request<()>| {
        let body = response.take().unwrap();
        let response = Response::builder()
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        ready(Ok::<_, Infallible>(response))
    });
    let mut service = tower_layer::Layer::layer(&EndAtTriggerLayer, inner);
    let mut request = Request::new(());
    if let Some(shutdown) = shutdown {
        let connection = crate::hyper::Connection::new(shutdown.clone(), true);
        request.extensions_mut().insert(connection);
    }
    block_on(service.call(request)).unwrap().into_body()
}

fn next(body: &mut EndAtTriggerBody<Script>) -> Option<Option<Frame<Bytes>>> {
    block_on(poll_once(std::future::poll_fn(|cx| {
        std::pin::Pin::new(&mut *body).poll_frame(cx)
    })))
    .map(|frame| frame.map(Result::unwrap))
}

fn status(frame: &Frame<Bytes>) -> Option<&str> {
    frame.trailers_ref()?.get("grpc-status")?.to_str().ok()
}

#[test]
fn a_pending_grpc_stream_ends_with_unavailable_at_the_trigger() {
    let shutdown = Shutdown::new();
    let script = Script {
        frames: [Frame::data(Bytes::from_static(b"tick"))].into(),
        then_pend: true,
    };
    let mut body = serve(Some(&shutdown), "application/grpc", script);
    assert!(next(&mut body).unwrap().unwrap().is_data());
    assert!(next(&mut body).is_none(), "pending before the trigger");
    shutdown.trigger();
    let end = next(&mut body).unwrap().unwrap();
    assert_eq!(status(&end), Some("14"));
    let message = end.trailers_ref().unwrap().get("grpc-message").unwrap();
    assert_eq!(message, "server shutting down");
    assert!(body.is_end_stream());
    assert!(next(&mut body).unwrap().is_none());
}

#[test]
fn a_unary_response_after_the_trigger_keeps_its_message_and_status() {
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let script = Script {
        frames: [Frame::data(Bytes::from_static(b"reply")), trailers("0")].into(),
        then_pend: false,
    };
    let mut body = serve(Some(&shutdown), "application/grpc+proto", script);
    assert!(next(&mut body).unwrap().unwrap().is_data());
    assert_eq!(status(&next(&mut body).unwrap().unwrap()), Some("0"));
    assert!(next(&mut body).unwrap().is_none());
}

#[test]
fn other_responses_and_requests_without_a_shutdown_pass_untouched() {
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let pending = || Script {
        frames: Default::default(),
        then_pend: true,
    };
    let mut html = serve(Some(&shutdown), "text/html", pending());
    assert!(next(&mut html).is_none(), "a non-gRPC response was ended");
    let mut foreign = serve(None, "application/grpc", pending());
    assert!(next(&mut foreign).is_none(), "ended without a shutdown");
}

#[test]
fn end_at_trigger_yields_unavailable_then_ends_even_when_items_are_ready() {
    use futures_lite::StreamExt;
    let shutdown = Shutdown::new();
    let items = futures_lite::stream::repeat_with(|| Ok::<_, tonic::Status>(1));
    let mut stream = Box::pin(end_at_trigger(items, &shutdown));
    assert_eq!(block_on(stream.next()).unwrap().unwrap(), 1);
    shutdown.trigger();
    let status = block_on(stream.next()).unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "server shutting down");
    assert!(block_on(stream.next()).is_none());
}
