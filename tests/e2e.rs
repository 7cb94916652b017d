//! End-to-end behaviour of a real hyper server under wind-down, on each runtime.
//!
//! The server is this test binary itself, re-run as a child process (the ignored
//! `child_server` test) so that real signals can be sent to it. It serves the demo
//! app from `examples/common/app.rs` on 127.0.0.1 and exits with the drain outcome's
//! exit code. Each case runs once per runtime (`tokio`, and `smol` with that
//! feature) from one body: see `per_runtime!`.
//!
//! Timeouts here only catch hangs; no assertion depends on how fast anything is.
//! Unix only: signals are sent with `kill`.

#![cfg(unix)]

#[path = "../examples/common/app.rs"]
mod app;
#[path = "common/load.rs"]
mod load;
#[path = "common/recipe.rs"]
mod recipe;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

const HANG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The child: the demo server on the runtime named by WIND_DOWN_E2E_RUNTIME.

#[test]
#[ignore = "helper: the server process of the end-to-end tests"]
fn child_server() {
    let Ok(runtime) = std::env::var("WIND_DOWN_E2E_RUNTIME") else {
        return;
    };
    let deadline = app::deadline_from_env();
    let outcome = match runtime.as_str() {
        "tokio" => {
            use wind_down::tokio::{Signals, Tokio};
            tokio_runtime().block_on(async {
                let signals = Signals::new().unwrap();
                println!("installed at {}", monotonic_ns());
                println!("signals installed");
                let listener = app::listener("127.0.0.1:0").unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                app::run(Tokio::current(), listener, signals, deadline).await
            })
        }
        #[cfg(feature = "smol")]
        "smol" => {
            use std::sync::Arc;
            use wind_down::smol::{Signals, Smol};
            let ex = Arc::new(smol::Executor::new());
            let (stop, stopped) = smol::channel::unbounded::<()>();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (ex, stopped) = (ex.clone(), stopped.clone());
                    std::thread::spawn(move || smol::block_on(ex.run(stopped.recv())))
                })
                .collect();
            let outcome = smol::block_on(ex.run(async {
                let signals = Signals::new().unwrap();
                println!("installed at {}", monotonic_ns());
                println!("signals installed");
                let listener = app::listener("127.0.0.1:0").unwrap();
                let listener = smol::net::TcpListener::try_from(listener).unwrap();
                app::run(Smol::new(ex.clone()), listener, signals, deadline).await
            }));
            drop(stop);
            for t in threads {
                let _ = t.join();
            }
            outcome
        }
        // A server with no signal source: wind-down must install no handler.
        "tokio-no-signals" => tokio_runtime().block_on(async {
            println!("signals installed"); // none, by design
            tokio_serve_without_signals().await
        }),
        #[cfg(feature = "smol")]
        "smol-no-signals" => smol::block_on(async {
            println!("signals installed"); // none, by design
            smol_serve_without_signals().await
        }),
        // Signals created and dropped, never handed to the server (a mistake):
        // they must not swallow SIGTERM.
        "tokio-dropped-signals" => tokio_runtime().block_on(async {
            drop(wind_down::tokio::Signals::new().unwrap());
            println!("signals installed");
            tokio_serve_without_signals().await
        }),
        #[cfg(feature = "smol")]
        "smol-dropped-signals" => smol::block_on(async {
            drop(wind_down::smol::Signals::new().unwrap());
            println!("signals installed");
            smol_serve_without_signals().await
        }),
        // A source created and dropped, then the server's, which the server takes
        // only a while after the test's SIGTERM: the stale one decides nothing.
        "tokio-stale-signals" => tokio_runtime().block_on(async {
            drop(wind_down::tokio::Signals::new().unwrap());
            let signals = wind_down::tokio::Signals::new().unwrap();
            println!("signals installed");
            tokio::time::sleep(SLOW_TO_SERVE).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let runtime = wind_down::tokio::Tokio::current();
            app::run(runtime, listener, signals, app::deadline_from_env()).await
        }),
        #[cfg(feature = "smol")]
        "smol-stale-signals" => smol::block_on(async {
            drop(wind_down::smol::Signals::new().unwrap());
            let signals = wind_down::smol::Signals::new().unwrap();
            println!("signals installed");
            smol::Timer::after(SLOW_TO_SERVE).await;
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let runtime = wind_down::smol::Smol::global();
            app::run(runtime, listener, signals, app::deadline_from_env()).await
        }),
        // Two servers in one process, each with a `Signals` of its own.
        "tokio-two-servers" => tokio_runtime().block_on(async {
            use wind_down::tokio::{Signals, Tokio};
            let (first, second) = (Signals::new().unwrap(), Signals::new().unwrap());
            println!("signals installed");
            let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
            let (a, b) = (bind().await, bind().await);
            let deadline = app::deadline_from_env();
            let both = futures_lite::future::zip(
                app::run(Tokio::current(), a, first, deadline),
                app::run(Tokio::current(), b, second, deadline),
            );
            worse(both.await)
        }),
        #[cfg(feature = "smol")]
        "smol-two-servers" => smol::block_on(async {
            use wind_down::smol::{Signals, Smol};
            let (first, second) = (Signals::new().unwrap(), Signals::new().unwrap());
            println!("signals installed");
            let bind = || async { smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
            let (a, b) = (bind().await, bind().await);
            let deadline = app::deadline_from_env();
            let both = futures_lite::future::zip(
                app::run(Smol::global(), a, first, deadline),
                app::run(Smol::global(), b, second, deadline),
            );
            worse(both.await)
        }),
        // `Signals::new()` and drop, many times: prints the thread and descriptor
        // counts after a few cycles and after all of them.
        "tokio-churn" => tokio_runtime()
            .block_on(async { churn(|| drop(wind_down::tokio::Signals::new().unwrap())) }),
        #[cfg(feature = "smol")]
        "smol-churn" => churn(|| drop(wind_down::smol::Signals::new().unwrap())),
        // A second, unused Signals next to the server's: the server's drain must
        // not be cut short by it.
        "tokio-extra-signals" => tokio_runtime().block_on(async {
            let _unused = wind_down::tokio::Signals::new().unwrap();
            let signals = wind_down::tokio::Signals::new().unwrap();
            println!("signals installed");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let runtime = wind_down::tokio::Tokio::current();
            app::run(runtime, listener, signals, app::deadline_from_env()).await
        }),
        #[cfg(feature = "smol")]
        "smol-extra-signals" => smol::block_on(async {
            let _unused = wind_down::smol::Signals::new().unwrap();
            let signals = wind_down::smol::Signals::new().unwrap();
            println!("signals installed");
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let runtime = wind_down::smol::Smol::global();
            app::run(runtime, listener, signals, app::deadline_from_env()).await
        }),
        other => panic!("unknown runtime {other}"),
    };
    if std::env::var("WIND_DOWN_E2E_CLEANUP").is_ok_and(|c| c == "hang") {
        // Cleanup that never ends, after the runtime is gone.
        println!("cleaning up");
        std::thread::sleep(Duration::from_secs(3600));
    }
    std::process::exit(if outcome.is_drained() { 0 } else { 1 });
}

