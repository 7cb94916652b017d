//! The behaviour suite: the "Guarantees" list of the crate docs, clause by clause.
//!
//! Every case is one async body, generic over [`common::Exec`], and `cases!`
//! expands it into three tests: `<case>::blocking` (`futures_lite` block_on, std
//! threads), `<case>::tokio` (multi-thread runtime) and `<case>::smol`. Under miri
//! only the blocking variant runs. Case names start with the guarantee they check
//! (`g1_` .. `g10_`; G11 is in `tests/memory.rs`), `until_` for `run_until_triggered`.
//! A watchdog fails a hung case after 30 s and prints the observed coordinators.
//!
//! Phases are read through [`Shutdown::phase`]: triggered is `>= Phase::Triggered`,
//! drained is `Phase::Drained`. A forced coordinator shows `Phase::Forced` only while
//! something remains; once it drained, the force is still visible in what it
//! refuses (`Refused::Forced`, not `Refused::Drained`).

mod common;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use futures_lite::FutureExt as _;
use futures_lite::future;

use common::{
    BoxFuture, Conn, Counted, Cx, DropFlag, Exec, eventually, join_all, poll_now, scaled,
};
use wind_down::{Outcome, Phase, Refused, Shutdown, Stopped};

/// Expands each case into `case::blocking`, `case::tokio` and `case::smol`.
macro_rules! cases {
    ($($(#[$attr:meta])* $name:ident,)*) => {$(
        $(#[$attr])*
        mod $name {
            #[test]
            fn blocking() {
                crate::common::run(stringify!($name), super::$name::<crate::common::Blocking>);
            }
            #[cfg(not(miri))]
            #[test]
            fn tokio() {
                crate::common::run(stringify!($name), super::$name::<crate::common::Tokio>);
            }
            #[cfg(not(miri))]
            #[test]
            fn smol() {
                crate::common::run(stringify!($name), super::$name::<crate::common::Smol>);
            }
        }
    )*};
}

cases! {
    g1_phases_latch_and_trigger_returns_true_once,
    g1_force_implies_triggered_and_is_idempotent,
    g1_trigger_race_of_sixteen_threads_has_one_winner,
    g2_drained_needs_trigger_and_zero_count,
    g2_drain_with_no_watchers_ever,
    g2_refuses_guard_and_watch_after_drained,
    g2_refuses_guard_and_watch_after_forced,
    g2_guard_clone_still_counts_after_force,
    g2_drained_never_observed_while_racing_guard_lives,
    g3_wait_after_phase_is_ready_on_first_poll,
    g3_abandoned_waiter_does_not_swallow_wakeup,
    g3_thousand_waiters_per_phase_complete_exactly_once,
    g3_waiters_racing_the_phase_all_complete,
    g4_watchers_counts_every_kind,
    g4_watchers_exact_with_guards_on_many_threads,
    g4_forced_remaining_counts_guards_on_every_thread,
    g5_graceful_once_on_first_poll_after_trigger,
    g5_graceful_once_when_triggered_before_first_poll,
    g5_trigger_wakes_pending_watched_connections,
    g5_no_graceful_without_trigger,
    g6_leaked_guard_is_forced_remaining_at_sleep_deadline,
    g6_leaked_guard_is_forced_remaining_at_ready_deadline,
    g6_force_drops_watched_and_tracked_on_next_poll,
    g6_drain_until_reports_drained_before_deadline,
    g6_force_by_someone_else_ends_drain_until,
    g7_conn_dropped_before_count_released,
    g7_forced_conn_dropped_before_count_released,
    g7_dropped_pending_watched_releases_after_destructor,
    #[cfg(panic = "unwind")]
    g7_panicking_tracked_future_released_after_destructor,
    #[cfg(panic = "unwind")]
    g7_guard_dropped_during_unwind_counts_down,
    g8_dropping_every_handle_triggers,
    g8_dropping_child_handles_does_not_trigger_the_child,
    g9_child_triggered_and_forced_with_parent,
    g9_child_created_after_parent_triggered_or_forced,
    g9_triggering_or_forcing_child_leaves_parent,
    g9_parent_drains_only_after_child,
    g9_child_created_after_parent_drained,
    g9_nested_scopes_drain_inside_out,
    g9_hundred_thousand_nested_scopes_need_no_recursion,
    g4_force_before_trigger_with_only_idle_scopes_is_drained,
    #[cfg(panic = "unwind")]
    g10_panicking_waker_does_not_stop_the_transition,
    until_trigger_resolves_none_and_drops_inner,
    until_completion_resolves_some,
    until_never_starts_when_already_triggered,
    until_finished_lets_go_of_the_trigger,
}

/// Spawns `wait` and returns its join handle plus a counter of its polls, so that a
/// case can tell that it registered (was polled and is pending) before the phase.
fn spawn_wait<E: Exec, W>(cx: &Cx<E>, wait: W) -> (common::Join<W::Output>, Arc<AtomicUsize>)
where
    W: Future + Unpin + Send + 'static,
    W::Output: Send + 'static,
{
    let polls = Arc::new(AtomicUsize::new(0));
    let join = cx.exec.spawn(Counted {
        fut: wait,
        polls: polls.clone(),
    });
    (join, polls)
}

/// Asserts that `outcome` is a force that found exactly `remaining` watchers running.
#[track_caller]
fn assert_forced(outcome: &Outcome, remaining: usize) {
    let Some(report) = outcome.report() else {
        panic!("expected a forced outcome with {remaining} remaining, got {outcome:?}");
    };
    assert!(!outcome.is_drained(), "{outcome:?}");
    assert_eq!(report.remaining, remaining, "{outcome:?}");
    assert_eq!(outcome.remaining(), remaining, "{outcome:?}");
}

/// A future that resolves once `s` is forced (or drained), with the forced
/// report: `drain_until` with a deadline that never comes. It triggers `s` on its
/// first poll.
fn until_forced(s: &Shutdown) -> BoxFuture<Outcome> {
    let s = s.clone();
    Box::pin(async move { s.drain_until(future::pending::<()>()).await })
}

// ----------------------------------------------------------------------------
// G1. Monotonic phases.
// ----------------------------------------------------------------------------

async fn g1_phases_latch_and_trigger_returns_true_once<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    assert_eq!(s.phase(), Phase::Running);
    assert!(s.is_ready());

    // Announced before triggered; announcing latches too.
    assert!(s.announce(), "first announce returns true");
    assert!(!s.announce(), "second announce returns false");
    assert_eq!(s.phase(), Phase::Announced);
    assert!(!s.is_ready());

    let g = s.guard().unwrap();
    assert!(s.trigger(), "first trigger returns true");
    assert!(!s.trigger(), "second trigger returns false");
    assert!(!s.clone().trigger(), "a clone shares the latched phase");
    assert_eq!(s.phase(), Phase::Triggered);
    assert!(!s.announce(), "triggered implies announced");
    assert!(!s.is_ready());

    drop(g);
    assert_eq!(s.phase(), Phase::Drained);
    // Nothing leaves drained: no new guard, no re-trigger.
    assert_eq!(s.guard().unwrap_err(), Refused::Drained);
    assert!(!s.trigger());
    s.announced().await;
    s.triggered().await;
    s.drained().await;
    assert_eq!(s.phase(), Phase::Drained);

    // Forcing a drained coordinator latches forced too (it now refuses as forced),
    // and it stays drained.
    assert_eq!(s.force(), Outcome::Drained);
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(s.guard().unwrap_err(), Refused::Forced);
    assert_eq!(s.force(), Outcome::Drained);
    assert_eq!(until_forced(&s).await, Outcome::Drained);
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(s.guard().unwrap_err(), Refused::Forced);
    assert!(!s.trigger() && !s.announce() && !s.is_ready());

    // Announced without a trigger stays announced: a trigger moves it on.
    let a = Shutdown::new();
    assert!(a.announce());
    assert_eq!(a.phase(), Phase::Announced);
    assert_eq!(poll_now(&mut a.announced()), Some(()));
    assert!(poll_now(&mut a.triggered()).is_none());
    assert!(
        a.guard().is_ok(),
        "an announced coordinator still admits work"
    );
    assert!(a.trigger(), "announcing did not trigger");
    assert_eq!(a.phase(), Phase::Drained);
}

async fn g1_force_implies_triggered_and_is_idempotent<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g = s.guard().unwrap();
    let mut triggered = s.triggered();
    let mut announced = s.announced();
    assert!(poll_now(&mut triggered).is_none());
    assert!(poll_now(&mut announced).is_none());

    let forced = s.force();
    assert_forced(&forced, 1);
    assert_eq!(s.phase(), Phase::Forced);
    assert!(Phase::Forced > Phase::Triggered && Phase::Triggered > Phase::Announced);
    assert!(!s.trigger(), "the force already triggered");
    assert!(!s.announce(), "the force already announced");
    assert!(!s.is_ready());
    triggered.await;
    announced.await;
    assert_eq!(until_forced(&s).await, forced, "the force's report is kept");
    assert_eq!(s.force(), forced, "a second force reports the same");
    assert_eq!(s.phase(), Phase::Forced);

    drop(g);
    s.drained().await;
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(s.force(), Outcome::Drained);
    assert_eq!(s.guard().unwrap_err(), Refused::Forced, "still forced");

    // Forcing a fresh coordinator: triggered, forced and drained at once.
    let fresh = Shutdown::new();
    assert_eq!(fresh.force(), Outcome::Drained);
    assert_eq!(fresh.phase(), Phase::Drained);
    assert_eq!(fresh.guard().unwrap_err(), Refused::Forced);
    assert_eq!(poll_now(&mut fresh.triggered()), Some(()));
    assert!(!fresh.trigger());
}

