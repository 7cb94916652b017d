//! [`Server`]: the one accept loop, for every runtime.
//!
//! - `mod.rs`: the builder and [`Server::serve`], which runs the steps in order;
//! - `accept.rs`: the accept step, its error classes and back-off;
//! - `drain.rs`: the drain step;
//! - `observer.rs`: what hears the lifecycle (systemd, `tracing`);
//! - `slots.rs`: live connection tasks and the connection limit;
//! - `task.rs`: the scope of a connection task, shared by the tasks it spawns;
//! - `runtime.rs`: what a runtime and listener supply;
//! - `error.rs`: [`ServeError`].

pub(crate) mod accept;
mod drain;
mod error;
pub(crate) mod observer;
pub(crate) mod runtime;
mod slots;
pub(crate) mod task;

pub use self::error::ServeError;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{FutureExt as _, future};

use self::accept::{accept_loop, stop_accepting};
use self::observer::{Observer, Observers};
use self::runtime::{Listener, Runtime};
use self::slots::Connections;
use crate::coordinator::Shutdown;
use crate::coordinator::outcome::Outcome;
use crate::coordinator::watch::GracefulConnection;
use crate::log;
use crate::signal::{SignalSource, signal_loop};

/// The default [grace period](Server::grace_period): 25 seconds, which leaves 5 of
/// Kubernetes' default 30-second termination grace period for the process to exit.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(25);

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
/// 3. waits for every watcher to finish within what is left of the [grace
///    period](Server::grace_period), then forces what is left;
/// 4. waits for every connection task to end, with the tasks a connection spawned
///    while it was polled (the HTTP layer's HTTP/2 streams), which a forced drain
///    drops with their connection: when `serve` returns, no connection of this
///    server holds anything (a service's state, a database pool) any more.
///
/// Accept errors never stop the loop unless the listener itself is broken, and
/// never make it spin:
/// - per-connection errors (aborted, reset, refused, interrupted, would-block;
///   Linux's `EPROTO`, `ENETDOWN`, `EHOSTUNREACH` family, `EPERM`) are retried at
///   once, up to 64 in a row; after that they back off like resource errors;
/// - resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, and unknown errors)
///   back off on the runtime's timer, 50 ms doubling up to 1 s, raced against the
///   stop, so other tasks keep running and shutdown is not delayed;
/// - fatal errors (`EBADF`, `EINVAL`, `ENOTSOCK`, `EFAULT`) trigger shutdown, drain,
///   and return [`ServeError`] with the error and the drain's outcome.
#[must_use = "a server does nothing until `serve` is awaited"]
pub struct Server<R, L: Listener> {
    runtime: R,
    listener: L,
    shutdown: Shutdown,
    max_connections: Option<usize>,
    grace_period: Duration,
    drain_delay: Duration,
    signals: Option<SignalTask>,
    observers: Observers,
}

impl<R: Runtime, L: Listener> Server<R, L> {
    /// A server accepting from `listener` and spawning on `runtime`, with its own
    /// new coordinator, no connection limit, and the default grace period.
    ///
    /// Without [`signals`](Server::signals) the server hears no signal: SIGTERM and
    /// SIGINT keep their default action and end the process without a drain. Add
    /// `.signals(Signals::new()?)` from the `tokio` or `smol` module to drain on them.
    pub fn new(runtime: R, listener: L) -> Self {
        Server::with_shutdown(runtime, listener, Shutdown::new())
    }

