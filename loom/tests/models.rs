//! Loom models of the racy guarantees (1, 2, 3, 5, 6, 9), explored over every
//! interleaving of the coordinator's atomics and locks: its state word, its
//! per-thread shards, its scopes' lists, and event-listener's own atomics and locks
//! (its `loom` feature): the code that ships (only `Arc` stays std).
//!
//! Run from the repository root (`WIND_DOWN_SHARDS` sets the shards per root, 2 by
//! default; the checks run 1, 2 and 4, which with at most four threads per model
//! gives each thread a shard of its own, as on a many-core machine):
//! `RUSTFLAGS="--cfg loom --cfg wind_down_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --manifest-path loom/Cargo.toml`
//!
//! A lost wake-up shows up as a loom deadlock, a broken guarantee as a failed
//! assertion.

#![cfg(all(loom, wind_down_loom))]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

use wind_down::{GracefulConnection, Outcome, Phase, Refused, Shutdown};

/// (a) A task waiting for the trigger, and the trigger in another thread.
#[test]
fn g3_waiting_vs_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = thread::spawn(move || assert!(s2.trigger()));
        block_on(s.triggered());
        assert!(s.phase() >= Phase::Triggered);
        t.join().unwrap();
    });
}

/// (a') Two racing triggers: exactly one returns `true`; a waiter sees the phase.
#[test]
fn g1_racing_triggers_one_winner() {
    loom::model(|| {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = thread::spawn(move || s2.trigger());
        let mine = s.trigger();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "exactly one trigger() returns true");
        block_on(s.triggered());
    });
}

/// (b) The last guard's drop, the trigger and a drained waiter, in three threads:
/// the waiter completes in every interleaving, and sees the drained state.
#[test]
fn g3_last_guard_drop_vs_trigger_vs_drained_waiter() {
    loom::model(|| {
        let s = Shutdown::new();
        let g = s.guard().unwrap();
        let s1 = s.clone();
        let dropper = thread::spawn(move || drop(g));
        let trigger = thread::spawn(move || {
            s1.trigger();
        });
        block_on(s.drained());
        assert_eq!(s.phase(), Phase::Drained);
        assert_eq!(s.report().remaining, 0);
        dropper.join().unwrap();
        trigger.join().unwrap();
    });
}

/// Takes a guard from `s` on a new thread and drops it there, setting the returned
/// flag just before the drop. The thread returns whether it got the guard; a
/// refusal must be `Drained` (the models call it only before any force).
fn take_guard_on_another_thread(s: &Shutdown) -> (thread::JoinHandle<bool>, Arc<AtomicBool>) {
    let released = Arc::new(AtomicBool::new(false));
    let taker = {
        let (s, released) = (s.clone(), released.clone());
        thread::spawn(move || match s.guard() {
            Ok(g) => {
                released.store(true, Ordering::Release);
                drop(g);
                true
            }
            Err(e) => {
                assert_eq!(e, Refused::Drained);
                false
            }
        })
    };
    (taker, released)
}

/// (c) With the trigger done, a new guard from `Shutdown::guard` races the final
/// guard's drop: the drain is never observed while a guard that was handed out is
/// still alive, and a refused guard is refused as drained.
#[test]
fn g2_new_guard_vs_final_drop() {
    loom::model(|| {
        let s = Shutdown::new();
        let first = s.guard().unwrap();
        s.trigger();
        let (taker, released) = take_guard_on_another_thread(&s);
        let dropper = thread::spawn(move || drop(first));
        block_on(s.drained());
        let released_at_drain = released.load(Ordering::Acquire);
        let got_guard = taker.join().unwrap();
        dropper.join().unwrap();
        if got_guard {
            assert!(
                released_at_drain,
                "drained observed while a handed-out guard was alive"
            );
        }
        assert_eq!(s.report().remaining, 0);
    });
}

/// (c') The same with a clone of a live guard racing the other guard's final drop.
#[test]
fn g2_guard_clone_vs_final_drop() {
    loom::model(|| {
        let s = Shutdown::new();
        let first = s.guard().unwrap();
        let second = s.guard().unwrap();
        s.trigger();
        let released = Arc::new(AtomicBool::new(false));
        let cloner = {
            let released = released.clone();
            thread::spawn(move || {
                let clone = second.clone();
                drop(second);
                released.store(true, Ordering::Release);
                drop(clone);
            })
        };
        let dropper = thread::spawn(move || drop(first));
        block_on(s.drained());
        assert!(
            released.load(Ordering::Acquire),
            "drained observed while a cloned guard was alive"
        );
        cloner.join().unwrap();
        dropper.join().unwrap();
    });
}