async fn g1_trigger_race_of_sixteen_threads_has_one_winner<E: Exec>(cx: Cx<E>) {
    const THREADS: usize = 16;
    for round in 0..scaled(20, 2) {
        let s = Shutdown::new();
        cx.probe.note(format!("round {round}"));
        let (waiter, _) = spawn_wait(&cx, s.triggered());
        let barrier = Arc::new(Barrier::new(THREADS));
        let racers: Vec<_> = (0..THREADS)
            .map(|_| {
                let s = s.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    s.trigger()
                })
            })
            .collect();
        let winners = racers
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one trigger() returns true"
        );
        assert!(!s.trigger());
        waiter.await;
    }
}

// ----------------------------------------------------------------------------
// G2. Drained means done.
// ----------------------------------------------------------------------------

async fn g2_drained_needs_trigger_and_zero_count<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g1 = s.guard().unwrap();
    let g2 = g1.clone();
    let mut drained = s.drained();
    assert!(poll_now(&mut drained).is_none());
    let (waiter, _) = spawn_wait(&cx, s.drained());

    // Zero count without a trigger is not drained, and admits new work.
    drop(g1);
    drop(g2);
    assert_eq!(s.report().remaining, 0);
    assert_eq!(s.phase(), Phase::Running);
    assert!(poll_now(&mut drained).is_none());
    let g3 = s.guard().expect("not drained: guards are admitted");

    // Triggered with a live guard is not drained either.
    assert!(s.trigger());
    assert_eq!(s.phase(), Phase::Triggered);
    assert!(poll_now(&mut drained).is_none());

    drop(g3);
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(poll_now(&mut drained), Some(()));
    waiter.await;
}

async fn g2_drain_with_no_watchers_ever<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let mut early = s.drained();
    for _ in 0..3 {
        assert!(
            poll_now(&mut early).is_none(),
            "pending until triggered, even with no watchers"
        );
    }
    let (waiter, polls) = spawn_wait(&cx, s.drained());
    eventually(&cx, "drained waiter polled", || polls.load(SeqCst) > 0).await;
    assert_eq!(s.phase(), Phase::Running);

    assert!(s.trigger());
    waiter.await;
    assert_eq!(poll_now(&mut early), Some(()));
    assert_eq!(
        poll_now(&mut s.drained()),
        Some(()),
        "after the trigger, ready on the first poll"
    );
}

async fn g2_refuses_guard_and_watch_after_drained<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    s.trigger();
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(s.guard().unwrap_err(), Refused::Drained);

    let (conn, log) = Conn::new(1);
    let watched = s.watch(conn);
    assert_eq!(s.report().remaining, 0, "a refused watch holds no count");
    assert_eq!(watched.await, Err(Stopped::Refused(Refused::Drained)));
    assert_eq!(log.polls.load(SeqCst), 0, "refused connection never polled");
    assert_eq!(log.graceful(), 0);
    assert!(log.dropped());

    let ran = Arc::new(AtomicBool::new(false));
    let (flag, dropped) = DropFlag::new();
    let tracked = s.track({
        let ran = ran.clone();
        async move {
            let _flag = flag;
            ran.store(true, SeqCst);
        }
    });
    assert_eq!(tracked.await, Err(Stopped::Refused(Refused::Drained)));
    assert!(!ran.load(SeqCst), "refused tracked future never started");
    assert!(dropped.load(SeqCst));
    assert_eq!((s.phase(), s.report().remaining), (Phase::Drained, 0));
}

async fn g2_refuses_guard_and_watch_after_forced<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g = s.guard().unwrap();
    assert_forced(&s.force(), 1);
    assert_eq!(s.guard().unwrap_err(), Refused::Forced);

    let (conn, log) = Conn::new(1);
    let watched = s.watch(conn);
    assert_eq!(s.report().remaining, 1, "a refused watch holds no count");
    assert_eq!(watched.await, Err(Stopped::Refused(Refused::Forced)));
    assert_eq!(log.polls.load(SeqCst), 0);
    assert!(log.dropped());
    assert_eq!(
        s.track(async {}).await,
        Err(Stopped::Refused(Refused::Forced))
    );
    assert_eq!(s.report().remaining, 1);
    assert_eq!(s.phase(), Phase::Forced);

    drop(g);
    s.drained().await;
    assert_eq!(s.phase(), Phase::Drained);
    // Forced and drained: the refusal names the force.
    assert_eq!(s.guard().unwrap_err(), Refused::Forced);
    assert_eq!(
        s.track(async {}).await,
        Err(Stopped::Refused(Refused::Forced))
    );
}

async fn g2_guard_clone_still_counts_after_force<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g = s.guard().unwrap();
    assert_forced(&s.force(), 1);
    let g2 = g.clone();
    assert_eq!(s.report().remaining, 2);
    drop(g);
    assert_eq!(s.report().remaining, 1, "the clone still counts");
    assert_eq!(s.phase(), Phase::Forced);
    let mut drained = s.drained();
    assert!(poll_now(&mut drained).is_none());
    drop(g2);
    assert_eq!(poll_now(&mut drained), Some(()));
}

async fn g2_drained_never_observed_while_racing_guard_lives<E: Exec>(cx: Cx<E>) {
    for round in 0..scaled(100, 4) {
        let s = Shutdown::new();
        let first = s.guard().unwrap();
        s.trigger();
        // Successfully created guards that have not been dropped yet.
        let live = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));

        let taker = cx.exec.spawn({
            let (s, live, refused) = (s.clone(), live.clone(), refused.clone());
            async move {
                for _ in 0..4 {
                    match s.guard() {
                        Ok(g) => {
                            live.fetch_add(1, SeqCst);
                            let g2 = g.clone();
                            future::yield_now().await;
                            drop(g);
                            live.fetch_sub(1, SeqCst);
                            drop(g2);
                        }
                        Err(e) => {
                            assert_eq!(e, Refused::Drained);
                            refused.fetch_add(1, SeqCst);
                        }
                    }
                }
            }
        });
        let dropper = cx.exec.spawn(async move {
            future::yield_now().await;
            drop(first);
        });
        let waiter = cx.exec.spawn({
            let (drained, live) = (s.drained(), live.clone());
            async move {
                drained.await;
                live.load(SeqCst)
            }
        });
        dropper.await;
        taker.await;
        let live_at_drain = waiter.await;
        assert_eq!(
            live_at_drain, 0,
            "round {round}: drained observed while a guard was alive"
        );
        assert_eq!((s.phase(), s.report().remaining), (Phase::Drained, 0));
        if refused.load(SeqCst) > 0 {
            assert_eq!(s.guard().unwrap_err(), Refused::Drained);
        }
    }
}

