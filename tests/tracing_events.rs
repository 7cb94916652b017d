//! With the `tracing` feature, a server's shutdown reports its progress as events:
//! the signal, the drain start, "still in flight" while draining, each forced item,
//! and the outcome. The signal source here is a channel (the seam the signal
//! adapters implement); real OS signals are exercised in `tests/e2e.rs`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use wind_down::tokio::Tokio;
use wind_down::{GracefulConnection, Server, Signal, SignalSource, WatcherKind};

/// Every event's message, from every thread.
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

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

/// A malformed request: the connection's error is an event naming the peer,
/// not dropped silently.
#[test]
fn connection_errors_are_reported_as_events() {
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
        let hello = hyper::service::service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
        });
        let serving = tokio::spawn(server.serve_http(hello));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let peer = client.local_addr().unwrap();
        client.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut Vec::new()))
            .await
            .expect("the malformed connection was not closed");
        let needle = format!("connection error from {peer}");
        for _ in 0..6000 {
            if MESSAGES.lock().unwrap().iter().any(|m| m.contains(&needle)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.trigger();
        let outcome = serving.await.unwrap().unwrap();
        assert!(outcome.is_drained());
        peer
    });
    let messages = MESSAGES.lock().unwrap().clone();
    let needle = format!("connection error from {peer}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&needle) && m.contains("invalid")),
        "{messages:#?}"
    );
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
        has("stopped accepting; draining 1 watchers"),
        "{messages:#?}"
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
