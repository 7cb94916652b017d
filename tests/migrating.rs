//! The migration guides' rows whose peers behave differently from a one-to-one
//! rename, run side by side with the peer (a dev-dependency): each test asserts the
//! same observable behaviour for the peer's form and the wind-down form the guide
//! gives, or the difference the guide documents.
//!
//! Timeouts here only catch hangs; "not yet" is checked with a single poll.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_lite::future::poll_once;
use wind_down::Shutdown;

const HANG: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Polls `fut` a few times, yielding to the runtime in between: `None` if it is
/// still pending after that.
async fn settled<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    for _ in 0..10 {
        if let Some(out) = poll_once(&mut *fut).await {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// Sets its flag when dropped: tells whether a task's future is still alive.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// tokio-graceful's `shutdown_with_limit(d)` first waits for its signal; the
/// guide's form (`triggered().await`, then `drain_until`) too. `drain_until`
/// alone would trigger at once: the difference the row states.
#[test]
fn tokio_graceful_shutdown_with_limit_waits_for_the_signal_as_the_guide_does() {
    runtime().block_on(async {
        let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
        let peer = tokio_graceful::Shutdown::new(async move {
            let _ = signalled.await;
        });
        let mut peer_done = Box::pin(peer.shutdown_with_limit(Duration::from_secs(10)));

        let shutdown = Shutdown::new();
        let ours = shutdown.clone();
        let mut ours_done = Box::pin(async move {
            ours.triggered().await;
            ours.drain_until(tokio::time::sleep(Duration::from_secs(10)))
                .await
        });

        assert!(
            settled(&mut peer_done).await.is_none(),
            "the peer did not wait"
        );
        assert!(
            settled(&mut ours_done).await.is_none(),
            "the guide's form did not wait"
        );
        // `drain_until` alone does not wait: it triggers.
        let alone = Shutdown::new();
        assert!(
            alone
                .drain_until(std::future::pending::<()>())
                .await
                .is_drained()
        );

        signal.send(()).unwrap();
        shutdown.trigger(); // the same signal, for wind-down
        let peer_result = tokio::time::timeout(HANG, peer_done)
            .await
            .expect("peer hung");
        assert!(peer_result.is_ok());
        let outcome = tokio::time::timeout(HANG, ours_done)
            .await
            .expect("ours hung");
        assert!(outcome.is_drained());
    });
}

/// hyper-util's `watcher()` holds `shutdown()` until dropped; so does the guide's
/// `guard()`. A `Shutdown` clone does not hold the drain.
#[test]
fn hyper_util_watcher_holds_the_drain_as_a_guard_does_and_a_clone_does_not() {
    runtime().block_on(async {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let watcher = graceful.watcher();
        let mut peer_done = Box::pin(graceful.shutdown());

        let shutdown = Shutdown::new();
        let guard = shutdown.guard().unwrap();
        let mut ours_done = Box::pin(shutdown.drain_until(std::future::pending::<()>()));

        assert!(
            settled(&mut peer_done).await.is_none(),
            "the watcher did not hold"
        );
        assert!(
            settled(&mut ours_done).await.is_none(),
            "the guard did not hold"
        );
        drop(watcher);
        drop(guard);
        tokio::time::timeout(HANG, peer_done)
            .await
            .expect("peer hung");
        let outcome = tokio::time::timeout(HANG, ours_done)
            .await
            .expect("ours hung");
        assert!(outcome.is_drained());

        // A clone is a handle only.
        let shutdown = Shutdown::new();
        let _clone = shutdown.clone();
        let outcome = shutdown.drain_until(std::future::pending::<()>()).await;
        assert!(outcome.is_drained(), "a clone held the drain");
    });
}

/// tokio-util's `tracker.wait()` under a timeout leaves its tasks running after
/// the timeout; `drain_until` forces at its deadline and the tracked futures are
/// dropped: the difference the row states.
#[test]
fn tokio_util_tracker_tasks_outlive_the_timeout_where_drain_until_forces() {
    runtime().block_on(async {
        let tracker = tokio_util::task::TaskTracker::new();
        let peer_dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(peer_dropped.clone());
        let peer_task = tracker.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        tracker.close();
        let waited = tokio::time::timeout(Duration::from_millis(20), tracker.wait()).await;
        assert!(waited.is_err(), "the peer's wait ended");
        tokio::task::yield_now().await;
        assert!(
            !peer_dropped.load(Ordering::SeqCst),
            "the peer's task was dropped"
        );
        assert!(!peer_task.is_finished(), "the peer's task ended");
        peer_task.abort();

        let shutdown = Shutdown::new();
        let ours_dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(ours_dropped.clone());
        let ours_task = tokio::spawn(shutdown.track(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        }));
        tokio::task::yield_now().await;
        let outcome = shutdown
            .drain_until(tokio::time::sleep(Duration::from_millis(20)))
            .await;
        assert!(!outcome.is_drained(), "the drain was not forced");
        let stopped = tokio::time::timeout(HANG, ours_task).await.expect("hung");
        assert!(stopped.unwrap().is_err(), "a forced tracked future says so");
        assert!(
            ours_dropped.load(Ordering::SeqCst),
            "the tracked future is still alive"
        );
    });
}

/// tokio-util's rows, each against the guide's wind-down form: a new token is
/// not cancelled; `cancel` wakes `cancelled()` and sets `is_cancelled`; a child
/// token follows its parent; `run_until_cancelled` answers with the output
/// before, `None` after; the owned forms are a moved clone; tracked tasks count in
/// `len`; `tracker.token()` holds `wait` as a guard holds the drain; a closed,
/// empty tracker is a drained coordinator; the drop guard is the dropped last
/// handle; `reopen` has no counterpart (a new `Shutdown`).
#[test]
fn tokio_util_rows_behave_alike() {
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;
    use wind_down::Phase;
    runtime().block_on(async {
        // new, is_cancelled
        let token = CancellationToken::new();
        let shutdown = Shutdown::new();
        assert!(!token.is_cancelled());
        assert!(shutdown.phase() < Phase::Triggered);
        // child_token, run_until_cancelled (before)
        let child_token = token.child_token();
        let child = shutdown.child();
        assert_eq!(token.run_until_cancelled(async { 7 }).await, Some(7));
        assert_eq!(shutdown.run_until_triggered(async { 7 }).await, Some(7));
        // the owned forms: a clone moved into the future
        let owned_peer = tokio::spawn(token.clone().cancelled_owned());
        let ours = shutdown.clone();
        let owned_ours = tokio::spawn(async move { ours.triggered().await });
        let (mut peer_cancelled, mut ours_triggered) =
            (Box::pin(token.cancelled()), Box::pin(shutdown.triggered()));
        assert!(settled(&mut peer_cancelled).await.is_none());
        assert!(settled(&mut ours_triggered).await.is_none());
        // cancel / trigger
        token.cancel();
        shutdown.trigger();
        within(peer_cancelled).await;
        within(ours_triggered).await;
        within(owned_peer).await.unwrap();
        within(owned_ours).await.unwrap();
        assert!(token.is_cancelled());
        assert!(shutdown.phase() >= Phase::Triggered);
        assert!(child_token.is_cancelled(), "the child token");
        within(child.triggered()).await;
        // run_until_cancelled (after)
        assert_eq!(token.run_until_cancelled(async { 7 }).await, None);
        assert_eq!(shutdown.run_until_triggered(async { 7 }).await, None);

        // spawn + len, token() vs guard(), close + is_closed + is_empty
        let tracker = TaskTracker::new();
        let shutdown = Shutdown::new();
        let (release, released) = tokio::sync::watch::channel(false);
        let wait_release = |mut released: tokio::sync::watch::Receiver<bool>| async move {
            let _ = released.wait_for(|r| *r).await;
        };
        tracker.spawn(wait_release(released.clone()));
        tokio::spawn(shutdown.track(wait_release(released.clone())));
        tokio::task::yield_now().await;
        assert_eq!(tracker.len(), 1);
        assert_eq!(shutdown.report().remaining, 1);
        let token = tracker.token();
        let guard = shutdown.guard().unwrap();
        tracker.close();
        shutdown.trigger();
        assert!(tracker.is_closed() && !tracker.is_empty());
        assert_eq!(shutdown.phase(), Phase::Triggered);
        release.send(true).unwrap();
        let mut peer_wait = Box::pin(tracker.wait());
        let mut ours_drained = Box::pin(shutdown.drained());
        assert!(
            settled(&mut peer_wait).await.is_none(),
            "token() did not hold wait()"
        );
        assert!(
            settled(&mut ours_drained).await.is_none(),
            "guard() did not hold the drain"
        );
        drop((token, guard));
        within(peer_wait).await;
        within(ours_drained).await;
        assert!(tracker.is_empty());
        assert_eq!(shutdown.report().remaining, 0);
        // reopen: the tracker takes tasks again; a drained coordinator refuses
        // them, for good (the guide's difference 1: use a new `Shutdown`).
        tracker.reopen();
        assert!(!tracker.is_closed());
        assert!(
            shutdown.guard().is_err(),
            "a drained coordinator admitted a guard"
        );

        // drop_guard: dropping it cancels; dropping a root's last handle triggers.
        let token = CancellationToken::new();
        let peer = Box::pin(token.clone().cancelled_owned());
        drop(token.drop_guard());
        within(peer).await;
        let shutdown = Shutdown::new();
        let triggered = shutdown.triggered();
        drop(shutdown);
        within(triggered).await;
    });
}

/// swansong's rows: `shut_down` and its completion, `shutting_down`, guards,
/// `interrupt`, `guarded`, children, the guard count, the state, and the guard
/// report (a labelled guard is named in `Shutdown::report()`).
#[test]
fn swansong_rows_behave_alike() {
    use swansong::{ShutdownState, Swansong};
    use wind_down::Phase;
    runtime().block_on(async {
        let swansong = Swansong::new();
        let shutdown = Shutdown::new();
        assert!(swansong.state().is_running());
        assert_eq!(swansong.state(), ShutdownState::Running);
        assert_eq!(shutdown.phase(), Phase::Running);
        // child, guard, guarded, guard_count
        let (peer_child, our_child) = (swansong.child(), shutdown.child());
        let peer_guard = peer_child.guard();
        let our_guard = our_child
            .guard()
            .expect("not drained")
            .with_label("request");
        let mut peer_guarded = Box::pin(swansong.guarded(async { 1 }));
        let mut our_guarded = Box::pin(shutdown.track(async { 1 }));
        assert_eq!(swansong.guard_count(), 2);
        assert_eq!(shutdown.report().remaining, 2);
        // guard_report / with_guard_report: who holds the shutdown
        let named = shutdown
            .report()
            .stragglers
            .iter()
            .any(|s| s.to_string().contains("request"));
        assert!(named, "{:?}", shutdown.report());
        // interrupt on a child that was collected: swansong's ends at once (a
        // dropped child is shut down); ours runs until the parent's trigger (a
        // dropped child scope is not triggered): the difference the row states.
        let peer_orphan = swansong.child().interrupt(std::future::pending::<()>());
        assert_eq!(within(peer_orphan).await, None);
        let mut our_orphan = Box::pin(
            shutdown
                .child()
                .run_until_triggered(std::future::pending::<()>()),
        );
        assert!(settled(&mut our_orphan).await.is_none());
        let mut peer_loop = Box::pin(swansong.interrupt(std::future::pending::<()>()));
        let mut our_loop = Box::pin(shutdown.run_until_triggered(std::future::pending::<()>()));
        assert!(settled(&mut peer_loop).await.is_none());
        assert!(settled(&mut our_loop).await.is_none());
        let mut peer_shutting_down = Box::pin(swansong.shutting_down());
        let mut our_triggered = Box::pin(shutdown.triggered());
        assert!(settled(&mut peer_shutting_down).await.is_none());
        assert!(settled(&mut our_triggered).await.is_none());
        // shut_down / trigger
        let mut peer_done = Box::pin(swansong.shut_down().into_future());
        shutdown.trigger();
        within(peer_shutting_down).await;
        within(our_triggered).await;
        assert_eq!(swansong.state(), ShutdownState::ShuttingDown);
        assert_eq!(shutdown.phase(), Phase::Triggered);
        assert_eq!(within(peer_loop).await, None);
        assert_eq!(within(our_loop).await, None);
        assert_eq!(within(our_orphan).await, None);
        assert_eq!(within(peer_guarded.as_mut()).await, 1);
        assert_eq!(within(our_guarded.as_mut()).await, Ok(1));
        let mut our_drained = Box::pin(shutdown.drained());
        assert!(
            settled(&mut peer_done).await.is_none(),
            "the guard did not hold"
        );
        assert!(
            settled(&mut our_drained).await.is_none(),
            "the guard did not hold"
        );
        // (A finished `Guarded` holds its guard until dropped; a finished
        // tracked future has let go already.)
        drop((peer_guard, our_guard, peer_guarded, our_guarded));
        within(peer_done).await;
        within(our_drained).await;
        assert!(swansong.state().is_complete());
        assert_eq!(shutdown.phase(), Phase::Drained);
        // After completion: swansong still hands out a guard; wind-down refuses
        // one (the guide's difference 1).
        assert!(shutdown.guard().is_err());
    });
}

/// tokio-graceful's rows: its signal is a future that triggers; a guard holds
/// the shutdown as ours holds the drain; `cancelled()` is `triggered()`; a
/// spawned task counts until done; a weak guard is a `Shutdown` clone, which
/// holds nothing.
#[test]
fn tokio_graceful_rows_behave_alike() {
    runtime().block_on(async {
        let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
        let peer = tokio_graceful::Shutdown::new(async move {
            let _ = signalled.await;
        });
        let shutdown = Shutdown::new();
        let (peer_guard, our_guard) = (peer.guard(), shutdown.guard().unwrap());
        let weak = peer.guard().downgrade();
        let _handle = shutdown.clone();
        let mut peer_cancelled = Box::pin(async move {
            peer_guard.cancelled().await;
            peer_guard
        });
        let mut our_triggered = Box::pin(shutdown.triggered());
        assert!(settled(&mut peer_cancelled).await.is_none());
        assert!(settled(&mut our_triggered).await.is_none());
        let peer_task = peer.spawn_task(async { 3 });
        let our_task = tokio::spawn(shutdown.track(async { 3 }));
        assert_eq!(within(peer_task).await.unwrap(), 3);
        assert_eq!(within(our_task).await.unwrap(), Ok(3));
        // The signal, then `Shutdown::new()` + `signal.await; trigger()`.
        signal.send(()).unwrap();
        shutdown.trigger();
        let peer_guard = within(peer_cancelled).await;
        within(our_triggered).await;
        let mut peer_done = Box::pin(peer.shutdown_with_limit(Duration::from_secs(30)));
        let mut our_done = Box::pin(shutdown.drain_until(std::future::pending::<()>()));
        assert!(
            settled(&mut peer_done).await.is_none(),
            "the guard did not hold"
        );
        assert!(
            settled(&mut our_done).await.is_none(),
            "the guard did not hold"
        );
        drop((peer_guard, our_guard));
        // Weak guards and clones remain: neither holds the shutdown.
        assert!(within(peer_done).await.is_ok());
        assert!(within(our_done).await.is_drained());
        drop(weak);
    });
}

/// hyper-util's rows on a real hyper HTTP/1 connection: a new coordinator has
/// nothing to wait for; `watch` asks the connection to close at the shutdown and
/// waits for it; `count` is `report().remaining`. Racing `shutdown()` against a
/// sleep leaves hyper-util's connection running; `drain_until` forces (drops)
/// ours: the difference the row states.
#[cfg(feature = "http1")]
#[test]
fn hyper_util_rows_behave_alike() {
    use hyper_util::server::graceful::GracefulShutdown;
    /// An idle hyper connection over an in-memory pipe, and the client's end.
    fn idle_connection() -> (
        impl hyper_util::server::graceful::GracefulConnection<Error = hyper::Error>
        + wind_down::GracefulConnection<Output = Result<(), hyper::Error>>
        + Send
        + 'static,
        tokio::io::DuplexStream,
    ) {
        let (client, server) = tokio::io::duplex(1024);
        let service = hyper::service::service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        (conn, client)
    }
    /// Whether the server closed the client's end.
    async fn closed(client: &mut tokio::io::DuplexStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(HANG, client.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
    runtime().block_on(async {
        // new: nothing to wait for
        within(GracefulShutdown::new().shutdown()).await;
        assert!(
            Shutdown::new()
                .drain_until(std::future::pending::<()>())
                .await
                .is_drained()
        );
        // watch, count, shutdown
        let graceful = GracefulShutdown::new();
        let shutdown = Shutdown::new();
        let (peer_conn, mut peer_client) = idle_connection();
        let (our_conn, mut our_client) = idle_connection();
        tokio::spawn(graceful.watch(peer_conn));
        tokio::spawn(shutdown.watch(our_conn));
        assert_eq!(graceful.count(), 1);
        assert_eq!(shutdown.report().remaining, 1);
        within(graceful.shutdown()).await;
        assert!(
            shutdown
                .drain_until(std::future::pending::<()>())
                .await
                .is_drained()
        );
        assert!(closed(&mut peer_client).await && closed(&mut our_client).await);

        // select! { shutdown(), sleep(d) } against drain_until(sleep(d)), with a
        // task that never ends: hyper-util's keeps running; ours is dropped.
        let graceful = GracefulShutdown::new();
        let shutdown = Shutdown::new();
        let (peer_alive, our_alive) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let watcher = graceful.watcher();
        let peer_flag = DropFlag(peer_alive.clone());
        let peer_task = tokio::spawn(async move {
            let _held = (watcher, peer_flag);
            std::future::pending::<()>().await;
        });
        let our_flag = DropFlag(our_alive.clone());
        let our_task = tokio::spawn(shutdown.track(async move {
            let _held = our_flag;
            std::future::pending::<()>().await;
        }));
        tokio::task::yield_now().await;
        let timed_out = tokio::time::timeout(Duration::from_millis(20), graceful.shutdown()).await;
        assert!(timed_out.is_err());
        let outcome = shutdown
            .drain_until(tokio::time::sleep(Duration::from_millis(20)))
            .await;
        assert!(!outcome.is_drained());
        within(our_task)
            .await
            .unwrap()
            .expect_err("the forced task says so");
        assert!(our_alive.load(Ordering::SeqCst), "ours was not dropped");
        assert!(
            !peer_alive.load(Ordering::SeqCst),
            "hyper-util's task was dropped"
        );
        assert!(!peer_task.is_finished());
        peer_task.abort();
    });
}

/// Awaits `fut`, or panics after [`HANG`].
async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(HANG, fut).await.expect("hung")
}
