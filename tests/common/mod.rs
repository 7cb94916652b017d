//! Shared test helpers: a small executor abstraction (std threads with
//! `futures_lite::future::block_on`, tokio's multi-thread runtime, smol), a
//! watchdog that fails a hung case with a diagnostic, and test connections that
//! record what the coordinator did to them.
//!
//! Each integration test binary compiles this module on its own and uses only part
//! of it, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::any::Any;
use std::fmt::Write as _;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use wind_down::{GracefulConnection, Shutdown};

/// How long a case may run before the watchdog declares it hung. Only catches
/// hangs: no assertion depends on timing.
pub const WATCHDOG: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 30 });

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs futures. `spawn` puts a future on another thread or task; the returned
/// [`Join`] must be awaited, and re-raises a panic of the spawned future.
pub trait Exec: Clone + Send + Sync + 'static {
    const NAME: &'static str;
    /// Starts the executor; the second value tears it down.
    fn start() -> (Self, Teardown);
    fn block_on<F: Future>(&self, fut: F) -> F::Output;
    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Join<T>;
    /// A real sleep, for deadlines and for polling a condition in [`eventually`].
    fn sleep(&self, dur: Duration) -> BoxFuture<()>;
}

/// Tears an executor down after a case; skipped when the case hung.
pub struct Teardown(Option<Box<dyn FnOnce() + Send>>);

impl Teardown {
    pub fn none() -> Self {
        Teardown(None)
    }

    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Teardown(Some(Box::new(f)))
    }

    fn run(mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }

    fn leak(self) {
        std::mem::forget(self);
    }
}

/// The output of a spawned future.
pub struct Join<T>(BoxFuture<T>);

impl<T> Future for Join<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.0.as_mut().poll(cx)
    }
}

/// A one-shot channel carrying a thread's result, for [`Blocking::spawn`].
struct Slot<T> {
    value: Option<thread::Result<T>>,
    waker: Option<Waker>,
}

fn oneshot<T: Send + 'static>() -> (impl FnOnce(thread::Result<T>), Join<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let tx = {
        let slot = slot.clone();
        move |value| {
            let waker = {
                let mut slot = slot.lock().unwrap();
                slot.value = Some(value);
                slot.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    };
    let rx = futures_lite::future::poll_fn(move |cx| {
        let mut s = slot.lock().unwrap();
        match s.value.take() {
            Some(Ok(v)) => Poll::Ready(v),
            Some(Err(panic)) => resume_unwind(panic),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    });
    (tx, Join(Box::pin(rx)))
}

/// `futures_lite::future::block_on`, one std thread per spawned future.
#[derive(Clone, Copy, Debug)]
pub struct Blocking;

impl Exec for Blocking {
    const NAME: &'static str = "blocking";

    fn start() -> (Self, Teardown) {
        (Blocking, Teardown::none())
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        futures_lite::future::block_on(fut)
    }

    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        let (tx, join) = oneshot();
        thread::Builder::new()
            .name("blocking-spawn".into())
            .spawn(move || {
                tx(catch_unwind(AssertUnwindSafe(|| {
                    futures_lite::future::block_on(fut)
                })))
            })
            .expect("spawn thread");
        join
    }

    fn sleep(&self, dur: Duration) -> BoxFuture<()> {
        let (tx, join) = oneshot();
        thread::Builder::new()
            .name("blocking-sleep".into())
            .spawn(move || {
                thread::sleep(dur);
                tx(Ok(()));
            })
            .expect("spawn thread");
        Box::pin(join)
    }
}

/// A tokio multi-thread runtime with two workers.
#[cfg(not(miri))]
#[derive(Clone, Debug)]
pub struct Tokio(tokio::runtime::Handle);

#[cfg(not(miri))]
impl Exec for Tokio {
    const NAME: &'static str = "tokio";

    fn start() -> (Self, Teardown) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let exec = Tokio(rt.handle().clone());
        (exec, Teardown::new(move || rt.shutdown_timeout(WATCHDOG)))
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }

    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        let handle = self.0.spawn(fut);
        Join(Box::pin(async move {
            match handle.await {
                Ok(v) => v,
                Err(e) => resume_unwind(e.into_panic()),
            }
        }))
    }

    fn sleep(&self, dur: Duration) -> BoxFuture<()> {
        // Created on first poll, inside the runtime's context.
        Box::pin(async move { tokio::time::sleep(dur).await })
    }
}

