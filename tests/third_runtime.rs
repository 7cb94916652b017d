//! The core on a third runtime: `examples/common/pool_runtime.rs`, a std-only
//! thread pool with a thread-backed sleep, neither tokio nor smol.
//!
//! Every wait here is bounded by `HANG`, which only catches hangs: no assertion
//! depends on timing.

#[path = "../examples/common/pool_runtime.rs"]
mod pool_runtime;

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::future;
use pool_runtime::{PoolRuntime, ThreadSleep};
use wind_down::{
    GracefulConnection, Listener, Outcome, Phase, Refused, Runtime, Server, Shutdown, Stopped,
};

/// Generous bound on every wait, to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(60);

/// Runs `fut` on this thread, failing the test if it hangs.
fn block_on<F: Future>(fut: F) -> F::Output {
    let guarded = future::or(async { Some(fut.await) }, async {
        ThreadSleep::new(HANG).await;
        None
    });
    future::block_on(guarded).expect("hung")
}

/// What a test connection saw.
#[derive(Default)]
struct Probe {
    graceful_calls: AtomicUsize,
    drops: AtomicUsize,
}

/// A connection that waits until asked to close, then takes a few more polls (it
/// wakes itself) and completes with the number of polls since the request. A
/// stubborn one ignores the request and never completes.
struct Conn {
    probe: Arc<Probe>,
    closing: bool,
    stubborn: bool,
    polls_after_close: u32,
}

/// Polls a closing connection takes before it completes.
const CLOSING_POLLS: u32 = 5;

impl Conn {
    fn new(stubborn: bool) -> (Conn, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let conn = Conn {
            probe: probe.clone(),
            closing: false,
            stubborn,
            polls_after_close: 0,
        };
        (conn, probe)
    }
}

