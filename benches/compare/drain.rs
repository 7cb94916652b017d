//! Measurement 6: drain latency. A child server process (this bench binary run
//! again, in server mode) gets `conns` idle keep-alive connections on 127.0.0.1, each
//! having completed one request; then SIGTERM, timed until the process has exited.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Config;
use crate::http::{Client, Hello, auto_builder};
use crate::report::{Group, Report};
use crate::sys;

/// The environment variable that switches this binary into child-server mode.
const CHILD_ENV: &str = "WIND_DOWN_BENCH_CHILD";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// No signal handler: SIGTERM's default action ends the process.
    Default,
    WindDown,
    HyperUtil,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Default => "default",
            Kind::WindDown => "wind-down",
            Kind::HyperUtil => "hyper-util",
        }
    }
}

/// In a child started by [`spawn_child`]: serves until SIGTERM and exits; never
/// returns. Otherwise returns at once.
pub fn child_main() {
    let Ok(kind) = std::env::var(CHILD_ENV) else {
        return;
    };
    let kind = match kind.as_str() {
        "default" => Kind::Default,
        "wind-down" => Kind::WindDown,
        "hyper-util" => Kind::HyperUtil,
        other => panic!("unknown child kind {other}"),
    };
    // Like examples/hello.rs: a multi-threaded runtime with every driver.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(child_serve(kind));
    drop(runtime);
    std::process::exit(code);
}

async fn child_serve(kind: Kind) -> i32 {
    match kind {
        Kind::WindDown => {
            // Installed before the address is announced: the parent's SIGTERM is
            // never fatal.
            let signals = wind_down::tokio::Signals::new().expect("signal handlers");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let server = wind_down::Server::new(wind_down::tokio::Tokio::current(), listener)
                .signals(signals)
                .grace_period(Duration::from_secs(10));
            announce(server.local_addr().expect("local addr"));
            match wind_down::hyper::Http::new(server).serve(Hello).await {
                Ok(outcome) => i32::from(!outcome.is_drained()),
                Err(e) => i32::from(!e.outcome.is_drained()),
            }
        }
        Kind::HyperUtil | Kind::Default => {
            let mut term = (kind == Kind::HyperUtil).then(|| {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler")
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            announce(listener.local_addr().expect("local addr"));
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            let builder = auto_builder();
            loop {
                let terminated = async {
                    match &mut term {
                        Some(term) => drop(term.recv().await),
                        None => std::future::pending().await,
                    }
                };
                let accepted = tokio::select! {
                    _ = terminated => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((io, _)) = accepted else { continue };
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), Hello)
                    .into_owned();
                let watched = graceful.watch(conn);
                drop(tokio::spawn(async move {
                    let _ = watched.await;
                }));
            }
            drop(listener);
            match tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
    }
}

fn announce(addr: SocketAddr) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Starts a child server; returns it with its address once it announced it.
fn spawn_child(kind: Kind) -> (Child, SocketAddr) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, kind.arg())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child server");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {} // drain to EOF so the child never blocks on stdout
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child server did not announce its address");
        }
    };
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected child output: {line}"));
    (child, addr)
}

/// One round: child up, `conns` keep-alive connections idle for `idle` after their
/// last response, SIGTERM, exit.
fn round(rt: &tokio::runtime::Runtime, kind: Kind, conns: usize, idle: Duration) -> Duration {
    let (mut child, addr) = spawn_child(kind);
    let pid = child.id();
    let clients = rt.block_on(async {
        let mut clients = Vec::with_capacity(conns);
        // Connect in batches of 100 so that the listener's backlog never overflows.
        for batch in (0..conns).collect::<Vec<_>>().chunks(100) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|_| {
                    tokio::spawn(async move {
                        let mut client = Client::connect(addr).await.expect("connect");
                        client.get().await.expect("request");
                        client
                    })
                })
                .collect();
            for t in tasks {
                clients.push(t.await.expect("client task panicked"));
            }
        }
        clients
    });
    // Every connection is now idle, between requests, on the server's side too;
    // the pause lets the child's threads settle before the signal, and is how long
    // the last connections have been idle.
    std::thread::sleep(idle);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    sys::signal(pid, false).expect("SIGTERM");
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((start.elapsed(), status));
    });
    let (elapsed, status) = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(done) => done,
        Err(_) => {
            let _ = sys::signal(pid, true);
            panic!("child server did not exit within 30 s of SIGTERM");
        }
    };
    let status = status.expect("wait for child");
    match kind {
        Kind::Default => assert!(!status.success(), "killed by SIGTERM"),
        _ => assert!(
            status.success(),
            "{} child exited with {status}",
            kind.arg()
        ),
    }
    rt.block_on(async {
        for c in clients {
            c.close().await;
        }
    });
    elapsed
}

pub fn drain(cfg: &Config, report: &mut Report) {
    let conns = cfg.scaled_usize(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Recently active: the last responses 50 ms before the signal, within
    // wind-down's CLOSE_GRACE (200 ms), so those connections wait for a request
    // that may be on its way (hyper#3792). Long idle: 300 ms, beyond it.
    let (recent, long) = (Duration::from_millis(50), Duration::from_millis(300));
    let cases = [
        (
            Kind::Default,
            0,
            recent,
            "baseline: no handler, SIGTERM default action, 0 conns".to_string(),
        ),
        (
            Kind::Default,
            conns,
            recent,
            format!("no handler, SIGTERM default action, {conns} conns"),
        ),
        (
            Kind::WindDown,
            0,
            recent,
            "wind-down Http::serve + Signals, 0 conns".to_string(),
        ),
        (
            Kind::WindDown,
            conns,
            recent,
            format!("wind-down Http::serve + Signals, {conns} conns idle 50 ms"),
        ),
        (
            Kind::WindDown,
            conns,
            long,
            format!("wind-down Http::serve + Signals, {conns} conns idle 300 ms"),
        ),
        (
            Kind::HyperUtil,
            0,
            recent,
            "hyper-util GracefulShutdown + tokio signal, 0 conns".to_string(),
        ),
        (
            Kind::HyperUtil,
            conns,
            recent,
            format!("hyper-util GracefulShutdown + tokio signal, {conns} conns idle 50 ms"),
        ),
        (
            Kind::HyperUtil,
            conns,
            long,
            format!("hyper-util GracefulShutdown + tokio signal, {conns} conns idle 300 ms"),
        ),
    ];
    let mut group = Group::new(
        "6",
        format!("drain latency: SIGTERM to process exit, {conns} idle keep-alive connections"),
        "ms",
    );
    for (_, _, _, name) in &cases {
        group.row(name.clone());
    }
    let rounds = cfg.rounds.min(7);
    for round_no in 0..rounds + 1 {
        for k in 0..cases.len() {
            let i = (k + round_no) % cases.len();
            let (kind, n, idle, _) = &cases[i];
            let elapsed = round(&rt, *kind, *n, *idle);
            if round_no > 0 {
                group.rows[i].samples.push(elapsed.as_secs_f64() * 1e3);
            }
        }
    }
    group.note(format!(
        "{rounds} rounds after one warm-up; each round starts a fresh child process (this binary in server mode, a multi-threaded tokio runtime like examples/hello.rs); time = kill(SIGTERM) to waitpid returning"
    ));
    report.push(group);
}