/// `smol::block_on`, with spawned futures on a `smol::Executor` run by two threads.
#[cfg(not(miri))]
#[derive(Clone)]
pub struct Smol(Arc<smol::Executor<'static>>);

#[cfg(not(miri))]
impl Exec for Smol {
    const NAME: &'static str = "smol";

    fn start() -> (Self, Teardown) {
        let ex = Arc::new(smol::Executor::new());
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let ex = ex.clone();
                let stop = stop_rx.clone();
                thread::Builder::new()
                    .name(format!("smol-{i}"))
                    .spawn(move || smol::block_on(ex.run(stop.recv())))
                    .expect("spawn thread")
            })
            .collect();
        let teardown = Teardown::new(move || {
            drop(stop_tx);
            for t in threads {
                let _closed = t.join().expect("smol executor thread");
            }
        });
        (Smol(ex), teardown)
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        smol::block_on(fut)
    }

    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        Join(Box::pin(self.0.spawn(fut)))
    }

    fn sleep(&self, dur: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::after(dur).await;
        })
    }
}

/// What the watchdog prints when a case hangs: the state of the coordinators the
/// case registered and the case's last notes.
#[derive(Clone, Default)]
pub struct Probe(Arc<Mutex<ProbeState>>);

#[derive(Default)]
struct ProbeState {
    scopes: Vec<(String, Shutdown)>,
    notes: Vec<String>,
}

impl Probe {
    /// Keeps a clone of `shutdown` to report its state. It holds a handle, so a case
    /// about dropping every handle must not observe: it writes notes instead.
    pub fn observe(&self, name: &str, shutdown: &Shutdown) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.scopes.push((name.to_owned(), shutdown.clone()));
    }

    pub fn note(&self, note: impl Into<String>) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.notes.push(note.into());
    }

    pub fn report(&self) -> String {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, sd) in &s.scopes {
            let _ = writeln!(
                out,
                "  {name}: remaining={} phase={}",
                sd.report().remaining,
                sd.phase()
            );
        }
        if s.scopes.is_empty() {
            out.push_str("  (no coordinator observed)\n");
        }
        let skip = s.notes.len().saturating_sub(20);
        for note in &s.notes[skip..] {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }

    fn clear(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.scopes.clear();
    }
}

/// What a case gets: its executor and its probe.
#[derive(Clone)]
pub struct Cx<E> {
    pub exec: E,
    pub probe: Probe,
}

/// Runs one case on executor `E`, failing it if it does not finish within [`WATCHDOG`].
pub fn run<E, F, Fut>(case: &str, body: F)
where
    E: Exec,
    F: FnOnce(Cx<E>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (exec, teardown) = E::start();
    let probe = Probe::default();
    let cx = Cx {
        exec: exec.clone(),
        probe: probe.clone(),
    };
    let (tx, rx) = mpsc::channel::<thread::Result<()>>();
    let worker = thread::Builder::new()
        .name(format!("{case}-{}", E::NAME))
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(move || exec.block_on(body(cx))));
            let _ = tx.send(result);
        })
        .expect("spawn case thread");
    match rx.recv_timeout(WATCHDOG) {
        Ok(result) => {
            let _ = worker.join();
            probe.clear();
            teardown.run();
            if let Err(panic) = result {
                resume_unwind(panic);
            }
        }
        Err(_) => {
            let report = probe.report();
            teardown.leak();
            panic!(
                "watchdog: case `{case}` on {} did not finish within {WATCHDOG:?}\n{report}",
                E::NAME
            );
        }
    }
}

/// Runs a blocking closure on a fresh thread with the watchdog; for tests that do
/// not use the executor abstraction.
pub fn with_watchdog<T: Send + 'static>(
    what: &str,
    diag: impl Fn() -> String,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(v)) => {
            let _ = worker.join();
            v
        }
        Ok(Err(panic)) => {
            let _ = worker.join();
            resume_unwind(panic)
        }
        Err(_) => panic!(
            "watchdog: {what} did not finish within {WATCHDOG:?}\n{}",
            diag()
        ),
    }
}