// ----------------------------------------------------------------------------
// G3. No lost wake-ups.
// ----------------------------------------------------------------------------

async fn g3_wait_after_phase_is_ready_on_first_poll<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g = s.guard().unwrap();
    assert!(poll_now(&mut s.announced()).is_none());
    assert!(poll_now(&mut s.triggered()).is_none());
    s.announce();
    assert_eq!(poll_now(&mut s.announced()), Some(()));
    assert!(poll_now(&mut s.triggered()).is_none());
    s.trigger();
    assert_eq!(poll_now(&mut s.triggered()), Some(()));
    assert!(poll_now(&mut s.drained()).is_none());
    drop(g);
    assert_eq!(poll_now(&mut s.announced()), Some(()));
    assert_eq!(poll_now(&mut s.triggered()), Some(()));
    assert_eq!(poll_now(&mut s.drained()), Some(()));

    // From another thread, with Waits created there.
    let other = s.clone();
    let from_thread = thread::spawn(move || {
        (
            poll_now(&mut other.triggered()),
            poll_now(&mut other.drained()),
        )
    })
    .join()
    .unwrap();
    assert_eq!(from_thread, (Some(()), Some(())));

    // From a spawned task, with Waits created on this thread.
    let (t, d) = (s.triggered(), s.drained());
    let from_task = cx
        .exec
        .spawn(async move {
            let (mut t, mut d) = (t, d);
            (poll_now(&mut t), poll_now(&mut d))
        })
        .await;
    assert_eq!(from_task, (Some(()), Some(())));

    // Forced: a drain started after the force is over on its first poll, here and
    // on another thread, with the force's report.
    let f = Shutdown::new();
    cx.probe.observe("forced", &f);
    let fg = f.guard().unwrap();
    let mut early = until_forced(&f);
    assert!(poll_now(&mut early).is_none(), "not forced yet");
    let forced = f.force();
    assert_forced(&forced, 1);
    assert_eq!(poll_now(&mut until_forced(&f)), Some(forced.clone()));
    let other = f.clone();
    let from_thread = thread::spawn(move || poll_now(&mut until_forced(&other)))
        .join()
        .unwrap();
    assert_eq!(from_thread, Some(forced.clone()));
    assert_eq!(poll_now(&mut early), Some(forced));
    drop(fg);
    assert_eq!(poll_now(&mut f.drained()), Some(()));
}

async fn g3_abandoned_waiter_does_not_swallow_wakeup<E: Exec>(cx: Cx<E>) {
    #[derive(Clone, Copy, Debug)]
    enum P {
        Announced,
        Triggered,
        Drained,
        Forced,
    }
    fn wait(s: &Shutdown, p: P) -> BoxFuture<()> {
        match p {
            P::Announced => Box::pin(s.announced()),
            P::Triggered => Box::pin(s.triggered()),
            P::Drained => Box::pin(s.drained()),
            // Triggers on its first poll, then waits for the force.
            P::Forced => {
                let until = until_forced(s);
                Box::pin(async move { assert_forced(&until.await, 1) })
            }
        }
    }
    for phase in [P::Announced, P::Triggered, P::Drained, P::Forced] {
        cx.probe.note(format!("phase {phase:?}"));
        let s = Shutdown::new();
        let mut guard = Some(s.guard().unwrap());
        // Polled once, then kept alive and never polled again until the end.
        let mut abandoned = wait(&s, phase);
        assert!(poll_now(&mut abandoned).is_none());
        let (waiter, polls) = spawn_wait(&cx, wait(&s, phase));
        eventually(&cx, "second waiter polled", || polls.load(SeqCst) > 0).await;
        match phase {
            P::Announced => assert!(s.announce()),
            P::Triggered => assert!(s.trigger()),
            P::Drained => {
                assert!(s.trigger());
                drop(guard.take());
            }
            P::Forced => assert_forced(&s.force(), 1),
        }
        waiter.await;
        assert_eq!(poll_now(&mut abandoned), Some(()), "{phase:?}");
        drop(guard);
    }
}

async fn g3_thousand_waiters_per_phase_complete_exactly_once<E: Exec>(cx: Cx<E>) {
    let per_phase = scaled(1000, 40);
    const GROUPS: usize = 8;
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let guard = s.guard().unwrap();
    let registered = Arc::new(AtomicUsize::new(0));
    let done: Arc<Vec<AtomicUsize>> =
        Arc::new((0..2 * per_phase).map(|_| AtomicUsize::new(0)).collect());

    // Waiter i < per_phase waits for the trigger, the others for the drain. Each
    // group of waiters runs on its own spawned task (thread for `Blocking`).
    let spawn_group = |ids: std::ops::Range<usize>| {
        let futs: Vec<BoxFuture<()>> = ids
            .map(|i| {
                let mut w = if i < per_phase {
                    s.triggered()
                } else {
                    s.drained()
                };
                let (registered, done) = (registered.clone(), done.clone());
                Box::pin(async move {
                    assert!(future::poll_once(&mut w).await.is_none());
                    registered.fetch_add(1, SeqCst);
                    w.await;
                    done[i].fetch_add(1, SeqCst);
                }) as BoxFuture<()>
            })
            .collect();
        cx.exec.spawn(join_all(futs))
    };
    let size = per_phase / GROUPS;
    let chunk = |g: usize, base: usize| {
        let end = if g + 1 == GROUPS {
            per_phase
        } else {
            (g + 1) * size
        };
        base + g * size..base + end
    };
    let trig: Vec<_> = (0..GROUPS).map(|g| spawn_group(chunk(g, 0))).collect();
    let drain: Vec<_> = (0..GROUPS)
        .map(|g| spawn_group(chunk(g, per_phase)))
        .collect();
    eventually(&cx, "all waiters registered", || {
        registered.load(SeqCst) == 2 * per_phase
    })
    .await;

    let s2 = s.clone();
    thread::spawn(move || assert!(s2.trigger())).join().unwrap();
    for j in trig {
        j.await;
    }
    for (i, d) in done.iter().enumerate().take(per_phase) {
        assert_eq!(d.load(SeqCst), 1, "triggered waiter {i}");
    }
    let early = done[per_phase..]
        .iter()
        .filter(|d| d.load(SeqCst) != 0)
        .count();
    assert_eq!(early, 0, "drained waiters resolved with a live guard");

    thread::spawn(move || drop(guard)).join().unwrap();
    for j in drain {
        j.await;
    }
    for (i, d) in done.iter().enumerate() {
        assert_eq!(d.load(SeqCst), 1, "waiter {i} completes exactly once");
    }
}

async fn g3_waiters_racing_the_phase_all_complete<E: Exec>(cx: Cx<E>) {
    for round in 0..scaled(30, 3) {
        cx.probe.note(format!("round {round}"));
        let s = Shutdown::new();
        let g = s.guard().unwrap();
        let completed = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let (s, completed) = (s.clone(), completed.clone());
                cx.exec.spawn(async move {
                    if i % 2 == 0 {
                        s.triggered().await;
                    } else {
                        s.drained().await;
                    }
                    completed.fetch_add(1, SeqCst);
                })
            })
            .collect();
        let s2 = s.clone();
        let trigger = thread::spawn(move || {
            s2.trigger();
            drop(g);
        });
        for w in waiters {
            w.await;
        }
        trigger.join().unwrap();
        assert_eq!(completed.load(SeqCst), 4);
    }
}

// ----------------------------------------------------------------------------
// G4. Exact counts when quiet.
// ----------------------------------------------------------------------------

