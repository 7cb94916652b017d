//! The accept loop (`wind_down::Server`) against real TCP on 127.0.0.1, on each
//! runtime from one set of case bodies: connection limit, listener release,
//! accept-error handling (through a listener wrapper that injects errors in front
//! of a real listener), and shutdown during back-off.
//!
//! Timeouts only catch hangs.

#[path = "../examples/common/app.rs"]
mod app;
#[path = "common/load.rs"]
mod load;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use app::AppFuture;

use wind_down::hyper::{Http, HyperRuntime, IntoHyperIo};
use wind_down::{Listener, Outcome, Phase, ServeError, Server, Shutdown, Signal, SignalSource};

const HANG: Duration = Duration::from_secs(60);

/// Errors to return from `accept` before (or instead of) accepting for real.
#[derive(Clone, Default)]
struct Faults {
    queue: Arc<Mutex<VecDeque<io::Error>>>,
    /// Returned forever once `queue` is empty, if set.
    forever: Option<Arc<dyn Fn() -> io::Error + Send + Sync>>,
    attempts: Arc<AtomicUsize>,
}

/// A real listener with errors injected in front of it.
struct Faulty<L> {
    inner: L,
    faults: Faults,
}

impl<L: Listener> Listener for Faulty<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> io::Result<(L::Io, L::Addr)> {
        self.faults.attempts.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = self.faults.queue.lock().unwrap().pop_front() {
            return Err(error);
        }
        if let Some(forever) = &self.faults.forever {
            return Err(forever());
        }
        self.inner.accept().await
    }

    fn local_addr(&self) -> io::Result<L::Addr> {
        self.inner.local_addr()
    }
}

struct Options {
    limit: Option<usize>,
    deadline: Duration,
    faults: Faults,
    /// Counts the ticks of a task on the server's runtime, every 10 ms until the
    /// trigger, if set.
    ticks: Option<Arc<AtomicUsize>>,
    /// A signal source that fails when this channel yields: with an error, or by
    /// panicking (`true`).
    failing_signals: Option<(smol::channel::Receiver<()>, bool)>,
    /// Held by every request while it runs, if set; with where to store its count
    /// at the moment `serve` returns (taken inside the runtime).
    held: Option<(Arc<()>, Arc<AtomicUsize>)>,
    /// Each connection error the server reports (its peer and message), if set.
    errors: Option<Reported>,
    /// The application's coordinator: the server runs in a child scope of it.
    parent: Option<Shutdown>,
    /// A bound listener for `Http::health`, if set.
    health: Option<std::net::TcpListener>,
    /// `Server::drain_delay`, if set.
    drain_delay: Option<Duration>,
    /// `Http::go_away_during_delay`.
    go_away: bool,
    /// Where to store the app's count of running WebSocket sessions at the moment
    /// `serve` returns, if set.
    sessions_at_return: Option<Arc<AtomicUsize>>,
    /// Serve over TLS with these settings (`Http::tls`), if set.
    tls: TlsConfig,
}

#[cfg(feature = "tls")]
type TlsConfig = Option<wind_down::hyper::tls::Tls>;
#[cfg(not(feature = "tls"))]
type TlsConfig = NoTls;

/// No TLS settings: this build has no `tls` feature.
#[cfg(not(feature = "tls"))]
#[derive(Default)]
struct NoTls;

/// What a connection must be for this harness: TLS-capable too with `tls`.
#[cfg(feature = "tls")]
trait MaybeTls: wind_down::hyper::tls::TlsAccept {}
#[cfg(feature = "tls")]
impl<T: wind_down::hyper::tls::TlsAccept> MaybeTls for T {}
#[cfg(not(feature = "tls"))]
trait MaybeTls {}
#[cfg(not(feature = "tls"))]
impl<T> MaybeTls for T {}

/// Holds its `Arc` through a slow destructor (50 ms): a request cut short at a
/// force is still being dropped well after the force.
struct SlowDrop(#[allow(dead_code)] Arc<()>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The connection errors a server reported: each peer and error message.
type Reported = Arc<Mutex<Vec<(SocketAddr, String)>>>;

/// A signal source that fails on command.
struct Failing {
    fail: smol::channel::Receiver<()>,
    panic: bool,
}

impl SignalSource for Failing {
    async fn recv(&mut self) -> io::Result<Signal> {
        let _ = self.fail.recv().await;
        if self.panic {
            panic!("the signal source broke");
        }
        Err(io::Error::other("the signal source broke"))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: None,
            deadline: Duration::from_secs(30),
            faults: Faults::default(),
            ticks: None,
            failing_signals: None,
            held: None,
            errors: None,
            parent: None,
            health: None,
            drain_delay: None,
            go_away: true,
            sessions_at_return: None,
            tls: Default::default(),
        }
    }
}

type Done = mpsc::Receiver<Result<Outcome, ServeError>>;

/// The part of starting a server that is the same on every runtime.
async fn serve<R, L>(
    runtime: R,
    listener: L,
    health: Option<L>,
    opts: Options,
    started: mpsc::Sender<(SocketAddr, Shutdown)>,
) -> Result<Outcome, ServeError>
where
    R: HyperRuntime,
    L: Listener<Addr = SocketAddr>,
    L::Io: IntoHyperIo + MaybeTls,
{
    let listener = Faulty {
        inner: listener,
        faults: opts.faults,
    };
    let mut server = match opts.parent {
        None => Server::new(runtime.clone(), listener),
        Some(parent) => Server::with_shutdown(runtime.clone(), listener, parent.child()),
    }
    .grace_period(opts.deadline);
    if let Some(delay) = opts.drain_delay {
        server = server.drain_delay(delay);
    }
    if let Some(limit) = opts.limit {
        server = server.max_connections(limit);
    }
    if let Some((fail, panic)) = opts.failing_signals {
        server = server.signals(Failing { fail, panic });
    }
    if let Some(ticks) = opts.ticks {
        let (shutdown, rt) = (server.shutdown(), runtime.clone());
        runtime.spawn(async move {
            let ticker = async {
                for _ in 0..100_000 {
                    rt.sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            };
            shutdown.run_until_triggered(ticker).await;
        });
    }
    started
        .send((server.local_addr().unwrap(), server.shutdown()))
        .unwrap();
    let mut server = Http::new(server).go_away_during_delay(opts.go_away);
    if let Some(health) = health {
        server = server.health(Faulty {
            inner: health,
            faults: Faults::default(),
        });
    }
    if let Some(errors) = opts.errors {
        server = server.on_connection_error(move |peer, error| {
            errors.lock().unwrap().push((*peer, error.to_string()));
        });
    }
    let app = app::App::new(runtime);
    let sessions = app.sessions();
    let result = match opts.held {
        None => serve_app(server, app, opts.tls).await,
        Some((held, count_at_return)) => {
            let probe = held.clone();
            // The app, with every request holding `held` while it runs.
            let service = hyper::service::service_fn(move |req| {
                let held = held.clone();
                let response = hyper::service::Service::call(&app, req);
                Box::pin(async move {
                    let _held = SlowDrop(held);
                    response.await
                }) as AppFuture
            });
            let result = serve_app(server, service, opts.tls).await;
            count_at_return.store(Arc::strong_count(&probe), Ordering::SeqCst);
            result
        }
    };
    if let Some(at_return) = opts.sessions_at_return {
        at_return.store(sessions.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    result
}

/// Serves `service` over TLS if `tls` is set, else over plain TCP.
async fn serve_app<R, L, S>(
    server: Http<R, L>,
    service: S,
    tls: TlsConfig,
) -> Result<Outcome, ServeError>
where
    R: HyperRuntime,
    L: Listener,
    L::Io: IntoHyperIo + MaybeTls,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<app::AppBody>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        return server.tls(tls).serve(service).await;
    }
    #[cfg(not(feature = "tls"))]
    let NoTls = tls;
    server.serve(service).await
}

/// A runtime to run the server on, in a thread of its own.
trait Harness {
    fn start(opts: Options) -> (SocketAddr, Shutdown, Done);
}

fn spawn_server(
    run: impl FnOnce(mpsc::Sender<(SocketAddr, Shutdown)>) -> Result<Outcome, ServeError>
    + Send
    + 'static,
) -> (SocketAddr, Shutdown, Done) {
    let (started, start) = mpsc::channel();
    let (finished, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = finished.send(run(started));
    });
    let (addr, shutdown) = start.recv_timeout(HANG).expect("server did not start");
    (addr, shutdown, done)
}