/// (d) Creating a child scope races the parent's trigger: the child is always
/// triggered (by the parent: its own handle is still alive while it waits), and the
/// parent's drain waits for the child's guard.
#[test]
fn g9_child_creation_vs_parent_trigger() {
    loom::model(|| {
        let parent = Shutdown::new();
        let released = Arc::new(AtomicBool::new(false));
        let creator = {
            let (parent, released) = (parent.clone(), released.clone());
            thread::spawn(move || {
                let child = parent.child();
                let guard = child.guard();
                block_on(child.triggered());
                assert!(child.phase() >= Phase::Triggered);
                let held = guard.is_ok();
                if let Err(e) = &guard {
                    assert_eq!(*e, Refused::Drained);
                }
                released.store(true, Ordering::Release);
                drop(guard);
                held
            })
        };
        let trigger = {
            let parent = parent.clone();
            thread::spawn(move || {
                parent.trigger();
            })
        };
        block_on(parent.drained());
        let released_at_drain = released.load(Ordering::Acquire);
        let held = creator.join().unwrap();
        trigger.join().unwrap();
        if held {
            assert!(
                released_at_drain,
                "parent drained while its child still held a guard"
            );
        }
        assert_eq!(parent.phase(), Phase::Drained);
        assert_eq!(parent.report().remaining, 0);
    });
}

/// A connection that completes once asked to shut down gracefully.
struct Conn {
    graceful: Arc<AtomicUsize>,
}

impl Future for Conn {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.graceful.load(Ordering::Acquire) > 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl GracefulConnection for Conn {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.graceful.fetch_add(1, Ordering::AcqRel);
    }
}

/// (e) A watched connection driven on one thread while another triggers: it is
/// asked to shut down exactly once, completes, and then the coordinator drains.
#[test]
fn g5_watched_connection_vs_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let graceful = Arc::new(AtomicUsize::new(0));
        let watched = s.watch(Conn {
            graceful: graceful.clone(),
        });
        let driver = thread::spawn(move || block_on(watched));
        s.trigger();
        assert_eq!(driver.join().unwrap(), Ok(()));
        assert_eq!(
            graceful.load(Ordering::Acquire),
            1,
            "graceful_shutdown called once"
        );
        block_on(s.drained());
    });
}

/// (f) A deadline-forced drain while the last guard is dropped in another thread:
/// the outcome is a clean drain or exactly one forced watcher, and the coordinator
/// ends drained either way (guarantee 6).
#[test]
fn g6_force_vs_last_guard_drop() {
    loom::model(|| {
        let s = Shutdown::new();
        let g = s.guard().unwrap();
        s.trigger();
        let finisher = thread::spawn(move || drop(g));
        let outcome = block_on(s.drain_until(std::future::ready(())));
        finisher.join().unwrap();
        assert!(outcome.remaining() <= 1, "{outcome:?}");
        assert_eq!(s.phase(), Phase::Drained);
    });
}

// Per-thread shards. Under loom a thread's shard is its model thread number modulo
// the shard count (2): the main thread (0) and the second spawned thread (2) share
// shard 0, the first spawned thread (1) has shard 1.

/// (g) A guard taken on a thread whose shard has never held (so the acquisition
/// *arrives*: takes the shard's hold on the state word, then sets HOLDS) races the
/// trigger, which closes the shard. Either the guard is refused as drained, or the
/// drain waits for it; the coordinator ends drained with no watcher left.
#[test]
fn g2_shard_arrival_vs_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let (taker, released) = take_guard_on_another_thread(&s);
        s.trigger();
        block_on(s.drained());
        let released_at_drain = released.load(Ordering::Acquire);
        if taker.join().unwrap() {
            assert!(released_at_drain, "drained while a sharded guard was alive");
        }
        assert_eq!(s.report().remaining, 0);
        assert_eq!(s.phase(), Phase::Drained);
    });
}

/// (h) Guards on two shards given back while the trigger closes both: shard 0
/// holds a guard taken before, released on another thread; shard 1 arrives during
/// the race. The drain is observed only after every handed-out guard is gone.
#[test]
fn g2_two_shards_release_vs_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let g0 = s.guard().unwrap();
        let (taker, taken_released) = take_guard_on_another_thread(&s);
        let g0_released = Arc::new(AtomicBool::new(false));
        let dropper = {
            let g0_released = g0_released.clone();
            thread::spawn(move || {
                g0_released.store(true, Ordering::Release);
                drop(g0);
            })
        };
        s.trigger();
        block_on(s.drained());
        let at_drain = (
            g0_released.load(Ordering::Acquire),
            taken_released.load(Ordering::Acquire),
        );
        let took = taker.join().unwrap();
        dropper.join().unwrap();
        assert_eq!(at_drain, (true, took), "drained while a guard was alive");
        assert_eq!(s.report().remaining, 0);
    });
}

/// (i) `force` racing a `trigger` that is closing the shards: once `force` returned,
/// no guard is handed out on any shard, and with no watcher alive the outcome is a
/// clean drain (a shard's hold is never counted as a remaining watcher).
#[test]
fn g1_force_vs_trigger_closing_shards() {
    loom::model(|| {
        let s = Shutdown::new();
        // The main thread's shard arrives and empties: it holds, with no guard.
        drop(s.guard().unwrap());
        let s1 = s.clone();
        let trigger = thread::spawn(move || {
            s1.trigger();
        });
        assert_eq!(s.force(), Outcome::Drained);
        assert_eq!(s.guard().unwrap_err(), Refused::Forced);
        trigger.join().unwrap();
        block_on(s.drained());
        assert_eq!(s.report().remaining, 0);
    });
}

