//! [`Server`]: the one accept loop, for every runtime.
//!
//! - `mod.rs`: the builder and [`Server::serve`], which runs the steps in order;
//! - `accept.rs`: the accept step, its error classes and back-off;
//! - `drain.rs`: the drain step;
//! - `slots.rs`: live connection tasks and the connection limit;
//! - `task.rs`: the scope of a connection task, shared by the tasks it spawns;
//! - `runtime.rs`: what a runtime and listener supply.

pub(crate) mod accept;
mod drain;
pub(crate) mod runtime;
mod slots;
pub(crate) mod task;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{FutureExt as _, future};

use self::accept::{accept_loop, stop_accepting};
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
    #[cfg_attr(not(any(feature = "http1", feature = "http2")), allow(dead_code))]
    on_connection_error: Option<ConnectionErrorHook<L::Addr>>,
    #[cfg_attr(not(any(feature = "http1", feature = "http2")), allow(dead_code))]
    go_away: bool,
    /// The HTTP layer's `Server::pre_request_grace`.
    #[cfg(any(feature = "http1", feature = "http2"))]
    pub(crate) pre_request_grace: Duration,
    /// Whether to tell systemd about the lifecycle (`Server::notify_systemd`).
    #[cfg(feature = "systemd")]
    notify_systemd: bool,
    /// The health listener of the HTTP layer (`Server::health`).
    #[cfg(feature = "http1")]
    pub(crate) health: Option<L>,
}