/// How long the stale-source child waits between creating its `Signals` and
/// handing it to the server.
const SLOW_TO_SERVE: Duration = Duration::from_millis(500);

/// The forced outcome of two, if any.
fn worse((a, b): (wind_down::Outcome, wind_down::Outcome)) -> wind_down::Outcome {
    if a.is_drained() { b } else { a }
}

/// Runs `cycle` [`CHURN`] times; prints `churn: <threads> <fds>` after 10 cycles
/// and after all, and returns a drained outcome.
fn churn(mut cycle: impl FnMut()) -> wind_down::Outcome {
    let counts = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .to_string();
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
        format!("churn: {threads} {fds}")
    };
    println!("signals installed");
    println!("listening on 127.0.0.1:0");
    for _ in 0..10 {
        cycle();
    }
    println!("{}", counts());
    for _ in 10..CHURN {
        cycle();
    }
    println!("{}", counts());
    println!("outcome: drained");
    wind_down::Outcome::Drained
}

/// `Signals::new()`/drop cycles of the leak test.
const CHURN: usize = 1000;

/// Serves the demo app on tokio with no signal source (`Server::new` alone).
async fn tokio_serve_without_signals() -> wind_down::Outcome {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime = wind_down::tokio::Tokio::current();
    let server = wind_down::Server::new(runtime.clone(), listener);
    println!("listening on {}", server.local_addr().unwrap());
    wind_down::hyper::Http::new(server)
        .serve(app::App::new(runtime))
        .await
        .unwrap()
}

/// Serves the demo app on smol with no signal source (`Server::new` alone).
#[cfg(feature = "smol")]
async fn smol_serve_without_signals() -> wind_down::Outcome {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime = wind_down::smol::Smol::global();
    let server = wind_down::Server::new(runtime.clone(), listener);
    println!("listening on {}", server.local_addr().unwrap());
    wind_down::hyper::Http::new(server)
        .serve(app::App::new(runtime))
        .await
        .unwrap()
}

/// A running server child. Killed on drop if still running.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Everything the child printed after it started listening, once it exited.
    output: Vec<String>,
}

/// How to start the child, besides its runtime and grace period.
#[derive(Default)]
struct Launch<'a> {
    /// Extra environment variables.
    env: &'a [(&'a str, &'a str)],
    /// Shell commands run before the child is started in the same process
    /// (`ulimit`, moving descriptors).
    shell: Option<String>,
    /// The child's stdin, instead of the test's.
    stdin: Option<Stdio>,
}

impl Server {
    fn start(runtime: &str, deadline: Duration) -> Server {
        Server::start_with(runtime, deadline, Launch::default(), |_| {})
    }

    /// Starts the child with extra environment variables.
    fn start_env(runtime: &str, deadline: Duration, env: &[(&str, &str)]) -> Server {
        let launch = Launch {
            env,
            ..Launch::default()
        };
        Server::start_with(runtime, deadline, launch, |_| {})
    }

    /// Starts the child as `launch` says; `on_installed` runs as soon as its
    /// signal handlers are in place.
    fn start_with(
        runtime: &str,
        deadline: Duration,
        launch: Launch<'_>,
        on_installed: impl FnOnce(u32),
    ) -> Server {
        let (child, lines) = recipe::spawn_with_lines(Server::command(runtime, deadline, launch));
        let mut on_installed = Some(on_installed);
        let addr = loop {
            let line = lines
                .recv_timeout(HANG)
                .expect("server child did not start");
            // libtest may print `test child_server ... ` in front of the first line.
            if line.ends_with("signals installed") {
                if let Some(f) = on_installed.take() {
                    f(child.id());
                }
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.parse().unwrap();
            }
            if line.contains("outcome: ") {
                // The child finished before listening (e.g. an early signal).
                break "127.0.0.1:0".parse().unwrap();
            }
        };
        Server {
            child,
            addr,
            lines,
            output: Vec::new(),
        }
    }

