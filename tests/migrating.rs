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
