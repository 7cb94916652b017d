//! The trigger's ask on a real hyper HTTP/1 connection over an in-memory
//! stream, poll by poll, with timers that never fire: whether it is asked at
//! once (an idle connection closes on the next poll) or held back (it stays)
//! depends only on how long the connection has been idle.

use std::convert::Infallible;
use std::future::{Pending, Ready, pending, ready};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::coordinator::Shutdown;
use crate::hyper::go_away::CLOSE_GRACE;
use crate::hyper::protocols::Protocols;

/// A runtime whose timers never fire, and that spawns nothing.
#[derive(Clone)]
struct Frozen;

struct Never;

impl Future for Never {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl hyper::rt::Sleep for Never {}

impl hyper::rt::Timer for Frozen {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Never)
    }
    fn sleep_until(&self, _: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Never)
    }
}

impl Runtime for Frozen {
    type Sleep = Pending<()>;
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
        unreachable!("HTTP/1 spawns nothing")
    }
    fn sleep(&self, _: Duration) -> Pending<()> {
        pending()
    }
}

impl HyperRuntime for Frozen {
    type Timer = Frozen;
    fn hyper_timer(&self) -> Frozen {
        Frozen
    }
}

/// Answers `/` at once; `/stuck` never.
#[derive(Clone)]
struct App;

impl hyper::service::Service<Request<Incoming>> for App {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;
    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if request.uri().path() == "/stuck" {
            return Box::pin(pending());
        }
        Box::pin(ready(Ok(Response::new("hello\n".to_string()))))
    }
}

type Io = TokioIo<DuplexStream>;
type Handshake = Ready<io::Result<(Io, Option<Vec<u8>>)>>;
type Making = Ready<Result<App, BoxError>>;
type Conn = Pin<Box<HttpConnection<Frozen, &'static str, Handshake, Making, Io, App>>>;

/// A connection, accepted now, its client's end, and its server's coordinator.
fn accept() -> (Conn, DuplexStream, Shutdown) {
    let (client, server) = tokio::io::duplex(4096);
    let shutdown = Shutdown::new();
    let shared = Arc::new(Shared {
        runtime: Frozen,
        protocols: Protocols::new(&Frozen),
        shutdown: shutdown.clone(),
        go_away: false,
        pre_request_grace: Duration::from_secs(1),
        on_error: None,
    });
    let handshake = ready(Ok((TokioIo::new(server), Some(b"http/1.1".to_vec()))));
    let conn = HttpConnection::new(shared, "peer", handshake, ready(Ok(App)));
    (Box::pin(conn), client, shutdown)
}

fn poll(conn: &mut Conn) -> Poll<()> {
    let waker = std::task::Waker::noop();
    conn.as_mut().poll(&mut Context::from_waker(waker))
}

/// Sends a request for `path` and polls the connection until it took it.
fn request(conn: &mut Conn, client: &mut DuplexStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    futures_lite::future::block_on(client.write_all(request.as_bytes())).unwrap();
    assert!(poll(conn).is_pending(), "closed on a request");
}

/// Reads the answer of `/`.
fn answer(client: &mut DuplexStream) -> String {
    let mut bytes = [0u8; 1024];
    let n = futures_lite::future::block_on(client.read(&mut bytes)).unwrap();
    String::from_utf8_lossy(&bytes[..n]).into_owned()
}

/// Triggers as the watcher does, then polls: whether the connection ended.
fn trigger(mut conn: Conn, shutdown: &Shutdown) -> bool {
    assert!(poll(&mut conn).is_pending(), "ended before the trigger");
    shutdown.trigger();
    conn.as_mut().graceful_shutdown();
    poll(&mut conn).is_ready()
}

fn later() {
    std::thread::sleep(CLOSE_GRACE + Duration::from_millis(50));
}

#[test]
fn a_fresh_connection_is_held_back() {
    let (mut conn, _client, shutdown) = accept();
    assert!(poll(&mut conn).is_pending());
    assert!(
        !trigger(conn, &shutdown),
        "closed within CLOSE_GRACE of its accept"
    );
}

#[test]
fn a_connection_answered_just_now_is_held_back() {
    let (mut conn, mut client, shutdown) = accept();
    later();
    request(&mut conn, &mut client, "/");
    assert!(answer(&mut client).ends_with("hello\n"));
    assert!(!trigger(conn, &shutdown), "closed right after its response");
}

#[test]
fn a_connection_idle_for_longer_than_the_grace_is_closed_at_once() {
    let (mut conn, mut client, shutdown) = accept();
    request(&mut conn, &mut client, "/");
    assert!(answer(&mut client).ends_with("hello\n"));
    later();
    assert!(trigger(conn, &shutdown), "held back although long idle");
}

#[test]
fn a_silent_connection_older_than_the_grace_is_closed_at_once() {
    let (mut conn, _client, shutdown) = accept();
    assert!(poll(&mut conn).is_pending());
    later();
    assert!(
        trigger(conn, &shutdown),
        "held back although silent since its accept"
    );
}

#[test]
fn a_request_in_flight_is_held_back_however_old() {
    let (mut conn, mut client, shutdown) = accept();
    request(&mut conn, &mut client, "/stuck");
    later();
    assert!(!trigger(conn, &shutdown), "closed with a request in flight");
}

#[test]
fn a_held_back_connection_is_asked_when_a_request_starts() {
    let (mut conn, mut client, shutdown) = accept();
    assert!(poll(&mut conn).is_pending());
    shutdown.trigger();
    conn.as_mut().graceful_shutdown();
    assert!(poll(&mut conn).is_pending(), "not held back");
    // The request already on its way: served, with `connection: close`,
    // and the connection closes after it, in the same poll.
    let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    futures_lite::future::block_on(client.write_all(request)).unwrap();
    assert!(
        poll(&mut conn).is_ready(),
        "kept open after its last answer"
    );
    let answer = answer(&mut client);
    assert!(answer.ends_with("hello\n"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}
