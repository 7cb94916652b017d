//! The cookbook's recipes (`examples/`), each run as it ships and checked from
//! outside: this test binary includes the example and re-runs itself as the
//! server child (the ignored `recipe_child` test), so that a real signal reaches
//! a real process; clients speak real HTTP (and TLS) over 127.0.0.1.
//!
//! Timeouts here only catch hangs. Unix only: signals are sent with `kill`.

#![cfg(unix)]
// Each included example brings its own copy of `examples/common/certs.rs`, as it
// does when built alone.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/axum_websocket.rs"]
mod axum_websocket;
#[path = "../examples/health.rs"]
mod health;
#[path = "../examples/local_set.rs"]
mod local_set;
#[path = "../examples/sse.rs"]
mod sse;
#[cfg(feature = "tls")]
#[path = "../examples/tls_axum.rs"]
mod tls_axum;
#[cfg(all(feature = "tls", feature = "smol"))]
#[path = "../examples/tls_smol.rs"]
mod tls_smol;
// Its `server_config` is the in-process tests' half.
#[cfg(feature = "tls")]
#[allow(dead_code)]
#[path = "common/tls.rs"]
mod tls;

#[path = "common/recipe.rs"]
mod recipe;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use recipe::{HANG, Recipe, read_to_close, read_until};

#[test]
#[ignore = "helper: the server process of the cookbook tests"]
fn recipe_child() {
    let Ok(recipe) = std::env::var("WIND_DOWN_RECIPE") else {
        return;
    };
    let code = match recipe.as_str() {
        "axum_websocket" => axum_websocket::main(),
        "health" => health::main(),
        "local_set" => local_set::main(),
        "sse" => sse::main(),
        #[cfg(feature = "tls")]
        "tls_axum" => tls_axum::main(),
        #[cfg(all(feature = "tls", feature = "smol"))]
        "tls_smol" => tls_smol::main(),
        other => panic!("unknown recipe {other}"),
    };
    recipe::exit_with(code)
}

/// SSE: two clients' endless streams tick; at SIGTERM each gets the goodbye
/// event and the end of its body (the chunked terminator), and the server drains
/// and exits 0 long before its grace period.
#[test]
fn sse_streams_end_with_a_goodbye_at_sigterm() {
    let mut server = Recipe::start("sse", &[], 1);
    let mut clients: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /events HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let head = read_until(&mut s, "data: tick 0");
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
            assert!(head.contains("content-type: text/event-stream"), "{head}");
            s
        })
        .collect();
    server.signal("TERM");
    for client in &mut clients {
        let rest = read_to_close(client);
        assert!(rest.contains("event: shutdown\ndata: bye\n\n"), "{rest:?}");
        assert!(
            rest.ends_with("0\r\n\r\n"),
            "the body did not end: {rest:?}"
        );
    }
    server.expect_drained();
}

/// One request on a new connection: (status code, whether the response said
/// `connection: close`), or `None` if the connection was refused or cut.
fn probe(addr: SocketAddr, path: &str) -> Option<(u16, bool)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let head = read_until_checked(&mut s, "\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    Some((
        status,
        head.to_ascii_lowercase().contains("connection: close"),
    ))
}

/// Like [`read_until`], but `None` when the peer closes first.
fn read_until_checked(stream: &mut TcpStream, needle: &str) -> Option<String> {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&seen).into_owned())
}

/// Waits until `check` holds, polling; panics after [`HANG`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < HANG, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The health recipe: `/ready` is 200, then 503 from SIGTERM on while the main
/// listener still serves during the drain delay (responses say `connection:
/// close`); then the main listener closes, the server drains and exits 0, and the
/// health listener closes with it.
#[test]
fn health_says_draining_while_the_delay_still_serves() {
    let mut server = Recipe::start(
        "health",
        &[
            ("WIND_DOWN_HEALTH_ADDR", "127.0.0.1:0"),
            ("WIND_DOWN_DRAIN_DELAY_MS", "3000"),
        ],
        2,
    );
    let (health, main) = (server.addrs[0], server.addrs[1]);
    assert_eq!(probe(health, "/ready"), Some((200, false)));
    assert_eq!(probe(health, "/live"), Some((200, false)));
    assert_eq!(probe(main, "/").map(|(status, _)| status), Some(200));
    server.signal("TERM");
    eventually("/ready says 503", || {
        probe(health, "/ready") == Some((503, false))
    });
    // Still within the delay (3 s): the main listener serves, and says close.
    assert_eq!(
        probe(main, "/"),
        Some((200, true)),
        "not served during the delay"
    );
    eventually("the main listener closes", || {
        TcpStream::connect(main).is_err()
    });
    server.expect_drained();
    assert!(
        TcpStream::connect(health).is_err(),
        "the health listener outlived the drain"
    );
}

