//! An axum `Router` served by wind-down on tokio, with axum's `ConnectInfo`:
//! drains on Ctrl-C or SIGTERM, forces on a second signal or after a 10 s deadline.
//!
//! ```text
//! cargo run --example axum --features tokio,hyper
//! curl http://127.0.0.1:3000/
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::{Router, extract::ConnectInfo, routing::get};
use wind_down::Server;
use wind_down::hyper::Http;
use wind_down::tokio::{Signals, Tokio};

#[tokio::main]
async fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let router = Router::new()
        .route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello from axum, {peer}\n")
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow\n"
            }),
        );
    let addr = std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .grace_period(Duration::from_secs(10));
    println!("listening on {}", server.local_addr()?);
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    let outcome = match Http::new(server).serve(make).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("{e}");
            e.outcome
        }
    };
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
