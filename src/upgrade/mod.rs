//! Zero-downtime upgrades (feature `upgrade`, Unix): a new generation of the
//! program takes the listening sockets over while the old one drains.
//!
//! On request (a signal, SIGUSR2 by default, or [`Upgrade::request`]) the old
//! generation starts the new one (the same executable with the same arguments,
//! or [a command of yours](Upgrade::command)) with the listening sockets as
//! descriptors 3.. under the socket-activation protocol (`LISTEN_FDS`,
//! `LISTEN_FDNAMES`, `LISTEN_PID`), the one systemd uses: the new generation
//! takes them with [`listener`] (or `systemd::tcp_listener()`), and reports ready
//! once its server accepts ([`Upgrade`] is the [`Observer`] that says so). Only
//! then does the old generation stop accepting, tell its connections to go away,
//! drain within its grace period and exit; [`Upgrade::upgraded_to`] says it was
//! upgraded. The sockets are never closed, so nothing queued on them is lost: a
//! connection waiting in the backlog is accepted by whichever generation accepts
//! next.
//!
//! ```no_run
//! # #[cfg(all(feature = "tokio", feature = "hyper"))]
//! # async fn run() -> std::io::Result<()> {
//! use wind_down::{Server, hyper::Http, upgrade::{self, Upgrade}};
//! use wind_down::tokio::{Signals, Tokio, UpgradeSignal};
//!
//! let signals = Signals::new()?;
//! let listener = match upgrade::listener("http")? {
//!     Some(inherited) => tokio::net::TcpListener::from_std(inherited)?,
//!     None => tokio::net::TcpListener::bind("127.0.0.1:3000").await?,
//! };
//! let upgrade = Upgrade::new().listener("http", &listener)?;
//! let server = Server::new(Tokio::current(), listener)
//!     .signals(upgrade.signals(signals, UpgradeSignal::new()?))
//!     .observe(upgrade.clone()); // tells the previous generation, if any, "ready"
//! let outcome = Http::new(server)
//!     .serve(hyper::service::service_fn(|_| async {
//!         Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
//!     }))
//!     .await?;
//! if let Some(pid) = upgrade.upgraded_to() {
//!     println!("upgraded to {pid}; {outcome}");
//! }
//! # Ok(()) }
//! ```
//!
//! Invariants:
//! - the old generation stops accepting only after the new one reported ready;
//!   until then, and whenever an upgrade fails, it serves as before;
//! - at most one upgrade runs at a time: a request during one is refused
//!   ([`UpgradeEvent::Refused`]), never queued;
//! - a new generation that exits before it is ready, or is not ready within the
//!   [timeout](Upgrade::ready_timeout), is killed and reaped, and the failure is
//!   reported ([`UpgradeEvent::Failed`]);
//! - SIGINT and SIGTERM are heard during an upgrade: one cancels it (the new
//!   generation is killed) and starts the drain as always;
//! - the duplicates of the listening sockets kept for upgrades are closed when
//!   shutdown starts, by a signal or an upgrade, so a socket closes when the
//!   last generation that serves it stops accepting.
//!
//! Under systemd (`Type=notify`), the old generation sends `MAINPID=` with the
//! new one's pid once it is ready; the new generation's own notifications need
//! `NotifyAccess=all` in the unit.

mod spawn;

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future;

use self::spawn::Generation;
use crate::log;
use crate::server::observer::Observer;
use crate::signal::{Signal, SignalSource};

/// The environment variable through which a new generation reports ready: the
/// path of the old generation's datagram socket.
pub(crate) const READY_SOCKET: &str = "WIND_DOWN_UPGRADE_READY";

/// The default bound on a new generation's start, to ready: 30 s.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The inherited listening TCP socket named `name` (`LISTEN_FDNAMES`), passed by
/// a previous generation's [`Upgrade`] or by systemd (`FileDescriptorName=`),
/// made non-blocking; `None` if there is none, or it was taken already.
///
/// # Errors
///
/// If `LISTEN_FDS`, meant for this process, is not a count of descriptors
/// (`LISTEN_FDS=99999999999`, say); if the descriptor is not a listening TCP
/// socket, or cannot be made non-blocking.
pub fn listener(name: &str) -> io::Result<Option<std::net::TcpListener>> {
    crate::inherited::tcp_listener(Some(name))
}