    /// The child's command: its runtime, grace period and `launch`.
    fn command(runtime: &str, deadline: Duration, launch: Launch<'_>) -> Command {
        let exe = std::env::current_exe().unwrap();
        let args = [
            "--ignored",
            "--exact",
            "child_server",
            "--nocapture",
            "--test-threads=1",
        ];
        let mut cmd = match launch.shell {
            None => {
                let mut c = Command::new(&exe);
                c.args(args);
                c
            }
            Some(prelude) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prelude} && exec \"$0\" \"$@\""))
                    .arg(&exe)
                    .args(args);
                c
            }
        };
        if let Some(stdin) = launch.stdin {
            cmd.stdin(stdin);
        }
        cmd.env("WIND_DOWN_E2E_RUNTIME", runtime)
            .env("WIND_DOWN_DEADLINE_MS", deadline.as_millis().to_string())
            .envs(launch.env.iter().copied());
        cmd
    }

    fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// The next `listening on` address the child prints (a second server's).
    fn next_addr(&self) -> SocketAddr {
        loop {
            let line = self.lines.recv_timeout(HANG).expect("no second listener");
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].parse().unwrap();
            }
        }
    }

    /// Waits for the child to exit; returns its status and its `outcome:` line.
    fn wait(&mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < HANG, "server child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        // Read the child's output to its end: the reader thread may lag the exit.
        let mut outcome = String::new();
        while let Ok(line) = self.lines.recv_timeout(HANG) {
            if let Some(at) = line.find("outcome: ") {
                outcome = line[at..].to_string();
            }
            self.output.push(line);
        }
        (status, outcome)
    }

    /// Waits for the child and asserts that it drained cleanly: exit status 0.
    fn expect_drained(&mut self) {
        let (status, outcome) = self.wait();
        println!("{outcome}");
        assert_eq!(status.code(), Some(0), "not drained: {status:?} {outcome}");
        assert_eq!(outcome, "outcome: drained");
    }

    /// Waits until the child (`WIND_DOWN_E2E_CLEANUP=hang`) is in its hanging
    /// cleanup; returns its `outcome:` line.
    fn wait_for_cleanup(&mut self) -> String {
        let mut outcome = String::new();
        // Bounded by HANG per line and by the child's output.
        loop {
            let line = self
                .lines
                .recv_timeout(HANG)
                .expect("the child never reached its cleanup");
            if let Some(at) = line.find("outcome: ") {
                outcome = line[at..].to_string();
            }
            if line.contains("cleaning up") {
                break;
            }
        }
        assert!(self.is_running(), "the cleanup is hanging");
        outcome
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// The server's `/stats`: (watchers, slow requests waiting), on a connection of
/// its own (itself one of the watchers).
fn stats(addr: SocketAddr) -> (usize, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let response = String::from_utf8(read_to_close(&mut s)).unwrap();
    let body = response.rsplit("\r\n\r\n").next().unwrap().trim();
    let mut fields = body
        .split(' ')
        .map(|f| f.split('=').nth(1).unwrap().parse().unwrap());
    (fields.next().unwrap(), fields.next().unwrap())
}

/// Polls `/stats` until `ready(watchers, slow)`: the server has the state a case needs.
fn wait_for_stats(addr: SocketAddr, ready: impl Fn(usize, usize) -> bool) {
    let start = Instant::now();
    loop {
        let (watchers, slow) = stats(addr);
        if ready(watchers, slow) {
            return;
        }
        assert!(
            start.elapsed() < HANG,
            "server never reached the state: watchers={watchers} slow={slow}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connect attempts until one is refused: the listener has closed.
fn wait_refused(addr: SocketAddr) {
    let start = Instant::now();
    while start.elapsed() < HANG {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("the listener at {addr} was never closed");
}

/// Reads until EOF or error (the server closed the connection); returns the bytes.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
            "connection neither closed nor reset: {e}"
        ),
    }
    buf
}

/// Awaits `fut`, or panics naming `what` after [`HANG`]: no client wait is unbounded.
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, fut).await {
        Ok(out) => out,
        Err(_) => panic!("hung: {what}"),
    }
}

