//! The drain step of [`Server::serve`](crate::Server::serve).

use std::io;
use std::time::{Duration, Instant};

use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::server::observer::Observers;
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

/// Drains `shutdown` (already triggered) against `deadline`, telling `observers`
/// when it starts, once a second while it runs, and when it ends.
pub(crate) async fn drain<R: Runtime>(
    runtime: &R,
    shutdown: &Shutdown,
    deadline: Duration,
    observers: &Observers,
) -> Outcome {
    let started = Instant::now();
    let in_flight = shutdown.report().remaining;
    observers.tell(|o| o.drain_started(in_flight, deadline));
    let drain = shutdown.drain_until(runtime.sleep(deadline));
    let progress = async {
        if !observers.any() {
            return std::future::pending().await;
        }
        // Ends with the drain, which wins the race.
        for _ in 0..u64::MAX {
            runtime.sleep(Duration::from_secs(1)).await;
            let report = shutdown.report();
            let left = deadline.checked_sub(started.elapsed());
            observers.tell(|o| o.draining(&report, left));
        }
        std::future::pending().await
    };
    let outcome = futures_lite::future::or(drain, progress).await;
    observers.tell(|o| o.ended(&outcome));
    outcome
}