/// What happened to an upgrade, as told to [`Upgrade::on_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeEvent {
    /// The new generation was started, with this pid.
    Started {
        /// Its process id.
        pid: u32,
    },
    /// The new generation reported ready: this generation stops accepting.
    Ready {
        /// Its process id.
        pid: u32,
    },
    /// The upgrade failed; this generation keeps serving.
    Failed {
        /// Why.
        reason: String,
    },
    /// A request came while an upgrade was under way (or after one succeeded),
    /// and was refused.
    Refused,
}

impl fmt::Display for UpgradeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeEvent::Started { pid } => write!(f, "upgrade started: new generation {pid}"),
            UpgradeEvent::Ready { pid } => write!(f, "upgrade ready: new generation {pid}"),
            UpgradeEvent::Failed { reason } => write!(f, "upgrade failed: {reason}"),
            UpgradeEvent::Refused => f.write_str("upgrade refused: one is under way"),
        }
    }
}

/// A source of upgrade requests: the `tokio` and `smol` adapters'
/// `UpgradeSignal` (SIGUSR2 by default).
pub trait UpgradeRequests: Send + 'static {
    /// Resolves at the next request. An error stops listening for requests
    /// ([`Upgrade::request`] still works); signals are still heard.
    fn next(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

type EventHook = Arc<dyn Fn(&UpgradeEvent) + Send + Sync>;

/// Where an upgrader is.
enum State {
    /// Serving; an upgrade may start.
    Idle,
    /// An upgrade is under way.
    Upgrading,
    /// Upgraded: the new generation with this pid serves.
    Upgraded(u32),
    /// Shutting down without an upgrade: no more upgrades.
    Closed,
}

/// How an upgrader starts the new generation, and whom it tells.
#[derive(Clone)]
struct Settings {
    command: Option<(OsString, Vec<OsString>)>,
    ready_timeout: Duration,
    on_event: Option<EventHook>,
    /// The sockets go to systemd's fd store when serving starts.
    store_in_systemd: bool,
}

struct Inner {
    /// The sockets to hand over, by name; emptied when shutdown starts.
    listeners: Mutex<Vec<(String, OwnedFd)>>,
    /// Shared by every clone: set on one, seen by all.
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// A request by [`Upgrade::request`].
    requested: event_listener::Event,
    request_pending: AtomicBool,
    /// Ready was reported to the previous generation.
    reported_ready: AtomicBool,
}

/// Zero-downtime upgrades for one program: the sockets to hand over, how to
/// start the new generation, and what happened. Clone it freely: clones share
/// everything, settings included. See the [module](self).
#[derive(Clone)]
pub struct Upgrade(Arc<Inner>);

impl Default for Upgrade {
    fn default() -> Self {
        Upgrade::new()
    }
}

impl Upgrade {
    /// An upgrader with no socket to hand over yet, that starts the same
    /// executable with the same arguments, within [`DEFAULT_READY_TIMEOUT`].
    pub fn new() -> Self {
        Upgrade(Arc::new(Inner {
            listeners: Mutex::new(Vec::new()),
            settings: Mutex::new(Settings {
                command: None,
                ready_timeout: DEFAULT_READY_TIMEOUT,
                on_event: None,
                store_in_systemd: false,
            }),
            state: Mutex::new(State::Idle),
            requested: event_listener::Event::new(),
            request_pending: AtomicBool::new(false),
            reported_ready: AtomicBool::new(false),
        }))
    }

    /// The settings, as they are now.
    fn settings(&self) -> Settings {
        self.0
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn configure(self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.0.settings.lock().unwrap_or_else(|p| p.into_inner()));
        self
    }

    /// Hands `listener` over as `name` (the new generation takes it with
    /// [`listener`]`(name)`). The socket is duplicated: the server keeps its own.
    /// Names are the order of the descriptors, 3 first; a name must not contain
    /// `:`.
    ///
    /// # Errors
    ///
    /// If `name` is empty or contains `:`, or the socket cannot be duplicated.
    pub fn listener(self, name: &str, listener: &impl AsFd) -> io::Result<Self> {
        if name.is_empty() || name.contains(':') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket name {name:?}: must be non-empty, without ':' (LISTEN_FDNAMES)"),
            ));
        }
        let fd = listener.as_fd().try_clone_to_owned()?;
        let mut listeners = self.0.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.push((name.to_owned(), fd));
        drop(listeners);
        Ok(self)
    }

    /// Starts `program` with `args` as the new generation, instead of this
    /// executable with this process's arguments.
    pub fn command(
        self,
        program: impl Into<OsString>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        let command = (program.into(), args.into_iter().map(Into::into).collect());
        self.configure(|settings| settings.command = Some(command))
    }

    /// How long the new generation may take to report ready before it is killed
    /// and this one keeps serving. Defaults to [`DEFAULT_READY_TIMEOUT`].
    pub fn ready_timeout(self, timeout: Duration) -> Self {
        self.configure(|settings| settings.ready_timeout = timeout)
    }

    /// Also hands the sockets to systemd's fd store (`FDSTORE=1`, named with
    /// `FDNAME=`) when the server starts accepting (Linux, under a service with
    /// `FileDescriptorStoreMax=`): systemd keeps them open across a
    /// `systemctl restart` and passes them back, by name, to the next start, so
    /// even a restart keeps what is queued on them. Nothing is sent without
    /// `NOTIFY_SOCKET`.
    pub fn store_in_systemd(self) -> Self {
        self.configure(|settings| settings.store_in_systemd = true)
    }

    /// Calls `callback` with what happens to each upgrade (also a `tracing`
    /// event with the `tracing` feature).
    pub fn on_event(self, callback: impl Fn(&UpgradeEvent) + Send + Sync + 'static) -> Self {
        let hook: EventHook = Arc::new(callback);
        self.configure(|settings| settings.on_event = Some(hook))
    }

    /// Requests an upgrade, as the upgrade signal does: the server whose signal
    /// source is this upgrader's [`signals`](Upgrade::signals) runs it. Refused
    /// (an event, [`UpgradeEvent::Refused`]) while one is under way.
    pub fn request(&self) {
        self.0.request_pending.store(true, Ordering::SeqCst);
        self.0.requested.notify(usize::MAX);
    }

    /// The pid of the generation this one was upgraded to, once it reported ready.
    pub fn upgraded_to(&self) -> Option<u32> {
        match *self.0.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Upgraded(pid) => Some(pid),
            _ => None,
        }
    }

    /// The signal source for [`Server::signals`](crate::Server::signals):
    /// `signals` (SIGINT, SIGTERM) as they are, and an upgrade at each of
    /// `requests` (and [`request`](Upgrade::request)); a successful upgrade is
    /// heard by the server as a terminating signal (the drain starts).
    pub fn signals<S: SignalSource, U: UpgradeRequests>(
        &self,
        signals: S,
        requests: U,
    ) -> Upgrading<S, U> {
        Upgrading {
            upgrade: self.clone(),
            signals,
            requests: Some(requests),
            running: None,
        }
    }

    fn tell(&self, event: UpgradeEvent) {
        match &event {
            UpgradeEvent::Failed { .. } | UpgradeEvent::Refused => log::warning!("{event}"),
            _ => log::info!("{event}"),
        }
        if let Some(hook) = self.settings().on_event {
            hook(&event);
        }
    }

    /// Takes the state from idle to upgrading; `false` (refused) otherwise.
    fn begin(&self) -> bool {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Idle => {
                *state = State::Upgrading;
                true
            }
            _ => false,
        }
    }

    /// Ends an upgrade: upgraded to `Some(pid)`, or failed (serving as before).
    fn finish(&self, upgraded: Option<u32>) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match upgraded {
            Some(pid) => State::Upgraded(pid),
            None => State::Idle,
        };
        drop(state);
        if upgraded.is_some() {
            self.release_listeners();
        }
    }

    /// Shutdown starts without an upgrade: no more upgrades, and the sockets'
    /// duplicates are closed.
    fn close(&self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*state, State::Upgraded(_)) {
            *state = State::Closed;
        }
        drop(state);
        self.release_listeners();
    }

    fn release_listeners(&self) {
        let mut listeners = self.0.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.clear();
    }

    /// Starts one upgrade: the new generation, and a thread of its own that
    /// waits until it is ready, exits or times out, or `cancel` is set.
    fn start(&self) -> Result<(Running, spawn::Receiver<Result<u32, String>>), String> {
        let listeners = {
            let listeners = self.0.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let mut copies = Vec::with_capacity(listeners.len());
            for (name, fd) in listeners.iter() {
                let fd = fd
                    .try_clone()
                    .map_err(|e| format!("duplicating {name}: {e}"))?;
                copies.push((name.clone(), fd));
            }
            copies
        };
        let settings = self.settings();
        let cancel = Arc::new(AtomicBool::new(false));
        let generation = Generation {
            listeners,
            command: settings.command,
            ready_timeout: settings.ready_timeout,
            cancel: cancel.clone(),
        };
        let (sender, result) = spawn::oneshot();
        let upgrade = self.clone();
        let thread = std::thread::Builder::new()
            .name("wind-down-upgrade".into())
            .spawn(move || {
                let outcome = generation.start_and_wait(|pid| {
                    upgrade.tell(UpgradeEvent::Started { pid });
                });
                sender.send(outcome);
            })
            .map_err(|e| format!("starting the upgrade thread: {e}"))?;
        Ok((Running { cancel, thread }, result))
    }
}

