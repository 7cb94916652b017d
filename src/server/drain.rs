//! The drain step of [`Server::serve`](crate::Server::serve).

use std::io;
use std::time::{Duration, Instant};

use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::log;
use crate::server::runtime::Runtime;

/// Refuses a drain delay that leaves the drain no time: the grace period counts
/// from the announcement, so a delay as long as it would force the drain the
/// moment it starts, and work that flushes at the trigger would never finish.
pub(crate) fn check_budget(grace_period: Duration, drain_delay: Duration) -> io::Result<()> {
    if drain_delay.is_zero() || drain_delay < grace_period {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "drain_delay ({drain_delay:?}) must be shorter than grace_period ({grace_period:?}), \
             which counts from the announcement and includes the delay: the drain would be \
             forced as soon as it starts; lengthen grace_period or shorten drain_delay"
        ),
    ))
}

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
    let remaining = shutdown.report().remaining;
    let plural = if remaining == 1 { "" } else { "s" };
    log::info!("stopped accepting; draining {remaining} watcher{plural}");
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
