//! The health listener of [`Server::health`]: readiness and liveness on a second
//! address for the whole shutdown.
//!
//! It runs beside the main server in the same future, through the same accept
//! loop, with a coordinator of its own: it is never counted as the main server's
//! in-flight work, and its `/ready` answers from the main coordinator. It is
//! triggered and forced when the main server's drain has ended, so it closes then,
//! never later (it has no grace period of its own). It speaks
//! HTTP/1.1, as orchestrators' probes do (feature `http1`), with hyper's HTTP/1
//! builder: it needs nothing of the runtime's executor.

use std::convert::Infallible;
use std::future::{Future, ready};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};

use super::reported::Reported;
use super::runtime::{HEADER_READ_TIMEOUT, HyperRuntime, IntoHyperIo};
use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::server::runtime::Listener;
use crate::server::{ServeError, Server};

impl<R: HyperRuntime, L: Listener> Server<R, L>
where
    L::Io: IntoHyperIo,
{
    /// Serves readiness and liveness on `listener`, a second address, for the whole
    /// shutdown, with [`serve_http`](Server::serve_http) and
    /// [`serve_tower`](Server::serve_tower):
    /// - `GET /ready`: `200 ready` while [`Shutdown::is_ready`], then `503 draining`
    ///   from the announcement on (during the drain delay and the drain);
    /// - `GET /live`: `200 live` until the listener closes, when the drain ended.
    ///
    /// The main listener closes when accepting stops, so an orchestrator polling
    /// readiness there would see "connection refused" rather than "draining"; this
    /// one stays. Its connections are not the server's in-flight work. The plain
    /// [`serve`](Server::serve) has no HTTP layer: it closes this listener at once
    /// (with a warning event, feature `tracing`).
    ///
    /// Probes speak HTTP/1, so this needs the `hyper` or `http1` feature (an
    /// HTTP/2-only build has no health listener).
    pub fn health(mut self, listener: L) -> Self {
        self.health = Some(listener);
        self
    }
}

/// Runs `main` (the server's serve future), and beside it the health listener if
/// there is one; triggers the health listener once `main` is done.
pub(crate) async fn alongside<R, L>(
    main: impl Future<Output = Result<Outcome, ServeError>>,
    runtime: &R,
    health: Option<L>,
    of: Shutdown,
) -> Result<Outcome, ServeError>
where
    R: HyperRuntime,
    L: Listener,
    L::Io: IntoHyperIo,
{
    let Some(listener) = health else {
        return main.await;
    };
    // No grace of its own: it closes with the drain's end, whatever its
    // connections are doing (a probe's answer is immediate; a half-sent probe
    // must not hold the process).
    let server = Server::new(runtime.clone(), listener).grace_period(Duration::ZERO);
    let stop = server.shutdown();
    let mut http = http1::Builder::new();
    http.timer(runtime.hyper_timer())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        ready(Ok::<_, Infallible>(respond(&of, request.uri().path())))
    });
    let health = server.serve(move |io: L::Io, peer| {
        let conn = http.serve_connection(io.into_hyper_io(), service.clone());
        Reported::new(conn, peer, None)
    });
    let main = async {
        let result = main.await;
        stop.trigger();
        result
    };
    futures_lite::future::zip(main, health).await.0
}

fn respond(of: &Shutdown, path: &str) -> Response<String> {
    let (status, body) = match path {
        "/ready" if of.is_ready() => (StatusCode::OK, "ready\n"),
        "/ready" => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/live" => (StatusCode::OK, "live\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(body.to_owned());
    *response.status_mut() = status;
    response
}