async fn g4_watchers_counts_every_kind<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    assert_eq!(s.report().remaining, 0);
    let g = s.guard().unwrap();
    assert_eq!(s.report().remaining, 1);
    let g2 = g.clone();
    assert_eq!(s.report().remaining, 2);
    let labelled = s.guard().unwrap().with_label("labelled");
    assert_eq!(
        s.report().remaining,
        3,
        "a labelled guard counts like any guard"
    );
    drop(labelled);
    assert_eq!(s.report().remaining, 2);

    let (conn, log) = Conn::new(1);
    let watched = s.watch(conn);
    assert_eq!(
        s.report().remaining,
        3,
        "a watched connection counts from creation"
    );
    let tracked = s.track(async { 7 });
    assert_eq!(
        s.report().remaining,
        4,
        "a tracked future counts from creation"
    );
    let child = s.child();
    assert_eq!(s.report().remaining, 4, "a child scope is not a watcher");
    assert_eq!(child.report().remaining, 0);
    let cg = child.guard().unwrap();
    assert_eq!(
        (s.report().remaining, child.report().remaining),
        (5, 1),
        "a child's watchers count in its parent"
    );
    let _until = s.run_until_triggered(future::pending::<()>());
    assert_eq!(
        s.report().remaining,
        5,
        "run_until_triggered does not count"
    );
    assert!(format!("{s:?}").contains("watchers: 5"));

    drop(g2);
    assert_eq!(s.report().remaining, 4);
    log.finish();
    assert_eq!(watched.await, Ok(1));
    assert_eq!(s.report().remaining, 3);
    assert_eq!(tracked.await, Ok(7));
    assert_eq!(s.report().remaining, 2);
    drop(cg);
    assert_eq!(child.report().remaining, 0);
    assert_eq!(
        s.report().remaining,
        1,
        "an idle, untriggered child counts nothing"
    );
    child.trigger();
    assert_eq!(child.phase(), Phase::Drained);
    assert_eq!(s.report().remaining, 1, "nor does a drained one");
    drop(g);
    assert_eq!(s.report().remaining, 0);

    // In a forced report, too, only real watchers count: idle child scopes (at any
    // depth) are not reported, busy ones report their watchers.
    let s = Shutdown::new();
    cx.probe.observe("reported", &s);
    let idle = s.child();
    let idle_grandchild = idle.child();
    let busy = s.child();
    let busy_grandchild = busy.child();
    let bg = busy_grandchild.guard().unwrap().with_label("deep");
    let g = s.guard().unwrap();
    assert_eq!(s.report().remaining, 2);
    let forced = s.force();
    assert_forced(&forced, 2);
    let report = forced.report().unwrap();
    assert_eq!(report.stragglers.len(), 1);
    assert_eq!(report.stragglers[0].label, "deep");
    assert_eq!(report.unlabelled(), 1);
    assert_eq!(
        idle.phase(),
        Phase::Drained,
        "the idle scope drained at the force"
    );
    assert_eq!(idle_grandchild.phase(), Phase::Drained);
    assert_eq!(busy.phase(), Phase::Forced);
    assert_eq!(s.report().remaining, 2);
    drop((bg, g));
    assert_eq!(s.report().remaining, 0);
    assert_eq!(
        (s.phase(), busy.phase(), busy_grandchild.phase()),
        (Phase::Drained, Phase::Drained, Phase::Drained)
    );
}

/// Threads that each take guards (each thread counts on its own shard of the
/// count), hand some to another thread and drop others: `report().remaining` is exact
/// whenever all of them are parked on a barrier, and the drain waits for the guards
/// handed over.
async fn g4_watchers_exact_with_guards_on_many_threads<E: Exec>(cx: Cx<E>) {
    const THREADS: usize = 6;
    const EACH: usize = 5;
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (s, barrier, tx) = (s.clone(), barrier.clone(), tx.clone());
            thread::spawn(move || {
                let mut mine: Vec<_> = (0..EACH).map(|_| s.guard().unwrap()).collect();
                barrier.wait(); // quiet: THREADS * EACH guards
                barrier.wait();
                // Hand two over (released on another thread later), drop one.
                tx.send(mine.pop().unwrap()).unwrap();
                tx.send(mine.pop().unwrap()).unwrap();
                drop(mine.pop());
                barrier.wait(); // quiet: THREADS * (EACH - 1)
                barrier.wait();
                let clones: Vec<_> = mine.iter().map(Clone::clone).collect();
                barrier.wait(); // quiet: clones added
                barrier.wait();
                drop(clones);
                drop(mine);
            })
        })
        .collect();
    drop(tx);
    barrier.wait();
    assert_eq!(s.report().remaining, THREADS * EACH);
    barrier.wait();
    barrier.wait();
    assert_eq!(s.report().remaining, THREADS * (EACH - 1));
    barrier.wait();
    barrier.wait();
    assert_eq!(
        s.report().remaining,
        THREADS * (EACH - 1) + THREADS * (EACH - 3)
    );
    barrier.wait();
    for t in threads {
        t.join().unwrap();
    }
    let handed: Vec<_> = rx.iter().collect();
    assert_eq!(handed.len(), 2 * THREADS);
    assert_eq!(
        s.report().remaining,
        2 * THREADS,
        "handed-over guards still count"
    );
    s.trigger();
    assert_eq!(
        s.phase(),
        Phase::Triggered,
        "the handed-over guards are alive"
    );
    assert_eq!(s.report().remaining, 2 * THREADS);
    let mut handed = handed;
    handed.truncate(1);
    assert_eq!(s.report().remaining, 1);
    assert_eq!(s.phase(), Phase::Triggered);
    drop(handed);
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(s.report().remaining, 0);
    s.drained().await;
}

