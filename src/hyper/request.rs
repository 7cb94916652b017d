//! [`Connection`]: the connection a request came on, found in the request's
//! extensions, for work that outlives the response (an upgraded WebSocket
//! session, a job the request started).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::coordinator::Shutdown;
use crate::coordinator::phase::Phase;
use crate::coordinator::watch::{Tracked, Watched};
use crate::server::task::{TaskScope, WeakTaskScope};

/// The connection a request came on, in the extensions of every request served by
/// the HTTP layer ([`Http::serve`](super::Http::serve);
/// `request.extensions().get::<Connection>()`, axum's `Extension<Connection>`).
///
/// Work that goes on after the response, like an upgraded WebSocket session, is
/// [tracked](Connection::track) as part of the connection: the drain waits for
/// it, a forced drain drops it, and `serve` returns only after it ended. Tell it
/// about the shutdown with the server's [`Shutdown`] ([`Connection::shutdown`]):
/// `shutdown.triggered()` resolves when it should say goodbye (for a WebSocket,
/// a Close frame with code 1001, "going away"). Cloning a `Connection` touches
/// only that connection's reference count, never one shared by the server's
/// threads.
///
/// ```no_run
/// # #[cfg(feature = "tokio")]
/// # async fn run() -> std::io::Result<()> {
/// use std::convert::Infallible;
/// use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
/// use wind_down::{Server, Shutdown, hyper::{Connection, Http}, tokio::{Signals, Tokio}};
///
/// let service = service_fn(|mut request: Request<Incoming>| async move {
///     let connection = request.extensions().get::<Connection>().unwrap().clone();
///     let shutdown: Shutdown = connection.shutdown().clone();
///     let upgrade = hyper::upgrade::on(&mut request);
///     let session = connection.track(async move {
///         let Ok(_upgraded) = upgrade.await else { return };
///         // The session: until `shutdown.triggered()`, then a goodbye.
///         shutdown.triggered().await;
///     });
///     tokio::spawn(session.with_label("session"));
///     let mut response = Response::new(String::new());
///     *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
///     Ok::<_, Infallible>(response) // plus the protocol's upgrade headers
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let server = Server::new(Tokio::current(), listener).signals(Signals::new()?);
/// Http::new(server).serve(service).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection(Arc<State>);

/// What a connection's task, its service and its requests share: one allocation
/// per connection, whose count only that connection's requests touch.
struct State {
    shutdown: Shutdown,
    /// Whether the connection goes away at the announcement.
    go_away: bool,
    /// The connection task's scope, known from its first request (which is
    /// read while the task is polled). Weak: a `Connection` kept somewhere (an
    /// extractor stored in state, a task that owns the request) does not keep
    /// the server waiting; tracked work does.
    scope: OnceLock<Option<WeakTaskScope>>,
    requests: AtomicU64,
    /// HTTP/1 requests whose response was produced.
    answered: AtomicU64,
    accepted_at: Instant,
    /// When it was last active (accepted, or a response produced), in
    /// nanoseconds after `accepted_at`; written before `answered` counts.
    last_active: AtomicU64,
}

impl Connection {
    /// A connection of the server whose coordinator is `shutdown`, accepted now.
    pub(crate) fn new(shutdown: Shutdown, go_away: bool) -> Self {
        Connection(Arc::new(State {
            shutdown,
            go_away,
            scope: OnceLock::new(),
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            accepted_at: Instant::now(),
            last_active: AtomicU64::new(0),
        }))
    }

    /// The coordinator of the server this connection belongs to: its
    /// [`triggered`](Shutdown::triggered) resolves when the connection's work
    /// should say goodbye.
    pub fn shutdown(&self) -> &Shutdown {
        &self.0.shutdown
    }

    /// Notes a request started, while the connection's task is polled.
    pub(crate) fn started(&self) {
        self.0
            .scope
            .get_or_init(|| TaskScope::current().map(|scope| scope.downgrade()));
        self.0.requests.fetch_add(1, Ordering::AcqRel);
    }

    /// How many requests were started.
    pub(crate) fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Acquire)
    }

    /// Notes an HTTP/1 response produced now.
    pub(crate) fn answered(&self) {
        let state = &self.0;
        let now = u64::try_from(state.accepted_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        state.last_active.store(now, Ordering::Relaxed);
        state.answered.fetch_add(1, Ordering::Release);
    }

    /// How long the connection has been idle: since it was accepted or since its
    /// last response, with no request in flight; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let state = &self.0;
        let answered = state.answered.load(Ordering::Acquire);
        if answered < self.requests() {
            return None;
        }
        let since = Duration::from_nanos(state.last_active.load(Ordering::Relaxed));
        Some(state.accepted_at.elapsed().saturating_sub(since))
    }

    /// Whether an HTTP/1 response must say `connection: close`: once triggered,
    /// and from the announcement on when going away.
    pub(crate) fn closing(&self) -> bool {
        let phase = self.0.shutdown.phase();
        phase >= Phase::Triggered || (self.0.go_away && phase >= Phase::Announced)
    }

    /// Runs `work` as in-flight work of this connection; spawn the returned future
    /// on the runtime. The drain waits for it; a forced drain drops it (and reports
    /// it, by the label given with [`Watched::with_label`]); the server's `serve`
    /// returns only once it ended. Resolves like [`Shutdown::track`].
    pub fn track<F: Future>(
        &self,
        work: F,
    ) -> Watched<Tracked<impl Future<Output = F::Output> + use<F>>> {
        let scope = self.0.scope.get().and_then(Option::as_ref);
        let scope = scope.and_then(WeakTaskScope::upgrade);
        self.0.shutdown.track(HoldingPlace {
            work,
            _scope: scope,
        })
    }
}

pin_project_lite::pin_project! {
    /// Tracked work holding its connection's place: `work` is dropped first (fields
    /// drop in order), so the place is given back after it, also when the work is
    /// cut short or never polled.
    struct HoldingPlace<F> {
        #[pin]
        work: F,
        _scope: Option<TaskScope>,
    }
}

impl<F: Future> Future for HoldingPlace<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().work.poll(cx)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}