/// An upgrade under way: its thread, and how to cancel it.
struct Running {
    cancel: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Cancels it and waits for its thread, which kills and reaps the new
    /// generation within about 20 ms.
    fn cancel(self) {
        self.cancel.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("upgraded_to", &self.upgraded_to())
            .field("ready_timeout", &self.settings().ready_timeout)
            .finish_non_exhaustive()
    }
}

impl Observer for Upgrade {
    /// Reports ready to the previous generation, if this process is a new
    /// generation started by an upgrade (once); and hands the sockets to
    /// systemd's fd store, if [asked](Upgrade::store_in_systemd).
    fn ready(&self) {
        if self.settings().store_in_systemd {
            let listeners = self.0.listeners.lock().unwrap_or_else(|p| p.into_inner());
            for (name, fd) in listeners.iter() {
                spawn::store_in_systemd(name, fd);
            }
        }
        let Some(path) = std::env::var_os(READY_SOCKET) else {
            return;
        };
        if self.0.reported_ready.swap(true, Ordering::SeqCst) {
            return;
        }
        let sent = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|socket| socket.send_to(b"READY=1", &path));
        if let Err(error) = sent {
            log::warning!("reporting ready to the previous generation failed: {error}");
        }
    }
}

/// The signal source of [`Upgrade::signals`].
pub struct Upgrading<S, U> {
    upgrade: Upgrade,
    signals: S,
    /// `None` once the requests' source failed.
    requests: Option<U>,
    /// The upgrade under way, if any.
    running: Option<Running>,
}

