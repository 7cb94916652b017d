// The demo HTTP application shared by the runtime examples and the end-to-end
// tests: one service and one `run`, generic over the runtime.
//
// Routes:
// - `GET /`          -> "hello\n"
// - `GET /slow/<ms>` -> waits <ms> milliseconds on the runtime's timer, then "slow <ms>\n"
// - `GET /stream`    -> a streaming body that sends one chunk and never ends
// - `GET /events`    -> server-sent events: a `tick` chunk, then nothing
//                       until the trigger ends the stream with `event: shutdown`
// - `GET /ws`        -> a WebSocket echo session, tracked as part of its
//                       connection: at the trigger it sends Close 1001 ("going
//                       away") and ends after the close handshake
// - `GET /ws/stubborn` -> the same session, deaf to the trigger: forced at the
//                       deadline
// - `GET /stats`     -> "watchers=<n> slow=<n> sessions=<n>": the server's live
//                       watchers (when known), the `/slow` requests now waiting,
//                       and the WebSocket sessions now running
// - `GET /ready`     -> 200 "ready" while serving normally, 503 "draining" once
//                       shutdown is announced (during the drain delay and after)
// - `GET /pid`       -> the serving process's id (which generation answered,
//                       across upgrades)
// - anything else    -> 404

#![allow(dead_code)]

#[path = "websocket.rs"]
mod websocket;

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use wind_down::hyper::{Connection, EndAtTrigger, Http, HyperRuntime, IntoHyperIo};
use wind_down::{Listener, Outcome, Server, Shutdown, SignalSource};

/// The response body: a whole message, a stream that never ends, or one that
/// ends at the trigger.
pub enum AppBody {
    Full(Option<Bytes>),
    Endless { sent_first: bool },
    Events(Box<EndAtTrigger<AppBody>>),
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AppBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            AppBody::Endless { sent_first } if !*sent_first => {
                *sent_first = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"tick\n")))))
            }
            // Never ready, never woken: a stream that stalls forever.
            AppBody::Endless { .. } => Poll::Pending,
            AppBody::Events(events) => Pin::new(&mut **events).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AppBody::Full(data) => data.is_none(),
            AppBody::Endless { .. } => false,
            AppBody::Events(events) => events.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            AppBody::Full(data) => {
                http_body::SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            AppBody::Endless { .. } => http_body::SizeHint::default(),
            AppBody::Events(events) => events.size_hint(),
        }
    }
}

pub type AppFuture = Pin<Box<dyn Future<Output = Result<Response<AppBody>, Infallible>> + Send>>;

/// The service: cheap to clone, one per connection.
#[derive(Clone)]
pub struct App<R> {
    runtime: R,
    shutdown: Option<Shutdown>,
    slow: Arc<AtomicUsize>,
    sessions: Arc<AtomicUsize>,
}

