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
