//! Handlers that are not `Send` (here an `Rc<Cell<_>>` counter shared by every
//! connection). `Server` spawns each connection on its runtime, possibly on
//! another thread, so it needs them `Send`; on a tokio `LocalSet` the core does
//! the same job with an accept loop of its own: each hyper connection is
//! [watched](wind_down::Shutdown::watch) and spawned locally, the loop stops at
//! the trigger, and the drain has a deadline. Signals drain, then force.
//!
//! ```text
//! cargo run --example local_set --features tokio,hyper
//! curl http://127.0.0.1:3000/   # hit 1, hit 2, ...
//! ```

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use wind_down::tokio::Signals;
use wind_down::{Shutdown, handle_signals};

pub fn main() -> std::io::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, async {
        let shutdown = Shutdown::new();
        let signals = Signals::new()?;
        let on_signals = shutdown.clone();
        tokio::task::spawn_local(async move { handle_signals(&on_signals, signals).await });
        let addr = std::env::var("WIND_DOWN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let hits = Rc::new(Cell::new(0u64)); // not Send
        // Until the trigger (a signal): the accept is dropped then.
        while let Some(accepted) = shutdown.run_until_triggered(listener.accept()).await {
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of descriptors and the like: back off, never spin.
                    eprintln!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let hits = hits.clone();
            let service = service_fn(move |_: Request<Incoming>| {
                hits.set(hits.get() + 1);
                let body = format!("hit {}\n", hits.get());
                async move { Ok::<_, Infallible>(Response::new(body)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            // Watched from now on: asked to close at the trigger, dropped if forced.
            tokio::task::spawn_local(shutdown.watch(conn));
        }
        drop(listener); // stop accepting: new connections are refused
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        std::io::Result::Ok(shutdown.drain_until(deadline).await)
    })?;
    println!("outcome: {outcome}");
    Ok(outcome.into()) // 0 drained, 1 forced
}