/// A 2-worker tokio runtime with IO, time and signals, for servers and clients.
fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h1(addr: SocketAddr) -> H1 {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn h2(addr: SocketAddr) -> H2 {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://127.0.0.1{path}"))
        .body(Empty::new())
        .unwrap()
}

/// A response: status, whether it carried `connection: close`, and its body.
struct Got {
    status: StatusCode,
    close: bool,
    body: String,
}

async fn collect(res: hyper::Response<hyper::body::Incoming>) -> Got {
    let status = res.status();
    let close = res
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        close,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn h1_get(send: &mut H1, path: &str) -> hyper::Result<Got> {
    send.ready().await?;
    let res = send.send_request(get(path)).await?;
    Ok(collect(res).await)
}

async fn h2_get(mut send: H2, path: String) -> hyper::Result<Got> {
    send.ready().await?;
    let res = send.send_request(get(&path)).await?;
    Ok(collect(res).await)
}

/// Expands each case into one test per runtime, from one body.
macro_rules! per_runtime {
    ($($name:ident),* $(,)?) => {
        mod tokio_rt {
            $( #[test] fn $name() { super::watched(stringify!($name), || super::$name("tokio")) } )*
        }
        #[cfg(feature = "smol")]
        mod smol_rt {
            $( #[test] fn $name() { super::watched(stringify!($name), || super::$name("smol")) } )*
        }
    };
}

/// Runs one case under a watchdog: a case still running after [`CASE_LIMIT`] is a
/// hang, and the whole test process exits with a message naming it rather than
/// stalling the suite.
fn watched(name: &'static str, case: impl FnOnce()) {
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(CASE_LIMIT) {
            eprintln!("e2e case `{name}` hung for {CASE_LIMIT:?}; aborting the test run");
            std::process::exit(101);
        }
    });
    case();
    drop(done);
}

/// Far beyond any case's normal run (seconds): only a hang reaches it.
const CASE_LIMIT: Duration = Duration::from_secs(300);

per_runtime!(
    load_through_sigterm,
    misbehaving_peers_are_cut_at_the_deadline,
    second_signal_forces_exit,
    signal_right_after_start_is_handled,
    sigint_drains_too,
    emfile_neither_spins_nor_starves,
    no_signal_source_installs_no_handler,
    drain_delay_serves_while_readiness_says_draining,
    dropped_signals_do_not_swallow_sigterm,
    third_signal_ends_a_hanging_cleanup,
    a_signal_after_a_clean_drain_ends_a_hanging_cleanup,
    no_request_written_before_sigterm_is_lost,
    peers_without_a_request_do_not_hold_the_exit,
    an_unused_signals_leaves_the_drain_to_the_servers,
    a_signal_after_signals_new_is_never_lost,
    signals_new_and_drop_leak_nothing,
    a_stale_source_decides_nothing,
    two_servers_drain_on_one_sigterm,
    an_inherited_ignored_sigint_stays_ignored_without_a_source,
);

// ---------------------------------------------------------------------------
// Cases.

/// Many HTTP/1 keep-alive connections and HTTP/2 connections with many streams;
/// SIGTERM lands while requests are in flight.
fn load_through_sigterm(runtime: &str) {
    let mut server = Server::start(runtime, Duration::from_secs(30));
    let addr = server.addr;
    let client = tokio_runtime();
    client.block_on(async {
        const H1_CONNS: usize = 16;
        const H2_CONNS: usize = 2;
        const H2_STREAMS: usize = 32;
        const IN_FLIGHT_MS: u64 = 3000;

        // Idle keep-alive connections: one exchange each, then silence.
        let mut idle = Vec::new();
        for _ in 0..4 {
            let mut send = within("h1 connect", h1(addr)).await;
            let got = within("idle h1 request", h1_get(&mut send, "/"))
                .await
                .unwrap();
            assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, "hello\n"));
            assert!(!got.close, "keep-alive before shutdown");
            idle.push(send);
        }

        // Warm-up load: every response before the signal is complete and correct.
        let mut h1s = Vec::new();
        for _ in 0..H1_CONNS {
            h1s.push(within("h1 connect", h1(addr)).await);
        }
        for send in &mut h1s {
            for _ in 0..5 {
                let got = within("warm-up request", h1_get(send, "/slow/1"))
                    .await
                    .unwrap();
                assert_eq!(
                    (got.status, got.body.as_str()),
                    (StatusCode::OK, "slow 1\n")
                );
                assert!(!got.close);
            }
        }
        let mut h2s = Vec::new();
        for _ in 0..H2_CONNS {
            h2s.push(within("h2 connect", h2(addr)).await);
        }

        // Steady load through the signal: HTTP/1 keep-alive loops and an HTTP/2
        // connection opening streams, until the server closes them. Every response
        // that arrives is complete and correct; a request the server never read
        // fails (it was sent after the drain began).
        let mut load = Vec::new();
        for _ in 0..8 {
            let mut send = within("h1 connect", h1(addr)).await;
            load.push(tokio::spawn(async move {
                let (mut ok, mut closed_by_header) = (0usize, false);
                for _ in 0..100_000 {
                    match h1_get(&mut send, "/").await {
                        Ok(got) => {
                            assert_eq!(
                                (got.status, got.body.as_str()),
                                (StatusCode::OK, "hello\n")
                            );
                            ok += 1;
                            if got.close {
                                closed_by_header = true;
                                break;
                            }
                        }
                        // The server closed the connection while it was idle
                        // between two requests (HTTP/1 has no GOAWAY).
                        Err(e) => {
                            assert!(
                                e.is_incomplete_message() || e.is_closed() || e.is_canceled(),
                                "{e:?}"
                            );
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (ok, closed_by_header)
            }));
        }
        let h2_load = {
            let send = within("h2 connect", h2(addr)).await;
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0usize, 0usize);
                'rounds: for _ in 0..100_000 {
                    let streams: Vec<_> = (0..8)
                        .map(|_| tokio::spawn(h2_get(send.clone(), "/".into())))
                        .collect();
                    for stream in streams {
                        match stream.await.unwrap() {
                            Ok(got) => {
                                assert_eq!(
                                    (got.status, got.body.as_str()),
                                    (StatusCode::OK, "hello\n")
                                );
                                ok += 1;
                            }
                            // A stream opened after the server's final GOAWAY is
                            // refused with NO_ERROR: the server never processed it,
                            // and a client may retry it elsewhere. Not a failure.
                            Err(e) if refused_by_goaway(&e) => refused += 1,
                            // The connection closed after its GOAWAY.
                            Err(e) => {
                                assert!(e.is_closed() || e.is_canceled(), "{e:?}");
                                break 'rounds;
                            }
                        }
                    }
                    if refused > 0 {
                        // No new stream after the final GOAWAY.
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (ok, refused)
            })
        };

        // Let the load run for a while before the slow requests and the signal.
        tokio::time::sleep(Duration::from_millis(300)).await;

        // In flight at the signal: one slow request per HTTP/1 connection and
        // H2_STREAMS slow streams per HTTP/2 connection.
        let path = format!("/slow/{IN_FLIGHT_MS}");
        let mut h1_tasks = Vec::new();
        for mut send in h1s {
            let path = path.clone();
            h1_tasks.push(tokio::spawn(async move {
                let got = h1_get(&mut send, &path).await;
                (got, send)
            }));
        }
        let mut h2_tasks = Vec::new();
        for send in &h2s {
            for _ in 0..H2_STREAMS {
                h2_tasks.push(tokio::spawn(h2_get(send.clone(), path.clone())));
            }
        }
        // Every request is in the server's handler before the signal.
        let all = H1_CONNS + H2_CONNS * H2_STREAMS;
        tokio::task::spawn_blocking(move || wait_for_stats(addr, |_, slow| slow == all))
            .await
            .unwrap();
        server.signal("TERM");

        // New connections are refused once the listener closes.
        tokio::task::spawn_blocking(move || wait_refused(addr))
            .await
            .unwrap();

        // Idle keep-alive connections are closed by the server.
        for send in idle {
            // hyper's client notices the server's close: the sender closes.
            let start = Instant::now();
            while !send.is_closed() && start.elapsed() < HANG {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                send.is_closed(),
                "idle keep-alive connection left open during drain"
            );
        }

        let mut completed = 0;
        for task in h1_tasks {
            let (got, mut send) = tokio::time::timeout(HANG, task).await.unwrap().unwrap();
            let got = got.expect("an in-flight HTTP/1 request was lost");
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.body, format!("slow {IN_FLIGHT_MS}\n"));
            assert!(
                got.close,
                "HTTP/1 response during drain lacks `connection: close`"
            );
            completed += 1;
            // The connection is not reused after `connection: close`.
            assert!(
                within("h1 reuse after close", h1_get(&mut send, "/"))
                    .await
                    .is_err()
            );
        }
        for task in h2_tasks {
            let got = tokio::time::timeout(HANG, task).await.unwrap().unwrap();
            let got = got.expect("an in-flight HTTP/2 stream was lost");
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.body, format!("slow {IN_FLIGHT_MS}\n"));
            completed += 1;
        }
        // After GOAWAY, an HTTP/2 connection takes no new stream.
        for send in h2s {
            assert!(
                within("h2 stream after GOAWAY", h2_get(send, "/".into()))
                    .await
                    .is_err(),
                "HTTP/2 stream accepted after GOAWAY"
            );
        }
        println!("{runtime}: {completed} in-flight requests completed through SIGTERM");
        assert_eq!(completed, H1_CONNS + H2_CONNS * H2_STREAMS);

        // The load loops all ended because the server closed their connections.
        let (mut h1_ok, mut with_close) = (0, 0);
        for task in load {
            let (ok, closed_by_header) = tokio::time::timeout(HANG, task).await.unwrap().unwrap();
            assert!(
                ok > 0,
                "a load connection got no response before the signal"
            );
            h1_ok += ok;
            with_close += usize::from(closed_by_header);
        }
        let (h2_ok, h2_refused) = tokio::time::timeout(HANG, h2_load).await.unwrap().unwrap();
        assert!(h2_ok > 0);
        println!(
            "{runtime}: load: {h1_ok} HTTP/1 responses ({with_close} of 8 connections ended by \
             `connection: close`), {h2_ok} HTTP/2 responses, all correct; \
             {h2_refused} HTTP/2 streams refused unprocessed by GOAWAY(NO_ERROR)"
        );
    });
    server.expect_drained();
}

/// Whether a client error is the refusal of a stream that the server never
/// processed: GOAWAY with NO_ERROR, sent by a server draining gracefully.
fn refused_by_goaway(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = err.source();
    }
    false
}

