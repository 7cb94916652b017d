//! [`Observer`]: what hears a server's lifecycle, and [`Observers`], the list a
//! server tells.
//!
//! Invariants:
//! - a server tells its observers, in this order: `ready` once when it starts
//!   accepting; `stopping` once, at the announcement (or when the accept loop
//!   ends without one); `drain_started` once, at the trigger; `draining` once a
//!   second while the drain runs; `ended` once with the drain's outcome;
//! - every call is made from the server's own future, never from a connection's:
//!   an observer that blocks delays the server, not a request;
//! - the drain's progress ticks only when some observer is there to hear it.

use std::sync::Arc;
use std::time::Duration;

use crate::coordinator::outcome::Outcome;
use crate::coordinator::report::Report;

/// Hears the lifecycle of a [`Server`](crate::Server): systemd's notifications
/// ([`systemd::Notify`](crate::systemd::Notify)), the `tracing` feature's
/// events, or an application's own metrics. Added with
/// [`Server::observe`](crate::Server::observe). Every method does nothing by
/// default.
pub trait Observer: Send + Sync + 'static {
    /// [`serve`](crate::Server::serve) started accepting.
    fn ready(&self) {}

    /// Shutdown was announced (the first signal, [`announce`](crate::Shutdown::announce)
    /// or [`trigger`](crate::Shutdown::trigger)), or the accept loop ended
    /// without one (a listener failure): `in_flight` watchers, and what is `left`
    /// of the grace period.
    fn stopping(&self, in_flight: usize, left: Duration) {
        let _ = (in_flight, left);
    }

    /// The drain started (accepting stopped): `in_flight` watchers, forced after
    /// `deadline`.
    fn drain_started(&self, in_flight: usize, deadline: Duration) {
        let _ = (in_flight, deadline);
    }

    /// Once a second while the drain runs: what is still running, and what is
    /// `left` until the force (`None` once the deadline passed).
    fn draining(&self, report: &Report, left: Option<Duration>) {
        let _ = (report, left);
    }

    /// The drain ended with `outcome`.
    fn ended(&self, outcome: &Outcome) {
        let _ = outcome;
    }
}

/// The observers of one server, the `tracing` feature's events first.
#[derive(Clone, Default)]
pub(crate) struct Observers(Vec<Arc<dyn Observer>>);

impl Observers {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "tracing")]
        let events: Option<Arc<dyn Observer>> = Some(Arc::new(Events));
        #[cfg(not(feature = "tracing"))]
        let events = None;
        Observers(events.into_iter().collect())
    }

    pub(crate) fn add(&mut self, observer: Arc<dyn Observer>) {
        self.0.push(observer);
    }

    /// Whether anyone listens (the drain's progress ticks only then).
    pub(crate) fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// Tells every observer.
    pub(crate) fn tell(&self, event: impl Fn(&dyn Observer)) {
        for observer in &self.0 {
            event(&**observer);
        }
    }
}

/// The `tracing` feature's events: info for the lifecycle, warn for each watcher
/// a forced drain left.
#[cfg(feature = "tracing")]
struct Events;

#[cfg(feature = "tracing")]
impl Observer for Events {
    fn drain_started(&self, in_flight: usize, _: Duration) {
        let plural = if in_flight == 1 { "" } else { "s" };
        tracing::info!("stopped accepting; draining {in_flight} watcher{plural}");
    }

    fn draining(&self, report: &Report, _: Option<Duration>) {
        let oldest: Vec<String> = report
            .stragglers
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect();
        let oldest = if oldest.is_empty() {
            String::new()
        } else {
            format!("; oldest: {}", oldest.join(", "))
        };
        tracing::info!("draining: {} still in flight{oldest}", report.remaining);
    }

    fn ended(&self, outcome: &Outcome) {
        if let Some(report) = outcome.report() {
            for straggler in &report.stragglers {
                tracing::warn!("forced: {straggler}");
            }
        }
        tracing::info!("shutdown {outcome}");
    }
}