    /// A server like [`new`](Server::new)'s, whose coordinator is `shutdown` (for
    /// example a child scope of the application's: the application's trigger then
    /// stops the server, and its drain waits for the server's connections).
    ///
    /// The coordinator is chosen here, when the server is created, so every handle
    /// from [`shutdown`](Server::shutdown) is this server's.
    pub fn with_shutdown(runtime: R, listener: L, shutdown: Shutdown) -> Self {
        Server {
            runtime,
            listener,
            shutdown,
            max_connections: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            drain_delay: Duration::ZERO,
            signals: None,
            observers: Observers::new(),
        }
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

    /// The whole shutdown's budget, counted from the announcement (the first
    /// signal, [`Shutdown::announce`] or [`Shutdown::trigger`]): the [drain
    /// delay](Server::drain_delay) and then the drain, which is forced when the
    /// grace period is over. So the worst case is the grace period itself, whatever
    /// the delay:
    ///
    /// ```text
    /// announced ─ drain delay ─▶ trigger: stop accepting ─ drain ─▶ force
    /// └───────────────────────── grace period ─────────────────────┘
    /// ```
    ///
    /// A [drain delay](Server::drain_delay) as long as the grace period would leave
    /// no time for the drain: [`serve`](Server::serve) refuses it with an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error before serving anything. Defaults to [`DEFAULT_GRACE_PERIOD`], 25 s,
    /// which fits inside Kubernetes' default `terminationGracePeriodSeconds` (30).
    pub fn grace_period(mut self, total: Duration) -> Self {
        self.grace_period = total;
        self
    }

    /// Keeps accepting and serving for `delay` after shutdown is
    /// [announced](Shutdown::announce) (by the first signal, or by the application),
    /// then triggers the drain. Meanwhile [`Shutdown::is_ready`] is already `false`,
    /// so a load balancer polling a readiness endpoint can deregister the instance
    /// before the listener closes, and the HTTP layer tells clients to go away
    /// (on by default; see the `hyper` module).
    /// A [`Shutdown::trigger`] or a second signal ends the delay at once.
    /// The delay is part of the [grace period](Server::grace_period) and must be
    /// shorter than it ([`serve`](Server::serve) refuses it otherwise). Defaults to
    /// zero: the drain starts at the announcement.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Drives shutdown from `source` while serving: the first signal announces
    /// shutdown (readiness turns `false`; the drain starts after the [drain
    /// delay](Server::drain_delay)), a second one forces it at once (see
    /// [`handle_signals`](crate::handle_signals) for the counting rules). The
    /// server drops `source` after the second signal, or once it is drained or
    /// forced: with the adapters' `Signals` and no other one alive, the next
    /// signal has its default action and ends the process.
    ///
    /// A server never runs deaf: if the source fails (returns an error or panics),
    /// the server drains as if signalled and [`serve`](Server::serve) returns a
    /// [`ServeError`] with the source's error.
    pub fn signals<S: SignalSource>(mut self, source: S) -> Self {
        let shutdown = self.shutdown.clone();
        self.signals = Some(Box::pin(async move {
            signal_loop(&shutdown, source, Shutdown::announce).await
        }));
        self
    }

    /// Tells `observer` about this server's lifecycle: ready, stopping, the drain
    /// and its progress once a second, and its outcome (see [`Observer`]). For
    /// systemd, [`systemd::Notify`](crate::systemd::Notify).
    pub fn observe(mut self, observer: impl Observer) -> Self {
        self.observers.add(Arc::new(observer));
        self
    }

    /// The runtime connections are spawned on (for the HTTP layer).
    #[cfg(any(feature = "http1", feature = "http2"))]
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
    /// address for reports (one short string and one short lock per connection).
    /// The connection's own output is dropped.
    ///
    /// Resolves to the drain's [`Outcome`] once the coordinator is drained or
    /// forced and every connection task has ended.
    ///
    /// Connections are spawned on the runtime, which may run them on another
    /// thread: they (and so a service's futures) must be `Send`. For handlers that
    /// are not (`Rc` state on a tokio `LocalSet`), use the core with an accept loop
    /// of your own: [`Shutdown::watch`] each connection and spawn it locally, stop
    /// accepting at [`Shutdown::run_until_triggered`], then
    /// [`Shutdown::drain_until`] (`examples/local_set.rs`).
    pub async fn serve<H, C>(mut self, handler: H) -> Result<Outcome, ServeError>
    where
        H: FnMut(L::Io, L::Addr) -> C,
        C: GracefulConnection + Send + 'static,
        C::Output: Send,
    {
        if let Err(error) = drain::check_budget(self.grace_period, self.drain_delay) {
            return Err(ServeError::refused(error));
        }
        let signal_failure = self.spawn_signals();
        let connections = Connections::new(self.max_connections);
        let Server {
            runtime,
            listener,
            shutdown,
            grace_period,
            drain_delay,
            observers,
            ..
        } = self;
        let announced_at = std::sync::OnceLock::new();
        // Observers hear `stopping` once: at the announcement, while the delay
        // runs, or when the loop ends without one (a listener failure).
        let told_stopping = AtomicBool::new(false);
        let tell_stopping = || {
            if !told_stopping.swap(true, Ordering::Relaxed) {
                let in_flight = shutdown.report().remaining;
                observers.tell(|o| o.stopping(in_flight, grace_period));
            }
        };
        let stop = future::zip(
            stop_accepting(
                &shutdown,
                &runtime,
                drain_delay.min(grace_period),
                &announced_at,
            ),
            async {
                if observers.any() {
                    shutdown.announced().await;
                    tell_stopping();
                }
            },
        );
        let stop = async {
            stop.await;
        };
        observers.tell(|o| o.ready());
        let listener_failure =
            accept_loop(&runtime, listener, &shutdown, &connections, stop, handler).await;
        shutdown.trigger();
        tell_stopping();
        // What is left of the grace period (all of it if the loop ended on its own).
        let spent = announced_at.get().map_or(Duration::ZERO, Instant::elapsed);
        let deadline = grace_period.saturating_sub(spent);
        let outcome = drain::drain(&runtime, &shutdown, deadline, &observers).await;
        connections.all_ended().await;
        let failure = listener_failure.or_else(|| signal_failure.lock().ok()?.take());
        match failure {
            None => Ok(outcome),
            Some(error) => Err(ServeError { error, outcome }),
        }
    }

    /// Spawns the signal task, if any. Returns where it leaves the source's
    /// failure; a failure triggers the drain.
    fn spawn_signals(&mut self) -> Arc<Mutex<Option<io::Error>>> {
        let failure = Arc::new(Mutex::new(None));
        if let Some(signals) = self.signals.take() {
            let shutdown = self.shutdown.clone();
            let slot = failure.clone();
            self.runtime.spawn(async move {
                let done = async {
                    future::or(shutdown.drained(), shutdown.forced()).await;
                    Ok(Ok(()))
                };
                let heard = std::panic::AssertUnwindSafe(signals).catch_unwind();
                let error = match future::or(heard, done).await {
                    Ok(Ok(())) => return,
                    Ok(Err(error)) => error,
                    Err(_) => io::Error::other("the signal source panicked"),
                };
                log::error!("signal source failed: {error}; draining");
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(error);
                }
                shutdown.trigger();
            });
        }
        failure
    }
}

impl<R, L: Listener> fmt::Debug for Server<R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("shutdown", &self.shutdown)
            .field("max_connections", &self.max_connections)
            .field("grace_period", &self.grace_period)
            .field("drain_delay", &self.drain_delay)
            .field("signals", &self.signals.is_some())
            .finish_non_exhaustive()
    }
}
