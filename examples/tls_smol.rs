//! HTTPS on smol (futures-rustls under the hood): the same TLS option of the HTTP layer as on
//! tokio. The certificate comes from `WIND_DOWN_TLS_CERT` and `WIND_DOWN_TLS_KEY`
//! (PEM files), or is made at start.
//!
//! ```text
//! cargo run --example tls_smol --features smol,hyper,tls
//! curl -k https://127.0.0.1:3443/
//! ```

#[path = "common/certs.rs"]
mod certs;

use std::convert::Infallible;
use std::time::Duration;

use hyper::{Request, Response, body::Incoming, service::service_fn};
use wind_down::Server;
use wind_down::hyper::Http;
use wind_down::hyper::tls::Tls;
use wind_down::smol::{Signals, Smol};

pub fn main() -> std::io::Result<std::process::ExitCode> {
    let signals = Signals::new()?;
    let hello = service_fn(|request: Request<Incoming>| async move {
        let version = request.version();
        Ok::<_, Infallible>(Response::new(format!("hello over {version:?} on smol\n")))
    });
    // smol's global executor runs the connections; this thread runs the server.
    let outcome = smol::block_on(async {
        let addr = std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:3443".into());
        let listener = smol::net::TcpListener::bind(addr).await?;
        let server = Server::new(Smol::global(), listener)
            .signals(signals)
            .grace_period(Duration::from_secs(10));
        println!("listening on {}", server.local_addr()?);
        let outcome = Http::new(server)
            .tls(Tls::new(certs::server_config()?))
            .serve(hello)
            .await?;
        std::io::Result::Ok(outcome)
    })?;
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
