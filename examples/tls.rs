//! HTTPS on tokio, with the certificate in `WIND_DOWN_TLS_CERT` and
//! `WIND_DOWN_TLS_KEY` (PEM files), or a self-signed one made at start; drains on
//! Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example tls --features tokio,hyper,tls
//! curl -k https://127.0.0.1:3443/            # HTTP/2 (ALPN h2)
//! curl -k --http1.1 https://127.0.0.1:3443/  # HTTP/1.1
//! ```
//!
//! Each connection's TLS handshake runs inside the watched connection: the first
//! signal closes connections still in their handshake at once and lets requests
//! in flight finish (10 s grace period); a second signal forces.

#[path = "common/certs.rs"]
mod certs;

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use hyper::{Request, Response, body::Incoming, service::service_fn};
use wind_down::Server;
use wind_down::hyper::Http;
use wind_down::hyper::tls::Tls;
use wind_down::tokio::{Signals, Tokio};

#[tokio::main]
async fn main() -> std::io::Result<ExitCode> {
    let signals = Signals::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3443").await?;
    println!("listening on https://{}", listener.local_addr()?);
    let hello = service_fn(|request: Request<Incoming>| async move {
        let version = request.version();
        Ok::<_, Infallible>(Response::new(format!("hello over {version:?}\n")))
    });
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .grace_period(Duration::from_secs(10));
    let outcome = Http::new(server)
        .tls(Tls::new(certs::server_config()?))
        .serve(hello)
        .await?;
    println!("outcome: {outcome}");
    Ok(outcome.into())
}