fn bind() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

struct OnTokio;

impl Harness for OnTokio {
    fn start(opts: Options) -> (SocketAddr, Shutdown, Done) {
        spawn_server(move |started| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = wind_down::tokio::listener_from_std(bind()).unwrap();
                let health = opts
                    .health
                    .as_ref()
                    .map(|l| wind_down::tokio::listener_from_std(l.try_clone().unwrap()).unwrap());
                let runtime = wind_down::tokio::Tokio::current();
                serve(runtime, listener, health, opts, started).await
            })
        })
    }
}

#[cfg(feature = "smol")]
struct OnSmol;

#[cfg(feature = "smol")]
impl Harness for OnSmol {
    fn start(opts: Options) -> (SocketAddr, Shutdown, Done) {
        spawn_server(move |started| {
            let ex = Arc::new(smol::Executor::new());
            let (stop, stopped) = smol::channel::unbounded::<()>();
            let worker = {
                let (ex, stopped) = (ex.clone(), stopped.clone());
                std::thread::spawn(move || smol::block_on(ex.run(stopped.recv())))
            };
            let result = smol::block_on(ex.run(async {
                let listener = wind_down::smol::listener_from_std(bind()).unwrap();
                let health = opts
                    .health
                    .as_ref()
                    .map(|l| wind_down::smol::listener_from_std(l.try_clone().unwrap()).unwrap());
                let runtime = wind_down::smol::Smol::new(ex.clone());
                serve(runtime, listener, health, opts, started).await
            }));
            drop(stop);
            let _ = worker.join();
            result
        })
    }
}

macro_rules! per_runtime {
    ($($name:ident),* $(,)?) => {
        mod tokio_rt {
            $( #[test] fn $name() { super::$name::<super::OnTokio>() } )*
        }
        #[cfg(feature = "smol")]
        mod smol_rt {
            $( #[test] fn $name() { super::$name::<super::OnSmol>() } )*
        }
    };
}

per_runtime!(
    connection_limit_admits_as_capacity_frees,
    listener_is_released_when_serve_returns,
    fatal_listener_error_ends_serve_with_the_error,
    per_connection_errors_are_retried_at_once,
    per_connection_errors_forever_back_off_and_the_trigger_stops_them,
    resource_errors_back_off_and_shutdown_cuts_the_back_off,
    signal_source_error_drains_and_is_returned,
    signal_source_panic_drains_and_is_returned,
    serve_returns_only_when_every_connection_let_go,
    serve_returns_only_when_every_http2_stream_let_go,
    connection_errors_reach_the_callback,
    server_in_a_child_scope_stops_with_its_parent,
    health_listener_answers_through_the_drain_and_closes_after,
    connections_go_away_during_the_drain_delay,
    without_go_away_connections_stay_during_the_drain_delay,
    event_streams_end_cleanly_at_the_trigger,
    an_endless_stream_is_forced_at_the_deadline_and_named,
    websocket_sessions_say_goodbye_and_the_drain_waits_for_them,
    a_deaf_websocket_session_is_forced_and_named,
    no_request_written_before_the_trigger_is_lost,
    connections_without_a_request_are_closed_after_the_pre_request_grace,
    a_drain_delay_not_shorter_than_the_grace_period_is_refused,
    every_probe_of_a_flood_gets_a_status_through_the_drain,
    a_half_sent_probe_does_not_hold_serve,
);

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

/// Sends a request on a new connection.
fn connect_and_ask(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(REQUEST).unwrap();
    s
}

/// Whether a full `hello` response arrives within `wait`.
fn answered_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"hello\n") {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return false,
        }
    }
    true
}

fn finish(shutdown: &Shutdown, done: &Done) -> Result<Outcome, ServeError> {
    shutdown.trigger();
    done.recv_timeout(HANG).expect("serve did not return")
}

/// Limit 3, 12 clients: exactly 3 are served, the rest wait in the backlog; closing
/// one admits one more; at shutdown the queued ones are closed unserved.
fn connection_limit_admits_as_capacity_frees<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options {
        limit: Some(3),
        ..Options::default()
    });
    let mut clients: Vec<TcpStream> = (0..12).map(|_| connect_and_ask(addr)).collect();
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        // The first three are answered; give the others a fair chance to be wrongly
        // answered too.
        let wait = if i < 3 {
            HANG
        } else {
            Duration::from_millis(100)
        };
        if answered_within(c, wait) {
            served.push(i);
        } else {
            waiting.push(i);
        }
    }
    assert_eq!(served, [0, 1, 2], "only the first three may be served");
    assert_eq!(shutdown.report().remaining, 3);

    // Free one slot: exactly one waiting client is admitted, the oldest (the
    // kernel's accept queue is FIFO).
    drop(clients.remove(0));
    assert!(
        answered_within(&mut clients[2], HANG),
        "a freed slot admitted nobody"
    );
    for c in &mut clients[3..] {
        assert!(
            !answered_within(c, Duration::from_millis(100)),
            "admitted past the limit"
        );
    }
    assert_eq!(shutdown.report().remaining, 3);

    // Shutdown: idle served connections close, queued ones are never served.
    let outcome = finish(&shutdown, &done).unwrap();
    assert_eq!(outcome, Outcome::Drained);
    for c in &mut clients {
        assert!(!answered_within(c, HANG), "served after shutdown");
    }
}

/// After `serve` returns, the address can be bound again at once.
fn listener_is_released_when_serve_returns<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options::default());
    let mut c = connect_and_ask(addr);
    assert!(answered_within(&mut c, HANG));
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
    std::net::TcpListener::bind(addr).expect("address still in use after serve returned");
}

/// A drain delay as long as the grace period would force the drain the moment it
/// starts: serve refuses it with a clear error before serving, releases the
/// listener, and leaves the coordinator running.
fn a_drain_delay_not_shorter_than_the_grace_period_is_refused<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options {
        deadline: Duration::from_secs(1),
        drain_delay: Some(Duration::from_secs(1)),
        ..Options::default()
    });
    let err = done
        .recv_timeout(HANG)
        .expect("serve hung on refused settings")
        .unwrap_err();
    assert_eq!(err.error.kind(), io::ErrorKind::InvalidInput, "{err}");
    let message = err.error.to_string();
    assert!(
        message.contains("drain_delay (1s) must be shorter than grace_period (1s)"),
        "{message}"
    );
    assert_eq!(shutdown.phase(), Phase::Running);
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