/// Guards held on several threads across a force: the forced outcome and report
/// name exactly the live guards, however they are spread over the threads, and no
/// thread gets a guard afterwards.
async fn g4_forced_remaining_counts_guards_on_every_thread<E: Exec>(cx: Cx<E>) {
    const THREADS: usize = 5;
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    // Every thread's shard takes a guard once and gives it back: the shards hold,
    // empty, and must not count as watchers.
    let held: Vec<_> = (0..THREADS)
        .map(|i| {
            let s = s.clone();
            thread::spawn(move || {
                drop(s.guard().unwrap());
                (0..i).map(|_| s.guard().unwrap()).collect::<Vec<_>>()
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    let live: usize = (0..THREADS).sum();
    assert_eq!(s.report().remaining, live);
    let forced = s.force();
    assert_forced(&forced, live);
    let report = forced.report().unwrap();
    assert_eq!(
        (report.unlabelled(), report.stragglers.len()),
        (live, 0),
        "every live guard, unlabelled, is in the report"
    );
    assert_eq!(
        until_forced(&s).await,
        forced,
        "the report is kept for later drains"
    );
    for _ in 0..THREADS {
        let s = s.clone();
        let refused = thread::spawn(move || s.guard().map(drop)).join().unwrap();
        assert_eq!(refused, Err(Refused::Forced));
    }
    assert_eq!(s.report().remaining, live);
    assert_eq!(s.phase(), Phase::Forced);
    drop(held);
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(s.report().remaining, 0);
}

// ----------------------------------------------------------------------------
// G5. Graceful once.
// ----------------------------------------------------------------------------

async fn g5_graceful_once_on_first_poll_after_trigger<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(7);
    let mut w = s.watch(conn);
    assert!(poll_now(&mut w).is_none());
    assert!(poll_now(&mut w).is_none());
    assert_eq!((log.polls.load(SeqCst), log.graceful()), (2, 0));
    assert!(!w.is_shutting_down());

    s.trigger();
    assert_eq!(
        log.graceful(),
        0,
        "requested on the next poll, not inside trigger()"
    );
    assert!(poll_now(&mut w).is_none());
    assert_eq!(log.graceful(), 1);
    assert!(w.is_shutting_down());
    for _ in 0..3 {
        assert!(poll_now(&mut w).is_none());
    }
    assert_eq!(log.graceful(), 1, "asked exactly once");
    assert_eq!(s.report().remaining, 1);

    log.finish();
    assert_eq!(poll_now(&mut w), Some(Ok(7)));
    assert_eq!(log.graceful(), 1);
    assert!(log.dropped());
    assert_eq!(s.phase(), Phase::Drained);
}

async fn g5_graceful_once_when_triggered_before_first_poll<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(3);
    let w = s.watch(conn.finish_on_graceful());
    s.trigger();
    assert_eq!(log.graceful(), 0);
    assert_eq!(cx.exec.spawn(w).await, Ok(3));
    assert_eq!(log.graceful(), 1);
    assert_eq!(
        log.graceful_at_first_poll.load(SeqCst),
        1,
        "graceful_shutdown came before the connection's first poll"
    );

    assert_eq!(s.phase(), Phase::Drained);

    // Watched after the trigger (admitted while a guard holds the drain open).
    let s = Shutdown::new();
    let g = s.guard().unwrap();
    s.trigger();
    let (conn, log) = Conn::new(4);
    assert_eq!(
        cx.exec.spawn(s.watch(conn.finish_on_graceful())).await,
        Ok(4)
    );
    assert_eq!(
        (log.graceful(), log.graceful_at_first_poll.load(SeqCst)),
        (1, 1)
    );
    drop(g);
    s.drained().await;
}

async fn g5_trigger_wakes_pending_watched_connections<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let conns: Vec<_> = (0..8)
        .map(|id| {
            let (conn, log) = Conn::new(id);
            let polls = Arc::new(AtomicUsize::new(0));
            let join = cx.exec.spawn(Counted {
                fut: s.watch(conn.finish_on_graceful()),
                polls: polls.clone(),
            });
            (id, join, log, polls)
        })
        .collect();
    for (_, _, _, polls) in &conns {
        eventually(&cx, "watched connection polled", || polls.load(SeqCst) > 0).await;
    }
    assert_eq!(s.report().remaining, 8);
    let s2 = s.clone();
    thread::spawn(move || s2.trigger()).join().unwrap();
    for (id, join, log, _) in conns {
        assert_eq!(join.await, Ok(id));
        assert_eq!(log.graceful(), 1, "connection {id}");
    }
    s.drained().await;
}

async fn g5_no_graceful_without_trigger<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(5);
    let mut w = s.watch(conn);
    assert!(poll_now(&mut w).is_none());
    log.finish();
    assert_eq!(w.await, Ok(5));
    assert_eq!(log.graceful(), 0);
    s.trigger();
    assert_eq!(log.graceful(), 0, "completed connections are not asked");
    assert_eq!(s.phase(), Phase::Drained);
}

// ----------------------------------------------------------------------------
// G6. Bounded by the deadline.
// ----------------------------------------------------------------------------

async fn g6_leaked_guard_is_forced_remaining_at_sleep_deadline<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    // Leaked for the whole drain (given back at the very end, to keep miri's leak
    // check quiet): `mem::forget` is `ManuallyDrop::new`.
    let leaked = ManuallyDrop::new(s.guard().unwrap().with_label("leaked"));
    s.trigger();
    let outcome = s
        .drain_until(cx.exec.sleep(Duration::from_millis(20)))
        .await;
    assert_forced(&outcome, 1);
    let report = outcome.report().unwrap();
    assert_eq!(report.stragglers.len(), 1);
    assert_eq!(report.stragglers[0].label, "leaked");
    assert_eq!(report.stragglers[0].kind, wind_down::WatcherKind::Guard);
    assert_eq!(
        std::process::ExitCode::from(outcome.clone()),
        std::process::ExitCode::FAILURE
    );
    assert_eq!(s.phase(), Phase::Forced);
    assert_eq!(s.report().remaining, 1);
    assert!(
        poll_now(&mut s.drained()).is_none(),
        "a leaked guard keeps it undrained"
    );

    drop(ManuallyDrop::into_inner(leaked));
    s.drained().await;
}

async fn g6_leaked_guard_is_forced_remaining_at_ready_deadline<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let leaked = ManuallyDrop::new(s.guard().unwrap());
    // Not triggered by hand: drain_until triggers first.
    assert_eq!(s.phase(), Phase::Running);
    let first = s.drain_until(future::ready(())).await;
    assert_forced(&first, 1);
    assert_eq!(s.phase(), Phase::Forced);
    assert_eq!(
        s.drain_until(future::ready(())).await,
        first,
        "a second drain reports the same"
    );
    drop(ManuallyDrop::into_inner(leaked));
    assert_eq!(s.phase(), Phase::Drained);
}

async fn g6_force_drops_watched_and_tracked_on_next_poll<E: Exec>(cx: Cx<E>) {
    // Polled by hand: the drop happens in the poll after the force, not in force().
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(1);
    let mut w = s.watch(conn.observe(&s));
    assert!(poll_now(&mut w).is_none());
    assert_forced(&s.force(), 1);
    assert!(!log.dropped(), "not dropped by force() itself");
    assert_eq!(poll_now(&mut w), Some(Err(Stopped::Forced)));
    assert!(log.dropped());
    assert_eq!(log.graceful(), 0, "forced before a graceful request");
    assert_eq!(s.report().remaining, 0);

    // Spawned on the executor, woken by the deadline's force.
    let s = Shutdown::new();
    cx.probe.observe("second", &s);
    let (conn, log) = Conn::new(2);
    let (flag, tracked_dropped) = DropFlag::new();
    let (wj, wpolls) = {
        let polls = Arc::new(AtomicUsize::new(0));
        let j = cx.exec.spawn(Counted {
            fut: s.watch(conn.observe(&s)),
            polls: polls.clone(),
        });
        (j, polls)
    };
    let (tj, tpolls) = {
        let polls = Arc::new(AtomicUsize::new(0));
        let stuck = s.track(Box::pin(async move {
            let _flag = flag;
            future::pending::<()>().await
        }));
        let j = cx.exec.spawn(Counted {
            fut: stuck,
            polls: polls.clone(),
        });
        (j, polls)
    };
    eventually(&cx, "both polled", || {
        wpolls.load(SeqCst) > 0 && tpolls.load(SeqCst) > 0
    })
    .await;
    s.trigger();
    assert_forced(&s.drain_until(future::ready(())).await, 2);
    assert_eq!(wj.await, Err(Stopped::Forced));
    assert_eq!(tj.await, Err(Stopped::Forced));
    assert!(log.dropped() && tracked_dropped.load(SeqCst));
    assert!(log.graceful() <= 1);
    assert!(log.watchers_at_drop.load(SeqCst) >= 1);
    s.drained().await;
    assert_eq!(s.report().remaining, 0);
}

async fn g6_drain_until_reports_drained_before_deadline<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g = s.guard().unwrap();
    // Not triggered by hand: drain_until triggers first, and then drains (with a
    // deadline that never comes, an untriggered wait would hang).
    let release = cx.exec.spawn(async move {
        future::yield_now().await;
        drop(g);
    });
    assert_eq!(
        s.drain_until(future::pending::<()>()).await,
        Outcome::Drained
    );
    release.await;
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(
        s.guard().unwrap_err(),
        Refused::Drained,
        "drained, not forced"
    );
    // Already drained with an elapsed deadline: drained wins, nothing is forced.
    let outcome = s.drain_until(future::ready(())).await;
    assert_eq!(outcome, Outcome::Drained);
    assert_eq!(
        std::process::ExitCode::from(outcome),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(s.guard().unwrap_err(), Refused::Drained, "still not forced");
}

async fn g6_force_by_someone_else_ends_drain_until<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let g = s.guard().unwrap();
    s.trigger();
    let forcer = cx.exec.spawn({
        let s = s.clone();
        async move {
            future::yield_now().await;
            s.force()
        }
    });
    let outcome = s.drain_until(future::pending::<()>()).await;
    assert_forced(&outcome, 1);
    assert_eq!(forcer.await, outcome, "the forcer's report is the drain's");
    assert_eq!(s.phase(), Phase::Forced);
    drop(g);
    s.drained().await;
}

