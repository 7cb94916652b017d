//! The drain step of [`Server::serve`](crate::Server::serve).

use std::time::{Duration, Instant};

use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::log;
use crate::server::runtime::Runtime;

/// Drains `shutdown` (already triggered) against `deadline`, with progress once a
/// second and the forced report as events (feature `tracing`), and told to systemd
/// when `systemd` is set (feature `systemd`).
pub(crate) async fn drain<R: Runtime>(
    runtime: &R,
    shutdown: &Shutdown,
    deadline: Duration,
    systemd: bool,
) -> Outcome {
    let started = Instant::now();
    log::info!(
        "stopped accepting; draining {} watchers",
        shutdown.report().remaining
    );
    let drain = shutdown.drain_until(runtime.sleep(deadline));
    let progress = async {
        if !(cfg!(feature = "tracing") || systemd) {
            return std::future::pending().await;
        }
        // Ends with the drain, which wins the race.
        for second in 0..u64::MAX {
            if second > 0 {
                runtime.sleep(Duration::from_secs(1)).await;
            }
            let report = shutdown.report();
            if second > 0 {
                log::info!(
                    "draining: {} still in flight{}",
                    report.remaining,
                    oldest(&report)
                );
            }
            #[cfg(feature = "systemd")]
            if systemd {
                let left = deadline.checked_sub(started.elapsed());
                crate::systemd::draining(report.remaining, left);
            }
        }
        std::future::pending().await
    };
    let outcome = futures_lite::future::or(drain, progress).await;
    #[cfg(feature = "systemd")]
    if systemd {
        crate::systemd::drain_ended(outcome.report().map(|r| r.remaining));
    }
    #[cfg(not(feature = "systemd"))]
    let _ = (systemd, started);
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
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
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