impl<S, U> Drop for Upgrading<S, U> {
    /// The server is done with its signals: an upgrade still under way is
    /// cancelled, and its new generation killed before this returns (a bounded
    /// wait of about 20 ms), so that it does not outlive this process.
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel();
        }
    }
}

/// What a wait heard first.
enum Heard {
    Signal(io::Result<Signal>),
    Request(io::Result<()>),
    Upgraded(Result<u32, String>),
}

impl<S: SignalSource, U: UpgradeRequests> Upgrading<S, U> {
    /// The next upgrade request: from the requests' source or a call.
    async fn request(requests: &mut Option<U>, inner: &Inner) -> io::Result<()> {
        let called = async {
            // Bounded: each round waits for a notification, then checks.
            loop {
                if inner.request_pending.swap(false, Ordering::SeqCst) {
                    return Ok(());
                }
                let listener = inner.requested.listen();
                if inner.request_pending.swap(false, Ordering::SeqCst) {
                    return Ok(());
                }
                listener.await;
            }
        };
        match requests {
            Some(requests) => future::or(requests.next(), called).await,
            None => called.await,
        }
    }
}

impl<S: SignalSource, U: UpgradeRequests> SignalSource for Upgrading<S, U> {
    async fn recv(&mut self) -> io::Result<Signal> {
        // Bounded by the signals: every round waits for one, or for a request
        // whose upgrade ends (or is cancelled by a signal).
        loop {
            let heard = future::or(async { Heard::Signal(self.signals.recv().await) }, async {
                Heard::Request(Self::request(&mut self.requests, &self.upgrade.0).await)
            })
            .await;
            match heard {
                Heard::Signal(signal) => {
                    self.upgrade.close();
                    return signal;
                }
                Heard::Request(Err(error)) => {
                    log::warning!("upgrade requests failed: {error}; listening for signals only");
                    self.requests = None;
                }
                Heard::Request(Ok(())) => {
                    if !self.upgrade.begin() {
                        self.upgrade.tell(UpgradeEvent::Refused);
                        continue;
                    }
                    let (running, result) = match self.upgrade.start() {
                        Ok(started) => started,
                        Err(reason) => {
                            self.upgrade.finish(None);
                            self.upgrade.tell(UpgradeEvent::Failed { reason });
                            continue;
                        }
                    };
                    self.running = Some(running);
                    let upgrading = result.recv();
                    let mut upgrading = std::pin::pin!(upgrading);
                    // Bounded: each round ends the upgrade, or refuses a request.
                    let heard = loop {
                        let heard = future::or(
                            async { Heard::Upgraded(upgrading.as_mut().await) },
                            future::or(async { Heard::Signal(self.signals.recv().await) }, async {
                                let request = &mut self.requests;
                                Heard::Request(Self::request(request, &self.upgrade.0).await)
                            }),
                        )
                        .await;
                        match heard {
                            Heard::Request(Ok(())) => self.upgrade.tell(UpgradeEvent::Refused),
                            Heard::Request(Err(error)) => {
                                log::warning!("upgrade requests failed: {error}");
                                self.requests = None;
                            }
                            heard => break heard,
                        }
                    };
                    let running = self.running.take().expect("an upgrade under way");
                    match heard {
                        Heard::Upgraded(Ok(pid)) => {
                            let _ = running.thread.join();
                            self.upgrade.finish(Some(pid));
                            spawn::tell_systemd_main_pid(pid);
                            self.upgrade.tell(UpgradeEvent::Ready { pid });
                            return Ok(Signal::Terminate);
                        }
                        Heard::Upgraded(Err(reason)) => {
                            let _ = running.thread.join();
                            self.upgrade.finish(None);
                            self.upgrade.tell(UpgradeEvent::Failed { reason });
                        }
                        Heard::Signal(signal) => {
                            // Cancelled: the new generation is killed and reaped
                            // before the drain starts.
                            running.cancel();
                            let reason = "cancelled by a signal".to_string();
                            self.upgrade.tell(UpgradeEvent::Failed { reason });
                            self.upgrade.close();
                            return signal;
                        }
                        Heard::Request(_) => unreachable!("requests are handled in the loop"),
                    }
                }
                Heard::Upgraded(_) => unreachable!("no upgrade runs here"),
            }
        }
    }
}

impl<S, U> fmt::Debug for Upgrading<S, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrading")
            .field("upgrade", &self.upgrade)
            .finish_non_exhaustive()
    }
}