/// EBADF from accept: serve triggers, drains and returns the error; no hang, no spin.
fn fatal_listener_error_ends_serve_with_the_error<H: Harness>() {
    let faults = Faults::default();
    faults
        .queue
        .lock()
        .unwrap()
        .push_back(io::Error::from_raw_os_error(9));
    let (_addr, shutdown, done) = H::start(Options {
        faults: faults.clone(),
        ..Options::default()
    });
    let err = done
        .recv_timeout(HANG)
        .expect("serve hung on a fatal error")
        .unwrap_err();
    assert_eq!(err.error.raw_os_error(), Some(9));
    assert_eq!(err.outcome, Outcome::Drained);
    assert_eq!(shutdown.phase(), Phase::Drained);
    assert_eq!(faults.attempts.load(Ordering::SeqCst), 1);
}

/// A burst of per-connection errors shorter than the immediate-retry budget (64) is
/// skipped without back-off: a client behind them is served. (Backing off from the
/// first error would take 50 ms doubling to 1 s per error: about 58 s for 63.)
fn per_connection_errors_are_retried_at_once<H: Harness>() {
    const ERRORS: usize = 63;
    let faults = Faults::default();
    {
        let mut q = faults.queue.lock().unwrap();
        for i in 0..ERRORS {
            q.push_back(match i % 4 {
                0 => io::ErrorKind::ConnectionAborted.into(),
                1 => io::ErrorKind::ConnectionReset.into(),
                2 => io::ErrorKind::ConnectionRefused.into(),
                _ => io::Error::from_raw_os_error(if cfg!(target_os = "linux") { 71 } else { 53 }),
            });
        }
    }
    let (addr, shutdown, done) = H::start(Options {
        faults: faults.clone(),
        ..Options::default()
    });
    let mut c = connect_and_ask(addr);
    assert!(
        answered_within(&mut c, Duration::from_secs(15)),
        "client behind the errors not served without back-off"
    );
    // Every injected error was consumed, then the real accept ran (and runs again).
    assert!(faults.attempts.load(Ordering::SeqCst) > ERRORS);
    assert!(faults.queue.lock().unwrap().is_empty());
    drop(c);
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
}

/// Each class of per-connection error, forever: after the immediate retries the
/// loop backs off, so accept calls stay bounded (a spinning loop makes millions a
/// second), another task on the runtime keeps ticking, and the trigger ends serve.
fn per_connection_errors_forever_back_off_and_the_trigger_stops_them<H: Harness>() {
    type Make = fn() -> io::Error;
    let classes: [(&str, Make); 5] = [
        ("ECONNABORTED", || io::ErrorKind::ConnectionAborted.into()),
        ("EPROTO", || io::Error::from_raw_os_error(71)),
        ("EPERM", || io::Error::from_raw_os_error(1)),
        ("WouldBlock", || io::ErrorKind::WouldBlock.into()),
        ("Interrupted", || io::ErrorKind::Interrupted.into()),
    ];
    for (name, make) in classes {
        let faults = Faults {
            forever: Some(Arc::new(make)),
            ..Faults::default()
        };
        let ticks = Arc::new(AtomicUsize::new(0));
        let (_addr, shutdown, done) = H::start(Options {
            faults: faults.clone(),
            ticks: Some(ticks.clone()),
            ..Options::default()
        });
        // Past the 64 immediate retries, the loop is backing off: over the next
        // second it may call accept a few times (one per back-off sleep), never
        // the millions a spinning loop makes. Only an upper bound: a loaded
        // machine makes fewer calls, never more.
        let start = std::time::Instant::now();
        while faults.attempts.load(Ordering::SeqCst) <= 64 && start.elapsed() < HANG {
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = faults.attempts.load(Ordering::SeqCst);
        assert!(before > 64, "{name}: the accept loop never ran");
        std::thread::sleep(Duration::from_millis(1000));
        let in_a_second = faults.attempts.load(Ordering::SeqCst) - before;
        assert!(
            in_a_second <= 20,
            "{name}: {in_a_second} accept calls in a second"
        );
        let start = std::time::Instant::now();
        while ticks.load(Ordering::SeqCst) == 0 && start.elapsed() < HANG {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            ticks.load(Ordering::SeqCst) > 0,
            "{name}: the ticker starved"
        );
        assert_eq!(
            finish(&shutdown, &done).unwrap(),
            Outcome::Drained,
            "{name}"
        );
    }
}

/// EMFILE forever: accept is retried on a timer, not in a loop; a trigger during
/// the back-off ends serve.
fn resource_errors_back_off_and_shutdown_cuts_the_back_off<H: Harness>() {
    let faults = Faults {
        forever: Some(Arc::new(|| io::Error::from_raw_os_error(24))),
        ..Faults::default()
    };
    let (_addr, shutdown, done) = H::start(Options {
        faults: faults.clone(),
        ..Options::default()
    });
    // Once the loop runs, 1.5 s hold at most a handful of attempts (50 + 100 +
    // 200 + 400 + 800 ms of back-off), where a retry loop would make millions.
    // Only an upper bound: a loaded machine makes fewer, never more.
    let start = std::time::Instant::now();
    while faults.attempts.load(Ordering::SeqCst) == 0 && start.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let attempts = faults.attempts.load(Ordering::SeqCst);
    assert!((1..=10).contains(&attempts), "attempts={attempts}");
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
}

/// A signal source that fails: the server does not go on deaf. It drains (an open
/// connection is closed, its request answered first), and `serve` returns the
/// source's error with the drain's outcome.
fn signal_source_failure<H: Harness>(panic: bool) {
    let (fail, failed) = smol::channel::bounded(1);
    let (addr, shutdown, done) = H::start(Options {
        failing_signals: Some((failed, panic)),
        ..Options::default()
    });
    let mut c = connect_and_ask(addr);
    assert!(
        answered_within(&mut c, HANG),
        "not serving before the failure"
    );
    fail.try_send(()).unwrap();
    let err = done
        .recv_timeout(HANG)
        .expect("serve did not end after the signal source failed")
        .expect_err("a failed signal source is an error of serve");
    let expected = if panic {
        "the signal source panicked"
    } else {
        "the signal source broke"
    };
    assert_eq!(err.error.to_string(), expected);
    assert_eq!(err.outcome, Outcome::Drained);
    assert_eq!(shutdown.phase(), Phase::Drained);
    // The idle keep-alive connection was closed by the drain.
    assert!(!answered_within(&mut c, HANG));
    // `?` in a function returning io::Result keeps the whole error inside.
    let as_io: io::Error = err.into();
    assert!(as_io.get_ref().unwrap().is::<ServeError>());
}

fn signal_source_error_drains_and_is_returned<H: Harness>() {
    signal_source_failure::<H>(false);
}

fn signal_source_panic_drains_and_is_returned<H: Harness>() {
    signal_source_failure::<H>(true);
}

/// A forced drain: when `serve` returns, no connection task holds the
/// service's state any more, so the application may close what it shares with
/// them (a database pool) right away.
fn serve_returns_only_when_every_connection_let_go<H: Harness>() {
    let held = Arc::new(());
    let count_at_return = Arc::new(AtomicUsize::new(0));
    let (addr, shutdown, done) = H::start(Options {
        held: Some((held.clone(), count_at_return.clone())),
        deadline: Duration::from_millis(200),
        ..Options::default()
    });
    let mut stuck = Vec::new();
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /slow/60000 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .unwrap();
        stuck.push(c);
    }
    // This test's own, the harness's probe, the server's service, and per
    // connection its copy of the service and its request in flight.
    wait_until_held(&held, 1 + 1 + 1 + 5 * 2, "five requests in flight");
    let outcome = finish(&shutdown, &done).unwrap();
    assert_eq!(outcome.remaining(), 5, "{outcome}");
    assert_eq!(
        count_at_return.load(Ordering::SeqCst),
        2,
        "a connection still held the service's state when serve returned"
    );
}

