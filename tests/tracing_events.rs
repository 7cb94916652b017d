//! With the `tracing` feature, a server's shutdown reports its progress as events:
//! the signal, the drain start, "still in flight" while draining, each forced item,
//! and the outcome; and each connection's error, at debug level when the peer
//! caused it and warn otherwise. The signal source here is a channel (the seam the
//! signal adapters implement); real OS signals are exercised in `tests/e2e.rs`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use wind_down::tokio::Tokio;
use wind_down::{GracefulConnection, Server, Signal, SignalSource, WatcherKind};

/// Every event's message, from every thread.
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Every event's level and message, from every thread.
static EVENTS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

struct Collect;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        EVENTS
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0.clone()));
        MESSAGES.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Signals fed through a channel.
struct Fed(tokio::sync::mpsc::UnboundedReceiver<Signal>);

impl SignalSource for Fed {
    async fn recv(&mut self) -> io::Result<Signal> {
        self.0
            .recv()
            .await
            .ok_or_else(|| io::Error::other("closed"))
    }
}

/// A connection that ignores graceful shutdown and never finishes.
struct Stuck(#[allow(dead_code)] tokio::net::TcpStream);

impl Future for Stuck {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl GracefulConnection for Stuck {
    fn graceful_shutdown(self: Pin<&mut Self>) {}
}

/// Installs the collector once for this test binary.
fn collect() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Collect).unwrap());
}

/// The service's error, for `/fail`.
#[derive(Debug)]
struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the service failed")
    }
}

impl std::error::Error for Failed {}

/// Serves HTTP on 127.0.0.1 with a service that fails on `/fail` and answers
/// "hello" otherwise; one peer writes `request` and reads until the server closes
/// the connection. Returns the level and message of the connection error event
/// naming that peer, once the server is stopped.
fn connection_error_event(request: &[u8]) -> (Level, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let peer = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(Tokio::current(), listener);
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown();
        let service = hyper::service::service_fn(|request: hyper::Request<_>| async move {
            if request.uri().path() == "/fail" {
                Err(Failed)
            } else {
                Ok(hyper::Response::new(String::from("hello")))
            }
        });
        let serving = tokio::spawn(wind_down::hyper::Http::new(server).serve(service));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let peer = client.local_addr().unwrap();
        client.write_all(request).await.unwrap();
        // Closed by the server; a reset is as good.
        let _ = tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut Vec::new()))
            .await
            .expect("the failed connection was not closed");
        let needle = format!("connection error from {peer}");
        for _ in 0..6000 {
            if MESSAGES.lock().unwrap().iter().any(|m| m.contains(&needle)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.trigger();
        let outcome = tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("serve hung")
            .unwrap()
            .unwrap();
        assert!(outcome.is_drained());
        peer
    });
    let needle = format!("connection error from {peer}");
    let events = EVENTS.lock().unwrap().clone();
    let mut reported = events.iter().filter(|(_, m)| m.contains(&needle));
    let (level, message) = reported
        .next()
        .unwrap_or_else(|| panic!("no event names {peer}: {events:#?}"))
        .clone();
    assert!(reported.next().is_none(), "{events:#?}");
    (level, message)
}

/// A malformed request: the connection's error is an event naming the peer,
/// not dropped silently; the peer caused it, so it is at debug level.
#[test]
fn connection_errors_are_reported_as_events() {
    let (level, message) = connection_error_event(b"NOT HTTP AT ALL\r\n\r\n");
    assert!(message.contains("invalid"), "{message}");
    assert_eq!(level, Level::DEBUG, "{message}");
}

/// HTTP/2 protocol errors of the peer, after a valid preface, are at debug level.
#[test]
fn peer_http2_errors_are_debug_events() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // Frame header: 24-bit length, type, flags, 31-bit stream id; then the payload.
    const SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    const DATA_ON_STREAM_0: &[u8] = &[0, 0, 0, 0x0, 0, 0, 0, 0, 0];
    const GOAWAY_PROTOCOL_ERROR: &[u8] = &[0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let cases = [
        ("garbage after the preface", [PREFACE, &[0xff; 32]].concat()),
        (
            "DATA on stream 0",
            [PREFACE, SETTINGS, DATA_ON_STREAM_0].concat(),
        ),
        (
            "GOAWAY(PROTOCOL_ERROR) from the peer",
            [PREFACE, SETTINGS, GOAWAY_PROTOCOL_ERROR].concat(),
        ),
    ];
    for (case, request) in cases {
        let (level, message) = connection_error_event(&request);
        assert_eq!(level, Level::DEBUG, "{case}: {message}");
    }
}

