//! WebSocket sessions with axum that say goodbye at shutdown: each session runs
//! as in-flight work of the connection it came on (the request's
//! `wind_down::hyper::Connection`), so the drain waits for it and a forced drain
//! drops it; at the trigger it sends Close 1001, "going away", and ends once the
//! client answered.
//!
//! ```text
//! cargo run --example axum_websocket --features tokio,hyper
//! websocat ws://127.0.0.1:3000/ws   # echoes; Ctrl-C the server: Close 1001
//! ```

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::{Extension, Router, routing::get};
use wind_down::hyper::{Connection, Http};
use wind_down::tokio::{Signals, Tokio};
use wind_down::{Server, Shutdown};

/// The upgrade. The session is tracked from here, before the `101` is sent, so
/// that no drain can end between the response and the session's start: axum
/// hands the socket over through a channel.
async fn ws(upgrade: WebSocketUpgrade, Extension(connection): Extension<Connection>) -> Response {
    let shutdown = connection.shutdown().clone();
    let (socket_tx, socket_rx) = tokio::sync::oneshot::channel();
    let session = connection.track(async move {
        if let Ok(socket) = socket_rx.await {
            echo(socket, shutdown).await;
        }
    });
    tokio::spawn(session.with_label("websocket"));
    upgrade.on_upgrade(move |socket| async move {
        let _ = socket_tx.send(socket);
    })
}

/// Echoes messages until the client closes; at the trigger, Close 1001, then
/// waits for the client's Close.
async fn echo(mut socket: WebSocket, shutdown: Shutdown) {
    let mut triggered = std::pin::pin!(shutdown.triggered());
    // Until the trigger: each round takes a message.
    while let Some(message) = futures_lite::future::or(async { Some(socket.recv().await) }, async {
        triggered.as_mut().await;
        None
    })
    .await
    {
        match message {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                if socket.send(message).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return, // closed, or broken
        }
    }
    let close = CloseFrame {
        code: close_code::AWAY,
        reason: "going away".into(),
    };
    if socket.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    // The closing handshake: the client's Close (bounded by the grace period).
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Close(_) = message {
            return;
        }
    }
}

#[tokio::main]
pub async fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let router = Router::new().route("/ws", get(ws));
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