/// A malformed request: the connection's error reaches `on_connection_error`, with
/// the peer's address, instead of being dropped.
fn connection_errors_reach_the_callback<H: Harness>() {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (addr, shutdown, done) = H::start(Options {
        errors: Some(errors.clone()),
        ..Options::default()
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let peer = c.local_addr().unwrap();
    c.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    // The server answers 400 or closes: either way the connection ends.
    c.set_read_timeout(Some(HANG)).unwrap();
    let _ = c.read_to_end(&mut Vec::new());
    let start = std::time::Instant::now();
    while errors.lock().unwrap().is_empty() && start.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(5));
    }
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, peer);
    assert!(errors[0].1.contains("invalid"), "{errors:?}");
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
}

/// Sends a request for `path` to a server started with `held`, and returns once
/// it is in its handler (not just its connection accepted): `held` is then held
/// by this test, the harness's probe, the service, the connection's copy of it,
/// and the request.
fn request_in_handler(addr: SocketAddr, held: &Arc<()>, path: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    wait_until_held(held, 5, "the request never reached its handler");
    c
}

/// Waits until `held` has `count` holders (requests in their handlers hold it).
fn wait_until_held(held: &Arc<()>, count: usize, what: &str) {
    let start = std::time::Instant::now();
    while Arc::strong_count(held) < count && start.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(Arc::strong_count(held), count, "{what}");
}

/// A server in a child scope of the application's coordinator: the handle it
/// gives out is its own scope's (the coordinator is chosen at creation), and the
/// application's trigger stops it, with the application's drain waiting for it.
fn server_in_a_child_scope_stops_with_its_parent<H: Harness>() {
    let app = Shutdown::new();
    let held = Arc::new(());
    let (addr, shutdown, done) = H::start(Options {
        parent: Some(app.clone()),
        held: Some((held.clone(), Arc::new(AtomicUsize::new(0)))),
        ..Options::default()
    });
    let mut c = request_in_handler(addr, &held, "/slow/2000");
    assert_eq!(
        app.report().remaining,
        1,
        "the server's connection counts in the app"
    );
    assert_eq!(
        shutdown.report().remaining,
        1,
        "the handle is the server's own scope"
    );
    app.trigger();
    assert_eq!(
        shutdown.phase(),
        Phase::Triggered,
        "the server's scope followed"
    );
    // The in-flight request completes, with `connection: close`, then the close.
    c.set_read_timeout(Some(HANG)).unwrap();
    let mut response = String::new();
    let _ = c.read_to_string(&mut response);
    assert!(
        response.ends_with("slow 2000\n"),
        "the in-flight request was cut: {response:?}"
    );
    let outcome = done.recv_timeout(HANG).expect("serve did not return");
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    assert_eq!(app.phase(), Phase::Drained);
}

/// `Signals::new` outside a tokio runtime is an error, not a panic.
#[test]
fn tokio_signals_outside_a_runtime_is_an_error() {
    let error = wind_down::tokio::Signals::new().expect_err("no runtime here");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

/// A tokio runtime that records every sleep the server asks for.
#[derive(Clone)]
struct Recording {
    inner: wind_down::tokio::Tokio,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl wind_down::Runtime for Recording {
    type Sleep = tokio::time::Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(future);
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        self.sleeps.lock().unwrap().push(duration);
        self.inner.sleep(duration)
    }
}

/// A connection that never finishes.
struct Stuck(#[allow(dead_code)] tokio::net::TcpStream);

impl std::future::Future for Stuck {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

impl wind_down::GracefulConnection for Stuck {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {}
}

/// One grace budget: with a 300 ms drain delay and a 1.5 s grace period, the drain
/// is given what is left (at most 1.2 s), not a fresh 1.5 s; the stuck connection
/// is forced when the budget is spent.
#[test]
fn the_drain_gets_what_is_left_of_the_grace_period() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sleeps = Arc::new(Mutex::new(Vec::new()));
    let outcome = rt.block_on(async {
        let runtime = Recording {
            inner: wind_down::tokio::Tokio::current(),
            sleeps: sleeps.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(runtime, listener)
            .drain_delay(Duration::from_millis(300))
            .grace_period(Duration::from_millis(1500));
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown();
        let serving = tokio::spawn(server.serve(|io, _| Stuck(io)));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        for _ in 0..6000 {
            if shutdown.report().remaining == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(shutdown.report().remaining, 1);
        shutdown.announce();
        tokio::time::timeout(HANG, serving)
            .await
            .expect("serve hung")
            .unwrap()
            .unwrap()
    });
    assert_eq!(outcome.remaining(), 1, "{outcome}");
    let sleeps = sleeps.lock().unwrap().clone();
    // The delay, then the drain's deadline (the `tracing` feature adds 1 s
    // progress ticks, left out here).
    let asked: Vec<Duration> = sleeps
        .into_iter()
        .filter(|d| *d != Duration::from_secs(1))
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0], Duration::from_millis(300), "the delay: {asked:?}");
    assert!(
        asked[1] <= Duration::from_millis(1200),
        "the drain was given more than what is left of the grace period: {asked:?}"
    );
}

/// One request on a new connection to `addr`: the status code and the body, or
/// `None` if the connection is refused.
fn probe(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut c = TcpStream::connect(addr).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    c.write_all(request.as_bytes()).ok()?;
    c.set_read_timeout(Some(HANG)).unwrap();
    let mut response = String::new();
    c.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1)?.to_string();
    Some((status, body))
}

/// A server with a health listener, whose requests hold `held` while they run:
/// (main address, health address, held, coordinator, outcome).
fn start_with_health<H: Harness>() -> (SocketAddr, SocketAddr, Arc<()>, Shutdown, Done) {
    let health = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let health_addr = health.local_addr().unwrap();
    let held = Arc::new(());
    let (addr, shutdown, done) = H::start(Options {
        health: Some(health),
        held: Some((held.clone(), Arc::new(AtomicUsize::new(0)))),
        ..Options::default()
    });
    (addr, health_addr, held, shutdown, done)
}

/// The health listener: readiness 200 while serving; during the drain (the main
/// listener closed, a request still in flight) readiness 503 and liveness 200 on
/// the health address; it closes when the drain ends.
fn health_listener_answers_through_the_drain_and_closes_after<H: Harness>() {
    let (addr, health_addr, held, shutdown, done) = start_with_health::<H>();
    assert_eq!(probe(health_addr, "/ready"), Some((200, "ready\n".into())));
    assert_eq!(probe(health_addr, "/live"), Some((200, "live\n".into())));
    // A request in flight keeps the drain going while the probes run.
    let mut c = request_in_handler(addr, &held, "/slow/3000");
    shutdown.trigger();
    let start = std::time::Instant::now();
    while TcpStream::connect(addr).is_ok() && start.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "the main listener is still open"
    );
    assert_eq!(
        shutdown.phase(),
        Phase::Triggered,
        "the slow request is in flight"
    );
    assert_eq!(
        probe(health_addr, "/ready"),
        Some((503, "draining\n".into()))
    );
    assert_eq!(probe(health_addr, "/live"), Some((200, "live\n".into())));
    // An idle connection to the health address stays open: it is not in-flight
    // work of the server, whose count settles at the one slow request.
    let idle_probe = TcpStream::connect(health_addr).unwrap();
    let start = std::time::Instant::now();
    while shutdown.report().remaining != 1 && start.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(shutdown.report().remaining, 1, "health connections counted");
    drop(idle_probe);
    let outcome = done.recv_timeout(HANG).expect("serve did not return");
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    assert_eq!(
        probe(health_addr, "/live"),
        None,
        "the health listener outlived the drain"
    );
    assert_answered_slow(&mut c, 3000);
}