/// Peers that never finish hold nothing past the deadline: those that never
/// started a request are closed by the pre-request grace, the endless stream is
/// forced and named.
fn misbehaving_peers_are_cut_at_the_deadline(runtime: &str) {
    let mut server = Server::start(runtime, Duration::from_millis(1500));
    let addr = server.addr;
    let connect = || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };
    // Connects and sends nothing.
    let mut silent = connect();
    // Half a request header.
    let mut half = connect();
    half.write_all(b"GET / HT").unwrap();
    // HTTP/2 preface without SETTINGS: the handshake never completes.
    let mut preface = connect();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    // HTTP/2 handshake done (empty SETTINGS), but the shutdown PING is never answered.
    let mut no_pong = connect();
    no_pong
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    // A response body that never ends.
    let mut stream = connect();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Every peer's connection is accepted and watched before the signal (the
    // stats connection is the sixth watcher).
    wait_for_stats(addr, |watchers, _| watchers == 6);

    server.signal("TERM");
    let (status, outcome) = server.wait();
    println!("{runtime}: {outcome}");
    assert_eq!(status.code(), Some(1), "expected a forced exit: {outcome}");
    let remaining: usize = outcome
        .strip_prefix("outcome: forced remaining=")
        .expect("forced outcome line")
        .parse()
        .unwrap();
    // The four peers that never started a request are closed by the pre-request
    // grace (1 s, within the 1.5 s grace period); the endless stream cannot finish
    // on its own and is forced.
    assert_eq!(remaining, 1, "{outcome}");
    // The forced report names the stuck connection by its peer address.
    let report: Vec<&String> = server
        .output
        .iter()
        .filter(|l| l.starts_with("still running: connection "))
        .collect();
    assert_eq!(report.len(), remaining, "{report:?}");
    let peer = stream.local_addr().unwrap().to_string();
    assert!(
        report.iter().any(|l| l.contains(&format!(" {peer} for "))),
        "the endless stream's peer {peer} is missing from the forced report: {report:?}"
    );
    for (name, s) in [
        ("silent", &mut silent),
        ("half header", &mut half),
        ("h2 preface", &mut preface),
        ("h2 no pong", &mut no_pong),
        ("endless stream", &mut stream),
    ] {
        let _ = read_to_close(s);
        println!("{runtime}: {name} peer closed");
    }
}

/// Opens `/stream`, a response that never ends, and reads its status line.
fn open_endless_stream(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    stream
}

/// A request that never finishes: the first SIGTERM leaves the process draining,
/// the second forces it out with the forced status.
fn second_signal_forces_exit(runtime: &str) {
    let mut server = Server::start(runtime, Duration::from_secs(120));
    let mut stream = open_endless_stream(server.addr);
    server.signal("TERM");
    wait_refused(server.addr);
    assert!(
        server.is_running(),
        "the first signal must only start the drain"
    );
    server.signal("INT");
    let (status, outcome) = server.wait();
    assert_eq!(status.code(), Some(1), "{outcome}");
    assert_eq!(outcome, "outcome: forced remaining=1");
    let _ = read_to_close(&mut stream);
}

/// SIGTERM as soon as the handlers are installed, before the listener even exists.
fn signal_right_after_start_is_handled(runtime: &str) {
    let mut server =
        Server::start_with(runtime, Duration::from_secs(10), Launch::default(), |pid| {
            signal(pid, "TERM")
        });
    server.expect_drained();
}

/// SIGINT (Ctrl-C) drains like SIGTERM: an in-flight request completes.
fn sigint_drains_too(runtime: &str) {
    let mut server = Server::start(runtime, Duration::from_secs(30));
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /slow/2000 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    wait_for_stats(server.addr, |_, slow| slow == 1);
    server.signal("INT");
    let response = String::from_utf8(read_to_close(&mut stream)).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nslow 2000\n"), "{response}");
    server.expect_drained();
}

/// CPU time (user + system) of a process, in clock ticks, from /proc.
#[cfg(target_os = "linux")]
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of descriptors: the accept loop backs off instead of spinning, keeps
/// serving existing connections, and accepts the waiting ones once descriptors free up.
fn emfile_neither_spins_nor_starves(runtime: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    const NOFILE: u32 = 64;
    let mut server = Server::start_with(
        runtime,
        Duration::from_secs(10),
        Launch {
            shell: Some(format!("ulimit -n {NOFILE}")),
            ..Launch::default()
        },
        |_| {},
    );
    let addr = server.addr;
    let request = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let read_hello = |s: &mut TcpStream, stage: &str| {
        s.set_read_timeout(Some(HANG)).unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        while !got.ends_with(b"hello\n") {
            let n = s.read(&mut buf).expect("response");
            assert!(n > 0, "{stage}: closed before a response");
            got.extend_from_slice(&buf[..n]);
        }
    };
    // Fill the server's descriptor table: each served connection holds one.
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..NOFILE {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                if !buf[..n].ends_with(b"hello\n") {
                    read_hello(&mut s, "filling");
                }
                served.push(s);
            }
            _ => waiting.push(s),
        }
    }
    assert!(
        !waiting.is_empty(),
        "the descriptor limit was never reached"
    );
    assert!(
        served.len() > 8,
        "too few connections served: {}",
        served.len()
    );
    println!(
        "{runtime}: {} served, {} waiting",
        served.len(),
        waiting.len()
    );

    // While exhausted: the process does not spin, and other tasks still run.
    let before = cpu_ticks(server.child.id());
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(server.child.id()) - before;
    let ticks_in_window = window.elapsed().as_millis() as u64 / 10; // 100 Hz
    assert!(
        used * 4 < ticks_in_window,
        "accept loop spins: {used} ticks of CPU in {ticks_in_window}"
    );
    let mut existing = served.pop().unwrap();
    existing.write_all(request).unwrap();
    read_hello(&mut existing, "existing");

    // Free descriptors: the waiting connections are accepted and answered.
    served.truncate(served.len() / 2);
    std::thread::sleep(Duration::from_millis(50));
    for s in &mut waiting {
        read_hello(s, "waiting");
    }
    drop((served, waiting, existing));
    server.signal("TERM");
    server.expect_drained();
}

