//! An axum `Router` served through `Http::serve` as a make-service, with axum's
//! `ConnectInfo`, over real TCP on 127.0.0.1, and drained. Timeouts only catch
//! hangs.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wind_down::Server;
use wind_down::tokio::Tokio;

const HANG: Duration = Duration::from_secs(60);

#[cfg(feature = "tls")]
#[path = "common/tls.rs"]
mod tls_peers;

/// Sends one request and returns the whole response (the server closes after it).
async fn get_once(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(HANG, stream.read_to_string(&mut response))
        .await
        .expect("no response")
        .unwrap();
    response
}

#[test]
fn axum_router_with_connect_info_is_served_and_drained() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
        let in_handler = arrived.clone();
        let router = Router::new()
            .route(
                "/",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route(
                "/slow",
                get(move || async move {
                    in_handler.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow"
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(Tokio::current(), listener);
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown();
        let serving = tokio::spawn(
            wind_down::hyper::Http::new(server)
                .serve(router.into_make_service_with_connect_info::<SocketAddr>()),
        );

        // The handler sees the peer address of the client's own socket.
        let mut client = TcpStream::connect(addr).await.unwrap();
        let me = client.local_addr().unwrap();
        let response = get_once(&mut client, "/").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(&me.to_string()), "{response} vs {me}");

        // A request in flight at the trigger completes; then serve returns drained.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let in_flight = tokio::spawn(async move { get_once(&mut slow, "/slow").await });
        tokio::time::timeout(HANG, arrived.notified())
            .await
            .expect("never arrived");
        shutdown.trigger();
        let response = tokio::time::timeout(HANG, in_flight)
            .await
            .unwrap()
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("slow"), "{response}");
        let outcome = tokio::time::timeout(HANG, serving)
            .await
            .expect("serve did not return")
            .unwrap()
            .unwrap();
        assert!(outcome.is_drained(), "{outcome}");
        // The listener is closed.
        assert!(TcpStream::connect(addr).await.is_err());
    });
}

/// The same router over TLS (`Http::tls`): the handler still sees the
/// client's address through `ConnectInfo`, and the server drains.
#[cfg(feature = "tls")]
#[test]
fn axum_router_over_tls_with_connect_info() {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(Tokio::current(), listener);
        let (addr, shutdown) = (server.local_addr().unwrap(), server.shutdown());
        let (tls, cert) = tls_peers::server_config();
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        let serving = tokio::spawn(wind_down::hyper::Http::new(server).tls(tls).serve(make));

        let io = tls_peers::tls_connect(addr, &cert, b"http/1.1").await;
        let me = io.inner().get_ref().0.local_addr().unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::get("https://127.0.0.1/")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let response = send.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, me.to_string());

        shutdown.trigger();
        let outcome = tokio::time::timeout(HANG, serving)
            .await
            .expect("serve over TLS did not return")
            .unwrap()
            .unwrap();
        assert!(outcome.is_drained(), "{outcome}");
    });
}