/// Reads the response of a `/slow/{ms}` request to its end and checks its body.
fn assert_answered_slow(c: &mut TcpStream, ms: u64) {
    let mut response = String::new();
    c.set_read_timeout(Some(HANG)).unwrap();
    let _ = c.read_to_string(&mut response);
    assert!(response.ends_with(&format!("slow {ms}\n")), "{response:?}");
}

/// Probes in a closed loop from 8 threads while serving, and while draining (a
/// request in flight for 2 s): every probe gets a status (200 while serving, 503
/// while draining, counted by the state at its start) until the drain ends, when
/// the health listener closes (a probe cut by that close is not counted).
fn every_probe_of_a_flood_gets_a_status_through_the_drain<H: Harness>() {
    use std::sync::atomic::AtomicBool;
    let (addr, health_addr, held, shutdown, done) = start_with_health::<H>();
    let ended = Arc::new(AtomicBool::new(false));
    // Per thread: (serving: answered, lost), (draining: answered, lost).
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (ended, shutdown) = (ended.clone(), shutdown.clone());
            std::thread::spawn(move || {
                let mut counts = [[0usize; 2]; 2];
                let start = std::time::Instant::now();
                while !ended.load(Ordering::SeqCst) && start.elapsed() < HANG {
                    let draining = !shutdown.is_ready();
                    let got = probe(health_addr, "/ready");
                    if ended.load(Ordering::SeqCst) {
                        break; // the listener may have closed under this probe
                    }
                    match got {
                        Some((status, _)) => {
                            let expected = if draining { 503 } else { 200 };
                            if draining || status == 200 {
                                assert_eq!(status, expected, "draining: {draining}");
                            }
                            counts[usize::from(draining)][0] += 1;
                        }
                        // Lost as the drain ended, when the listener closes: the
                        // process is on its way out; not counted.
                        None if shutdown.phase() == Phase::Drained => {}
                        None => counts[usize::from(draining)][1] += 1,
                    }
                }
                counts
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut c = request_in_handler(addr, &held, "/slow/2000");
    shutdown.trigger();
    let outcome = done.recv_timeout(HANG).expect("serve did not return");
    ended.store(true, Ordering::SeqCst);
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    let mut total = [[0usize; 2]; 2];
    for thread in flood {
        let counts = thread.join().unwrap();
        for phase in 0..2 {
            for kind in 0..2 {
                total[phase][kind] += counts[phase][kind];
            }
        }
    }
    println!(
        "serving: {:?}, draining: {:?} (answered, lost)",
        total[0], total[1]
    );
    assert!(total[0][0] > 0 && total[1][0] > 0, "{total:?}");
    assert_eq!(total[0][1], 0, "probes lost while serving: {total:?}");
    assert_eq!(total[1][1], 0, "probes lost while draining: {total:?}");
    assert_answered_slow(&mut c, 2000);
}

/// A probe that sent half its request head when the drain ends: serve returns
/// without waiting for it (the health listener never outlives the drain).
fn a_half_sent_probe_does_not_hold_serve<H: Harness>() {
    let health = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let health_addr = health.local_addr().unwrap();
    let (_addr, shutdown, done) = H::start(Options {
        health: Some(health),
        ..Options::default()
    });
    let mut half = TcpStream::connect(health_addr).unwrap();
    half.write_all(b"GET /ready HTTP/1.1\r\nhost: 12").unwrap();
    // The health listener has the connection (it answers a full probe after it).
    assert_eq!(probe(health_addr, "/live"), Some((200, "live\n".into())));
    shutdown.trigger();
    // Nothing in flight: the drain ends at once, and serve with it; only the half
    // probe could hold it, until it is forced or the header timeout (30 s).
    let outcome = done
        .recv_timeout(Duration::from_millis(900))
        .expect("a half-sent probe held serve after the drain ended");
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    assert!(
        closed_by_server(&mut half),
        "the half probe's connection stays open"
    );
}

/// A response read off a raw HTTP/1 connection: its status line, whether it said
/// `connection: close`, and its body (its `content-length` bytes).
fn read_response(s: &mut TcpStream) -> (String, bool, String) {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded by HANG per read and by the response's size.
    let (head, body_len) = loop {
        let n = s.read(&mut buf).expect("no response");
        assert!(n > 0, "closed before a response: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(got[..end].to_vec())
                .unwrap()
                .to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            got.drain(..end + 4);
            break (head, len);
        }
    };
    while got.len() < body_len {
        let n = s.read(&mut buf).expect("body cut");
        assert!(n > 0, "body cut");
        got.extend_from_slice(&buf[..n]);
    }
    let status = head.lines().next().unwrap().to_string();
    let close = head.lines().any(|l| l == "connection: close");
    (status, close, String::from_utf8(got).unwrap())
}

/// Whether the server closed `s` (EOF) before sending anything more.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(HANG)).unwrap();
    matches!(s.read(&mut [0u8; 64]), Ok(0))
}

/// The app's `/stats` count of `/slow` requests in their handler.
fn slow_in_handler(addr: SocketAddr) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let (_, _, body) = read_response(&mut s);
    let slow = body
        .split_whitespace()
        .find_map(|f| f.strip_prefix("slow="));
    slow.unwrap().parse().unwrap()
}

type H2 = hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>;

