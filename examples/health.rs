//! Readiness for a load balancer or Kubernetes: a health listener on a second
//! address answers `GET /ready` (200, then 503 from the first signal on) and
//! `GET /live` through the whole shutdown, while a drain delay keeps the main
//! listener serving until the load balancer has stopped sending.
//!
//! ```text
//! cargo run --example health --features tokio,hyper
//! curl -i http://127.0.0.1:3001/ready   # 200 ready; after Ctrl-C: 503 draining
//! ```
//!
//! `WIND_DOWN_ADDR` and `WIND_DOWN_HEALTH_ADDR` set the addresses (default
//! 127.0.0.1:3000 and :3001), `WIND_DOWN_DRAIN_DELAY_MS` the delay (default 5 s,
//! a readiness probe's period times its failure threshold, plus a margin).

use std::convert::Infallible;
use std::time::Duration;

use hyper::{Request, Response, body::Incoming, service::service_fn};
use wind_down::Server;
use wind_down::hyper::Http;
use wind_down::tokio::{Signals, Tokio};

#[tokio::main]
pub async fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let listener = tokio::net::TcpListener::bind(env("WIND_DOWN_ADDR", "127.0.0.1:3000")).await?;
    let health =
        tokio::net::TcpListener::bind(env("WIND_DOWN_HEALTH_ADDR", "127.0.0.1:3001")).await?;
    let delay = env("WIND_DOWN_DRAIN_DELAY_MS", "5000");
    let delay = Duration::from_millis(delay.parse().map_err(std::io::Error::other)?);
    println!("health on {}", health.local_addr()?);
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .drain_delay(delay) // keeps serving while /ready says 503
        .grace_period(delay + Duration::from_secs(10)); // the delay, then the drain
    println!("listening on {}", server.local_addr()?);
    let hello = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(String::from("hello\n")))
    });
    let outcome = Http::new(server).health(health).serve(hello).await?;
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
