//! [`Connection`]: the connection a request came on, found in the request's
//! extensions, for work that outlives the response (an upgraded WebSocket
//! session, a job the request started).

use std::fmt;
use std::future::Future;

use crate::coordinator::Shutdown;
use crate::coordinator::watch::{Tracked, Watched};
use crate::server::task::{TaskScope, WeakTaskScope};

/// The connection a request came on, in the extensions of every request served by
/// the HTTP layer ([`Http::serve`](super::Http::serve);
/// `request.extensions().get::<Connection>()`, axum's `Extension<Connection>`).
///
/// Work that goes on after the response, like an upgraded WebSocket session, is
/// [tracked](Connection::track) as part of the connection: the drain waits for
/// it, a forced drain drops it, and `serve` returns only after it ended. Tell it
/// about the shutdown with the server's [`Shutdown`], which the request carries
/// too: `shutdown.triggered()` resolves when it should say goodbye (for a
/// WebSocket, a Close frame with code 1001, "going away").
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
///     let shutdown = request.extensions().get::<Shutdown>().unwrap().clone();
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
pub struct Connection {
    /// `None` if the request was not read by a server's connection task. Weak: a
    /// `Connection` kept somewhere (an extractor stored in state, a task that
    /// owns the request) does not keep the server waiting; tracked work does.
    scope: Option<WeakTaskScope>,
    shutdown: Shutdown,
}

impl Connection {
    /// The connection whose task is being polled now, of the server whose
    /// coordinator is `shutdown`.
    pub(crate) fn current(shutdown: &Shutdown) -> Self {
        Connection {
            scope: TaskScope::current().map(|scope| scope.downgrade()),
            shutdown: shutdown.clone(),
        }
    }

    /// Runs `work` as in-flight work of this connection; spawn the returned future
    /// on the runtime. The drain waits for it; a forced drain drops it (and reports
    /// it, by the label given with [`Watched::with_label`]); the server's `serve`
    /// returns only once it ended. Resolves like [`Shutdown::track`].
    pub fn track<F: Future>(
        &self,
        work: F,
    ) -> Watched<Tracked<impl Future<Output = F::Output> + use<F>>> {
        let scope = self.scope.as_ref().and_then(WeakTaskScope::upgrade);
        self.shutdown.track(HoldingPlace {
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
            .field("served", &self.scope.is_some())
            .finish_non_exhaustive()
    }
}