/// An HTTP/2 client connection; the task ends when the connection does.
async fn h2_connect(addr: SocketAddr) -> (H2, tokio::task::JoinHandle<hyper::Result<()>>) {
    let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

async fn h2_get(send: &mut H2, path: &str) -> hyper::Result<(u16, String)> {
    use http_body_util::BodyExt;
    send.ready().await?;
    let request = hyper::Request::get(format!("http://127.0.0.1{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = send.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).unwrap()))
}

/// The clients' runtime: its worker drives the HTTP/2 connections between calls.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// During the drain delay (ended here by the trigger, so nothing depends on its
/// length) the server still accepts and serves, and tells every connection to go
/// away: HTTP/1 responses say `connection: close` and the connection closes after
/// them, on keep-alive connections from before the announcement and on new ones;
/// HTTP/2 connections, old and new, get GOAWAY and end once their streams are done;
/// requests in flight at the announcement complete.
fn connections_go_away_during_the_drain_delay<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options {
        drain_delay: Some(HANG * 10),
        // Longer than the delay, which only the trigger ends here.
        deadline: HANG * 20,
        ..Options::default()
    });
    let rt = client_runtime();
    // Before: keep-alive HTTP/1 and HTTP/2 connections, served normally.
    let mut keep_alive = TcpStream::connect(addr).unwrap();
    keep_alive.write_all(REQUEST).unwrap();
    let (status, close, _) = read_response(&mut keep_alive);
    assert_eq!((status.as_str(), close), ("http/1.1 200 ok", false));
    let (mut h2, h2_conn) = rt.block_on(h2_connect(addr));
    assert_eq!(rt.block_on(h2_get(&mut h2, "/")).unwrap().0, 200);
    // In flight at the announcement: one slow request on each protocol.
    let mut slow_h1 = TcpStream::connect(addr).unwrap();
    slow_h1
        .write_all(b"GET /slow/1000 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let slow_h2 = {
        let mut h2 = h2.clone();
        rt.spawn(async move { h2_get(&mut h2, "/slow/1000").await })
    };
    let start = std::time::Instant::now();
    while slow_in_handler(addr) < 2 {
        assert!(start.elapsed() < HANG, "the slow requests never started");
        std::thread::sleep(Duration::from_millis(5));
    }

    shutdown.announce();

    // The keep-alive connection's next response says close, and it closes.
    keep_alive.write_all(REQUEST).unwrap();
    let (status, close, body) = read_response(&mut keep_alive);
    assert_eq!(
        (status.as_str(), close, body.as_str()),
        ("http/1.1 200 ok", true, "hello\n")
    );
    assert!(closed_by_server(&mut keep_alive));
    // A connection accepted during the delay: served, and told to go.
    let mut fresh = TcpStream::connect(addr).unwrap();
    fresh.write_all(REQUEST).unwrap();
    let (status, close, _) = read_response(&mut fresh);
    assert_eq!((status.as_str(), close), ("http/1.1 200 ok", true));
    assert!(closed_by_server(&mut fresh));
    // In flight: completed, the HTTP/1 one with close.
    let (status, close, body) = read_response(&mut slow_h1);
    assert_eq!(
        (status.as_str(), close, body.as_str()),
        ("http/1.1 200 ok", true, "slow 1000\n")
    );
    let got = rt.block_on(slow_h2).unwrap().unwrap();
    assert_eq!(got, (200, "slow 1000\n".to_string()));
    // The HTTP/2 connection got GOAWAY: it ends, and takes no new request.
    rt.block_on(async {
        tokio::time::timeout(HANG, h2_conn)
            .await
            .expect("the HTTP/2 connection was never told to go away")
            .unwrap()
            .unwrap();
    });
    assert!(rt.block_on(h2_get(&mut h2, "/")).is_err());
    // A new HTTP/2 connection: served, then told to go.
    let (mut h2, h2_conn) = rt.block_on(h2_connect(addr));
    assert_eq!(
        rt.block_on(h2_get(&mut h2, "/")).unwrap(),
        (200, "hello\n".to_string())
    );
    rt.block_on(async {
        tokio::time::timeout(HANG, h2_conn)
            .await
            .expect("a new HTTP/2 connection was never told to go away")
            .unwrap()
            .unwrap();
    });
    // All of it during the delay: the listener is still open.
    assert_eq!(shutdown.phase(), Phase::Announced);
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
}

/// With `go_away_during_delay(false)`, connections are left alone during the
/// delay: keep-alive responses do not say close, HTTP/2 connections take new
/// requests; the trigger then drains them, and a response in flight at the
/// trigger says close.
fn without_go_away_connections_stay_during_the_drain_delay<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options {
        drain_delay: Some(HANG * 10),
        // Longer than the delay, which only the trigger ends here.
        deadline: HANG * 20,
        go_away: false,
        ..Options::default()
    });
    let rt = client_runtime();
    let mut keep_alive = TcpStream::connect(addr).unwrap();
    let (mut h2, h2_conn) = rt.block_on(h2_connect(addr));
    assert_eq!(rt.block_on(h2_get(&mut h2, "/")).unwrap().0, 200);
    shutdown.announce();
    for _ in 0..2 {
        keep_alive.write_all(REQUEST).unwrap();
        let (status, close, _) = read_response(&mut keep_alive);
        assert_eq!((status.as_str(), close), ("http/1.1 200 ok", false));
        assert_eq!(rt.block_on(h2_get(&mut h2, "/")).unwrap().0, 200);
    }
    assert_eq!(shutdown.phase(), Phase::Announced);
    // At the trigger the connections are asked to close all the same: a request
    // in flight then is answered with `connection: close`.
    keep_alive
        .write_all(b"GET /slow/500 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    while slow_in_handler(addr) < 1 {
        assert!(start.elapsed() < HANG, "the slow request never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    shutdown.trigger();
    let (status, close, _) = read_response(&mut keep_alive);
    assert_eq!((status.as_str(), close), ("http/1.1 200 ok", true));
    let outcome = done.recv_timeout(HANG).expect("serve did not return");
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    assert!(closed_by_server(&mut keep_alive));
    rt.block_on(async { tokio::time::timeout(HANG, h2_conn).await.unwrap() })
        .unwrap()
        .unwrap();
}

/// Like the HTTP/1 case, with five HTTP/2 streams on one connection: hyper runs
/// each stream as a task of its own, and those too have let go of the service's
/// state when a forced `serve` returns.
fn serve_returns_only_when_every_http2_stream_let_go<H: Harness>() {
    let held = Arc::new(());
    let count_at_return = Arc::new(AtomicUsize::new(0));
    let (addr, shutdown, done) = H::start(Options {
        held: Some((held.clone(), count_at_return.clone())),
        deadline: Duration::from_millis(200),
        ..Options::default()
    });
    let rt = client_runtime();
    let (h2, _conn) = rt.block_on(h2_connect(addr));
    let streams: Vec<_> = (0..5)
        .map(|_| {
            let mut h2 = h2.clone();
            rt.spawn(async move { h2_get(&mut h2, "/slow/60000").await })
        })
        .collect();
    // This test's own, the harness's probe, the server's service, the
    // connection's copy of it, and one per stream in flight.
    wait_until_held(&held, 1 + 1 + 1 + 1 + 5, "five streams in flight");
    let outcome = finish(&shutdown, &done).unwrap();
    assert_eq!(outcome.remaining(), 1, "{outcome}");
    assert_eq!(
        count_at_return.load(Ordering::SeqCst),
        2,
        "a stream still held the service's state when serve returned"
    );
    for stream in streams {
        assert!(
            rt.block_on(stream).unwrap().is_err(),
            "a forced stream completed"
        );
    }
}

/// Reads from `s` until `pattern` has arrived; returns everything read.
fn read_until(s: &mut TcpStream, pattern: &str) -> String {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded by HANG per read.
    while !String::from_utf8_lossy(&got).contains(pattern) {
        let n = s.read(&mut buf).expect("nothing more arrived");
        assert!(
            n > 0,
            "closed before {pattern:?}: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Twenty event streams wrapped in `EndAtTrigger` (the app's `/events`, which
/// finds the server's coordinator in its request's extensions): ten HTTP/1
/// responses and ten HTTP/2 streams on one connection. At the trigger each ends
/// cleanly with its final event (a chunked body's terminator; an HTTP/2 stream
/// ended, not reset), and the drain completes instead of waiting for the
/// one-hour deadline.
fn event_streams_end_cleanly_at_the_trigger<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options {
        deadline: Duration::from_secs(3600),
        ..Options::default()
    });
    let mut h1: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /events HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let head = read_until(&mut c, "tick\n");
            assert!(head.contains("text/event-stream"), "{head}");
            c
        })
        .collect();
    let rt = client_runtime();
    let (h2, _conn) = rt.block_on(h2_connect(addr));
    let (started, first_events) = mpsc::channel();
    let h2_streams: Vec<_> = (0..10)
        .map(|_| {
            let (mut h2, started) = (h2.clone(), started.clone());
            rt.spawn(async move {
                use http_body_util::BodyExt;
                h2.ready().await?;
                let request = hyper::Request::get("http://127.0.0.1/events")
                    .body(http_body_util::Empty::new())
                    .unwrap();
                let mut body = h2.send_request(request).await?.into_body();
                let mut got = Vec::new();
                // Bounded by the stream's end.
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        if got.is_empty() {
                            started.send(()).unwrap();
                        }
                        got.extend_from_slice(&data);
                    }
                }
                hyper::Result::Ok(String::from_utf8(got).unwrap())
            })
        })
        .collect();
    for _ in 0..10 {
        first_events
            .recv_timeout(HANG)
            .expect("an HTTP/2 stream never started");
    }
    shutdown.trigger();
    let outcome = done.recv_timeout(HANG).expect("the streams held the drain");
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    for mut c in h1.drain(..) {
        let mut rest = String::new();
        c.set_read_timeout(Some(HANG)).unwrap();
        c.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("event: shutdown\ndata: bye\n\n"), "{rest:?}");
        assert!(rest.ends_with("\r\n0\r\n\r\n"), "not a clean end: {rest:?}");
    }
    for stream in h2_streams {
        let body = rt.block_on(stream).unwrap().expect("the stream was reset");
        assert_eq!(body, "tick\nevent: shutdown\ndata: bye\n\n");
    }
}