/// The callback of [`Server::on_connection_error`].
pub(crate) type ConnectionErrorHook<A> =
    Arc<dyn Fn(&A, &(dyn std::error::Error + 'static)) + Send + Sync>;

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
            on_connection_error: None,
            go_away: true,
            #[cfg(any(feature = "http1", feature = "http2"))]
            pre_request_grace: crate::hyper::DEFAULT_PRE_REQUEST_GRACE,
            #[cfg(feature = "systemd")]
            notify_systemd: false,
            #[cfg(feature = "http1")]
            health: None,
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
    /// ([`go_away_during_delay`](Server::go_away_during_delay), on by default).
    /// A [`Shutdown::trigger`] or a second signal ends the delay at once.
    /// The delay is part of the [grace period](Server::grace_period) and must be
    /// shorter than it ([`serve`](Server::serve) refuses it otherwise). Defaults to
    /// zero: the drain starts at the announcement.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Whether the HTTP layer ([`serve_http`](Server::serve_http),
    /// [`serve_tower`](Server::serve_tower)) tells connections to go away from the
    /// announcement on, while the [drain delay](Server::drain_delay) still accepts
    /// and serves: every HTTP/1 response completed from then on says `connection:
    /// close` (but an upgrade's 101), and every HTTP/2 connection gets GOAWAY (its
    /// open streams finish) once it made its first request. Connections accepted
    /// during the delay are served the same way; nothing is refused. Clients that
    /// follow the protocol reconnect, and by then the load balancer sends them to
    /// another instance. Idle HTTP/1 connections stay open until the trigger, so a
    /// request already on its way is not cut.
    ///
    /// On by default; `false` leaves connections alone until the trigger.
    /// Connections served by [`serve`](Server::serve) are asked to close at the
    /// trigger only, whatever this says.
    pub fn go_away_during_delay(mut self, go_away: bool) -> Self {
        self.go_away = go_away;
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

    /// Calls `callback` with the peer's address and the error of each connection of
    /// [`serve_http`](Server::serve_http) or [`serve_tower`](Server::serve_tower)
    /// that ends with one (a malformed request, a reset, a protocol error), for
    /// programs without the `tracing` feature, which reports them as events (debug
    /// level for what the peer caused, warn for the rest). Connections served by
    /// [`serve`](Server::serve) return their own output instead.
    pub fn on_connection_error(
        mut self,
        callback: impl Fn(&L::Addr, &(dyn std::error::Error + 'static)) + Send + Sync + 'static,
    ) -> Self {
        self.on_connection_error = Some(Arc::new(callback));
        self
    }

    /// Tells systemd about this server's lifecycle through `sd_notify` (feature
    /// `systemd`): `READY=1` when [`serve`](Server::serve) starts accepting,
    /// `STOPPING=1` at the announcement, the drain's progress as `STATUS` once a
    /// second, and `EXTEND_TIMEOUT_USEC` so that systemd's stop timeout does not
    /// kill a drain still within its [grace period](Server::grace_period); see
    /// [`systemd`](crate::systemd) for the exact messages.
    ///
    /// Sends nothing unless systemd started the process with `NOTIFY_SOCKET` (a
    /// `Type=notify` service), and nothing on systems other than Linux.
    #[cfg(feature = "systemd")]
    pub fn notify_systemd(mut self) -> Self {
        self.notify_systemd = true;
        self
    }

    #[cfg_attr(not(any(feature = "http1", feature = "http2")), allow(dead_code))]
    pub(crate) fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Whether the HTTP layer's connections go away at the announcement.
    #[cfg_attr(not(any(feature = "http1", feature = "http2")), allow(dead_code))]
    pub(crate) fn goes_away(&self) -> bool {
        self.go_away
    }

    #[cfg_attr(not(any(feature = "http1", feature = "http2")), allow(dead_code))]
    pub(crate) fn connection_error_hook(&self) -> Option<ConnectionErrorHook<L::Addr>> {
        self.on_connection_error.clone()
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
        #[cfg(feature = "http1")]
        if self.health.take().is_some() {
            // Left bound, it would take probes' connections and never answer.
            log::warning!("Server::health is served by serve_http and serve_tower only: closed");
        }
        let connections = Connections::new(self.max_connections);
        #[cfg(feature = "systemd")]
        let systemd = self.notify_systemd;
        #[cfg(not(feature = "systemd"))]
        let systemd = false;
        let Server {
            runtime,
            listener,
            shutdown,
            grace_period,
            drain_delay,
            ..
        } = self;
        let announced_at = std::sync::OnceLock::new();
        // systemd hears STOPPING once: at the announcement, while the delay runs,
        // or when the loop ends without one (a listener failure).
        let told_stopping = std::sync::atomic::AtomicBool::new(false);
        let tell_stopping = || {
            if systemd && !told_stopping.swap(true, std::sync::atomic::Ordering::Relaxed) {
                #[cfg(feature = "systemd")]
                crate::systemd::stopping(shutdown.report().remaining, grace_period);
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
                if systemd {
                    shutdown.announced().await;
                    tell_stopping();
                }
            },
        );
        let stop = async {
            stop.await;
        };
        #[cfg(feature = "systemd")]
        if systemd {
            crate::systemd::ready();
        }
        let listener_failure =
            accept_loop(&runtime, listener, &shutdown, &connections, stop, handler).await;
        shutdown.trigger();
        tell_stopping();
        // What is left of the grace period (all of it if the loop ended on its own).
        let spent = announced_at.get().map_or(Duration::ZERO, Instant::elapsed);
        let deadline = grace_period.saturating_sub(spent);
        let outcome = drain::drain(&runtime, &shutdown, deadline, systemd).await;
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
            .field("go_away_during_delay", &self.go_away)
            .field("signals", &self.signals.is_some())
            .finish_non_exhaustive()
    }
}

/// The listener or the signal source failed; the server drained its connections
/// and stopped. Or the settings were refused before anything was served
/// ([`InvalidInput`](io::ErrorKind::InvalidInput), with the outcome `Drained`:
/// the coordinator is left as it was).
#[derive(Debug)]
#[non_exhaustive]
pub struct ServeError {
    /// The listener's or the signal source's error.
    pub error: io::Error,
    /// How the drain that followed ended.
    pub outcome: Outcome,
}

impl ServeError {
    /// Settings refused before anything was served: the outcome is `Drained`
    /// (nothing ran) and the coordinator is left as it was.
    pub(crate) fn refused(error: io::Error) -> ServeError {
        let outcome = Outcome::Drained;
        ServeError { error, outcome }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server failed: {} (shutdown {})",
            self.error, self.outcome
        )
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ServeError> for io::Error {
    /// The failure's own error kind, with the whole [`ServeError`] (and so the
    /// drain's outcome) as its inner error, so that `?` works in a function
    /// returning `io::Result`.
    fn from(error: ServeError) -> io::Error {
        io::Error::new(error.error.kind(), error)
    }
}
