//! The drain step of [`Server::serve`](crate::Server::serve).

use std::time::Duration;

use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::log;
use crate::server::runtime::Runtime;

/// Drains `shutdown` (already triggered) against `deadline`, with progress and the
/// forced report as events (feature `tracing`).
pub(crate) async fn drain<R: Runtime>(
    runtime: &R,
    shutdown: &Shutdown,
    deadline: Duration,
) -> Outcome {
    log::info!(
        "stopped accepting; draining {} watchers",
        shutdown.report().remaining
    );
    let drain = shutdown.drain_until(runtime.sleep(deadline));
    #[cfg(feature = "tracing")]
    let drain = futures_lite::future::or(drain, async {
        // Progress while draining, once a second; ends with the drain.
        for _ in 0..u64::MAX {
            runtime.sleep(Duration::from_secs(1)).await;
            let report = shutdown.report();
            log::info!(
                "draining: {} still in flight{}",
                report.remaining,
                oldest(&report)
            );
        }
        std::future::pending().await
    });
    let outcome = drain.await;
    #[cfg(feature = "tracing")]
    if let Some(report) = outcome.report() {
        for straggler in &report.stragglers {
            log::warning!("forced: {straggler}");
        }
    }
    log::info!("shutdown {outcome}");
    outcome
}

/// The five oldest labelled watchers of `report`, for the progress events.
#[cfg(feature = "tracing")]
fn oldest(report: &crate::coordinator::report::Report) -> String {
    let named: Vec<String> = report
        .stragglers
        .iter()
        .take(5)
        .map(|s| s.to_string())
        .collect();
    if named.is_empty() {
        String::new()
    } else {
        format!("; oldest: {}", named.join(", "))
    }
}
