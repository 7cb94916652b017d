//! The accept loop (`wind_down::Server`) against real TCP on 127.0.0.1, on each
//! runtime from one set of case bodies: connection limit, listener release,
//! accept-error handling (through a listener wrapper that injects errors in front
//! of a real listener), and shutdown during back-off.
//!
//! Timeouts only catch hangs.

#[path = "../examples/common/app.rs"]
mod app;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use app::{AppBody, AppFuture};
use hyper_util::server::conn::auto::HttpServerConnExec;
use wind_down::hyper::{HyperRuntime, IntoHyperIo};
use wind_down::{Listener, Outcome, ServeError, Server, Shutdown};

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: None,
            deadline: Duration::from_secs(30),
            faults: Faults::default(),
        }
    }
}

type Done = mpsc::Receiver<Result<Outcome, ServeError>>;

/// The part of starting a server that is the same on every runtime.
async fn serve<R, L>(
    runtime: R,
    listener: L,
    opts: Options,
    started: mpsc::Sender<(SocketAddr, Shutdown)>,
) -> Result<Outcome, ServeError>
where
    R: HyperRuntime,
    L: Listener<Addr = SocketAddr>,
    L::Io: IntoHyperIo,
    R::Executor: HttpServerConnExec<AppFuture, AppBody>,
{
    let listener = Faulty {
        inner: listener,
        faults: opts.faults,
    };
    let mut server = Server::new(runtime.clone(), listener).drain_deadline(opts.deadline);
    if let Some(limit) = opts.limit {
        server = server.max_connections(limit);
    }
    started
        .send((server.local_addr().unwrap(), server.shutdown()))
        .unwrap();
    server.serve_http(app::App::new(runtime)).await
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
                serve(wind_down::tokio::Tokio::current(), listener, opts, started).await
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
                serve(
                    wind_down::smol::Smol::new(ex.clone()),
                    listener,
                    opts,
                    started,
                )
                .await
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
    resource_errors_back_off_and_shutdown_cuts_the_back_off,
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
    assert_eq!(shutdown.watchers(), 3);

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
    assert_eq!(shutdown.watchers(), 3);

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
    assert!(shutdown.is_drained());
    assert_eq!(faults.attempts.load(Ordering::SeqCst), 1);
}

/// Thousands of per-connection errors are skipped without back-off: a client
/// behind them is served (with back-off this would take far beyond the hang timeout).
fn per_connection_errors_are_retried_at_once<H: Harness>() {
    const ERRORS: usize = 3000;
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
        answered_within(&mut c, HANG),
        "client behind the errors not served"
    );
    // Every injected error was consumed, then the real accept ran (and runs again).
    assert!(faults.attempts.load(Ordering::SeqCst) > ERRORS);
    assert!(faults.queue.lock().unwrap().is_empty());
    drop(c);
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
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
    std::thread::sleep(Duration::from_millis(1500));
    let attempts = faults.attempts.load(Ordering::SeqCst);
    // 50 + 100 + 200 + 400 + 800 ms of back-off fit in the window: a handful of
    // attempts, where a retry loop would make millions.
    assert!((2..=10).contains(&attempts), "attempts={attempts}");
    assert_eq!(finish(&shutdown, &done).unwrap(), Outcome::Drained);
}