/// A certificate for 127.0.0.1 in PEM files, as a deployment has them: the
/// certificate's DER (for the client to trust) and the files' directory.
#[cfg(feature = "tls")]
struct CertFiles {
    der: rustls::pki_types::CertificateDer<'static>,
    dir: std::path::PathBuf,
}

#[cfg(feature = "tls")]
impl CertFiles {
    fn new(name: &str) -> CertFiles {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("wind-down-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        CertFiles {
            der: certified.cert.der().clone(),
            dir,
        }
    }

    fn env(&self) -> [(String, String); 2] {
        let path = |file: &str| self.dir.join(file).to_str().unwrap().to_string();
        [
            ("WIND_DOWN_TLS_CERT".into(), path("cert.pem")),
            ("WIND_DOWN_TLS_KEY".into(), path("key.pem")),
        ]
    }
}

#[cfg(feature = "tls")]
impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET /` over TLS (ALPN `alpn`) to `addr`, trusting `cert`: the status and body.
#[cfg(feature = "tls")]
fn get_over_tls(
    addr: SocketAddr,
    cert: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[u8],
) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let work = async {
            let io = tls::tls_connect(addr, cert, alpn).await;
            let request = hyper::Request::get("/")
                .header("host", "127.0.0.1")
                .body(Empty::<hyper::body::Bytes>::new())
                .unwrap();
            let response = if alpn == b"h2" {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                send.send_request(request).await.unwrap()
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                send.send_request(request).await.unwrap()
            };
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        };
        tokio::time::timeout(HANG, work)
            .await
            .expect("TLS request hung")
    })
}

/// A TLS recipe serves HTTP/1.1 and HTTP/2 (ALPN) with the certificate from its
/// PEM files, then drains at SIGTERM and exits 0.
#[cfg(feature = "tls")]
fn serves_over_tls_and_drains(recipe: &str, says: &str) {
    let cert = CertFiles::new(recipe);
    let env = cert.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = Recipe::start(recipe, &env, 1);
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let (status, body) = get_over_tls(server.addr(), &cert.der, alpn);
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with(says), "{body}");
    }
    server.signal("TERM");
    server.expect_drained();
}

#[cfg(feature = "tls")]
#[test]
fn axum_over_tls_serves_and_drains() {
    serves_over_tls_and_drains("tls_axum", "hello over TLS, 127.0.0.1:");
}

#[cfg(all(feature = "tls", feature = "smol"))]
#[test]
fn tls_on_smol_serves_and_drains() {
    serves_over_tls_and_drains("tls_smol", "hello over HTTP/");
}

/// Handlers that are not `Send`, on a `LocalSet` with the core's own accept loop:
/// requests on two connections share the counter; at SIGTERM the idle keep-alive
/// connection is closed by its graceful shutdown, the listener closes, and the
/// process drains and exits 0.
#[test]
fn local_set_shares_state_that_is_not_send_and_drains() {
    let mut server = Recipe::start("local_set", &[], 1);
    let mut keep_alive = TcpStream::connect(server.addr()).unwrap();
    keep_alive
        .write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert!(read_until(&mut keep_alive, "hit 1\n").starts_with("HTTP/1.1 200 OK"));
    let mut other = TcpStream::connect(server.addr()).unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut other).ends_with("hit 2\n"));
    server.signal("TERM");
    assert_eq!(
        read_to_close(&mut keep_alive),
        "",
        "the idle connection was not closed"
    );
    server.expect_drained();
    assert!(
        TcpStream::connect(server.addr()).is_err(),
        "still accepting"
    );
}

/// WebSocket with axum: three sessions echo; at SIGTERM each gets Close 1001
/// ("going away"), the client answers, and the server drains and exits 0.
#[test]
fn axum_websocket_sessions_get_close_1001_and_drain() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let mut server = Recipe::start("axum_websocket", &[], 1);
    let url = format!("ws://{}/ws", server.addr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sessions = Vec::new();
        for n in 0..3 {
            let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
                .await
                .unwrap();
            ws.send(Message::text(format!("hi {n}"))).await.unwrap();
            let echo = tokio::time::timeout(HANG, ws.next())
                .await
                .expect("no echo");
            assert_eq!(echo.unwrap().unwrap(), Message::text(format!("hi {n}")));
            sessions.push(ws);
        }
        server.signal("TERM");
        for ws in &mut sessions {
            let got = tokio::time::timeout(HANG, ws.next())
                .await
                .expect("no goodbye");
            match got {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(frame.code, CloseCode::Away);
                    assert_eq!(frame.reason.as_str(), "going away");
                }
                other => panic!("expected Close 1001, got {other:?}"),
            }
            // The client's answer completes the closing handshake.
            let _ = tokio::time::timeout(HANG, ws.next()).await.expect("hung");
        }
    });
    server.expect_drained();
}