/// Without a signal source, SIGINT keeps its default action: the crate installs
/// nothing process-wide on its own. (If this test run inherited SIGINT ignored,
/// as `cargo test &` in a script does, the child inherits that too: then SIGINT
/// must leave it serving, and SIGTERM ends it.)
fn no_signal_source_installs_no_handler(runtime: &str) {
    use std::os::unix::process::ExitStatusExt;
    let mut server = Server::start(&format!("{runtime}-no-signals"), Duration::from_secs(10));
    assert_eq!(request(server.addr, "/").0, "HTTP/1.1 200 OK");
    server.signal("INT");
    let expected = if sigint_ignored_here() {
        eprintln!("SIGINT is ignored in this test run: checking that it stays ignored");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(request(server.addr, "/").0, "HTTP/1.1 200 OK");
        server.signal("TERM");
        15
    } else {
        2
    };
    let (status, _) = server.wait();
    assert_eq!(
        status.signal(),
        Some(expected),
        "expected death by signal {expected}, got {status:?}"
    );
}

/// Whether this process has SIGINT ignored (inherited: the tests install no
/// handler of their own), from `SigIgn` in `/proc/self/status`.
fn sigint_ignored_here() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & 0b10 != 0)
}

/// SIGINT, or SIGTERM where this test run inherited SIGINT ignored (the child
/// inherits it too, and with no source left an ignored signal stays ignored).
fn interrupt_or_terminate() -> (&'static str, i32) {
    if sigint_ignored_here() {
        eprintln!("SIGINT is ignored in this test run: using SIGTERM instead");
        ("TERM", 15)
    } else {
        ("INT", 2)
    }
}

/// One request on a new connection; returns (status line, whole response).
fn request(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let response = String::from_utf8(read_to_close(&mut s)).unwrap();
    let status = response.lines().next().unwrap_or_default().to_string();
    (status, response)
}

