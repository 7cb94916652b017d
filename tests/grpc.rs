//! gRPC through SIGTERM, with real tonic clients against the `grpc` example as a
//! child process (and, for the baseline, tonic's own server): unary RPCs in
//! flight finish, endless streams end with UNAVAILABLE at the trigger, health
//! goes NOT_SERVING at the announcement, HTTP/2 connections get GOAWAY, a client
//! that stops reading is forced and named, a second signal forces; tonic's
//! `serve_with_shutdown` in the same stream scenario never ends.
//!
//! Timeouts here only catch hangs. Unix only: signals are sent with `kill`.

#![cfg(unix)]
// The example brings its own copy of `examples/common/ticker.rs`; the clients
// here use theirs.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/grpc.rs"]
mod grpc;
#[path = "common/recipe.rs"]
mod recipe;
#[path = "../examples/common/ticker.rs"]
mod ticker;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use recipe::{HANG, Recipe};
use ticker::{SlowRequest, TickerClient, TicksRequest};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[test]
#[ignore = "helper: the server process of the gRPC tests"]
fn recipe_child() {
    let Ok(recipe) = std::env::var("WIND_DOWN_RECIPE") else {
        return;
    };
    let code = match recipe.as_str() {
        "grpc" => grpc::main(),
        "tonic_baseline" => tonic_baseline(),
        other => panic!("unknown recipe {other}"),
    };
    recipe::exit_with(code)
}

/// The baseline: the same service with tonic's own server and
/// `serve_with_shutdown` on SIGTERM, its endless stream without an end.
#[tokio::main]
async fn tonic_baseline() -> std::io::Result<std::process::ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .add_service(ticker::TickerServer(EndlessTicks))
        .serve_with_incoming_shutdown(incoming, async move {
            terminate.recv().await;
            println!("shutting down");
        })
        .await
        .map_err(std::io::Error::other)?;
    println!("outcome: drained");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Handlers for the baseline: ticks for ever.
#[derive(Clone)]
struct EndlessTicks;

impl ticker::Ticker for EndlessTicks {
    fn slow(&self, _: tonic::Request<SlowRequest>) -> ticker::Handled<ticker::Reply> {
        Box::pin(async { Err(tonic::Status::unimplemented("baseline")) })
    }