/// Takes a guard on this thread and clones it on a new thread, which drops both,
/// setting the returned flag before the last drop. A clone counts where the
/// original counts (this thread's shard). With `arrive_first` the new thread first
/// makes its own shard hold (a guard taken and dropped), so two shards hold.
fn clone_on_another_thread(
    s: &Shutdown,
    arrive_first: bool,
) -> (thread::JoinHandle<()>, Arc<AtomicBool>) {
    let g = s.guard().unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let cloner = {
        let (s, released) = (s.clone(), released.clone());
        thread::spawn(move || {
            if arrive_first {
                // After the trigger this counts on the state word instead.
                drop(s.guard().expect("not drained while `g` lives"));
            }
            let clone = g.clone();
            assert!(s.report().remaining >= 1);
            drop(g);
            released.store(true, Ordering::Release);
            drop(clone);
        })
    };
    (cloner, released)
}

/// Waits for the drain, which must come after both guards of
/// [`clone_on_another_thread`] are gone.
fn drained_after_clone(s: &Shutdown, cloner: thread::JoinHandle<()>, released: &AtomicBool) {
    block_on(s.drained());
    assert!(
        released.load(Ordering::Acquire),
        "drained while a cloned guard was alive"
    );
    cloner.join().unwrap();
    assert_eq!(s.report().remaining, 0);
}

/// (j) A guard cloned on another thread (counting on the original's shard) while
/// the original is dropped and the coordinator triggered: the drain waits for the
/// clone.
#[test]
fn g2_cross_shard_clone_vs_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let (cloner, released) = clone_on_another_thread(&s, true);
        s.trigger();
        drained_after_clone(&s, cloner, &released);
    });
}

/// (k) A guard cloned on another thread while the coordinator is forced: the clone
/// always succeeds (where the original counts), the force counts every live guard,
/// and the drain ends only after both are gone.
#[test]
fn g2_clone_arriving_on_its_shard_vs_force() {
    loom::model(|| {
        let s = Shutdown::new();
        let (cloner, released) = clone_on_another_thread(&s, false);
        match s.force() {
            Outcome::Forced(report) => assert!((1..=2).contains(&report.remaining)),
            Outcome::Drained => assert!(
                released.load(Ordering::Acquire),
                "forced with no watcher counted while a guard was alive"
            ),
        }
        drained_after_clone(&s, cloner, &released);
    });
}

/// (l) A child scope whose last guard and handle go on another thread (the scope
/// is freed: it leaves its parent's list and gives back its hold) while the parent
/// triggers and walks its children: the parent drains in every interleaving, after
/// the guard is gone.
#[test]
fn g9_child_freed_vs_parent_trigger() {
    loom::model(|| {
        let parent = Shutdown::new();
        let child = parent.child();
        let guard = child.guard().unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let dropper = {
            let released = released.clone();
            thread::spawn(move || {
                released.store(true, Ordering::Release);
                drop(guard);
                drop(child);
            })
        };
        parent.trigger();
        block_on(parent.drained());
        assert!(
            released.load(Ordering::Acquire),
            "parent drained while its child's guard was alive"
        );
        dropper.join().unwrap();
        assert_eq!(parent.report().remaining, 0);
    });
}

/// (m) A grandchild's last guard is dropped on another thread while the root
/// triggers: the drain is carried up two levels (grandchild, child, root) by
/// whichever thread makes each level empty, and the root's drained waiter is woken.
#[test]
fn g9_grandchild_drain_vs_root_trigger() {
    loom::model(|| {
        let root = Shutdown::new();
        let child = root.child();
        let grandchild = child.child();
        let guard = grandchild.guard().unwrap();
        let dropper = thread::spawn(move || drop(guard));
        root.trigger();
        block_on(root.drained());
        assert_eq!(grandchild.phase(), Phase::Drained);
        assert_eq!(child.phase(), Phase::Drained);
        dropper.join().unwrap();
    });
}

/// A connection that never finishes on its own.
struct Stuck;

impl Future for Stuck {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl GracefulConnection for Stuck {
    fn graceful_shutdown(self: Pin<&mut Self>) {}
}

/// (n) A watched connection that never finishes, driven on one thread, while
/// another forces: its task is woken in every interleaving (first by the trigger,
/// then by the force), it is dropped, and the coordinator drains.
#[test]
fn g6_watched_connection_vs_force() {
    loom::model(|| {
        let s = Shutdown::new();
        let watched = s.watch(Stuck);
        let driver = thread::spawn(move || block_on(watched));
        let outcome = s.force();
        assert_eq!(outcome.remaining(), 1, "{outcome:?}");
        assert_eq!(driver.join().unwrap(), Err(wind_down::Stopped::Forced));
        block_on(s.drained());
    });
}