/// With a drain delay: after the signal, readiness reports draining while new
/// connections are still served (and told to go away); after the delay, new
/// connections are refused and the server drains.
fn drain_delay_serves_while_readiness_says_draining(runtime: &str) {
    let mut server = Server::start_env(
        runtime,
        Duration::from_secs(30),
        &[("WIND_DOWN_DRAIN_DELAY_MS", "2000")],
    );
    let addr = server.addr;
    assert_eq!(request(addr, "/ready").0, "HTTP/1.1 200 OK");
    let mut keep_alive = TcpStream::connect(addr).unwrap();
    server.signal("TERM");

    // Readiness flips; the listener is still open, or this would not be answered.
    let start = Instant::now();
    loop {
        let (status, _) = request(addr, "/ready");
        if status == "HTTP/1.1 503 Service Unavailable" {
            break;
        }
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(start.elapsed() < HANG, "readiness never reported draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    // During the delay, a keep-alive connection from before is served and told
    // to go away.
    keep_alive
        .write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let response = String::from_utf8(read_to_close(&mut keep_alive)).unwrap();
    let head = response.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("connection: close"), "not told to go: {head}");

    // After the delay: refused.
    wait_refused(addr);
    server.expect_drained();
}

/// `Signals` created and dropped, never handed to the server: SIGTERM still ends
/// the process, which dies by the signal, instead of being swallowed.
fn dropped_signals_do_not_swallow_sigterm(runtime: &str) {
    use std::os::unix::process::ExitStatusExt;
    let mut server = Server::start(
        &format!("{runtime}-dropped-signals"),
        Duration::from_secs(10),
    );
    let (status, _) = request(server.addr, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    server.signal("TERM");
    let (status, outcome) = server.wait();
    assert_eq!(status.signal(), Some(15), "{status:?} {outcome}");
}

/// A forced drain whose cleanup then hangs: the third signal (TERM, INT, TERM)
/// ends the process at once: it dies by SIGTERM.
fn third_signal_ends_a_hanging_cleanup(runtime: &str) {
    use std::os::unix::process::ExitStatusExt;
    let mut server = Server::start_env(
        runtime,
        Duration::from_secs(120),
        &[("WIND_DOWN_E2E_CLEANUP", "hang")],
    );
    let mut stream = open_endless_stream(server.addr);
    server.signal("TERM");
    wait_refused(server.addr);
    server.signal("INT");
    // The forced drain ends serve; the cleanup starts and hangs.
    server.wait_for_cleanup();
    server.signal("TERM");
    let (status, _) = server.wait();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    let _ = read_to_close(&mut stream);
}

/// A clean drain (SIGINT, nothing in flight) whose cleanup then hangs: the next
/// SIGINT ends the process at once, which dies by it; the server no longer needs
/// it.
fn a_signal_after_a_clean_drain_ends_a_hanging_cleanup(runtime: &str) {
    use std::os::unix::process::ExitStatusExt;
    let (name, number) = interrupt_or_terminate();
    let mut server = Server::start_env(
        runtime,
        Duration::from_secs(30),
        &[("WIND_DOWN_E2E_CLEANUP", "hang")],
    );
    assert_eq!(request(server.addr, "/").0, "HTTP/1.1 200 OK");
    server.signal(name);
    let outcome = server.wait_for_cleanup();
    assert_eq!(outcome, "outcome: drained");
    server.signal(name);
    let (status, _) = server.wait();
    assert_eq!(status.signal(), Some(number), "{status:?}");
}

/// hyper#3792 from outside: 32 keep-alive clients in a closed loop of `GET /`
/// through SIGTERM, at a random moment (seeded; `TEST_SEED` replays): every
/// request fully written before the signal is answered, and the child exits 0.
/// Several rounds.
fn no_request_written_before_sigterm_is_lost(runtime: &str) {
    let seed = load::seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..4 {
        let mut server = Server::start(runtime, Duration::from_secs(30));
        let load = load::Load::start(server.addr, 32);
        std::thread::sleep(Duration::from_millis(rng.u64(0..50)));
        let signalled_at = Instant::now();
        server.signal("TERM");
        server.expect_drained();
        let (before, lost) = load.finish(signalled_at);
        assert!(before > 0, "round {round}: no request before the signal");
        assert_eq!(
            lost, 0,
            "round {round} (seed {seed}): {lost} of {before} requests written before SIGTERM got no response"
        );
    }
}

/// Peers that never start a request (silent, half-sent headers, an HTTP/2
/// preface without SETTINGS) are closed by the pre-request grace: with nothing
/// else in flight the child drains and exits 0, long before its grace period.
fn peers_without_a_request_do_not_hold_the_exit(runtime: &str) {
    let mut server = Server::start(runtime, Duration::from_secs(120));
    let addr = server.addr;
    let _peers = load::unstarted_peers(addr);
    // The three, and the stats connection.
    wait_for_stats(addr, |watchers, _| watchers == 4);
    server.signal("TERM");
    server.expect_drained();
}

/// An unused `Signals` next to the server's: SIGTERM reaches the server's too,
/// whose drain (a 4 s request in flight) completes and exits 0.
fn an_unused_signals_leaves_the_drain_to_the_servers(runtime: &str) {
    let mut server = Server::start(&format!("{runtime}-extra-signals"), Duration::from_secs(30));
    let addr = server.addr;
    let slow = std::thread::spawn(move || request(addr, "/slow/4000"));
    wait_for_stats(addr, |_, slow| slow == 1);
    server.signal("TERM");
    let (status, response) = slow.join().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "{response}");
    server.expect_drained();
}

/// SIGTERM at swept moments after the child is spawned, from before its `main`
/// to past its `Signals::new()` (the window is measured first), quiet and under
/// a CPU hog: every run either drains and exits 0, or dies by SIGTERM before it
/// said its handlers were installed. A lost signal leaves the child serving and
/// fails the run, unless it was sent before `Signals::new()` returned (the two
/// processes compare CLOCK_MONOTONIC): signal-hook-registry, under every tokio and
/// async-signal handler, swallows a signal that arrives while the first handler
/// for it is being installed (between its `sigaction` and publishing the
/// handler's slot), which no caller can prevent without blocking the signal in
/// every thread.
fn a_signal_after_signals_new_is_never_lost(runtime: &str) {
    use std::os::unix::process::ExitStatusExt;
    const QUIET: u32 = 150;
    const HOGGED: u32 = 100;
    // Spawn to "signals installed", the slowest of three, plus 5 ms.
    let window = (0..3)
        .map(|_| {
            let spawned = Instant::now();
            let installed = std::cell::Cell::new(Duration::ZERO);
            let mut server =
                Server::start_with(runtime, Duration::from_secs(10), Launch::default(), |_| {
                    installed.set(spawned.elapsed())
                });
            server.signal("TERM");
            server.expect_drained();
            installed.get()
        })
        .max()
        .unwrap()
        + Duration::from_millis(5);
    println!("sweeping SIGTERM over 0..{window:?} after spawn");
    let (mut drained, mut early, mut swallowed) = (0, 0, 0);
    for (runs, hogged) in [(QUIET, false), (HOGGED, true)] {
        let _hog = hogged.then(CpuHog::start);
        for run in 0..runs {
            let delay = window * run / runs;
            let command = Server::command(runtime, Duration::from_secs(10), Launch::default());
            let spawned = Instant::now();
            let (mut child, lines) = recipe::spawn_with_lines(command);
            std::thread::sleep(delay.saturating_sub(spawned.elapsed()));
            let sent_at = monotonic_ns();
            signal_now(child.id(), 15);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if spawned.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            let output: Vec<String> = lines.iter().collect();
            let installed_at = output.iter().find_map(|l| {
                let at = l.find("installed at ")? + "installed at ".len();
                l[at..].parse::<u64>().ok()
            });
            let Some(status) = status else {
                // Still running: the signal was swallowed. Only allowed while the
                // first handler was being installed (see the note above).
                assert!(
                    installed_at.is_some_and(|at| sent_at < at),
                    "SIGTERM {delay:?} after spawn (hogged: {hogged}) was lost after \
                     Signals::new() returned: sent at {sent_at} ns, installed at \
                     {installed_at:?}; {output:?}"
                );
                swallowed += 1;
                continue;
            };
            let installed = installed_at.is_some();
            if status.code() == Some(0) && output.iter().any(|l| l.ends_with("outcome: drained")) {
                drained += 1;
            } else if status.signal() == Some(15) && !installed {
                early += 1;
            } else {
                panic!("SIGTERM {delay:?} after spawn (hogged: {hogged}): {status:?}, {output:?}");
            }
        }
    }
    println!(
        "{drained} drained, {early} died by SIGTERM before their handlers, \
         {swallowed} swallowed while the first handler was being installed"
    );
    assert!(
        drained > 0,
        "no run reached its handlers: the sweep missed the window"
    );
}

/// A busy thread per core until dropped (at most [`HANG`]), for runs that must
/// hold under CPU load.
struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start() -> CpuHog {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && started.elapsed() < HANG
                    {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for the test and its children.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(read, 0, "clock_gettime failed");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Sends signal `number` to `pid` without spawning `kill` (which would shift the
/// sweep by a process start).
fn signal_now(pid: u32, number: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(pid as libc::pid_t, number) };
    assert_eq!(sent, 0, "kill({pid}, {number}) failed");
}

/// 1,000 `Signals::new()`/drop cycles in one process leave the thread and
/// descriptor counts where they were after the first ten.
fn signals_new_and_drop_leak_nothing(runtime: &str) {
    let mut server = Server::start(&format!("{runtime}-churn"), Duration::from_secs(10));
    let (status, _) = server.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let counts: Vec<&String> = server
        .output
        .iter()
        .filter(|l| l.contains("churn: "))
        .collect();
    assert_eq!(counts.len(), 2, "{:?}", server.output);
    let [after_ten, after_all] = [counts[0], counts[1]]
        .map(|l| l[l.find("churn: ").unwrap() + "churn: ".len()..].to_string());
    println!("threads and descriptors after 10 cycles: {after_ten}; after {CHURN}: {after_all}");
    assert_eq!(
        after_ten, after_all,
        "Signals::new()/drop leaks threads or descriptors"
    );
}

/// A `Signals` created and dropped before the server's: a SIGTERM that arrives
/// before the server takes its source (500 ms later) is the server's: it drains
/// and exits 0, where a stale source used to end the process.
fn a_stale_source_decides_nothing(runtime: &str) {
    let mut server = Server::start_with(
        &format!("{runtime}-stale-signals"),
        Duration::from_secs(10),
        Launch::default(),
        |pid| signal(pid, "TERM"),
    );
    server.expect_drained();
}

/// Two servers in one process, each with its own `Signals`: one SIGTERM drains
/// both; the slow request on each completes and the process exits 0.
fn two_servers_drain_on_one_sigterm(runtime: &str) {
    let mut server = Server::start(&format!("{runtime}-two-servers"), Duration::from_secs(30));
    let addrs = [server.addr, server.next_addr()];
    let slow = addrs.map(|addr| std::thread::spawn(move || request(addr, "/slow/1500")));
    for addr in addrs {
        wait_for_stats(addr, |_, slow| slow == 1);
    }
    server.signal("TERM");
    for request in slow {
        let (status, response) = request.join().unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{response}");
    }
    server.expect_drained();
    let drained = server
        .output
        .iter()
        .filter(|l| l.ends_with("outcome: drained"))
        .count();
    assert_eq!(drained, 2, "both servers drained: {:?}", server.output);
    for addr in addrs {
        wait_refused(addr);
    }
}

/// A child that inherits SIGINT ignored (as a background job of a script does):
/// its `Signals` still hears SIGINT, which drains; once the server is done, no
/// source is left and SIGINT is ignored again, as inherited, while SIGTERM ends
/// the hanging cleanup by its default action.
fn an_inherited_ignored_sigint_stays_ignored_without_a_source(runtime: &str) {
    use std::os::unix::process::ExitStatusExt;
    let mut server = Server::start_with(
        runtime,
        Duration::from_secs(30),
        Launch {
            env: &[("WIND_DOWN_E2E_CLEANUP", "hang")],
            shell: Some("trap '' INT".into()),
            ..Launch::default()
        },
        |_| {},
    );
    assert_eq!(request(server.addr, "/").0, "HTTP/1.1 200 OK");
    server.signal("INT");
    assert_eq!(server.wait_for_cleanup(), "outcome: drained");
    server.signal("INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.is_running(),
        "an inherited-ignored SIGINT ended the process"
    );
    server.signal("TERM");
    let (status, _) = server.wait();
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

// ---------------------------------------------------------------------------
// systemd: notifications and socket activation.

#[cfg(all(feature = "systemd", target_os = "linux"))]
mod systemd {
    use super::*;

    per_runtime!(
        systemd_hears_ready_stopping_and_the_drain,
        socket_activation_serves_on_the_inherited_listener,
    );

    /// The datagrams a child sends to `NOTIFY_SOCKET`, each as its lines.
    struct NotifySocket {
        socket: std::os::unix::net::UnixDatagram,
        path: std::path::PathBuf,
    }

    impl NotifySocket {
        fn bind(name: &str) -> NotifySocket {
            let path = std::env::temp_dir().join(format!(
                "wind-down-notify-{}-{name}.sock",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&path);
            let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
            socket.set_read_timeout(Some(HANG)).unwrap();
            NotifySocket { socket, path }
        }

        fn next(&self) -> Vec<String> {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).expect("no notification");
            String::from_utf8(buf[..n].to_vec())
                .unwrap()
                .lines()
                .map(String::from)
                .collect()
        }
    }

    impl Drop for NotifySocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// The microseconds of an `EXTEND_TIMEOUT_USEC=` line.
    fn extension(line: &str) -> u64 {
        line.strip_prefix("EXTEND_TIMEOUT_USEC=")
            .unwrap_or_else(|| panic!("not an extension: {line}"))
            .parse()
            .unwrap()
    }

    /// A `Type=notify` service's view: READY=1 once serving; at SIGTERM, STOPPING=1
    /// with the grace period (30 s) plus the exit margin as the timeout extension;
    /// then the drain's progress, each with a shrinking extension; then its end.
    fn systemd_hears_ready_stopping_and_the_drain(runtime: &str) {
        let notify = NotifySocket::bind(runtime);
        let path = notify.path.to_str().unwrap().to_string();
        let mut server = Server::start_with(
            runtime,
            Duration::from_secs(30),
            Launch {
                env: &[("NOTIFY_SOCKET", &path)],
                ..Launch::default()
            },
            |_| {},
        );
        assert_eq!(notify.next(), ["READY=1", "STATUS=serving"]);
        let addr = server.addr;
        let slow = std::thread::spawn(move || request(addr, "/slow/2500"));
        wait_for_stats(addr, |_, slow| slow == 1);
        server.signal("TERM");

        let stopping = notify.next();
        assert_eq!(stopping.len(), 3, "{stopping:?}");
        assert_eq!(stopping[0], "STOPPING=1");
        assert!(stopping[1].starts_with("STATUS=stopping: "), "{stopping:?}");
        let mut last = extension(&stopping[2]);
        assert!(last <= 35_000_000 && last > 30_000_000, "{stopping:?}");

        let mut progress = 0;
        let end = loop {
            let message = notify.next();
            if message.len() == 1 {
                break message;
            }
            assert_eq!(message.len(), 2, "{message:?}");
            let in_flight: usize = message[0]
                .strip_prefix("STATUS=draining: ")
                .and_then(|rest| rest.strip_suffix(" still in flight"))
                .unwrap_or_else(|| panic!("not a drain status: {message:?}"))
                .parse()
                .unwrap();
            if progress == 0 {
                assert!(in_flight >= 1, "the slow request is in flight");
            }
            let extended = extension(&message[1]);
            assert!(extended <= last, "{extended} after {last}");
            assert!(extended >= 5_000_000, "below the exit margin: {extended}");
            last = extended;
            progress += 1;
            assert!(progress < 100, "endless progress");
        };
        assert!(progress >= 1, "no drain progress");
        assert_eq!(end, ["STATUS=drained"]);
        let (status, response) = slow.join().unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{response}");
        server.expect_drained();
    }

    /// Socket activation: the child gets a bound listening socket as descriptor 3
    /// with `LISTEN_FDS=1` and `LISTEN_PID` naming it, serves on it, and drains on
    /// SIGTERM; once it exited nothing listens there any more (the test gave its
    /// own descriptor away).
    fn socket_activation_serves_on_the_inherited_listener(runtime: &str) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Server::start_with(
            runtime,
            Duration::from_secs(30),
            Launch {
                // The socket arrives as stdin and moves to descriptor 3, as systemd
                // passes it; `$$` is the child's pid, kept by `exec`.
                shell: Some("exec 3<&0 0</dev/null && export LISTEN_PID=$$ LISTEN_FDS=1".into()),
                stdin: Some(Stdio::from(std::os::fd::OwnedFd::from(listener))),
                ..Launch::default()
            },
            |_| {},
        );
        assert_eq!(server.addr, addr, "not serving on the inherited socket");
        assert_eq!(request(addr, "/").0, "HTTP/1.1 200 OK");
        let slow = std::thread::spawn(move || request(addr, "/slow/1500"));
        wait_for_stats(addr, |_, slow| slow == 1);
        server.signal("TERM");
        let (status, response) = slow.join().unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{response}");
        server.expect_drained();
        wait_refused(addr);
    }
}