    fn ticks(&self, request: tonic::Request<TicksRequest>) -> ticker::Handled<ticker::TickStream> {
        let every = Duration::from_millis(request.into_inner().every_millis);
        Box::pin(async move {
            let ticks = futures_lite::stream::unfold(0u64, move |n| async move {
                tokio::time::sleep(every).await;
                let tick = ticker::Tick {
                    n,
                    padding: Vec::new(),
                };
                Some((Ok(tick), n + 1))
            });
            let stream: ticker::TickStream = Box::pin(ticks);
            Ok(tonic::Response::new(stream))
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    within("connect", endpoint.connect()).await.unwrap()
}

/// Awaits `fut`, or panics naming `what` after [`HANG`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// Opens a `Ticks` stream (a tick every `every_millis`, `padding` bytes each) and
/// reads its first tick.
async fn first_tick<C>(
    mut ticker: TickerClient<C>,
    every_millis: u64,
    padding: u64,
) -> tonic::codec::Streaming<ticker::Tick>
where
    C: tonic::client::GrpcService<tonic::body::Body>,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let request = TicksRequest {
        every_millis,
        padding,
    };
    let mut ticks = within("ticks", ticker.ticks(request))
        .await
        .unwrap()
        .into_inner();
    let first = within("first tick", ticks.message()).await.unwrap();
    assert_eq!(first.unwrap().n, 0);
    ticks
}

/// Waits for the child's line that ends with `suffix`.
fn wait_for_line(server: &Recipe, suffix: &str) {
    let start = Instant::now();
    loop {
        let line = server
            .lines
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("no line ending with {suffix:?}"));
        if line.ends_with(suffix) {
            return;
        }
        assert!(start.elapsed() < HANG, "no line ending with {suffix:?}");
    }
}

/// A raw HTTP/2 connection that made one gRPC request (an empty `Slow`): its
/// sender, and its connection task, which ends `Ok` once the server sent GOAWAY
/// and closed it gracefully.
async fn h2_after_one_request(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    use http_body_util::{BodyExt, Full};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // An empty SlowRequest: the gRPC frame header (uncompressed, length 0).
    let request = hyper::Request::post(format!("http://{addr}/ticker.Ticker/Slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(hyper::body::Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = within("raw gRPC request", send.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = within("raw gRPC response", response.into_body().collect())
        .await
        .unwrap();
    let status = body.trailers().and_then(|t| t.get("grpc-status")).cloned();
    assert_eq!(status.as_ref().map(|s| s.as_bytes()), Some(&b"0"[..]));
    (send, conn)
}

/// Until a connection to `addr` is refused: its listener closed.
fn wait_refused(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(start.elapsed() < HANG, "the listener never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads `stream` to its end; returns how it ended (`Ok(None)`: with status OK).
async fn stream_end<T>(
    stream: &mut tonic::codec::Streaming<T>,
) -> Result<Option<T>, tonic::Status> {
    within("the stream's end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    })
    .await
}

/// Through SIGTERM with a drain delay: a slow unary RPC in flight completes OK;
/// a health `Watch` sees NOT_SERVING at the announcement, then ends with
/// UNAVAILABLE; an endless server stream ends with UNAVAILABLE at the trigger,
/// long before the 30 s grace period; an HTTP/2 connection that made a request
/// is closed gracefully by GOAWAY; the listener closes after the delay; exit 0.
#[test]
fn sigterm_drains_unary_and_ends_streams_with_unavailable() {
    let mut server = Recipe::start(
        "grpc",
        &[
            ("WIND_DOWN_DRAIN_DELAY_MS", "1000"),
            ("WIND_DOWN_DEADLINE_MS", "30000"),
        ],
        1,
    );
    let addr = server.addr();
    let rt = runtime();
    let (slow, mut ticks, mut watch, raw) = rt.block_on(async {
        let channel = channel(addr).await;
        let ticks = first_tick(TickerClient::new(channel.clone()), 20, 0).await;
        let mut health = HealthClient::new(channel.clone());
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let mut watch = within("watch", health.watch(request))
            .await
            .unwrap()
            .into_inner();
        let first = within("first status", watch.message()).await.unwrap();
        assert_eq!(first.unwrap().status, ServingStatus::Serving as i32);
        let mut slow_client = TickerClient::new(channel);
        let slow =
            tokio::spawn(async move { slow_client.slow(SlowRequest { millis: 2500 }).await });
        (slow, ticks, watch, h2_after_one_request(addr).await)
    });
    wait_for_line(&server, "slow: sleeping 2500 ms");
    server.signal("TERM");
    rt.block_on(async {
        let update = within("NOT_SERVING", watch.message()).await.unwrap();
        assert_eq!(update.unwrap().status, ServingStatus::NotServing as i32);
        let (_send, conn) = raw;
        within("GOAWAY", conn)
            .await
            .unwrap()
            .expect("the HTTP/2 connection was not closed gracefully");
        for (what, end) in [
            ("watch", stream_end(&mut watch).await.map(|_| ())),
            ("ticks", stream_end(&mut ticks).await.map(|_| ())),
        ] {
            let status = end.expect_err(what);
            assert_eq!(
                status.code(),
                tonic::Code::Unavailable,
                "{what}: {status:?}"
            );
            assert_eq!(status.message(), "server shutting down", "{what}");
        }
        let reply = within("slow unary", slow).await.unwrap();
        assert_eq!(
            reply.expect("the unary RPC failed").into_inner().message,
            "slept 2500 ms"
        );
    });
    wait_refused(addr);
    server.expect_drained();
}

/// A client that opened a fast stream of large ticks and stopped reading: HTTP/2
/// flow control stops the server from polling the stream, so nothing ends it at
/// the trigger; it is forced at the grace period's end (2 s), named in the
/// report by its connection, and the process exits 1.
#[test]
fn a_client_that_stops_reading_is_forced_at_the_deadline_and_named() {
    let mut server = Recipe::start("grpc", &[("WIND_DOWN_DEADLINE_MS", "2000")], 1);
    let addr = server.addr();
    let rt = runtime();
    let (stalled, local) = rt.block_on(async {
        // A connection of its own, to know its address.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let (send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, tonic::body::Body>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let channel = tower::service_fn(move |request: hyper::Request<tonic::body::Body>| {
            let mut send = send.clone();
            async move { send.send_request(request).await }
        });
        let ticker = TickerClient::new(AddOrigin {
            inner: channel,
            addr,
        });
        let ticks = first_tick(ticker, 1, 256 * 1024).await;
        // Not read from now on: the windows fill.
        (ticks, local)
    });
    // 256 KiB a tick, every millisecond: hyper's 2 MiB stream window is full
    // within a few ticks.
    std::thread::sleep(Duration::from_millis(500));
    server.signal("TERM");
    let (status, output) = server.wait();
    assert_eq!(status.code(), Some(1), "{status:?} {output:?}");
    let named = output
        .iter()
        .any(|l| l.contains("still running: ") && l.contains(&local.to_string()));
    assert!(
        named,
        "the stalled connection {local} was not named: {output:?}"
    );
    assert!(
        output.iter().any(|l| l.contains("outcome: forced")),
        "{output:?}"
    );
    drop(stalled);
}

/// A tonic client channel over one hyper HTTP/2 connection: requests get the
/// server's authority.
#[derive(Clone)]
struct AddOrigin<S> {
    inner: S,
    addr: SocketAddr,
}

impl<S> tower::Service<hyper::Request<tonic::body::Body>> for AddOrigin<S>
where
    S: tower::Service<hyper::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: hyper::Request<tonic::body::Body>) -> S::Future {
        let path = request.uri().path_and_query().cloned();
        let uri = hyper::Uri::builder()
            .scheme("http")
            .authority(self.addr.to_string())
            .path_and_query(path.unwrap())
            .build()
            .unwrap();
        *request.uri_mut() = uri;
        self.inner.call(request)
    }
}

/// A unary RPC that outlives the first signal: the second SIGTERM forces the
/// drain at once, and the process exits 1 naming what was running.
#[test]
fn a_second_sigterm_forces() {
    let mut server = Recipe::start("grpc", &[("WIND_DOWN_DEADLINE_MS", "60000")], 1);
    let addr = server.addr();
    let rt = runtime();
    let mut ticker = TickerClient::new(rt.block_on(channel(addr)));
    let slow = rt.spawn(async move { ticker.slow(SlowRequest { millis: 120_000 }).await });
    wait_for_line(&server, "slow: sleeping 120000 ms");
    server.signal("TERM");
    wait_refused(addr);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the first signal ended it"
    );
    server.signal("TERM");
    let (status, output) = server.wait();
    assert_eq!(status.code(), Some(1), "{status:?} {output:?}");
    assert!(
        output.iter().any(|l| l.contains("outcome: forced")),
        "{output:?}"
    );
    let cut = rt.block_on(within("the cut RPC", slow)).unwrap();
    assert!(cut.is_err(), "the forced RPC succeeded");
}

/// The baseline, measured in the same run: tonic's own `serve_with_shutdown`,
/// SIGTERM, one client reading an endless stream. wind-down ends that stream
/// with UNAVAILABLE and exits 0 (above); tonic's server is still running, the
/// stream still ticking, when the harness gives up after 5 s.
#[test]
fn baseline_tonic_serve_with_shutdown_never_ends_with_a_stream_open() {
    let mut server = Recipe::start("tonic_baseline", &[], 1);
    let addr = server.addr();
    let rt = runtime();
    let mut ticks = rt.block_on(async {
        let mut ticker = TickerClient::new(channel(addr).await);
        let request = TicksRequest {
            every_millis: 50,
            padding: 0,
        };
        let ticks = within("ticks", ticker.ticks(request)).await.unwrap();
        ticks.into_inner()
    });
    server.signal("TERM");
    wait_for_line(&server, "shutting down");
    let signalled = Instant::now();
    let mut ticked = 0;
    rt.block_on(async {
        while signalled.elapsed() < Duration::from_secs(5) {
            let tick = within("tick", ticks.message())
                .await
                .expect("the stream failed");
            assert!(tick.is_some(), "the stream ended");
            ticked += 1;
        }
    });
    let running = server.child.try_wait().unwrap().is_none();
    println!(
        "tonic serve_with_shutdown, 5 s after SIGTERM: running {running}, {ticked} ticks since"
    );
    assert!(
        running,
        "tonic's server ended: the baseline no longer shows the problem"
    );
    assert!(ticked > 0);
}

/// On smol, without tokio's runtime in the server: tonic's `Routes` with
/// tonic-health (whose channels are tokio's runtime-free `sync` ones) serves a
/// tonic client; at the announcement `Watch` sees NOT_SERVING, after the drain
/// delay it ends with UNAVAILABLE, and `serve` returns drained.
#[cfg(feature = "smol")]
#[test]
fn tonic_health_serves_on_smol() {
    use tower::ServiceBuilder;
    use wind_down::grpc::{EndAtTriggerLayer, not_serving_at_announcement};
    use wind_down::smol::Smol;

    let (started_tx, started) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        smol::block_on(async move {
            let (reporter, health) = tonic_health::server::health_reporter();
            let routes = tonic::service::Routes::new(health);
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = wind_down::Server::new(Smol::global(), listener)
                .drain_delay(Duration::from_millis(500))
                .grace_period(Duration::from_secs(30));
            let shutdown = server.shutdown();
            smol::spawn(not_serving_at_announcement(
                shutdown.clone(),
                reporter,
                [""],
            ))
            .detach();
            started_tx
                .send((server.local_addr().unwrap(), shutdown))
                .unwrap();
            let service = ServiceBuilder::new()
                .layer(EndAtTriggerLayer)
                .service(routes);
            wind_down::hyper::Http::new(server).serve(service).await
        })
    });
    let (addr, shutdown) = started
        .recv_timeout(HANG)
        .expect("the server did not start");
    let rt = runtime();
    rt.block_on(async {
        let mut health = HealthClient::new(channel(addr).await);
        let request = || HealthCheckRequest {
            service: String::new(),
        };
        let checked = within("check", health.check(request())).await.unwrap();
        assert_eq!(checked.into_inner().status, ServingStatus::Serving as i32);
        let mut watch = within("watch", health.watch(request()))
            .await
            .unwrap()
            .into_inner();
        let first = within("first status", watch.message()).await.unwrap();
        assert_eq!(first.unwrap().status, ServingStatus::Serving as i32);
        shutdown.announce();
        let update = within("NOT_SERVING", watch.message()).await.unwrap();
        assert_eq!(update.unwrap().status, ServingStatus::NotServing as i32);
        let status = stream_end(&mut watch)
            .await
            .expect_err("ended without a status");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    });
    let outcome = server.join().unwrap().expect("serve failed");
    assert!(outcome.is_drained(), "{outcome:?}");
}
