//! The HTTP layer's one entry and the server's lifecycle, on tokio and on smol,
//! over real TCP on 127.0.0.1:
//! - `Http::serve` serves a hyper service, a tower service of requests and a
//!   tower make-service (called with each connection's peer address), each
//!   request carrying its `Connection`;
//! - `Http::http2_only` serves HTTP/2 and leaves HTTP/1 unanswered;
//! - an `Observer` hears ready, stopping, drain started and ended, in that
//!   order, once each, with the watchers in flight.
//!
//! Timeouts only catch hangs.

#![cfg(all(
    feature = "tokio",
    feature = "smol",
    feature = "http1",
    feature = "http2"
))]

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use wind_down::hyper::{Connection, Http, HyperRuntime, IntoHttpService, IntoHyperIo};
use wind_down::{Listener, Observer, Outcome, Report, ServeError, Server, Shutdown};

const HANG: Duration = Duration::from_secs(60);

/// What a request's handler answers: its path and whether it found its
/// connection (with the server's coordinator) in the extensions.
fn answer(request: &Request<Incoming>) -> Response<String> {
    let connection = request.extensions().get::<Connection>();
    let running = connection.is_some_and(|c| c.shutdown().is_ready());
    Response::new(format!("{} connection={running}", request.uri().path()))
}

/// GET `path`, with `connection: close`; the whole response.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(HANG)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    response
}

type Done = mpsc::Receiver<Result<Outcome, ServeError>>;

/// Starts `serve` on a runtime of its own in a thread; returns the address, the
/// coordinator and the serve result's receiver.
trait OnRuntime {
    fn start<Svc, Via>(service: Svc, observer: Option<Recorder>) -> (SocketAddr, Shutdown, Done)
    where
        Svc: IntoHttpService<SocketAddr, Via> + Send,
        Via: 'static,
    {
        Self::start_with(service, observer, false)
    }

    /// [`start`](OnRuntime::start), serving HTTP/2 only if `http2_only`.
    fn start_with<Svc, Via>(
        service: Svc,
        observer: Option<Recorder>,
        http2_only: bool,
    ) -> (SocketAddr, Shutdown, Done)
    where
        Svc: IntoHttpService<SocketAddr, Via> + Send,
        Via: 'static;
}

/// The part of a start that is the same on every runtime: the server on
/// `listener`, told `started`, its result sent to `done`.
async fn serve<R, L, Svc, Via>(
    runtime: R,
    listener: L,
    service: Svc,
    observer: Option<Recorder>,
    http2_only: bool,
    started: Started,
    done: Finished,
) where
    R: HyperRuntime,
    L: Listener<Addr = SocketAddr>,
    L::Io: IntoHyperIo,
    Svc: IntoHttpService<SocketAddr, Via>,
{
    let mut server = Server::new(runtime, listener).grace_period(HANG);
    if let Some(observer) = observer {
        server = server.observe(observer);
    }
    let (addr, shutdown) = (server.local_addr().unwrap(), server.shutdown());
    started.send((addr, shutdown)).unwrap();
    let mut http = Http::new(server);
    if http2_only {
        http = http.http2_only();
    }
    let _ = done.send(http.serve(service).await);
}

type Started = mpsc::Sender<(SocketAddr, Shutdown)>;
type Finished = mpsc::Sender<Result<Outcome, ServeError>>;

/// Runs `server` on a thread of its own; returns once it told its address.
fn on_thread(
    server: impl FnOnce(Started, Finished) + Send + 'static,
) -> (SocketAddr, Shutdown, Done) {
    let (started, start) = mpsc::channel();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || server(started, done));
    let (addr, shutdown) = start.recv_timeout(HANG).expect("started");
    (addr, shutdown, result)
}

struct OnTokio;

impl OnRuntime for OnTokio {
    fn start_with<Svc, Via>(
        service: Svc,
        observer: Option<Recorder>,
        http2_only: bool,
    ) -> (SocketAddr, Shutdown, Done)
    where
        Svc: IntoHttpService<SocketAddr, Via> + Send,
        Via: 'static,
    {
        on_thread(move |started, done| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let runtime = wind_down::tokio::Tokio::current();
                serve(
                    runtime, listener, service, observer, http2_only, started, done,
                )
                .await;
            });
        })
    }
}

struct OnSmol;

impl OnRuntime for OnSmol {
    fn start_with<Svc, Via>(
        service: Svc,
        observer: Option<Recorder>,
        http2_only: bool,
    ) -> (SocketAddr, Shutdown, Done)
    where
        Svc: IntoHttpService<SocketAddr, Via> + Send,
        Via: 'static,
    {
        on_thread(move |started, done| {
            let executor = Arc::new(smol::Executor::new());
            let runtime = wind_down::smol::Smol::new(executor.clone());
            smol::block_on(executor.run(async move {
                let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                serve(
                    runtime, listener, service, observer, http2_only, started, done,
                )
                .await;
            }));
        })
    }
}