/// An endless stream that does not end at the trigger (the app's `/stream`) holds
/// the drain to the deadline, is forced, and is named (by its peer) in the report.
fn an_endless_stream_is_forced_at_the_deadline_and_named<H: Harness>() {
    let (addr, shutdown, done) = H::start(Options {
        deadline: Duration::from_millis(300),
        ..Options::default()
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /stream HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    read_until(&mut c, "tick\n");
    let outcome = finish(&shutdown, &done).unwrap();
    let report = outcome.report().expect("forced");
    assert_eq!(report.remaining, 1, "{outcome}");
    assert_eq!(report.stragglers.len(), 1, "{outcome}");
    assert_eq!(
        report.stragglers[0].label,
        c.local_addr().unwrap().to_string()
    );
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client session on `path`, past one echoed message.
async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://127.0.0.1:{}{path}", addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo, Message::text("hi"));
    ws
}

/// Ten WebSocket sessions, tracked as part of their connections: at the trigger
/// each receives Close 1001 ("going away"), the close handshake completes, and
/// the drain waits for the sessions instead of the one-hour deadline; when
/// `serve` returns, no session is running any more.
fn websocket_sessions_say_goodbye_and_the_drain_waits_for_them<H: Harness>() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let sessions_at_return = Arc::new(AtomicUsize::new(usize::MAX));
    let (addr, shutdown, done) = H::start(Options {
        deadline: Duration::from_secs(3600),
        sessions_at_return: Some(sessions_at_return.clone()),
        ..Options::default()
    });
    let rt = client_runtime();
    let clients: Vec<Ws> = (0..10)
        .map(|_| rt.block_on(ws_connect(addr, "/ws")))
        .collect();
    assert!(
        shutdown.report().remaining >= 10,
        "the sessions are in flight"
    );
    shutdown.trigger();
    let clients: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            rt.spawn(async move {
                let goodbye = ws.next().await.expect("no goodbye").expect("broken");
                // Reading on answers the Close and ends with the handshake.
                let after = ws.next().await;
                (goodbye, after.is_none())
            })
        })
        .collect();
    for client in clients {
        let (goodbye, closed) = rt
            .block_on(async { tokio::time::timeout(HANG, client).await })
            .expect("hung")
            .unwrap();
        let Message::Close(Some(frame)) = goodbye else {
            panic!("not a Close frame: {goodbye:?}");
        };
        assert_eq!(frame.code, CloseCode::Away);
        assert!(closed, "the close handshake did not end the session");
    }
    let outcome = done
        .recv_timeout(HANG)
        .expect("the sessions held the drain");
    assert_eq!(outcome.unwrap(), Outcome::Drained);
    assert_eq!(sessions_at_return.load(Ordering::SeqCst), 0);
}

/// A WebSocket session deaf to the trigger is forced at the deadline, named
/// (`websocket`) in the report, and gone by the time `serve` returns.
fn a_deaf_websocket_session_is_forced_and_named<H: Harness>() {
    let sessions_at_return = Arc::new(AtomicUsize::new(usize::MAX));
    let (addr, shutdown, done) = H::start(Options {
        deadline: Duration::from_millis(300),
        sessions_at_return: Some(sessions_at_return.clone()),
        ..Options::default()
    });
    let rt = client_runtime();
    let _client = rt.block_on(ws_connect(addr, "/ws/stubborn"));
    let outcome = finish(&shutdown, &done).unwrap();
    let report = outcome.report().expect("forced");
    let labels: Vec<&str> = report.stragglers.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["websocket"], "{outcome}");
    assert_eq!(
        sessions_at_return.load(Ordering::SeqCst),
        0,
        "a session outlived serve"
    );
}

/// hyper#3792: an idle keep-alive connection whose next request already sits in
/// the socket when the drain starts must serve it (with `connection: close`), not
/// close silently. 32 keep-alive clients in a closed loop; the trigger comes at a
/// random moment (seeded; the seed is printed, `TEST_SEED` replays it); every
/// request fully written before the trigger must be answered. Several rounds.
fn no_request_written_before_the_trigger_is_lost<H: Harness>() {
    let seed = load::seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..8 {
        let (addr, shutdown, done) = H::start(Options::default());
        let load = load::Load::start(addr, 32);
        std::thread::sleep(Duration::from_millis(rng.u64(0..50)));
        let triggered_at = std::time::Instant::now();
        shutdown.trigger();
        let outcome = done.recv_timeout(HANG).expect("serve did not return");
        let (before, lost) = load.finish(triggered_at);
        assert!(before > 0, "round {round}: no request before the trigger");
        assert_eq!(
            lost, 0,
            "round {round} (seed {seed}): {lost} of {before} requests written before the trigger got no response"
        );
        assert_eq!(outcome.unwrap(), Outcome::Drained, "round {round}");
    }
}

/// Whether the server ended `s` (EOF or reset) rather than the read timing out.
fn ended_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut buf = [0u8; 256];
    // Bounded by HANG per read: whatever the server sends first, then its end.
    for _ in 0..64 {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
            }
        }
    }
    false
}