// ----------------------------------------------------------------------------
// G7. Released after destruction.
// ----------------------------------------------------------------------------

/// Spawns a task that waits for the drain and reports whether the connection of
/// `log` had been dropped by then.
fn drained_sees_dropped<E: Exec>(
    cx: &Cx<E>,
    s: &Shutdown,
    log: &Arc<common::ConnLog>,
) -> common::Join<bool> {
    let (drained, log) = (s.drained(), log.clone());
    cx.exec.spawn(async move {
        drained.await;
        log.dropped()
    })
}

async fn g7_conn_dropped_before_count_released<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(1);
    let waiter = drained_sees_dropped(&cx, &s, &log);
    let watched = cx.exec.spawn(s.watch(conn.observe(&s)));
    s.trigger();
    log.finish();
    assert_eq!(watched.await, Ok(1));
    assert!(
        waiter.await,
        "drained resolved before the connection's destructor ran"
    );
    assert_eq!(
        log.watchers_at_drop.load(SeqCst),
        1,
        "count released before the destructor"
    );
}

async fn g7_forced_conn_dropped_before_count_released<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(1);
    let waiter = drained_sees_dropped(&cx, &s, &log);
    let watched = cx.exec.spawn(s.watch(conn.observe(&s)));
    assert_forced(&s.force(), 1);
    assert_eq!(watched.await, Err(Stopped::Forced));
    assert!(waiter.await);
    assert_eq!(log.watchers_at_drop.load(SeqCst), 1);
}

async fn g7_dropped_pending_watched_releases_after_destructor<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(1);
    let mut w = s.track(conn.observe(&s));
    assert!(poll_now(&mut w).is_none());
    s.trigger();
    let waiter = drained_sees_dropped(&cx, &s, &log);
    drop(w);
    assert_eq!(log.watchers_at_drop.load(SeqCst), 1);
    assert!(waiter.await);
    assert_eq!(s.report().remaining, 0);
}

/// A future that panics when polled, holding a connection as a field (so the
/// connection is dropped with the future, not by the panicking frame).
#[cfg(panic = "unwind")]
struct PanicOnPoll(#[allow(dead_code)] Conn);

#[cfg(panic = "unwind")]
impl std::future::Future for PanicOnPoll {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        panic!("tracked future panics (expected by the test)");
    }
}

#[cfg(panic = "unwind")]
async fn g7_panicking_tracked_future_released_after_destructor<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (conn, log) = Conn::new(1);
    let tracked = s.track(PanicOnPoll(conn.observe(&s)));
    s.trigger();
    let waiter = drained_sees_dropped(&cx, &s, &log);
    let result = std::panic::AssertUnwindSafe(cx.exec.spawn(tracked))
        .catch_unwind()
        .await;
    assert!(result.is_err(), "the panic reaches the joiner");
    assert!(waiter.await);
    assert_eq!(log.watchers_at_drop.load(SeqCst), 1);
    assert_eq!(s.report().remaining, 0);
}

#[cfg(panic = "unwind")]
async fn g7_guard_dropped_during_unwind_counts_down<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    // On a std thread.
    let g = s.guard().unwrap();
    s.trigger();
    let joined = thread::spawn(move || {
        let _g = g;
        panic!("unwinding with a guard (expected by the test)");
    })
    .join();
    assert!(joined.is_err());
    assert_eq!(s.phase(), Phase::Drained, "the unwind gave the count back");

    // On the executor, with a guard and a watched connection in the unwinding task.
    let s = Shutdown::new();
    cx.probe.observe("second", &s);
    let g = s.guard().unwrap();
    let (conn, log) = Conn::new(1);
    let w = s.watch(conn.observe(&s));
    s.trigger();
    let waiter = drained_sees_dropped(&cx, &s, &log);
    let task = cx.exec.spawn(async move {
        let _g = g;
        let _w = w;
        future::yield_now().await;
        panic!("unwinding with a guard and a watched connection (expected by the test)");
    });
    assert!(
        std::panic::AssertUnwindSafe(task)
            .catch_unwind()
            .await
            .is_err()
    );
    assert!(waiter.await);
    assert!(log.watchers_at_drop.load(SeqCst) >= 1);
    assert_eq!(s.report().remaining, 0);
}

// ----------------------------------------------------------------------------
// G8. Last handle triggers.
// ----------------------------------------------------------------------------

async fn g8_dropping_every_handle_triggers<E: Exec>(cx: Cx<E>) {
    // Not observed by the probe: the probe would hold a handle.
    let s = Shutdown::new();
    let s2 = s.clone();
    let g = s.guard().unwrap();
    let (conn, log) = Conn::new(9);
    let watched = cx.exec.spawn(s.watch(conn.finish_on_graceful()));
    let triggered: Vec<_> = (0..4).map(|_| spawn_wait(&cx, s.triggered())).collect();
    let (drained, drained_polls) = spawn_wait(&cx, s.drained());
    let drained_done = Arc::new(AtomicBool::new(false));
    let drained = {
        let done = drained_done.clone();
        cx.exec.spawn(async move {
            drained.await;
            done.store(true, SeqCst);
        })
    };
    for (_, polls) in &triggered {
        eventually(&cx, "triggered waiter polled", || polls.load(SeqCst) > 0).await;
    }
    eventually(&cx, "drained waiter polled", || {
        drained_polls.load(SeqCst) > 0
    })
    .await;
    let mut probe_triggered = s.triggered();
    // Waits hold no handle: they read the phase without keeping it from coming.
    let mut probe_drained = s.drained();

    drop(s);
    assert!(
        poll_now(&mut probe_triggered).is_none(),
        "one handle left: not triggered"
    );
    cx.probe.note("one handle left");
    drop(s2);
    cx.probe.note("no handle left");
    assert_eq!(poll_now(&mut probe_triggered), Some(()));
    for (join, _) in triggered {
        join.await;
    }
    assert_eq!(watched.await, Ok(9));
    assert_eq!(
        log.graceful(),
        1,
        "the last handle's trigger asks connections"
    );
    assert!(
        poll_now(&mut probe_drained).is_none(),
        "the guard keeps it undrained"
    );
    assert!(!drained_done.load(SeqCst), "drained waits for the guard");
    drop(g);
    assert_eq!(poll_now(&mut probe_drained), Some(()));
    drained.await;
    assert!(drained_done.load(SeqCst));
}

async fn g8_dropping_child_handles_does_not_trigger_the_child<E: Exec>(cx: Cx<E>) {
    let parent = Shutdown::new();
    // Only the parent is observed: the probe would hold a handle of the child.
    cx.probe.observe("parent", &parent);
    let child = parent.child();
    let cg = child.guard().unwrap();
    let (waiter, polls) = spawn_wait(&cx, child.triggered());
    let mut probe_triggered = child.triggered();
    // `parent.child().watch(conn)`: the child's only handle is gone at once.
    let (conn, log) = Conn::new(4);
    let conn_polls = Arc::new(AtomicUsize::new(0));
    let watched = cx.exec.spawn(Counted {
        fut: parent.child().watch(conn.finish_on_graceful()),
        polls: conn_polls.clone(),
    });
    eventually(&cx, "child waiter and connection polled", || {
        polls.load(SeqCst) > 0 && conn_polls.load(SeqCst) > 0
    })
    .await;
    drop(child);
    assert!(
        poll_now(&mut probe_triggered).is_none(),
        "dropping the child's last handle does not trigger it"
    );
    assert_eq!(parent.phase(), Phase::Running);
    assert_eq!(log.graceful(), 0, "the connection keeps serving");
    assert!(!log.dropped());
    assert_eq!(
        parent.report().remaining,
        2,
        "the child's guard and the connection count"
    );

    // The parent can still trigger them.
    assert!(parent.trigger());
    assert_eq!(poll_now(&mut probe_triggered), Some(()));
    waiter.await;
    assert_eq!(watched.await, Ok(4));
    assert_eq!(log.graceful(), 1);
    assert_eq!(parent.report().remaining, 1);
    assert_eq!(parent.phase(), Phase::Triggered, "the child's guard lives");
    drop(cg);
    assert_eq!(parent.report().remaining, 0);
    parent.drained().await;

    // A root still triggers on its last handle's drop, also while a child's
    // handle lives, and the child with it.
    let root = Shutdown::new();
    let child = root.child();
    let mut root_triggered = root.triggered();
    assert!(poll_now(&mut root_triggered).is_none());
    drop(root);
    assert_eq!(poll_now(&mut root_triggered), Some(()));
    assert_eq!(poll_now(&mut child.triggered()), Some(()));
    assert_eq!(child.phase(), Phase::Drained);
}

