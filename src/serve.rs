//! [`Server`]: the one accept loop, for every runtime.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use event_listener::Event;
use futures_lite::future;

use crate::accept::{AcceptError, Backoff, classify};
use crate::log;
use crate::runtime::{Listener, Runtime};
use crate::signal::{SignalSource, signal_loop};
use crate::{GracefulConnection, Outcome, Shutdown};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default drain deadline: 30 seconds, Kubernetes' default grace period.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

type SignalTask = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// An accept loop that serves connections until shutdown, then drains them.
///
/// [`serve`](Server::serve) accepts connections, hands each to a handler that turns
/// it into a [`GracefulConnection`], and spawns it [watched](Shutdown::watch) on the
/// runtime. When the coordinator is triggered (by [`Shutdown::trigger`], a
/// [signal source](Server::signals), or a fatal listener error) it:
///
/// 1. stops accepting at once: connections still in the backlog are never served;
/// 2. drops the listener, so its address can be bound again immediately;
/// 3. waits for every watcher to finish, up to the [drain
///    deadline](Server::drain_deadline), then forces what is left.
///
/// Accept errors never stop the loop unless the listener itself is broken:
/// - per-connection errors (aborted, reset, refused; Linux's `EPROTO`, `ENETDOWN`,
///   `EHOSTUNREACH` family) are retried at once;
/// - resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, and unknown errors)
///   back off on the runtime's timer, 50 ms doubling up to 1 s, raced against the
///   trigger, so other tasks keep running and shutdown is not delayed;
/// - fatal errors (`EBADF`, `EINVAL`, `ENOTSOCK`, `EFAULT`) trigger shutdown, drain,
///   and return [`ServeError`] with the error and the drain's outcome.
#[must_use = "a server does nothing until `serve` is awaited"]
pub struct Server<R, L> {
    runtime: R,
    listener: L,
    shutdown: Shutdown,
    max_connections: Option<usize>,
    drain_deadline: Duration,
    drain_delay: Duration,
    signals: Option<SignalTask>,
}

impl<R: Runtime, L: Listener> Server<R, L> {
    /// A server accepting from `listener` and spawning on `runtime`, with its own
    /// new coordinator, no connection limit, and the default drain deadline.
    pub fn new(runtime: R, listener: L) -> Self {
        Server {
            runtime,
            listener,
            shutdown: Shutdown::new(),
            max_connections: None,
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
            drain_delay: Duration::ZERO,
            signals: None,
        }
    }

    /// Uses `shutdown` as this server's coordinator (for example a child scope of the
    /// application's), instead of a new one.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// A handle to this server's coordinator: trigger it to stop the server.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves at most `limit` connections at once. Further connections wait in the
    /// listener's backlog and are accepted as served ones finish.
    ///
    /// # Panics
    ///
    /// If `limit` is zero.
    pub fn max_connections(mut self, limit: usize) -> Self {
        assert!(limit > 0, "wind-down: max_connections must be at least 1");
        self.max_connections = Some(limit);
        self
    }

    /// How long the drain may take before the remaining connections are force-closed.
    /// Defaults to [`DEFAULT_DRAIN_DEADLINE`].
    pub fn drain_deadline(mut self, deadline: Duration) -> Self {
        self.drain_deadline = deadline;
        self
    }

    /// Keeps accepting and serving for `delay` after shutdown is
    /// [announced](Shutdown::announce) (by the first signal, or by the application),
    /// then triggers the drain. Meanwhile [`Shutdown::is_ready`] is already `false`,
    /// so a load balancer polling a readiness endpoint can deregister the instance
    /// before the listener closes. Connections are not asked to close during the
    /// delay. A [`Shutdown::trigger`] or a second signal ends the delay at once.
    /// Defaults to zero: the drain starts at the announcement.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Drives shutdown from `source` while serving: the first signal announces
    /// shutdown (readiness turns `false`; the drain starts after the [drain
    /// delay](Server::drain_delay)), a second one forces it at once (see
    /// [`handle_signals`](crate::handle_signals) for the counting rules).
    pub fn signals<S: SignalSource>(mut self, source: S) -> Self {
        let shutdown = self.shutdown.clone();
        self.signals = Some(Box::pin(async move {
            signal_loop(&shutdown, source, Shutdown::announce).await
        }));
        self
    }

    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<L::Addr> {
        self.listener.local_addr()
    }