impl<R> App<R> {
    pub fn new(runtime: R) -> Self {
        App {
            runtime,
            shutdown: None,
            slow: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// The count of WebSocket sessions now running (their futures not dropped).
    pub fn sessions(&self) -> Arc<AtomicUsize> {
        self.sessions.clone()
    }

    /// Reports `shutdown`'s watchers on `/stats`.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

impl<R: HyperRuntime> hyper::service::Service<Request<Incoming>> for App<R> {
    type Response = Response<AppBody>;
    type Error = Infallible;
    type Future = AppFuture;

    fn call(&self, req: Request<Incoming>) -> AppFuture {
        let app = self.clone();
        Box::pin(async move { Ok(route(app, req).await) })
    }
}

fn text(status: StatusCode, body: String) -> Response<AppBody> {
    let mut response = Response::new(AppBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response
}

async fn route<R: HyperRuntime>(app: App<R>, req: Request<Incoming>) -> Response<AppBody> {
    let path = req.uri().path();
    if path == "/ready" {
        return match &app.shutdown {
            Some(shutdown) if !shutdown.is_ready() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
            }
            _ => text(StatusCode::OK, "ready\n".into()),
        };
    }
    if path == "/stats" {
        let watchers = app.shutdown.as_ref().map_or(0, |s| s.report().remaining);
        let slow = app.slow.load(Ordering::SeqCst);
        let sessions = app.sessions.load(Ordering::SeqCst);
        let stats = format!("watchers={watchers} slow={slow} sessions={sessions}\n");
        return text(StatusCode::OK, stats);
    }
    if path == "/" {
        return text(StatusCode::OK, "hello\n".into());
    }
    if path == "/pid" {
        return text(StatusCode::OK, format!("{}\n", std::process::id()));
    }
    if path == "/stream" {
        return Response::new(AppBody::Endless { sent_first: false });
    }
    if path == "/ws" || path == "/ws/stubborn" {
        // Deaf to the trigger on /ws/stubborn.
        let polite = path == "/ws";
        return match websocket::upgrade(&app.runtime, req, polite, Some(&app.sessions)) {
            Some(switching) => switching.map(|()| AppBody::Full(None)),
            None => text(StatusCode::BAD_REQUEST, "not a WebSocket request\n".into()),
        };
    }
    if path == "/events" {
        // The server's coordinator comes with the request.
        let Some(shutdown) = req
            .extensions()
            .get::<Connection>()
            .map(Connection::shutdown)
        else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "no coordinator\n".into());
        };
        let ticks = AppBody::Endless { sent_first: false };
        let events = EndAtTrigger::new(ticks, shutdown)
            .with_final_chunk(Bytes::from_static(b"event: shutdown\ndata: bye\n\n"));
        let mut response = Response::new(AppBody::Events(Box::new(events)));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        return response;
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        app.slow.fetch_add(1, Ordering::SeqCst);
        app.runtime
            .sleep(Duration::from_millis(ms.min(60_000)))
            .await;
        app.slow.fetch_sub(1, Ordering::SeqCst);
        return text(StatusCode::OK, format!("slow {ms}\n"));
    }
    text(StatusCode::NOT_FOUND, "not found\n".into())
}

/// The grace period: `WIND_DOWN_DEADLINE_MS`, or 10 s.
pub fn deadline_from_env() -> Duration {
    std::env::var("WIND_DOWN_DEADLINE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// How long to keep serving after the first signal while `/ready` says draining:
/// `WIND_DOWN_DRAIN_DELAY_MS`, or no delay.
pub fn drain_delay_from_env() -> Duration {
    std::env::var("WIND_DOWN_DRAIN_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::ZERO)
}

/// The address to bind: `WIND_DOWN_ADDR`, or 127.0.0.1:3000.
pub fn addr_from_env() -> String {
    std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into())
}

/// The listening socket: the one a previous generation handed over (`upgrade`
/// feature, as `http`), the one systemd passed (socket activation, with the
/// `systemd` feature), or `addr` bound now. Non-blocking, for either runtime.
pub fn listener(addr: &str) -> std::io::Result<std::net::TcpListener> {
    #[cfg(feature = "upgrade")]
    if let Some(inherited) = wind_down::upgrade::listener("http")? {
        return Ok(inherited);
    }
    #[cfg(feature = "systemd")]
    if let Some(inherited) = wind_down::systemd::tcp_listener()? {
        return Ok(inherited);
    }
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the app until a signal, drains with `deadline`, and returns the outcome.
/// Prints `listening on <addr>` once the listener and the signal handlers are in
/// place; at the end, one `still running: ...` line per forced straggler (with
/// its peer address and age) and `outcome: ...`.
pub async fn run<R, L, S>(runtime: R, listener: L, signals: S, deadline: Duration) -> Outcome
where
    R: HyperRuntime,
    L: Listener,
    L::Io: IntoHyperIo,
    L::Addr: Display,
    S: SignalSource,
{
    let mut server = Server::new(runtime.clone(), listener)
        .grace_period(deadline)
        .drain_delay(drain_delay_from_env())
        .signals(signals);
    // `WIND_DOWN_MAX_CONNECTIONS` caps the connections served at once.
    if let Some(limit) = std::env::var("WIND_DOWN_MAX_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        server = server.max_connections(limit);
    }
    // Tells systemd about readiness and the drain, if it started us.
    #[cfg(feature = "systemd")]
    let server = server.observe(wind_down::systemd::Notify);
    // Tells the previous generation, if any, that this one is ready.
    #[cfg(feature = "upgrade")]
    let server = match UPGRADE.get() {
        Some(upgrade) => server.observe(upgrade.clone()),
        None => server,
    };
    let shutdown = server.shutdown();
    println!(
        "listening on {}",
        server.local_addr().expect("local address")
    );
    let app = App::new(runtime).with_shutdown(shutdown.clone());
    let outcome = match Http::new(server).serve(app).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("server failed: {e}");
            e.outcome
        }
    };
    #[cfg(feature = "upgrade")]
    if let Some(pid) = UPGRADE.get().and_then(|upgrade| upgrade.upgraded_to()) {
        println!("upgraded to {pid}");
    }
    match &outcome {
        Outcome::Drained => println!("outcome: drained"),
        Outcome::Forced(report) => {
            for straggler in &report.stragglers {
                println!("still running: {straggler}");
            }
            println!("outcome: forced remaining={}", report.remaining);
        }
    }
    outcome
}

/// The upgrader of this process, when it upgrades (`upgrade` feature).
#[cfg(feature = "upgrade")]
pub static UPGRADE: std::sync::OnceLock<wind_down::upgrade::Upgrade> = std::sync::OnceLock::new();

/// `signals`, plus an upgrade at each of `requests` that hands `listener` over
/// as `http` to a new generation of this program (`upgrade` feature). Prints
/// what happens to each upgrade.
#[cfg(feature = "upgrade")]
pub fn upgradable<S, U>(
    listener: &impl std::os::fd::AsFd,
    signals: S,
    requests: U,
) -> std::io::Result<wind_down::upgrade::Upgrading<S, U>>
where
    S: SignalSource,
    U: wind_down::upgrade::UpgradeRequests,
{
    let timeout = std::env::var("WIND_DOWN_UPGRADE_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(
            wind_down::upgrade::DEFAULT_READY_TIMEOUT,
            Duration::from_millis,
        );
    let mut upgrade = wind_down::upgrade::Upgrade::new()
        .listener("http", listener)?
        .ready_timeout(timeout)
        .on_event(|event| println!("{event}"));
    // `WIND_DOWN_FDSTORE=1`: systemd keeps the socket across restarts too.
    if std::env::var_os("WIND_DOWN_FDSTORE").is_some() {
        upgrade = upgrade.store_in_systemd();
    }
    let signals = upgrade.signals(signals, requests);
    let _ = UPGRADE.set(upgrade);
    Ok(signals)
}
