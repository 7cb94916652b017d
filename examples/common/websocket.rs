// WebSocket sessions that say goodbye on shutdown, for any runtime: the upgrade
// handler of `examples/websocket.rs` and of the demo app's `/ws`.
//
// The session runs as in-flight work of the connection it came on (the request's
// `wind_down::hyper::Connection`): the drain waits for it, a forced drain drops it
// (reported as `websocket`), and `serve` returns only after it ended. At the
// trigger (its connection's `Shutdown`) it sends Close 1001, "going away", and ends
// once the client answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wind_down::hyper::Connection;
use wind_down::{Runtime, Shutdown};

/// Answers a WebSocket upgrade request with `101 Switching Protocols` and spawns
/// its echo session on `runtime`; `None` if `req` is not one (or was not served by
/// a wind-down server). The session says goodbye at the trigger if `polite`, and
/// is counted in `live` while it runs, if given.
pub fn upgrade<R: Runtime>(
    runtime: &R,
    mut req: Request<Incoming>,
    polite: bool,
    live: Option<&Arc<AtomicUsize>>,
) -> Option<Response<()>> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()?;
    let connection = req.extensions().get::<Connection>()?.clone();
    let shutdown = connection.shutdown().clone();
    let upgrade = hyper::upgrade::on(&mut req);
    let live = live.cloned();
    let session = connection.track(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let _live = live.map(Live::enter);
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        echo(ws, polite.then_some(shutdown)).await;
    });
    let session = session.with_label("websocket");
    runtime.spawn(async move {
        let _ = session.await;
    });
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Some(response)
}

/// Counts one running session while it lives.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn enter(count: Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::SeqCst);
        Live(count)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Echoes text and binary messages until the client closes. At `shutdown`'s
/// trigger, if any, sends Close 1001 ("going away") and goes on until the close
/// handshake is done.
async fn echo<S>(mut ws: WebSocketStream<S>, shutdown: Option<Shutdown>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    let mut trigger = std::pin::pin!(async {
        match &shutdown {
            Some(shutdown) => shutdown.triggered().await,
            None => std::future::pending().await,
        }
    });
    let mut said_goodbye = false;
    // Bounded by the session: each round takes a message, or the trigger once.
    loop {
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            if said_goodbye {
                std::future::pending::<()>().await;
            }
            trigger.as_mut().await;
            None
        });
        let got = next.await;
        match got {
            // The trigger: say goodbye, then wait for the client's Close.
            None => {
                said_goodbye = true;
                let goodbye = CloseFrame {
                    code: CloseCode::Away,
                    reason: "going away".into(),
                };
                if ws.send(Message::Close(Some(goodbye))).await.is_err() {
                    return;
                }
            }
            Some(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => {
                if ws.send(message).await.is_err() {
                    return;
                }
            }
            Some(Some(Ok(_))) => {}
            // Closed (the handshake is done), or broken.
            Some(None | Some(Err(_))) => return,
        }
    }
}
