//! The health listener of [`Http::health`](super::Http::health): readiness and
//! liveness on a second address for the whole shutdown.
//!
//! It runs beside the main server in the same future, through the same HTTP
//! layer and accept loop, with a coordinator of its own: it is never counted as
//! the main server's in-flight work, and its `/ready` answers from the main
//! coordinator. It is triggered when the main server's drain has ended, and
//! forced at once (it has no grace period of its own), so it closes then, never
//! later.

use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::Pin;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::http::Http;
use super::runtime::{HyperRuntime, IntoHyperIo};
use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::server::runtime::Listener;
use crate::server::{ServeError, Server};

type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A health listener, not serving yet: given the main coordinator, it starts
/// serving and gives the handle that stops it.
pub(crate) struct Health(Box<dyn FnOnce(Shutdown) -> (Shutdown, Serving) + Send>);

impl Health {
    pub(crate) fn new<R, L>(runtime: R, listener: L) -> Health
    where
        R: HyperRuntime,
        L: Listener,
        L::Io: IntoHyperIo,
    {
        Health(Box::new(move |of: Shutdown| {
            // No grace of its own: it closes with the drain's end, whatever its
            // connections are doing (a probe's answer is immediate; a half-sent
            // probe must not hold the process).
            let server = Server::new(runtime, listener).grace_period(Duration::ZERO);
            let stop = server.shutdown();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                ready(Ok::<_, Infallible>(respond(&of, request.uri().path())))
            });
            let serving = Http::new(server).serve(service);
            (
                stop,
                Box::pin(async move {
                    let _ = serving.await;
                }),
            )
        }))
    }

    /// Runs `main` (the server's serve future), and beside it this listener,
    /// answering from `of`; stops it once `main` is done.
    pub(crate) async fn alongside(
        self,
        main: impl Future<Output = Result<Outcome, ServeError>>,
        of: Shutdown,
    ) -> Result<Outcome, ServeError> {
        let (stop, health) = (self.0)(of);
        let main = async {
            let result = main.await;
            stop.trigger();
            result
        };
        futures_lite::future::zip(main, health).await.0
    }
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