/// An error the peer did not cause (here the service's) is at warn level.
#[test]
fn other_connection_errors_are_warn_events() {
    let (level, message) = connection_error_event(b"GET /fail HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(level, Level::WARN, "{message}");
}

#[test]
fn shutdown_progress_is_reported_as_events() {
    collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (signal, signals) = tokio::sync::mpsc::unbounded_channel();
    let (outcome, peer) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(Tokio::current(), listener)
            .grace_period(Duration::from_millis(2500))
            .signals(Fed(signals));
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown();
        let serving = tokio::spawn(server.serve(|io, _| Stuck(io)));
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let peer = client.local_addr().unwrap();
        for _ in 0..6000 {
            if shutdown.report().remaining == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            shutdown.report().remaining,
            1,
            "the connection was never watched"
        );
        signal.send(Signal::Terminate).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("serve hung")
            .unwrap()
            .unwrap();
        drop(client);
        (outcome, peer)
    });
    assert_eq!(outcome.remaining(), 1);
    let report = outcome.report().expect("forced");
    assert_eq!(report.stragglers.len(), 1, "{report}");
    assert_eq!(report.stragglers[0].kind, WatcherKind::Connection);
    assert_eq!(report.stragglers[0].label, peer.to_string());
    let messages = MESSAGES.lock().unwrap().clone();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("received Terminate"), "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.ends_with("stopped accepting; draining 1 watcher")),
        "one watcher, in the singular: {messages:#?}"
    );
    assert!(has("draining: 1 still in flight"), "{messages:#?}");
    // The progress names the oldest labelled watchers: the stuck connection.
    assert!(
        has(&format!("still in flight; oldest: connection {peer} for")),
        "{messages:#?}"
    );
    assert!(
        has(&format!("forced: connection {peer} for")),
        "{messages:#?}"
    );
    assert!(has("shutdown forced with 1 still running"), "{messages:#?}");
}

/// Of seven labelled guards held through a drain, the progress event names the
/// five oldest, oldest first.
#[test]
fn progress_names_the_five_oldest() {
    collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let is_progress =
        |m: &String| m.starts_with("draining: 7 still in flight") && m.contains("five-oldest-");
    let outcome = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The deadline only bounds a hang: the guards go once the progress is seen.
        let server = Server::new(Tokio::current(), listener).grace_period(Duration::from_secs(60));
        let shutdown = server.shutdown();
        let mut guards = Vec::new();
        for i in 0..7 {
            guards.push(
                shutdown
                    .guard()
                    .unwrap()
                    .with_label(format!("five-oldest-{i}")),
            );
            // Distinct ages.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let serving = tokio::spawn(server.serve(|io, _| Stuck(io)));
        shutdown.trigger();
        // The first progress event comes a second into the drain.
        for _ in 0..6000 {
            if MESSAGES.lock().unwrap().iter().any(is_progress) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(guards);
        tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("serve hung")
            .unwrap()
            .unwrap()
    });
    assert!(outcome.is_drained());
    let messages = MESSAGES.lock().unwrap().clone();
    let progress = messages
        .iter()
        .find(|m| is_progress(m))
        .unwrap_or_else(|| panic!("no progress event: {messages:#?}"));
    let (_, oldest) = progress
        .split_once("; oldest: ")
        .unwrap_or_else(|| panic!("names none: {progress}"));
    let named: Vec<&str> = oldest.split(", ").collect();
    assert_eq!(named.len(), 5, "{progress}");
    for (i, straggler) in named.iter().enumerate() {
        assert!(
            straggler.starts_with(&format!("guard five-oldest-{i} for ")),
            "{progress}"
        );
    }
    for young in [5, 6] {
        assert!(
            !progress.contains(&format!("five-oldest-{young}")),
            "{progress}"
        );
    }
}