// ----------------------------------------------------------------------------
// G9. Scopes nest.
// ----------------------------------------------------------------------------

async fn g9_child_triggered_and_forced_with_parent<E: Exec>(cx: Cx<E>) {
    let parent = Shutdown::new();
    let child = parent.child();
    cx.probe.observe("parent", &parent);
    cx.probe.observe("child", &child);
    let cg = child.guard().unwrap().with_label("child guard");
    let (announced, apolls) = spawn_wait(&cx, child.announced());
    let (triggered, tpolls) = spawn_wait(&cx, child.triggered());
    eventually(&cx, "child waiters polled", || {
        apolls.load(SeqCst) > 0 && tpolls.load(SeqCst) > 0
    })
    .await;

    assert!(parent.announce());
    assert_eq!(child.phase(), Phase::Announced);
    assert!(
        !child.announce(),
        "the parent's announce announced the child"
    );
    announced.await;

    assert!(parent.trigger());
    assert_eq!(child.phase(), Phase::Triggered);
    assert!(!child.trigger(), "the parent's trigger triggered the child");
    triggered.await;

    // The child is triggered already: a drain of it waits for its force.
    let (forced, fpolls) = spawn_wait(&cx, until_forced(&child));
    eventually(&cx, "child drain polled", || fpolls.load(SeqCst) > 0).await;
    let parent_forced = parent.force();
    assert_forced(&parent_forced, 1);
    assert_eq!(child.phase(), Phase::Forced);
    assert_eq!(child.guard().unwrap_err(), Refused::Forced);
    let child_forced = forced.await;
    assert_forced(&child_forced, 1);
    assert_eq!(
        child_forced.report().unwrap().stragglers[0].label,
        "child guard",
        "the child keeps its part of the parent's report"
    );
    assert_eq!(
        parent_forced.report().unwrap().stragglers[0].label,
        "child guard"
    );

    drop(cg);
    child.drained().await;
    parent.drained().await;
    assert_eq!(child.guard().unwrap_err(), Refused::Forced);
}

async fn g9_child_created_after_parent_triggered_or_forced<E: Exec>(cx: Cx<E>) {
    let parent = Shutdown::new();
    cx.probe.observe("parent", &parent);
    let g = parent.guard().unwrap();
    parent.announce();
    let announced = parent.child();
    assert_eq!(announced.phase(), Phase::Announced);
    assert_eq!(poll_now(&mut announced.announced()), Some(()));
    assert!(poll_now(&mut announced.triggered()).is_none());
    let ag = announced.guard().unwrap();

    parent.trigger();
    assert_eq!(announced.phase(), Phase::Triggered, "its guard lives");
    let child = parent.child();
    // Triggered at creation, with nothing in it: drained at once, not forced.
    assert_eq!(child.phase(), Phase::Drained);
    assert_eq!(poll_now(&mut child.triggered()), Some(()));
    assert_eq!(child.guard().unwrap_err(), Refused::Drained);
    let grandchild = child.child();
    assert_eq!(grandchild.phase(), Phase::Drained);
    assert_eq!(parent.report().remaining, 2);
    drop(ag);
    assert_eq!(parent.report().remaining, 1);
    assert_eq!(
        parent.phase(),
        Phase::Triggered,
        "the drained children hold nothing: only the guard"
    );

    assert_forced(&parent.force(), 1);
    let forced = parent.child();
    assert_eq!(forced.phase(), Phase::Drained);
    assert_eq!(poll_now(&mut forced.triggered()), Some(()));
    assert_eq!(
        forced.guard().unwrap_err(),
        Refused::Forced,
        "created forced"
    );
    drop(g);
    parent.drained().await;
    // A child that had drained before the force is forced with its parent too.
    assert_eq!(child.guard().unwrap_err(), Refused::Forced);
    assert_eq!(grandchild.guard().unwrap_err(), Refused::Forced);
}

async fn g9_triggering_or_forcing_child_leaves_parent<E: Exec>(cx: Cx<E>) {
    let parent = Shutdown::new();
    cx.probe.observe("parent", &parent);
    let child = parent.child();
    assert!(child.trigger());
    child.drained().await;
    assert_eq!(parent.phase(), Phase::Running);
    assert_eq!(parent.report().remaining, 0);

    let child = parent.child();
    let cg = child.guard().unwrap();
    assert!(child.announce());
    assert_eq!(parent.phase(), Phase::Running, "announcing a child");
    assert_forced(&child.force(), 1);
    assert_eq!(child.phase(), Phase::Forced);
    assert_eq!(parent.phase(), Phase::Running, "forcing a child");
    assert!(parent.is_ready());
    assert!(parent.guard().is_ok(), "the parent still admits work");
    assert_eq!(parent.report().remaining, 1);
    drop(cg);
    assert_eq!(parent.report().remaining, 0);
    assert_eq!(parent.phase(), Phase::Running);
    assert!(parent.trigger());
    assert_eq!(parent.phase(), Phase::Drained);
}

async fn g9_parent_drains_only_after_child<E: Exec>(cx: Cx<E>) {
    let parent = Shutdown::new();
    let child = parent.child();
    cx.probe.observe("parent", &parent);
    cx.probe.observe("child", &child);
    let cg = child.guard().unwrap();
    let waiter = cx.exec.spawn({
        let (drained, child) = (parent.drained(), child.clone());
        async move {
            drained.await;
            child.phase() == Phase::Drained
        }
    });
    parent.trigger();
    assert_eq!(parent.phase(), Phase::Triggered);
    assert_eq!(parent.report().remaining, 1);
    assert!(poll_now(&mut parent.drained()).is_none());
    drop(cg);
    assert!(waiter.await, "the parent drained before its child");
    assert_eq!(parent.phase(), Phase::Drained);
}

async fn g9_child_created_after_parent_drained<E: Exec>(cx: Cx<E>) {
    let parent = Shutdown::new();
    cx.probe.observe("parent", &parent);
    parent.trigger();
    assert_eq!(parent.phase(), Phase::Drained);
    let child = parent.child();
    assert_eq!(child.phase(), Phase::Drained);
    assert_eq!(child.guard().unwrap_err(), Refused::Drained);
    assert_eq!(
        child.watch(Conn::new(1).0).await,
        Err(Stopped::Refused(Refused::Drained))
    );
    assert_eq!(parent.report().remaining, 0);
    assert_eq!(parent.phase(), Phase::Drained);
    drop(child);
    assert_eq!(parent.report().remaining, 0);
    parent.drained().await;
}

