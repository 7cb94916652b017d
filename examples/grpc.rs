//! A tonic gRPC server whose drain always ends: a unary RPC (`Slow`), an endless
//! server-streaming RPC (`Ticks`) and the standard health service, served through
//! wind-down on tokio.
//!
//! ```text
//! cargo run --example grpc --features tokio,hyper,grpc
//! grpcurl -plaintext -d '{"every_millis": 500}' 127.0.0.1:50051 ticker.Ticker/Ticks
//! ```
//!
//! At the first signal the health service says NOT_SERVING (for `""` and
//! `ticker.Ticker`), and HTTP/2 clients get GOAWAY; after the drain delay
//! (`WIND_DOWN_DRAIN_DELAY_MS`, default 0) the listener closes and every stream
//! ends with UNAVAILABLE (a handler's own through `end_at_trigger`, the health
//! service's `Watch` through `EndAtTriggerLayer`) while unary RPCs in flight
//! finish; what outlives the grace period (`WIND_DOWN_DEADLINE_MS`, default
//! 10 s: a client that stopped reading, say) is forced and named. A second signal
//! forces at once. Exit status: 0 drained, 1 forced.

#[path = "common/ticker.rs"]
mod ticker;

use std::time::Duration;

use ticker::{Handled, Reply, SlowRequest, Tick, TickStream, Ticker, TickerServer, TicksRequest};
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use wind_down::grpc::{EndAtTriggerLayer, end_at_trigger, not_serving_at_announcement};
use wind_down::hyper::{Connection, Http};
use wind_down::tokio::{Signals, Tokio};
use wind_down::{Outcome, Server};

/// The handlers.
#[derive(Clone)]
struct Handlers;

impl Ticker for Handlers {
    fn slow(&self, request: tonic::Request<SlowRequest>) -> Handled<Reply> {
        let millis = request.into_inner().millis;
        Box::pin(async move {
            println!("slow: sleeping {millis} ms");
            tokio::time::sleep(Duration::from_millis(millis)).await;
            let message = format!("slept {millis} ms");
            Ok(tonic::Response::new(Reply { message }))
        })
    }

    fn ticks(&self, request: tonic::Request<TicksRequest>) -> Handled<TickStream> {
        // The server's coordinator, which every request's connection carries.
        let connection = request.extensions().get::<Connection>();
        let shutdown = connection.map(|connection| connection.shutdown().clone());
        let TicksRequest {
            every_millis,
            padding,
        } = request.into_inner();
        Box::pin(async move {
            let shutdown =
                shutdown.ok_or_else(|| tonic::Status::internal("not served by wind-down"))?;
            let every = Duration::from_millis(every_millis);
            let padding = vec![b'.'; usize::try_from(padding).unwrap_or(0).min(1 << 20)];
            let ticks = futures_lite::stream::unfold(0u64, move |n| {
                let padding = padding.clone();
                async move {
                    tokio::time::sleep(every).await;
                    Some((Ok(Tick { n, padding }), n + 1))
                }
            });
            // Ends with UNAVAILABLE at the trigger.
            let stream: TickStream = Box::pin(end_at_trigger(ticks, &shutdown));
            Ok(tonic::Response::new(stream))
        })
    }
}

fn millis_from_env(name: &str, default: u64) -> Duration {
    let millis = std::env::var(name).ok().and_then(|v| v.parse().ok());
    Duration::from_millis(millis.unwrap_or(default))
}

#[tokio::main]
pub async fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("ticker.Ticker", ServingStatus::Serving)
        .await;
    let routes = tonic::service::Routes::new(health).add_service(TickerServer(Handlers));

    let addr = std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let server = Server::new(Tokio::current(), listener)
        .signals(signals)
        .drain_delay(millis_from_env("WIND_DOWN_DRAIN_DELAY_MS", 0))
        .grace_period(millis_from_env("WIND_DOWN_DEADLINE_MS", 10_000));
    let services = ["", "ticker.Ticker"];
    tokio::spawn(not_serving_at_announcement(
        server.shutdown(),
        reporter,
        services,
    ));
    println!("listening on {}", server.local_addr()?);

    let service = ServiceBuilder::new()
        .layer(EndAtTriggerLayer)
        .service(routes);
    let outcome = match Http::new(server).serve(service).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("{e}");
            e.outcome
        }
    };
    if let Outcome::Forced(report) = &outcome {
        for straggler in &report.stragglers {
            println!("still running: {straggler}");
        }
    }
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
