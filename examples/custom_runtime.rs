//! The core on a runtime that is neither tokio nor smol.
//!
//! ```text
//! cargo run --example custom_runtime
//! ```
//!
//! `common/pool_runtime.rs` implements `wind_down::Runtime` with std alone: a pool
//! of threads polling tasks from a channel, and a thread-backed sleep. No feature
//! of this crate is needed. The example runs the same shutdown twice:
//!
//! 1. every piece of work finishes: the drain completes (`Outcome::Drained`);
//! 2. a connection ignores the request to close: the deadline forces it
//!    (`Outcome::Forced`, with the count of work still running).
//!
//! Each run uses a guard (work on a plain thread), a watched connection of a
//! custom `GracefulConnection` type, and a tracked future.

#[path = "common/pool_runtime.rs"]
mod pool_runtime;

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use pool_runtime::{PoolRuntime, ThreadSleep};
use wind_down::{GracefulConnection, Outcome, Runtime, Shutdown};

/// How long each drain may take.
const DEADLINE: Duration = Duration::from_millis(500);

fn main() {
    let runtime = PoolRuntime::new(2);
    futures_lite::future::block_on(async {
        println!("-- 1. everything finishes in time");
        let outcome = run(&runtime, false).await;
        println!("outcome: {outcome}");

        println!("-- 2. a connection ignores the close request");
        let outcome = run(&runtime, true).await;
        println!("outcome: {outcome}");
    });
}

/// Starts some work under a new coordinator, triggers it, and drains it.
async fn run(runtime: &PoolRuntime, stubborn: bool) -> Outcome {
    let shutdown = Shutdown::new();

    // A guard: in-flight work the drain waits for, here on a plain thread.
    let guard = shutdown.guard().expect("not drained yet");
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        println!("guarded job done");
        drop(guard);
    });

    // A watched connection: asked to close gracefully at the trigger.
    let conn = shutdown.watch(Ticker::new(runtime, Duration::from_millis(20), stubborn));
    let (report, conn_result) = mpsc::channel();
    runtime.spawn(async move {
        let _ = report.send(conn.await);
    });

    // Tracked work: a future with no graceful close, that the drain waits for.
    let job = shutdown.track(runtime.sleep(Duration::from_millis(100)));
    runtime.spawn(async move {
        if job.await.is_ok() {
            println!("tracked job done");
        }
    });

    runtime.sleep(Duration::from_millis(50)).await;
    shutdown.trigger();
    println!("triggered with {} watchers", shutdown.report().remaining);
    let outcome = shutdown.drain_until(runtime.sleep(DEADLINE)).await;

    // The connection's task sends its result once the connection is done or
    // dropped by the force; the timeout only guards against a bug.
    match conn_result.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(units)) => println!("connection closed gracefully after {units} units"),
        Ok(Err(cancelled)) => println!("connection cut: {cancelled}"),
        Err(e) => println!("connection did not report: {e}"),
    }
    outcome
}

/// A connection that does one unit of work per `period` until asked to close,
/// then finishes the unit in flight and completes with the number of units done.
/// A `stubborn` one ignores the request and runs until it is forced.
struct Ticker {
    runtime: PoolRuntime,
    period: Duration,
    sleep: ThreadSleep,
    units: u32,
    closing: bool,
    stubborn: bool,
}

impl Ticker {
    fn new(runtime: &PoolRuntime, period: Duration, stubborn: bool) -> Self {
        Ticker {
            runtime: runtime.clone(),
            period,
            sleep: runtime.sleep(period),
            units: 0,
            closing: false,
            stubborn,
        }
    }
}

impl Future for Ticker {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let this = self.get_mut();
        if Pin::new(&mut this.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.units += 1;
        if this.closing && !this.stubborn {
            return Poll::Ready(this.units);
        }
        // Start the next unit and register for its end.
        this.sleep = this.runtime.sleep(this.period);
        if Pin::new(&mut this.sleep).poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl GracefulConnection for Ticker {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        println!("connection asked to close");
        self.get_mut().closing = true;
    }
}