async fn g9_nested_scopes_drain_inside_out<E: Exec>(cx: Cx<E>) {
    let root = Shutdown::new();
    let mid = root.child();
    let leaf = mid.child();
    cx.probe.observe("root", &root);
    cx.probe.observe("mid", &mid);
    cx.probe.observe("leaf", &leaf);
    let g = leaf.guard().unwrap();
    let waiter = cx.exec.spawn({
        let (drained, mid, leaf) = (root.drained(), mid.clone(), leaf.clone());
        async move {
            drained.await;
            (mid.phase(), leaf.phase())
        }
    });
    root.trigger();
    assert_eq!(
        (mid.phase(), leaf.phase()),
        (Phase::Triggered, Phase::Triggered)
    );
    assert_eq!(
        (
            root.report().remaining,
            mid.report().remaining,
            leaf.report().remaining
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (root.phase(), mid.phase()),
        (Phase::Triggered, Phase::Triggered)
    );
    drop(g);
    assert_eq!(waiter.await, (Phase::Drained, Phase::Drained));
}

// ----------------------------------------------------------------------------
// run_until_triggered.
// ----------------------------------------------------------------------------

async fn until_trigger_resolves_none_and_drops_inner<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (flag, dropped) = DropFlag::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let until = s.run_until_triggered(async move {
        let _flag = flag;
        future::pending::<()>().await;
        1
    });
    let join = cx.exec.spawn(Counted {
        fut: Box::pin(until),
        polls: polls.clone(),
    });
    eventually(&cx, "until polled", || polls.load(SeqCst) > 0).await;
    assert_eq!(s.report().remaining, 0);
    s.trigger();
    assert_eq!(s.phase(), Phase::Drained, "the drain does not wait for it");
    assert_eq!(join.await, None);
    assert!(dropped.load(SeqCst));
}

async fn until_completion_resolves_some<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let (flag, dropped) = DropFlag::new();
    let out = s
        .run_until_triggered(async move {
            let _flag = flag;
            future::yield_now().await;
            5
        })
        .await;
    assert_eq!(out, Some(5));
    assert!(dropped.load(SeqCst));
    assert_eq!(s.phase(), Phase::Running);
}

async fn until_never_starts_when_already_triggered<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    s.trigger();
    let started = Arc::new(AtomicBool::new(false));
    let (flag, dropped) = DropFlag::new();
    let until = s.run_until_triggered({
        let started = started.clone();
        async move {
            let _flag = flag;
            started.store(true, SeqCst);
            5
        }
    });
    assert_eq!(cx.exec.spawn(until).await, None);
    assert!(!started.load(SeqCst));
    assert!(dropped.load(SeqCst));
}

// ----------------------------------------------------------------------------
// Issue-driven cases for G4, G9 and G10.
// ----------------------------------------------------------------------------

/// Forcing before any trigger, with child scopes that never ran anything: an idle
/// scope is not work, so the force reports nothing and the exit status is success.
async fn g4_force_before_trigger_with_only_idle_scopes_is_drained<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let scopes: Vec<Shutdown> = (0..3).map(|_| s.child()).collect();
    let grandchild = scopes[0].child();
    let outcome = s.force();
    assert_eq!(outcome, Outcome::Drained, "idle scopes counted as running");
    assert_eq!(
        std::process::ExitCode::from(outcome),
        std::process::ExitCode::SUCCESS
    );
    for scope in scopes.iter().chain([&grandchild]) {
        assert_eq!(scope.phase(), Phase::Drained);
        assert_eq!(scope.guard().unwrap_err(), Refused::Forced);
    }
    assert_eq!(s.phase(), Phase::Drained);
    assert_eq!(
        s.drain_until(future::pending::<()>()).await,
        Outcome::Drained
    );
}

/// 100,000 nested scopes, on a thread with a 256 KiB stack: creating them, the
/// trigger carried down to the deepest, the force's report walking up from it, the
/// drain carried back up, and freeing the chain (from its deepest end, and
/// untriggered) are all loops; any recursion over the depth overflows that stack.
async fn g9_hundred_thousand_nested_scopes_need_no_recursion<E: Exec>(cx: Cx<E>) {
    let depth = scaled(100_000, 300);
    cx.probe.note(format!("depth {depth}"));
    let chain = move |root: &Shutdown| {
        let mut scopes = vec![root.child()];
        for _ in 1..depth {
            let next = scopes.last().unwrap().child();
            scopes.push(next);
        }
        scopes
    };
    let small_stack = thread::Builder::new().stack_size(256 * 1024);
    let worker = small_stack.spawn(move || {
        let root = Shutdown::new();
        let scopes = chain(&root);
        let deepest = scopes.last().unwrap();
        let guard = deepest.guard().unwrap().with_label("deepest");
        assert_eq!(root.report().remaining, 1);
        assert!(root.trigger());
        assert_eq!(
            deepest.phase(),
            Phase::Triggered,
            "trigger reached the deepest"
        );
        let outcome = root.force();
        assert_eq!(outcome.remaining(), 1);
        assert_eq!(outcome.report().unwrap().stragglers[0].label, "deepest");
        drop(guard);
        assert_eq!(root.phase(), Phase::Drained, "the drain came back up");
        drop(scopes);
        drop(root);

        // An untriggered chain, freed: each scope gives back its hold on the way.
        let root = Shutdown::new();
        drop(chain(&root));
        assert_eq!(root.phase(), Phase::Running);
        assert_eq!(root.report().remaining, 0);
        assert!(root.trigger());
        assert_eq!(
            root.phase(),
            Phase::Drained,
            "a freed scope still held the root"
        );
    });
    worker
        .unwrap()
        .join()
        .expect("the nested-scope worker failed");
}

/// A waker that panics when woken.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics on purpose");
    }
}

/// A waker that panics, placed first among many waiters, and a child scope: the
/// trigger still triggers the child and wakes every other waiter, then resumes the
/// panic to its caller; the drain still comes, up to the root, though the drained
/// waiters' first waker panics too.
async fn g10_panicking_waker_does_not_stop_the_transition<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let child = s.child();
    cx.probe.observe("child", &child);
    let guard = child.guard().unwrap();
    let waker = std::task::Waker::from(Arc::new(PanickingWaker));
    let mut context = Context::from_waker(&waker);
    // Registered first: polled before any other waiter.
    let mut first_triggered = s.triggered();
    assert!(
        Pin::new(&mut first_triggered)
            .poll(&mut context)
            .is_pending()
    );
    let mut first_drained = s.drained();
    assert!(Pin::new(&mut first_drained).poll(&mut context).is_pending());
    let waiters: Vec<_> = (0..20)
        .flat_map(|_| {
            [
                s.triggered(),
                child.triggered(),
                s.drained(),
                child.drained(),
            ]
        })
        .map(|wait| spawn_wait(&cx, wait))
        .collect();
    for (_, polls) in &waiters {
        eventually(&cx, "waiter registered", || polls.load(SeqCst) > 0).await;
    }

    let trigger = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.trigger()));
    assert!(trigger.is_err(), "the waker's panic reaches the caller");
    assert_eq!(s.phase(), Phase::Triggered);
    assert_eq!(child.phase(), Phase::Triggered, "the child was triggered");
    assert!(!s.trigger(), "the trigger was complete");

    let release = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(guard)));
    assert!(
        release.is_err(),
        "the drained waker's panic reaches the releaser"
    );
    assert_eq!(child.phase(), Phase::Drained);
    assert_eq!(
        s.phase(),
        Phase::Drained,
        "the parent drained after its child"
    );
    for (join, _) in waiters {
        join.await;
    }
    drop((first_triggered, first_drained));
}

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A `run_until_triggered` that finished and is kept alive lets go of the
/// coordinator: the trigger that comes later does not wake the task that
/// polled it (15.3).
async fn until_finished_lets_go_of_the_trigger<E: Exec>(cx: Cx<E>) {
    let s = Shutdown::new();
    cx.probe.observe("root", &s);
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(counter.clone());
    let mut context = Context::from_waker(&waker);
    let mut ready = false;
    let inner = future::poll_fn(move |_| {
        // Pending on the first poll (so it parks on the trigger), done on the second.
        if std::mem::replace(&mut ready, true) {
            Poll::Ready(7)
        } else {
            Poll::Pending
        }
    });
    let mut until = Box::pin(s.run_until_triggered(inner));
    assert!(until.as_mut().poll(&mut context).is_pending());
    assert_eq!(until.as_mut().poll(&mut context), Poll::Ready(Some(7)));
    assert!(s.trigger());
    assert_eq!(
        counter.0.load(SeqCst),
        0,
        "woken by a trigger after it finished"
    );
    drop(until);
}
