//! Measurement 3: shutdown fan-out. N tasks on a 2-worker tokio runtime each hold the
//! library's in-flight token and wait for its trigger; the time measured runs from
//! the trigger call to the library reporting "drained".

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::Config;
use crate::http::{NeverIo, idle_http1_conn};
use crate::report::{Group, Report};

/// Counts tasks that have registered their wait, and tasks that finished.
#[derive(Clone, Default)]
struct Probe {
    ready: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

impl Probe {
    /// Spawns `fut`, counting it ready once its first poll returned `Pending`
    /// (its waker is then registered with the library).
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, fut: F) {
        let ready = self.ready.clone();
        drop(tokio::spawn(async move {
            let mut fut = pin!(fut);
            let first = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if first.is_ready() {
                return;
            }
            ready.fetch_add(1, Ordering::Release);
            fut.await
        }));
    }

    fn finished(&self) {
        self.done.fetch_add(1, Ordering::Release);
    }

    async fn wait_ready(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ready.load(Ordering::Acquire) < n {
            assert!(Instant::now() < deadline, "fan-out tasks never got ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// One timed round: spawns `n` tasks, each holding the token from `enter` until
    /// the wait future from `enter` resolves (then it counts as finished and drops
    /// the token); once all are ready, times `drain` (trigger, then drained).
    async fn timed_round<T, W>(
        &self,
        n: usize,
        mut enter: impl FnMut() -> (T, W),
        drain: impl Future<Output = ()>,
    ) -> Duration
    where
        T: Send + 'static,
        W: Future + Send + 'static,
    {
        for _ in 0..n {
            let (token, wait) = enter();
            let p = self.clone();
            self.spawn(async move {
                let _ = wait.await;
                p.finished();
                drop(token);
            });
        }
        self.wait_ready(n).await;
        let start = Instant::now();
        drain.await;
        start.elapsed()
    }

    /// After the timed part: every task ran to its end (bounded wait, not timed).
    async fn check_done(&self, n: usize, case: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.done.load(Ordering::Acquire) < n {
            assert!(
                Instant::now() < deadline,
                "{case}: drained with {} of {n} tasks finished",
                self.done.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The hand-rolled floor: a tokio `Notify` for the trigger, an atomic count, and a
/// second `Notify` that the last task to leave fires.
#[derive(Default)]
struct Bare {
    triggered: AtomicBool,
    trigger: Notify,
    count: AtomicUsize,
    zero: Notify,
}

impl Bare {
    fn enter(self: &Arc<Self>) -> BareToken {
        self.count.fetch_add(1, Ordering::Relaxed);
        BareToken(self.clone())
    }

    async fn triggered(&self) {
        let notified = self.trigger.notified();
        if !self.triggered.load(Ordering::Acquire) {
            notified.await;
        }
    }

    async fn trigger_and_drain(&self) {
        self.triggered.store(true, Ordering::Release);
        self.trigger.notify_waiters();
        let zero = self.zero.notified();
        if self.count.load(Ordering::Acquire) != 0 {
            zero.await;
        }
    }
}

struct BareToken(Arc<Bare>);

impl Drop for BareToken {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.triggered.load(Ordering::Acquire)
        {
            self.0.zero.notify_one();
        }
    }
}

/// Not a library: [`Bare`] with `event-listener` (wind-down's notification
/// primitive) in place of tokio's `Notify` for the trigger.
#[derive(Default)]
struct ElBare {
    triggered: AtomicBool,
    trigger: event_listener::Event,
    count: AtomicUsize,
    zero: Notify,
}

impl ElBare {
    fn enter(self: &Arc<Self>) -> ElToken {
        self.count.fetch_add(1, Ordering::Relaxed);
        ElToken(self.clone())
    }

    async fn triggered(&self) {
        // Check, listen, re-check: the same protocol as wind-down's `Wait`.
        while !self.triggered.load(Ordering::Acquire) {
            let listener = self.trigger.listen();
            if self.triggered.load(Ordering::Acquire) {
                break;
            }
            listener.await;
        }
    }

    async fn trigger_and_drain(&self) {
        self.triggered.store(true, Ordering::Release);
        self.trigger.notify(usize::MAX);
        let zero = self.zero.notified();
        if self.count.load(Ordering::Acquire) != 0 {
            zero.await;
        }
    }
}

struct ElToken(Arc<ElBare>);

impl Drop for ElToken {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.triggered.load(Ordering::Acquire)
        {
            self.0.zero.notify_one();
        }
    }
}

/// A connection that is idle until asked to close, then completes at once.
struct IdleConn {
    asked: bool,
    probe: Probe,
}

impl Future for IdleConn {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.asked {
            this.probe.finished();
            Poll::Ready(())
        } else {
            Poll::Pending // woken only by the coordinator, after graceful_shutdown
        }
    }
}

impl wind_down::GracefulConnection for IdleConn {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.get_mut().asked = true;
    }
}

#[derive(Clone, Copy)]
enum Lib {
    Bare,
    EventListener,
    Slab,
    WindDownWatch,
    WindDownGuard,
    TokioGraceful,
    AsyncShutdown,
    Swansong,
    TokioUtil,
}

const PLAIN: [(Lib, &str); 9] = [
    (
        Lib::Bare,
        "baseline: tokio Notify + atomic count (hand-rolled)",
    ),
    (
        Lib::EventListener,
        "reference: event-listener Event + atomic count (hand-rolled)",
    ),
    (
        Lib::Slab,
        "reference: waker slab + atomic count (hand-rolled; see slab.rs)",
    ),
    (Lib::WindDownWatch, "wind-down watch(conn)"),
    (Lib::WindDownGuard, "wind-down guard() + triggered()"),
    (Lib::TokioGraceful, "tokio-graceful guard() + cancelled()"),
    (
        Lib::AsyncShutdown,
        "async-shutdown token + wait_shutdown_triggered()",
    ),
    (Lib::Swansong, "swansong guard() + shutting_down()"),
    (
        Lib::TokioUtil,
        "tokio-util TaskTracker token + cancelled_owned()",
    ),
];

/// One round of one library: set up `n` waiting tasks, then time trigger -> drained.
async fn plain_round(lib: Lib, n: usize, case: &str) -> Duration {
    let probe = Probe::default();
    let elapsed = match lib {
        Lib::Bare => {
            let bare = Arc::new(Bare::default());
            let enter = || {
                let b = bare.clone();
                (bare.enter(), async move { b.triggered().await })
            };
            probe.timed_round(n, enter, bare.trigger_and_drain()).await
        }
        Lib::EventListener => {
            let bare = Arc::new(ElBare::default());
            let enter = || {
                let b = bare.clone();
                (bare.enter(), async move { b.triggered().await })
            };
            probe.timed_round(n, enter, bare.trigger_and_drain()).await
        }
        Lib::Slab => {
            let bare = Arc::new(crate::slab::SlabBare::default());
            let enter = || (bare.enter(), bare.triggered());
            probe.timed_round(n, enter, bare.trigger_and_drain()).await
        }
        Lib::WindDownWatch => {
            let shutdown = wind_down::Shutdown::new();
            for _ in 0..n {
                let watched = shutdown.watch(IdleConn {
                    asked: false,
                    probe: probe.clone(),
                });
                probe.spawn(async move {
                    let _ = watched.await;
                });
            }
            probe.wait_ready(n).await;
            let start = Instant::now();
            shutdown.trigger();
            shutdown.drained().await;
            start.elapsed()
        }
        Lib::WindDownGuard => {
            let shutdown = wind_down::Shutdown::new();
            let enter = || (shutdown.guard().expect("not drained"), shutdown.triggered());
            let drain = async {
                shutdown.trigger();
                shutdown.drained().await;
            };
            probe.timed_round(n, enter, drain).await
        }
        Lib::TokioGraceful => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let shutdown = tokio_graceful::Shutdown::new(async move {
                let _ = rx.await;
            });
            for _ in 0..n {
                let guard = shutdown.guard();
                let p = probe.clone();
                probe.spawn(async move {
                    guard.cancelled().await;
                    p.finished();
                    drop(guard);
                });
            }
            probe.wait_ready(n).await;
            let start = Instant::now();
            let _ = tx.send(());
            shutdown.shutdown().await;
            start.elapsed()
        }
        Lib::AsyncShutdown => {
            let manager = async_shutdown::ShutdownManager::<()>::new();
            let enter = || {
                let token = manager.delay_shutdown_token().expect("running");
                (token, manager.wait_shutdown_triggered())
            };
            let drain = async {
                manager.trigger_shutdown(()).expect("first trigger");
                manager.wait_shutdown_complete().await;
            };
            probe.timed_round(n, enter, drain).await
        }
        Lib::Swansong => {
            let swansong = swansong::Swansong::new();
            let enter = || (swansong.guard(), swansong.shutting_down());
            let drain = async {
                swansong.shut_down().await;
            };
            probe.timed_round(n, enter, drain).await
        }
        Lib::TokioUtil => {
            let tracker = tokio_util::task::TaskTracker::new();
            let cancel = tokio_util::sync::CancellationToken::new();
            let enter = || (tracker.token(), cancel.clone().cancelled_owned());
            let drain = async {
                cancel.cancel();
                tracker.close();
                tracker.wait().await;
            };
            probe.timed_round(n, enter, drain).await
        }
    };
    probe.check_done(n, case).await;
    elapsed
}

#[derive(Clone, Copy)]
enum HyperLib {
    Bare,
    WindDown,
    HyperUtil,
}

const HYPER: [(HyperLib, &str); 3] = [
    (
        HyperLib::Bare,
        "baseline: Notify-triggered graceful_shutdown (hand-rolled)",
    ),
    (HyperLib::WindDown, "wind-down Shutdown::watch(conn)"),
    (
        HyperLib::HyperUtil,
        "hyper-util GracefulShutdown::watch(conn)",
    ),
];

/// One round over idle hyper HTTP/1 server connections (in-memory IO that never
/// has data): on the trigger each connection is asked to close gracefully.
async fn hyper_round(lib: HyperLib, n: usize, case: &str) -> Duration {
    let probe = Probe::default();
    let elapsed = match lib {
        HyperLib::Bare => {
            let bare = Arc::new(Bare::default());
            let enter = || {
                let token = bare.enter();
                let (bare, conn) = (bare.clone(), idle_http1_conn(NeverIo));
                let serve = async move {
                    let mut conn = pin!(conn);
                    let mut trigger = pin!(bare.triggered());
                    let mut asked = false;
                    poll_fn(|cx| {
                        if !asked && trigger.as_mut().poll(cx).is_ready() {
                            asked = true;
                            conn.as_mut().graceful_shutdown();
                        }
                        conn.as_mut().poll(cx)
                    })
                    .await
                };
                (token, serve)
            };
            probe.timed_round(n, enter, bare.trigger_and_drain()).await
        }
        HyperLib::WindDown => {
            let shutdown = wind_down::Shutdown::new();
            let enter = || ((), shutdown.watch(idle_http1_conn(NeverIo)));
            let drain = async {
                shutdown.trigger();
                shutdown.drained().await;
            };
            probe.timed_round(n, enter, drain).await
        }
        HyperLib::HyperUtil => {
            // `shutdown` consumes the coordinator that `watch` borrows, so this case
            // cannot hand both to `timed_round`.
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            for _ in 0..n {
                let watched = graceful.watch(idle_http1_conn(NeverIo));
                let p = probe.clone();
                probe.spawn(async move {
                    let _ = watched.await;
                    p.finished();
                });
            }
            probe.wait_ready(n).await;
            let start = Instant::now();
            graceful.shutdown().await;
            start.elapsed()
        }
    };
    probe.check_done(n, case).await;
    elapsed
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

pub fn sizes(cfg: &Config) -> [usize; 2] {
    [cfg.scaled_usize(10_000), cfg.scaled_usize(100_000)]
}

/// Measurement 3a: plain tasks, every library.
pub fn plain(cfg: &Config, report: &mut Report) {
    let note = "hyper-util is not in this table: its watch() takes only hyper's connection types (sealed trait), see 3b";
    fan_out(
        cfg,
        report,
        ["3a", "3a'"],
        "waiting tasks",
        &PLAIN,
        note,
        plain_round,
    );
}

/// Measurement 3b: idle hyper HTTP/1 connections, the libraries that watch them.
pub fn hyper(cfg: &Config, report: &mut Report) {
    let note = "the drain includes hyper closing and freeing each connection";
    fan_out(
        cfg,
        report,
        ["3b", "3b'"],
        "idle hyper HTTP/1 connections",
        &HYPER,
        note,
        hyper_round,
    );
}

/// One fan-out block per size: every library's `round` in rotating order, one
/// warm-up round discarded, times in ms.
fn fan_out<L, F>(
    cfg: &Config,
    report: &mut Report,
    ids: [&'static str; 2],
    what: &str,
    libs: &[(L, &'static str)],
    note: &str,
    round: impl Fn(L, usize, &'static str) -> F,
) where
    L: Copy,
    F: Future<Output = Duration> + Send + 'static,
{
    let rt = runtime();
    for (k, n) in sizes(cfg).into_iter().enumerate() {
        let mut group = Group::new(
            ids[k],
            format!("shutdown fan-out, N = {n} {what}, 2 tokio workers"),
            "ms from trigger to drained",
        );
        for &(_, name) in libs {
            group.row(name);
        }
        for r in 0..cfg.rounds + 1 {
            for j in 0..libs.len() {
                let i = (j + r) % libs.len();
                let (lib, name) = libs[i];
                let elapsed = rt.block_on(rt.spawn(round(lib, n, name)));
                let elapsed = elapsed.expect("fan-out round panicked");
                if r > 0 {
                    group.rows[i].samples.push(elapsed.as_secs_f64() * 1e3);
                }
            }
        }
        group.note(format!("{} rounds after one warm-up; {note}", cfg.rounds));
        report.push(group);
    }
}