/// Connections that never started a request (a silent TCP peer, half-sent
/// headers, an HTTP/2 preface without SETTINGS) are closed once the pre-request
/// grace after the trigger passed: the drain ends well before its one-hour grace
/// period, drained, and each is reported as closed before its first request.
fn connections_without_a_request_are_closed_after_the_pre_request_grace<H: Harness>() {
    let errors = Reported::default();
    let (addr, shutdown, done) = H::start(Options {
        deadline: Duration::from_secs(3600),
        errors: Some(errors.clone()),
        ..Options::default()
    });
    let peers = load::unstarted_peers(addr);
    let start = std::time::Instant::now();
    while shutdown.report().remaining < 3 {
        assert!(
            start.elapsed() < HANG,
            "the connections were never accepted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let outcome = finish(&shutdown, &done).unwrap();
    assert_eq!(outcome, Outcome::Drained);
    for (kind, mut s) in peers {
        assert!(ended_by_server(&mut s), "{kind}: not closed");
        let peer = s.local_addr().unwrap();
        let reported = errors.lock().unwrap().clone();
        assert!(
            reported
                .iter()
                .any(|(p, e)| *p == peer && e.contains("before its first request")),
            "{kind}: not reported as such: {reported:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// TLS (feature `tls`).

#[cfg(feature = "tls")]
#[path = "common/tls.rs"]
mod tls_peers;

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use crate::tls_peers::{server_config, tls_connect};

    per_runtime!(
        https_serves_http1_and_http2_by_alpn,
        a_stalled_handshake_is_closed_at_the_trigger,
        a_slow_https_request_completes_during_the_drain,
        a_handshake_that_stalls_times_out_and_is_reported,
        a_zero_handshake_timeout_is_refused,
    );

    /// A zero handshake timeout would fail every handshake: serve refuses it with
    /// a clear error before serving, and releases the listener.
    fn a_zero_handshake_timeout_is_refused<H: Harness>() {
        let (tls, _) = server_config();
        let (addr, shutdown, done) = H::start(Options {
            tls: Some(tls.handshake_timeout(Duration::ZERO)),
            ..Options::default()
        });
        let err = done.recv_timeout(HANG).expect("serve hung").unwrap_err();
        assert_eq!(err.error.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(
            err.error.to_string().contains("handshake_timeout is zero"),
            "{err}"
        );
        assert_eq!(shutdown.phase(), Phase::Running);
        assert!(
            TcpStream::connect(addr).is_err(),
            "the listener is still open"
        );
    }

    async fn get(
        send: &mut hyper::client::conn::http1::SendRequest<
            http_body_util::Empty<hyper::body::Bytes>,
        >,
        path: &str,
    ) -> (hyper::Version, u16, bool, String) {
        use http_body_util::BodyExt;
        send.ready().await.unwrap();
        let request = hyper::Request::get(format!("https://127.0.0.1{path}"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = send.send_request(request).await.unwrap();
        let close = response
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v == "close");
        let (version, status) = (response.version(), response.status().as_u16());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            version,
            status,
            close,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// HTTPS: ALPN `http/1.1` is served over HTTP/1.1, ALPN `h2` over HTTP/2.
    fn https_serves_http1_and_http2_by_alpn<H: Harness>() {
        let (tls, cert) = server_config();
        let (addr, shutdown, done) = H::start(Options {
            tls: Some(tls),
            ..Options::default()
        });
        let rt = client_runtime();
        rt.block_on(async {
            let io = tls_connect(addr, &cert, b"http/1.1").await;
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let (version, status, _, body) = get(&mut send, "/").await;
            assert_eq!(
                (version, status, body.as_str()),
                (hyper::Version::HTTP_11, 200, "hello\n")
            );

            let io = tls_connect(addr, &cert, b"h2").await;
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let (status, body) = h2_get(&mut send, "/").await.unwrap();
            assert_eq!((status, body.as_str()), (200, "hello\n"));
        });
        assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
    }

    /// A client that connects and never starts its handshake: the trigger closes
    /// its connection (within `CLOSE_GRACE`), reported as closed before its first
    /// request; the drain waits neither for the (one-hour) handshake timeout nor
    /// for the one-hour grace period.
    fn a_stalled_handshake_is_closed_at_the_trigger<H: Harness>() {
        let (tls, _) = server_config();
        let errors = Reported::default();
        let (addr, shutdown, done) = H::start(Options {
            tls: Some(tls.handshake_timeout(Duration::from_secs(3600))),
            deadline: Duration::from_secs(3600),
            errors: Some(errors.clone()),
            ..Options::default()
        });
        let mut stalled = TcpStream::connect(addr).unwrap();
        let start = std::time::Instant::now();
        while shutdown.report().remaining < 1 {
            assert!(start.elapsed() < HANG, "never accepted");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
        assert!(
            ended_by_server(&mut stalled),
            "the stalled handshake was not closed"
        );
        let peer = stalled.local_addr().unwrap();
        let reported = errors.lock().unwrap().clone();
        assert!(
            reported
                .iter()
                .any(|(p, e)| *p == peer && e.contains("before its first request")),
            "not reported as closed before its first request: {reported:?}"
        );
    }

    /// A slow HTTPS request in flight at the trigger completes, with
    /// `connection: close`, and the drain waits for it.
    fn a_slow_https_request_completes_during_the_drain<H: Harness>() {
        let (tls, cert) = server_config();
        let held = Arc::new(());
        let (addr, shutdown, done) = H::start(Options {
            tls: Some(tls),
            held: Some((held.clone(), Arc::new(AtomicUsize::new(0)))),
            ..Options::default()
        });
        let rt = client_runtime();
        let slow = rt.spawn(async move {
            let io = tls_connect(addr, &cert, b"http/1.1").await;
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            get(&mut send, "/slow/1500").await
        });
        // This test's, the harness's probe, the server's service, the connection's
        // copy, and the request in its handler.
        wait_until_held(&held, 5, "the request never reached its handler");
        shutdown.trigger();
        let (_, status, close, body) = rt.block_on(slow).unwrap();
        assert_eq!((status, close, body.as_str()), (200, true, "slow 1500\n"));
        let outcome = done.recv_timeout(HANG).expect("serve did not return");
        assert_eq!(outcome.unwrap(), Outcome::Drained);
    }

    /// A handshake that never completes, while serving: the connection is closed
    /// at the handshake timeout and reported as a connection error; the server
    /// goes on.
    fn a_handshake_that_stalls_times_out_and_is_reported<H: Harness>() {
        let (tls, _) = server_config();
        let errors = Reported::default();
        let (addr, shutdown, done) = H::start(Options {
            tls: Some(tls.handshake_timeout(Duration::from_millis(200))),
            errors: Some(errors.clone()),
            ..Options::default()
        });
        let mut stalled = TcpStream::connect(addr).unwrap();
        assert!(
            ended_by_server(&mut stalled),
            "the stalled handshake was not closed"
        );
        let peer = stalled.local_addr().unwrap();
        let start = std::time::Instant::now();
        while !errors
            .lock()
            .unwrap()
            .iter()
            .any(|(p, e)| *p == peer && e.contains("timed out"))
        {
            assert!(
                start.elapsed() < HANG,
                "not reported: {:?}",
                errors.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(shutdown.phase(), Phase::Running, "the server went on");
        assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
    }
}
