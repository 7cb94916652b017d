//! WebSocket sessions that say goodbye on shutdown, on tokio.
//!
//! ```text
//! cargo run --example websocket --features tokio,hyper
//! websocat ws://127.0.0.1:3000/ws   # echoes what you type; then press Ctrl-C on the server
//! ```
//!
//! Each session is tracked as part of its connection (see `common/websocket.rs`):
//! at the first signal every session receives Close 1001 ("going away"), and the
//! drain waits for the close handshakes (10 s grace period); a second signal
//! forces. The exit status is 0 when drained, 1 when forced.

#[path = "common/websocket.rs"]
mod websocket;

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use wind_down::Server;
use wind_down::hyper::Http;
use wind_down::tokio::{Signals, Tokio};

#[tokio::main]
async fn main() -> std::io::Result<ExitCode> {
    let signals = Signals::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on ws://{}/ws", listener.local_addr()?);
    let service = service_fn(|req: Request<Incoming>| async move {
        let response = match req.uri().path() {
            "/ws" => websocket::upgrade(&Tokio::current(), req, true, None),
            _ => None,
        };
        Ok::<_, Infallible>(
            response
                .map(|r| r.map(|()| String::new()))
                .unwrap_or_else(|| {
                    let mut not_found = Response::new("a WebSocket endpoint: /ws\n".to_string());
                    *not_found.status_mut() = StatusCode::NOT_FOUND;
                    not_found
                }),
        )
    });
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .grace_period(Duration::from_secs(10));
    let outcome = Http::new(server).serve(service).await?;
    println!("outcome: {outcome}");
    Ok(outcome.into())
}