fn stop(shutdown: &Shutdown, result: &Done) {
    shutdown.trigger();
    let outcome = result.recv_timeout(HANG).expect("serve returned");
    assert_eq!(outcome.expect("served"), Outcome::Drained);
}

fn serves_a_hyper_service<H: OnRuntime>() {
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(answer(&request))
    });
    let (addr, shutdown, result) = H::start(service, None);
    let response = get(addr, "/hyper");
    assert!(response.ends_with("/hyper connection=true"), "{response}");
    stop(&shutdown, &result);
}

fn serves_a_tower_service<H: OnRuntime>() {
    let service = tower::service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(answer(&request))
    });
    let (addr, shutdown, result) = H::start(service, None);
    let response = get(addr, "/tower");
    assert!(response.ends_with("/tower connection=true"), "{response}");
    stop(&shutdown, &result);
}

fn serves_a_make_service_with_the_peer_address<H: OnRuntime>() {
    // Makes each connection's service from its peer: the answer names it.
    let make = tower::service_fn(|peer: SocketAddr| async move {
        Ok::<_, Infallible>(tower::service_fn(
            move |request: Request<Incoming>| async move {
                let mut response = answer(&request);
                response
                    .body_mut()
                    .push_str(&format!(" peer={}", peer.ip()));
                Ok::<_, Infallible>(response)
            },
        ))
    });
    let (addr, shutdown, result) = H::start(make, None);
    let response = get(addr, "/made");
    assert!(
        response.ends_with("/made connection=true peer=127.0.0.1"),
        "{response}"
    );
    stop(&shutdown, &result);
}

/// HTTP/2 only, as gRPC servers are: an HTTP/2 client (prior knowledge) is
/// served; an HTTP/1 request is not answered, its connection ends.
fn http2_only_serves_http2_and_no_http1<H: OnRuntime>() {
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(answer(&request))
    });
    let (addr, shutdown, result) = H::start_with(service, None, true);
    // Ended by the server: closed, or reset, never answered.
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream
        .write_all(b"GET /http1 HTTP/1.1\r\nhost: test\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let ended = stream.read_to_end(&mut seen);
    let seen = String::from_utf8_lossy(&seen);
    assert!(!seen.contains("HTTP/1.1"), "served HTTP/1: {seen}");
    if let Err(error) = ended {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = client.block_on(async {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let executor = hyper_util::rt::TokioExecutor::new();
        let (mut send, conn) = hyper::client::conn::http2::handshake(executor, io)
            .await
            .expect("an HTTP/2 handshake");
        let conn = tokio::spawn(conn);
        let request = Request::get("http://127.0.0.1/h2")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let response = send.send_request(request).await.expect("an HTTP/2 answer");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        drop(send);
        let _ = tokio::time::timeout(HANG, conn).await;
        String::from_utf8(body.to_vec()).unwrap()
    });
    assert_eq!(body, "/h2 connection=true");
    stop(&shutdown, &result);
}

/// Records what an `Observer` hears.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn heard(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer for Recorder {
    fn ready(&self) {
        self.0.lock().unwrap().push("ready".into());
    }
    fn stopping(&self, in_flight: usize, left: Duration) {
        assert_eq!(
            left, HANG,
            "the whole grace period is left at the announcement"
        );
        self.0.lock().unwrap().push(format!("stopping {in_flight}"));
    }
    fn drain_started(&self, in_flight: usize, _: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("drain started {in_flight}"));
    }
    fn draining(&self, _: &Report, _: Option<Duration>) {
        self.0.lock().unwrap().push("draining".into());
    }
    fn ended(&self, outcome: &Outcome) {
        self.0.lock().unwrap().push(format!("ended {outcome}"));
    }
}

fn an_observer_hears_the_lifecycle_in_order<H: OnRuntime>() {
    let recorder = Recorder::default();
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(answer(&request))
    });
    let (addr, shutdown, result) = H::start(service, Some(recorder.clone()));
    // An idle keep-alive connection is in flight at the announcement.
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 64];
    idle.set_read_timeout(Some(HANG)).unwrap();
    assert!(idle.read(&mut first).expect("an answer") > 0);
    assert_eq!(recorder.heard(), ["ready"]);
    stop(&shutdown, &result);
    let heard = recorder.heard();
    let without_ticks: Vec<_> = heard.iter().filter(|e| *e != "draining").collect();
    assert_eq!(
        without_ticks,
        ["ready", "stopping 1", "drain started 1", "ended drained"],
        "{heard:?}"
    );
}

macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            $( #[test] fn $name() { super::$name::<super::OnTokio>() } )*
        }
        mod smol_runtime {
            $( #[test] fn $name() { super::$name::<super::OnSmol>() } )*
        }
    };
}

on_both_runtimes!(
    serves_a_hyper_service,
    serves_a_tower_service,
    serves_a_make_service_with_the_peer_address,
    an_observer_hears_the_lifecycle_in_order,
    http2_only_serves_http2_and_no_http1,
);
