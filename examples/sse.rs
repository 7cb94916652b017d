//! Server-sent events with axum, ended cleanly at shutdown: the `/events` stream
//! (axum's `Sse`) goes through `EndAtTrigger`, so at the trigger each client gets
//! a last `event: shutdown` and the end of its stream, and the drain does not wait
//! for endless streams until the grace period is over.
//!
//! ```text
//! cargo run --example sse --features tokio,hyper
//! curl -N http://127.0.0.1:3000/events   # then Ctrl-C the server
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router, routing::get};
use wind_down::Server;
use wind_down::hyper::{Connection, EndAtTrigger, Http};
use wind_down::tokio::{Signals, Tokio};

/// An endless stream of ticks, ended at the trigger with a goodbye event. The
/// server puts each request's `Connection`, with its `Shutdown`, in the
/// request's extensions.
async fn events(Extension(connection): Extension<Connection>) -> Response {
    let shutdown = connection.shutdown();
    let ticks = futures_lite::stream::unfold(0u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let event = Event::default().data(format!("tick {n}"));
        Some((Ok::<_, Infallible>(event), n + 1))
    });
    let (parts, body) = Sse::new(ticks).into_response().into_parts();
    let goodbye = Bytes::from_static(b"event: shutdown\ndata: bye\n\n");
    let body = EndAtTrigger::new(body, shutdown).with_final_chunk(goodbye);
    Response::from_parts(parts, Body::new(body))
}

#[tokio::main]
pub async fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let router = Router::new().route("/events", get(events));
    let addr = std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .grace_period(Duration::from_secs(10));
    println!("listening on {}", server.local_addr()?);
    let outcome = Http::new(server).serve(router).await?;
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