impl Future for Conn {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let this = self.get_mut();
        // Until the close request, nothing to do: the coordinator wakes a watched
        // connection at the trigger.
        if !this.closing || this.stubborn {
            return Poll::Pending;
        }
        this.polls_after_close += 1;
        if this.polls_after_close >= CLOSING_POLLS {
            return Poll::Ready(this.polls_after_close);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl GracefulConnection for Conn {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.probe.graceful_calls.fetch_add(1, Ordering::SeqCst);
        this.closing = true;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.probe.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Spawns `fut` on `runtime`; the receiver gets its output.
fn spawn_reporting<F>(runtime: &PoolRuntime, fut: F) -> mpsc::Receiver<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (report, result) = mpsc::channel();
    runtime.spawn(async move {
        let _ = report.send(fut.await);
    });
    result
}

#[test]
fn graceful_close_is_asked_once_and_the_drain_completes() {
    let runtime = PoolRuntime::new(2);
    let shutdown = Shutdown::new();
    let (conn, probe) = Conn::new(false);
    let conn = spawn_reporting(&runtime, shutdown.watch(conn));
    let guard = shutdown.guard().expect("not drained");

    assert!(shutdown.trigger());
    assert_eq!(shutdown.guard().map(drop), Ok(()), "guards until drained");
    drop(guard);
    let outcome = block_on(shutdown.drain_until(runtime.sleep(HANG)));

    assert_eq!(outcome, Outcome::Drained);
    assert_eq!(conn.recv_timeout(HANG), Ok(Ok(CLOSING_POLLS)));
    assert_eq!(probe.graceful_calls.load(Ordering::SeqCst), 1);
    assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
    assert_eq!(shutdown.phase(), Phase::Drained);
    assert_eq!(shutdown.report().remaining, 0);
    // Refused as drained, not as forced: it was never forced.
    assert_eq!(shutdown.guard().map(drop), Err(Refused::Drained));
}

#[test]
fn a_trigger_before_the_first_poll_still_asks_once() {
    let runtime = PoolRuntime::new(2);
    let shutdown = Shutdown::new();
    let (conn, probe) = Conn::new(false);
    let watched = shutdown.watch(conn);
    shutdown.trigger();
    let conn = spawn_reporting(&runtime, watched);

    let outcome = block_on(shutdown.drain_until(runtime.sleep(HANG)));

    assert_eq!(outcome, Outcome::Drained);
    assert_eq!(conn.recv_timeout(HANG), Ok(Ok(CLOSING_POLLS)));
    assert_eq!(probe.graceful_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn tracked_work_is_waited_for() {
    let runtime = PoolRuntime::new(2);
    let shutdown = Shutdown::new();
    // The job finishes when the test closes this channel.
    let (release, released) = smol::channel::bounded::<()>(1);
    let job = spawn_reporting(
        &runtime,
        shutdown.track(async move {
            let _ = released.recv().await;
            "done"
        }),
    );
    shutdown.trigger();

    let mut drain = Box::pin(shutdown.drain_until(runtime.sleep(HANG)));
    assert_eq!(
        block_on(future::poll_once(&mut drain)),
        None,
        "job still running"
    );
    assert_eq!(shutdown.report().remaining, 1);
    drop(release);

    assert_eq!(block_on(drain), Outcome::Drained);
    assert_eq!(job.recv_timeout(HANG), Ok(Ok("done")));
}

#[test]
fn a_connection_that_never_finishes_is_forced_at_the_deadline() {
    let runtime = PoolRuntime::new(2);
    let shutdown = Shutdown::new();
    let (conn, probe) = Conn::new(true);
    let conn = spawn_reporting(&runtime, shutdown.watch(conn));
    let stuck = spawn_reporting(&runtime, shutdown.track(future::pending::<()>()));
    let guard = shutdown.guard().expect("not drained");

    shutdown.trigger();
    drop(guard);
    // Nothing else can finish: the outcome does not depend on this deadline.
    let outcome = block_on(shutdown.drain_until(runtime.sleep(Duration::from_millis(50))));

    assert_eq!(outcome.remaining(), 2);
    assert_eq!(conn.recv_timeout(HANG), Ok(Err(Stopped::Forced)));
    assert_eq!(stuck.recv_timeout(HANG), Ok(Err(Stopped::Forced)));
    assert_eq!(probe.graceful_calls.load(Ordering::SeqCst), 1);
    assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
    // Drained after the force: done, and refused as forced.
    assert_eq!(shutdown.phase(), Phase::Drained);
    assert_eq!(shutdown.guard().map(drop), Err(Refused::Forced));
}

#[test]
fn a_leaked_guard_is_reported_as_remaining() {
    let runtime = PoolRuntime::new(2);
    let shutdown = Shutdown::new();
    let (conn, probe) = Conn::new(false);
    let conn = spawn_reporting(&runtime, shutdown.watch(conn));
    std::mem::forget(shutdown.guard().expect("not drained"));

    shutdown.trigger();
    // The connection is done before the drain starts: only the guard is left.
    assert_eq!(conn.recv_timeout(HANG), Ok(Ok(CLOSING_POLLS)));
    let outcome = block_on(shutdown.drain_until(runtime.sleep(Duration::from_millis(50))));

    assert_eq!(outcome.remaining(), 1);
    assert_eq!(probe.graceful_calls.load(Ordering::SeqCst), 1);
    assert_eq!(shutdown.report().remaining, 1);
    assert_eq!(
        shutdown.phase(),
        Phase::Forced,
        "a leaked guard keeps it undrained"
    );
    let mut drained = shutdown.drained();
    assert!(block_on(future::poll_once(&mut drained)).is_none());
}

#[test]
fn an_earlier_force_reports_the_watchers_alive_at_that_force() {
    let runtime = PoolRuntime::new(2);
    let shutdown = Shutdown::new();
    let (conn, _probe) = Conn::new(true);
    let conn = spawn_reporting(&runtime, shutdown.watch(conn));

    shutdown.trigger();
    let forced = shutdown.force();
    assert_eq!(forced.remaining(), 1);
    // The forced connection is gone before the drain is even polled.
    assert_eq!(conn.recv_timeout(HANG), Ok(Err(Stopped::Forced)));
    assert_eq!(shutdown.report().remaining, 0);
    let outcome = block_on(shutdown.drain_until(future::pending::<()>()));

    assert_eq!(outcome, forced, "the report taken at the force");
}

/// A std listener polled on the runtime's timer: this runtime has no reactor.
struct PolledListener {
    inner: TcpListener,
    runtime: PoolRuntime,
}

impl PolledListener {
    fn bind(runtime: &PoolRuntime) -> io::Result<PolledListener> {
        let inner = TcpListener::bind("127.0.0.1:0")?;
        inner.set_nonblocking(true)?;
        Ok(PolledListener {
            inner,
            runtime: runtime.clone(),
        })
    }
}

impl Listener for PolledListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        match self.inner.accept() {
            // Nothing yet: try once more after a pause. Another `WouldBlock` goes to
            // the accept loop, which retries at once.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.runtime.sleep(Duration::from_millis(5)).await;
                self.inner.accept()
            }
            other => other,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Says "hello" on its first poll; asked to close, says "bye" and closes.
struct Greeter {
    stream: TcpStream,
    greeted: bool,
    closing: bool,
    graceful_calls: Arc<AtomicUsize>,
}

impl Future for Greeter {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.greeted {
            this.greeted = true;
            this.stream.write_all(b"hello\n").expect("write hello");
        }
        if this.closing {
            this.stream.write_all(b"bye\n").expect("write bye");
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl GracefulConnection for Greeter {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.graceful_calls.fetch_add(1, Ordering::SeqCst);
        this.closing = true;
    }
}

fn read_all(stream: &mut TcpStream) -> String {
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read until close");
    text
}

#[test]
fn server_on_a_polled_std_listener_drains_its_connections() {
    let runtime = PoolRuntime::new(2);
    let listener = PolledListener::bind(&runtime).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(runtime.clone(), listener).grace_period(HANG);
    let shutdown = server.shutdown();
    let graceful_calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let graceful_calls = graceful_calls.clone();
        move |stream: TcpStream, _peer: SocketAddr| {
            stream.set_nonblocking(false).expect("blocking stream");
            Greeter {
                stream,
                greeted: false,
                closing: false,
                graceful_calls: graceful_calls.clone(),
            }
        }
    };
    let (report, served) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = report.send(future::block_on(server.serve(handler)).map_err(|e| e.to_string()));
    });

    let mut clients: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut client = TcpStream::connect(addr).unwrap();
            client.set_read_timeout(Some(HANG)).unwrap();
            let mut hello = [0u8; 6];
            client.read_exact(&mut hello).unwrap();
            assert_eq!(&hello, b"hello\n");
            client
        })
        .collect();
    // Both connections are served (and so watched) now.
    assert_eq!(shutdown.report().remaining, 2);

    assert!(shutdown.trigger());
    for client in &mut clients {
        assert_eq!(read_all(client), "bye\n");
    }
    assert_eq!(served.recv_timeout(HANG), Ok(Ok(Outcome::Drained)));

    assert_eq!(graceful_calls.load(Ordering::SeqCst), 2);
    let refused = TcpStream::connect(addr).map(drop).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
