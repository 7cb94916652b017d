//! HTTPS on tokio, with a self-signed certificate made at start; drains on Ctrl-C
//! or SIGTERM.
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

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response, body::Incoming, service::service_fn};
use wind_down::Server;
use wind_down::hyper::tls::{Tls, rustls};
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
    let outcome = Server::new(Tokio::current(), listener)
        .signals(signals)
        .grace_period(Duration::from_secs(10))
        .serve_https(Tls::new(self_signed()?), hello)
        .await?;
    println!("outcome: {outcome}");
    Ok(outcome.into())
}

/// A server configuration with a certificate for 127.0.0.1 and localhost, signed
/// by itself (clients must be told to accept it: `curl -k`).
fn self_signed() -> std::io::Result<Arc<rustls::ServerConfig>> {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    // The crypto provider comes from rustls's crate features: *ring*, which the
    // `tls` feature enables (`ring::default_provider()` itself is deprecated).
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(std::io::Error::other)?;
    Ok(Arc::new(config))
}
