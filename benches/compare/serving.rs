//! Measurement 5: serving cost. The same hello-world hyper service on 127.0.0.1,
//! served (a) by a plain accept loop with hyper-util's auto builder and no watching,
//! (b) by wind-down's `Http::serve`, (c) by the plain loop with hyper-util's
//! `GracefulShutdown` watching each connection. One in-process client sends a fixed
//! number of requests over a fixed set of keep-alive connections to each in turn.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::Config;
use crate::http::{Client, Hello, auto_builder};
use crate::report::{Group, Report};

struct Running {
    addr: SocketAddr,
    stop: Arc<Notify>,
    wind_down: Option<wind_down::Shutdown>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting and waits (bounded) for the server to finish. The clients
    /// have closed their connections by then.
    async fn stop(self) {
        match &self.wind_down {
            Some(shutdown) => {
                shutdown.trigger();
            }
            None => self.stop.notify_one(),
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server did not stop within 10 s")
            .expect("server task panicked");
    }
}

/// The accept loop without wind-down: spawns each connection, optionally watched by
/// hyper-util's `GracefulShutdown`.
async fn accept_loop(listener: TcpListener, stop: Arc<Notify>, graceful: Option<GracefulShutdown>) {
    let builder = auto_builder();
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((io, _)) = accepted else {
            continue; // loopback only: per-connection errors, retried
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), Hello)
            .into_owned();
        match &graceful {
            Some(graceful) => {
                let watched = graceful.watch(conn);
                drop(tokio::spawn(async move {
                    let _ = watched.await;
                }));
            }
            None => drop(tokio::spawn(async move {
                let _ = conn.await;
            })),
        }
    }
    drop(listener);
    if let Some(graceful) = graceful {
        let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    WindDown,
    HyperUtil,
}

const KINDS: [(Kind, &str); 3] = [
    (
        Kind::Plain,
        "baseline: plain accept loop + auto builder, unwatched",
    ),
    (Kind::WindDown, "wind-down Http::serve"),
    (
        Kind::HyperUtil,
        "plain accept loop + hyper-util GracefulShutdown::watch",
    ),
];

async fn start(kind: Kind) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let stop = Arc::new(Notify::new());
    match kind {
        Kind::Plain => Running {
            addr,
            task: tokio::spawn(accept_loop(listener, stop.clone(), None)),
            stop,
            wind_down: None,
        },
        Kind::HyperUtil => Running {
            addr,
            task: tokio::spawn(accept_loop(
                listener,
                stop.clone(),
                Some(GracefulShutdown::new()),
            )),
            stop,
            wind_down: None,
        },
        Kind::WindDown => {
            let server = wind_down::Server::new(wind_down::tokio::Tokio::current(), listener)
                .grace_period(Duration::from_secs(10));
            let shutdown = server.shutdown();
            Running {
                addr,
                task: tokio::spawn(async move {
                    let outcome = wind_down::hyper::Http::new(server)
                        .serve(Hello)
                        .await
                        .expect("serve");
                    assert_eq!(outcome, wind_down::Outcome::Drained);
                }),
                stop,
                wind_down: Some(shutdown),
            }
        }
    }
}

/// `conns` keep-alive connections, `per_conn` sequential requests on each, all
/// connections at once. Returns requests per second, connection set-up included.
async fn load(addr: SocketAddr, conns: usize, per_conn: usize) -> f64 {
    let start = Instant::now();
    let clients: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await.expect("connect");
                for _ in 0..per_conn {
                    client.get().await.expect("request");
                }
                client
            })
        })
        .collect();
    let mut done = Vec::with_capacity(conns);
    for c in clients {
        done.push(c.await.expect("client task panicked"));
    }
    let elapsed = start.elapsed();
    for c in done {
        c.close().await;
    }
    (conns * per_conn) as f64 / elapsed.as_secs_f64()
}

pub fn serving(cfg: &Config, report: &mut Report) {
    let conns = 32;
    let per_conn = cfg.scaled_usize(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = Group::new(
        "5",
        format!(
            "serving cost: hello-world hyper, {conns} keep-alive connections x {per_conn} requests, in-process client"
        ),
        "requests/s",
    )
    .higher_is_better();
    for (_, name) in KINDS {
        group.row(name);
    }
    rt.block_on(async {
        let mut servers = Vec::new();
        for (kind, _) in KINDS {
            servers.push(start(kind).await);
        }
        for round in 0..cfg.rounds + 1 {
            for k in 0..KINDS.len() {
                let i = (k + round) % KINDS.len();
                let rps = load(servers[i].addr, conns, per_conn).await;
                if round > 0 {
                    group.rows[i].samples.push(rps);
                }
            }
        }
        for server in servers {
            server.stop().await;
        }
    });
    group.note(format!(
        "{} rounds after one warm-up, cases interleaved; client and servers share one 2-worker tokio runtime (servers are idle while another is measured)",
        cfg.rounds
    ));
    report.push(group);
}

/// Measurement 5b: heap held per idle keep-alive connection. Each server runs on
/// a current-thread runtime on this thread, so every allocation it makes for a
/// connection (the task, the IO registration, hyper's buffers, the watcher) is
/// counted here; the clients are blocking sockets on another thread, not counted.
/// Each client sends one request, reads its answer and stays connected.
pub fn connection_memory(cfg: &Config, report: &mut Report) {
    let conns = cfg.scaled_usize(1000);
    let mut group = Group::new(
        "5b",
        format!(
            "heap per idle keep-alive HTTP/1 connection, {conns} connections after one request each"
        ),
        "B/conn",
    );
    for (_, name) in KINDS {
        group.row(name);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for round in 0..cfg.rounds.min(5) + 1 {
        for k in 0..KINDS.len() {
            let i = (k + round) % KINDS.len();
            let bytes = rt.block_on(held_per_connection(KINDS[i].0, conns));
            if round > 0 {
                group.rows[i].samples.push(bytes);
            }
        }
    }
    group.note(format!(
        "{} rounds after one warm-up, cases interleaved; the live-heap growth of the server's thread between before the clients connect and after all of them were answered, divided by {conns}",
        cfg.rounds.min(5)
    ));
    report.push(group);
}

/// Starts a `kind` server, connects `conns` idle keep-alive clients, and returns
/// the live heap the server's thread grew by, per connection.
async fn held_per_connection(kind: Kind, conns: usize) -> f64 {
    use std::io::{Read as _, Write as _};

    let server = start(kind).await;
    let addr = server.addr;
    // Settles whatever the server allocates once, before any connection.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = crate::alloc::snapshot();
    let (answered, answered_rx) = std::sync::mpsc::channel();
    let (close, close_rx) = std::sync::mpsc::channel::<()>();
    let clients = std::thread::spawn(move || {
        let mut held = Vec::with_capacity(conns);
        for _ in 0..conns {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
                .expect("request");
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            // Bounded by the answer's size: hello\n ends it.
            while !got.ends_with(b"hello\n") {
                let n = stream.read(&mut buf).expect("answer");
                assert!(n > 0, "closed before its answer");
                got.extend_from_slice(&buf[..n]);
            }
            held.push(stream);
        }
        answered.send(()).expect("bench thread");
        let _ = close_rx.recv();
        drop(held);
    });
    // Bounded: the clients answer within the bench's patience.
    for _ in 0..60_000 {
        if answered_rx.try_recv().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Lets every connection task finish its poll after the answer.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let grown = before.since().live;

    close.send(()).expect("client thread");
    clients.join().expect("client thread panicked");
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop().await;
    grown as f64 / conns as f64
}
