//! Phases, readiness, announce, labelled watchers and the forced report, on the
//! runtime-free core (`futures_lite::future::block_on`).

use std::time::Duration;

use futures_lite::future::{self, block_on};
use wind_down::{GracefulConnection, Outcome, Phase, Shutdown, Stopped, WatcherKind};

/// A connection that ignores graceful shutdown and never finishes.
struct Stuck;

impl std::future::Future for Stuck {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

impl GracefulConnection for Stuck {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {}
}

#[test]
fn phases_move_forward_through_announce_trigger_force_done() {
    let shutdown = Shutdown::new();
    assert_eq!(shutdown.phase(), Phase::Running);
    assert!(shutdown.is_ready());
    let guard = shutdown.guard().unwrap();

    assert!(shutdown.announce());
    assert!(!shutdown.announce(), "announce is idempotent");
    assert_eq!(shutdown.phase(), Phase::Announced);
    assert!(!shutdown.is_ready());
    assert!(
        shutdown.phase() < Phase::Triggered,
        "announce does not trigger"
    );
    // Work is still admitted while announced.
    let more = shutdown.guard().expect("announced, not draining");
    drop(more);

    shutdown.trigger();
    assert_eq!(shutdown.phase(), Phase::Triggered);
    assert_eq!(shutdown.force().remaining(), 1, "the guard was running");
    assert_eq!(shutdown.phase(), Phase::Forced);
    drop(guard);
    assert_eq!(shutdown.phase(), Phase::Drained);
    assert!(!shutdown.is_ready());
}

#[test]
fn trigger_alone_flips_readiness_and_resolves_announced() {
    let shutdown = Shutdown::new();
    let mut announced = shutdown.announced();
    assert!(block_on(future::poll_once(&mut announced)).is_none());
    shutdown.trigger();
    assert!(!shutdown.is_ready());
    assert!(block_on(future::poll_once(&mut announced)).is_some());
    assert_eq!(
        shutdown.phase(),
        Phase::Drained,
        "no watchers: drained at once"
    );
}

#[test]
fn announce_reaches_child_scopes() {
    let parent = Shutdown::new();
    let child = parent.child();
    parent.announce();
    assert!(!child.is_ready());
    assert_eq!(child.phase(), Phase::Announced, "announced, not triggered");
    let late = parent.child();
    assert_eq!(late.phase(), Phase::Announced);
}

#[test]
fn forced_report_names_labelled_watchers_still_running() {
    let shutdown = Shutdown::new();
    let _plain = shutdown.guard().unwrap();
    let labelled = shutdown.guard().unwrap().with_label("cache flush");
    let finished = shutdown.guard().unwrap().with_label("done early");
    let stuck_conn = shutdown.watch(Stuck).with_label("127.0.0.1:4000");
    let stuck_task = shutdown
        .track(std::future::pending::<()>())
        .with_label("reindex");
    drop(finished);
    std::thread::sleep(Duration::from_millis(5));
    shutdown.trigger();
    assert_eq!(shutdown.phase(), Phase::Triggered, "not forced yet");

    let outcome = block_on(shutdown.drain_until(future::ready(())));
    assert_eq!(outcome.remaining(), 4);
    let report = outcome.report().expect("forced").clone();
    assert_eq!(report.remaining, 4);
    assert_eq!(report.unlabelled(), 1, "the plain guard");
    let mut named: Vec<(WatcherKind, &str)> = report
        .stragglers
        .iter()
        .map(|s| (s.kind, s.label.as_str()))
        .collect();
    named.sort_by_key(|(_, label)| label.to_string());
    assert_eq!(
        named,
        [
            (WatcherKind::Connection, "127.0.0.1:4000"),
            (WatcherKind::Guard, "cache flush"),
            (WatcherKind::Task, "reindex"),
        ]
    );
    assert!(
        report
            .stragglers
            .iter()
            .all(|s| s.age >= Duration::from_millis(5))
    );
    assert!(report.to_string().contains("guard cache flush for"));

    // Forced ones end with Forced and leave the registry; the report stays as taken:
    // a later drain (ready at once: the coordinator is forced) returns it unchanged.
    assert_eq!(block_on(stuck_conn), Err(Stopped::Forced));
    assert_eq!(block_on(stuck_task), Err(Stopped::Forced));
    drop(labelled);
    assert_eq!(
        shutdown.phase(),
        Phase::Forced,
        "the plain guard still counts"
    );
    assert_eq!(
        block_on(shutdown.drain_until(future::pending::<()>())),
        Outcome::Forced(report)
    );
}

#[test]
fn a_report_lists_nothing_once_labelled_watchers_are_gone() {
    let shutdown = Shutdown::new();
    drop(shutdown.guard().unwrap().with_label("short"));
    let _left = shutdown.guard().unwrap();
    let outcome = shutdown.force();
    let report = outcome.report().expect("forced with a guard left");
    assert_eq!(report.remaining, 1);
    assert!(report.stragglers.is_empty());
}

/// The background-work recipe of the crate docs, on tokio: a worker tracked as a
/// whole runs its loop until the trigger, then flushes slowly; the drain ends only
/// after the flush, and a worker started after the trigger never runs its loop.
#[test]
#[cfg_attr(miri, ignore = "a tokio runtime with timers")]
fn background_work_stops_at_the_trigger_and_the_drain_waits_for_its_flush() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let shutdown = Shutdown::new();
        let (ticks, flushed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (worker, t, f) = (shutdown.clone(), ticks.clone(), flushed.clone());
        let job = tokio::spawn(shutdown.track(async move {
            worker
                .run_until_triggered(async {
                    for _ in 0..1_000_000 {
                        t.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await; // the flush
            f.fetch_add(1, Ordering::SeqCst);
        }));
        for _ in 0..6000 {
            if ticks.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let outcome = shutdown
            .drain_until(tokio::time::sleep(Duration::from_secs(60)))
            .await;
        assert_eq!(outcome, Outcome::Drained);
        assert_eq!(
            flushed.load(Ordering::SeqCst),
            1,
            "drained before the flush"
        );
        job.await.unwrap().unwrap();
        // Work created after the drain never runs, and says so.
        let late = shutdown.track(async { unreachable!("ran after the drain") });
        assert_eq!(
            late.await,
            Err(Stopped::Refused(wind_down::Refused::Drained))
        );
    });
}

/// The live report, at any time (not only at a force): the count of every watcher
/// in the coordinator and its scopes, and the labelled ones with their ages, oldest
/// first; a watcher that finished is gone from it.
#[test]
fn the_live_report_lists_labelled_watchers_oldest_first() {
    let shutdown = Shutdown::new();
    let scope = shutdown.child();
    let first = shutdown.guard().unwrap().with_label("first");
    std::thread::sleep(Duration::from_millis(20));
    let second = scope.track(future::pending::<()>()).with_label("second");
    std::thread::sleep(Duration::from_millis(20));
    let _third = scope.guard().unwrap().with_label("third");
    let _plain = shutdown.guard().unwrap();

    let report = shutdown.report();
    assert_eq!(report.remaining, 4);
    let labels: Vec<&str> = report.stragglers.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["first", "second", "third"], "oldest first");
    assert_eq!(report.stragglers[1].kind, WatcherKind::Task);
    assert!(report.stragglers[0].age > report.stragglers[2].age);
    assert_eq!(report.unlabelled(), 1);
    assert_eq!(
        shutdown.phase(),
        Phase::Running,
        "reporting changes nothing"
    );

    drop((first, second));
    let report = shutdown.report();
    assert_eq!(report.remaining, 2);
    let labels: Vec<&str> = report.stragglers.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["third"]);
    assert_eq!(
        scope.report().remaining,
        1,
        "a scope's report is its own subtree"
    );
}
