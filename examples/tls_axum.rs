//! An axum `Router` over TLS on tokio, with axum's `ConnectInfo`: the form
//! a make-service takes, through the HTTP layer with TLS. The certificate comes from
//! `WIND_DOWN_TLS_CERT` and `WIND_DOWN_TLS_KEY` (PEM files), or is made at start.
//!
//! ```text
//! cargo run --example tls_axum --features tokio,hyper,tls
//! curl -k https://127.0.0.1:3443/
//! ```

#[path = "common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::time::Duration;

use axum::{Router, extract::ConnectInfo, routing::get};
use wind_down::Server;
use wind_down::hyper::Http;
use wind_down::hyper::tls::Tls;
use wind_down::tokio::{Signals, Tokio};

#[tokio::main]
pub async fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let router = Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
            format!("hello over TLS, {peer}\n")
        }),
    );
    let addr = std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:3443".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .grace_period(Duration::from_secs(10));
    println!("listening on {}", server.local_addr()?);
    let tls = Tls::new(certs::server_config()?);
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    let outcome = Http::new(server).tls(tls).serve(make).await?;
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