/// Waits, by polling every millisecond, until `cond` holds. Bounded by the
/// watchdog; panics with the probe's report if it somehow runs out first.
pub async fn eventually<E: Exec>(cx: &Cx<E>, what: &str, mut cond: impl FnMut() -> bool) {
    let rounds = 2 * WATCHDOG.as_millis();
    for _ in 0..rounds {
        if cond() {
            return;
        }
        cx.exec.sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}\n{}", cx.probe.report());
}

/// Polls `fut` once with a no-op waker.
pub fn poll_now<F: Future + Unpin + ?Sized>(fut: &mut F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(fut).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Drives every future to completion on the current task.
pub async fn join_all<T>(futs: Vec<BoxFuture<T>>) -> Vec<T> {
    let mut slots: Vec<(Option<BoxFuture<T>>, Option<T>)> =
        futs.into_iter().map(|f| (Some(f), None)).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in slots.iter_mut() {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *fut = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    slots
        .into_iter()
        .map(|(_, out)| out.expect("completed"))
        .collect()
}

/// Counts the polls of a future and flags its first pending poll.
pub struct Counted<F> {
    pub fut: F,
    pub polls: Arc<AtomicUsize>,
}

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, SeqCst);
        Pin::new(&mut self.fut).poll(cx)
    }
}

/// What a [`Conn`] saw.
#[derive(Debug, Default)]
pub struct ConnLog {
    /// Calls of `graceful_shutdown`.
    pub graceful: AtomicUsize,
    /// Polls of the connection itself.
    pub polls: AtomicUsize,
    /// Graceful calls that had happened when the connection was first polled.
    pub graceful_at_first_poll: AtomicUsize,
    /// Set by the destructor.
    pub dropped: AtomicBool,
    /// `report().remaining` of the observed coordinator, read in the destructor.
    pub watchers_at_drop: AtomicUsize,
    finish: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl ConnLog {
    /// Lets the connection complete on its next poll, and wakes it.
    pub fn finish(&self) {
        self.finish.store(true, SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    pub fn graceful(&self) -> usize {
        self.graceful.load(SeqCst)
    }

    pub fn dropped(&self) -> bool {
        self.dropped.load(SeqCst)
    }
}

/// A connection that stays pending until told to finish, optionally finishing as
/// soon as it is asked to shut down gracefully. Output: its `id`.
pub struct Conn {
    pub id: usize,
    pub log: Arc<ConnLog>,
    finish_on_graceful: bool,
    observer: Option<Shutdown>,
}

impl Conn {
    pub fn new(id: usize) -> (Conn, Arc<ConnLog>) {
        let log = Arc::new(ConnLog {
            watchers_at_drop: AtomicUsize::new(usize::MAX),
            ..ConnLog::default()
        });
        (
            Conn {
                id,
                log: log.clone(),
                finish_on_graceful: false,
                observer: None,
            },
            log,
        )
    }

    /// Completes on the poll right after `graceful_shutdown`.
    pub fn finish_on_graceful(mut self) -> Self {
        self.finish_on_graceful = true;
        self
    }

    /// Records `shutdown.report().remaining` in the destructor.
    pub fn observe(mut self, shutdown: &Shutdown) -> Self {
        self.observer = Some(shutdown.clone());
        self
    }
}

impl Future for Conn {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let log = &self.log;
        if log.polls.fetch_add(1, SeqCst) == 0 {
            log.graceful_at_first_poll
                .store(log.graceful.load(SeqCst), SeqCst);
        }
        let mut waker = log.waker.lock().unwrap();
        if log.finish.load(SeqCst) || (self.finish_on_graceful && log.graceful.load(SeqCst) > 0) {
            return Poll::Ready(self.id);
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl GracefulConnection for Conn {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.log.graceful.fetch_add(1, SeqCst);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(sd) = &self.observer {
            self.log
                .watchers_at_drop
                .store(sd.report().remaining, SeqCst);
        }
        self.log.dropped.store(true, SeqCst);
    }
}

/// Sets a flag when dropped; tracked futures hold one to prove their destructor ran.
pub struct DropFlag(pub Arc<AtomicBool>);

impl DropFlag {
    pub fn new() -> (DropFlag, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (DropFlag(flag.clone()), flag)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// A panic payload as text, for messages.
pub fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_owned()
    }
}

/// A small count for miri, a larger one otherwise.
pub const fn scaled(normal: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { normal }
}
