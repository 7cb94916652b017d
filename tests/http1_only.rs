//! The HTTP/1-only build (`--features smol,http1`, no h2): a request is served
//! over real TCP on 127.0.0.1 and answered with `connection: close` during the
//! drain. CI runs it with exactly those features; with `hyper` on, it serves the
//! same way, the protocol detected from the first bytes. Timeouts only catch hangs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use wind_down::Server;
use wind_down::smol::Smol;

#[test]
fn http1_only_build_serves_and_drains() {
    let (arrived, in_handler) = smol::channel::unbounded::<()>();
    // The handler answers only when the test lets it, after the trigger.
    let (release, released) = smol::channel::unbounded::<()>();
    let hello = hyper::service::service_fn(move |_| {
        let (arrived, released) = (arrived.clone(), released.clone());
        async move {
            let _ = arrived.try_send(());
            let _ = released.recv().await;
            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
        }
    });
    let (addr, shutdown, serving) = smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(Smol::global(), listener);
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown();
        (
            addr,
            shutdown,
            smol::spawn(wind_down::hyper::Http::new(server).serve(hello)),
        )
    });
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    // The request is in the handler when the drain starts.
    smol::block_on(async {
        let arrived = async { in_handler.recv().await.is_ok() };
        let hang = async {
            smol::Timer::after(Duration::from_secs(60)).await;
            false
        };
        assert!(
            futures_lite::future::or(arrived, hang).await,
            "never arrived"
        );
    });
    shutdown.trigger();
    release.try_send(()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut response = String::new();
    let _ = client.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response:?}"
    );
    assert!(response.ends_with("hello"), "{response:?}");
    let outcome = smol::block_on(serving).unwrap();
    assert!(outcome.is_drained(), "{outcome}");
}