    /// Runs the accept loop, then the drain; see [`Server`].
    ///
    /// `handler` turns each accepted connection into a [`GracefulConnection`] (for
    /// hyper, see the `hyper` module). Each connection is watched from the moment
    /// it is accepted, so a trigger can never miss it, and labelled with its peer
    /// address for [`Shutdown::forced_report`] (one short string and one short lock
    /// per connection). The connection's own output is dropped.
    ///
    /// Resolves to the drain's [`Outcome`] once the coordinator is drained or forced.
    pub async fn serve<H, C>(self, mut handler: H) -> Result<Outcome, ServeError>
    where
        H: FnMut(L::Io, L::Addr) -> C,
        C: GracefulConnection + Send + 'static,
        C::Output: Send,
    {
        let Server {
            runtime,
            mut listener,
            shutdown,
            max_connections,
            drain_deadline,
            drain_delay,
            signals,
        } = self;
        if let Some(signals) = signals {
            let watch = shutdown.clone();
            runtime.spawn(async move {
                let done = async {
                    future::or(watch.drained(), watch.forced()).await;
                    Ok(())
                };
                if let Err(e) = future::or(signals, done).await {
                    log::error!("signal source failed: {e}");
                }
            });
        }
        let slots = max_connections.map(|max| Arc::new(Slots::new(max)));
        // Completes when accepting must stop: at the trigger, or `drain_delay` after
        // the announcement (then it triggers).
        let stop = async {
            shutdown.announced().await;
            if !drain_delay.is_zero() && !shutdown.is_triggered() {
                log::info!("shutdown announced: serving for {drain_delay:?} more");
                future::or(shutdown.triggered(), runtime.sleep(drain_delay)).await;
            }
            shutdown.trigger();
        };
        let mut stop = std::pin::pin!(stop);
        let mut backoff = Backoff::new();
        let mut rounds: u32 = 0;
        let result = loop {
            if let Some(slots) = &slots {
                if !slots.wait_free(stop.as_mut()).await {
                    break Ok(());
                }
            }
            let accepted = future::or(
                async {
                    stop.as_mut().await;
                    None
                },
                async { Some(listener.accept().await) },
            )
            .await;
            match accepted {
                None => break Ok(()),
                Some(Ok((io, addr))) => {
                    backoff.reset();
                    let label = format!("{addr:?}");
                    let conn = shutdown.watch_labelled(handler(io, addr), label);
                    let slot = slots.as_ref().map(|s| s.take());
                    runtime.spawn(async move {
                        let _ = conn.await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => match classify(&error) {
                    AcceptError::Connection => {}
                    AcceptError::Resource => {
                        let delay = backoff.next_delay();
                        log::warning!("accept failed: {error}; retrying in {delay:?}");
                        let stopped = future::or(
                            async {
                                stop.as_mut().await;
                                true
                            },
                            async {
                                runtime.sleep(delay).await;
                                false
                            },
                        );
                        if stopped.await {
                            break Ok(());
                        }
                    }
                    AcceptError::Fatal => {
                        log::error!("listener failed: {error}; shutting down");
                        break Err(error);
                    }
                },
            }
            // smol's executor has no cooperative budget: a loop that never returns
            // Pending would starve every other task on its thread.
            rounds = rounds.wrapping_add(1);
            if rounds % 32 == 0 {
                future::yield_now().await;
            }
        };
        drop(listener);
        shutdown.trigger();
        log::info!(
            "stopped accepting; draining {} watchers",
            shutdown.watchers()
        );
        let drain = shutdown.drain_until(runtime.sleep(drain_deadline));
        #[cfg(feature = "tracing")]
        let drain = future::or(drain, async {
            // Progress while draining, once a second; ends with the drain.
            for _ in 0..u64::MAX {
                runtime.sleep(Duration::from_secs(1)).await;
                log::info!("draining: {} still in flight", shutdown.watchers());
            }
            std::future::pending().await
        });
        let outcome = drain.await;
        #[cfg(feature = "tracing")]
        if let Some(report) = shutdown.forced_report() {
            for straggler in &report.stragglers {
                log::warning!("forced: {straggler}");
            }
        }
        log::info!("shutdown {outcome}");
        match result {
            Ok(()) => Ok(outcome),
            Err(error) => Err(ServeError { error, outcome }),
        }
    }
}

impl<R, L> fmt::Debug for Server<R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("shutdown", &self.shutdown)
            .field("max_connections", &self.max_connections)
            .field("drain_deadline", &self.drain_deadline)
            .field("drain_delay", &self.drain_delay)
            .field("signals", &self.signals.is_some())
            .finish_non_exhaustive()
    }
}

/// The listener failed fatally; the server drained its connections and stopped.
#[derive(Debug)]
pub struct ServeError {
    /// The listener's error.
    pub error: io::Error,
    /// How the drain that followed ended.
    pub outcome: Outcome,
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "listener failed: {} (shutdown {})",
            self.error, self.outcome
        )
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Connection slots for [`Server::max_connections`]. Only the accept loop takes
/// slots; finished connections give them back.
struct Slots {
    max: usize,
    active: AtomicUsize,
    freed: Event,
}

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            max,
            active: AtomicUsize::new(0),
            freed: Event::new(),
        }
    }

    fn has_free(&self) -> bool {
        self.active.load(Ordering::Acquire) < self.max
    }

    /// Waits for a free slot. Returns `false` if `stop` completed first.
    async fn wait_free(&self, mut stop: Pin<&mut impl Future<Output = ()>>) -> bool {
        // Bounded by the number of slot releases: each round consumes one.
        loop {
            if self.has_free() {
                return true;
            }
            let listener = self.freed.listen();
            if self.has_free() {
                return true;
            }
            let freed = async {
                listener.await;
                true
            };
            let stopped = async {
                stop.as_mut().await;
                false
            };
            if !future::or(stopped, freed).await {
                return false;
            }
        }
    }

    fn take(self: &Arc<Self>) -> Slot {
        self.active.fetch_add(1, Ordering::AcqRel);
        Slot(self.clone())
    }
}

struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify(1);
    }
}
