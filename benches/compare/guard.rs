//! Measurements 1 and 2: acquiring and releasing one in-flight token ("guard").

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::report::{Group, Report};
use crate::{Config, sys};

type Loop = Arc<dyn Fn(u64) + Send + Sync>;

/// The row of wind-down's previous, unsafe guard (`unsafe_v1.rs`).
pub const PREVIOUS_DESIGN: &str = "reference: previous unsafe design (tagged pointer, shared Arc)";

struct Case {
    name: &'static str,
    run: Loop,
}

/// One loop per library: `n` times, take the library's in-flight token and drop it.
/// The coordinators are created once and live in the closures.
fn cases(rt: &tokio::runtime::Runtime) -> Vec<Case> {
    let _enter = rt.enter(); // tokio-graceful spawns its signal task on creation
    let mut cases = Vec::new();

    let bare = Arc::new(AtomicUsize::new(0));
    cases.push(Case {
        name: "baseline: Arc<AtomicUsize> fetch_add + fetch_sub",
        run: Arc::new(move |n| {
            for _ in 0..n {
                let c = black_box(&bare);
                c.fetch_add(1, Ordering::Relaxed);
                c.fetch_sub(1, Ordering::AcqRel);
            }
        }),
    });

    // Not a library: wind-down's acquire/release on one shared state word, as before
    // per-thread shards (refuse once drained, so a CAS; release with fetch_sub),
    // without any `Arc` reference count. The floor for a guard that keeps guarantee
    // 2 on a single word; in 2 it shows what one shared word costs under contention.
    let word = Arc::new(AtomicUsize::new(0));
    cases.push(Case {
        name: "reference: state word only (CAS + fetch_sub, no Arc clone)",
        run: Arc::new(move |n| {
            const TRIGGERED: usize = 1;
            const FORCED: usize = 2;
            const ONE: usize = 4;
            for _ in 0..n {
                let w = black_box(&word);
                let mut cur = w.load(Ordering::Acquire);
                loop {
                    // The same three refusals as wind-down: forced, drained, overflow.
                    assert!(cur & FORCED == 0, "forced");
                    assert!(cur & TRIGGERED == 0 || cur >= ONE, "drained");
                    assert!(cur <= usize::MAX / 2, "overflow");
                    match w.compare_exchange_weak(
                        cur,
                        cur + ONE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => cur = actual,
                    }
                }
                let prev = w.fetch_sub(ONE, Ordering::AcqRel);
                black_box(prev & TRIGGERED != 0 && prev / ONE == 1);
            }
        }),
    });

    // Not a library: wind-down's previous guard (commit 830ccd6), kept in
    // `unsafe_v1.rs`: a tagged pointer to the thread's shard, no reference count of
    // its own. Next to the row below it measures what the safe guard's `Arc` costs.
    crate::unsafe_v1::self_check();
    let previous = crate::unsafe_v1::Shutdown::new();
    cases.push(Case {
        name: PREVIOUS_DESIGN,
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(previous.guard().expect("not drained")));
            }
        }),
    });

    let shutdown = wind_down::Shutdown::new();
    cases.push(Case {
        name: "wind-down Shutdown::guard()",
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(shutdown.guard().expect("not drained")));
            }
        }),
    });

    let shutdown = wind_down::Shutdown::new();
    let held = shutdown.guard().expect("not drained");
    cases.push(Case {
        name: "wind-down Guard::clone()",
        run: Arc::new(move |n| {
            let _keep = &shutdown;
            for _ in 0..n {
                drop(black_box(held.clone()));
            }
        }),
    });

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    cases.push(Case {
        name: "hyper-util GracefulShutdown::watcher()",
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(graceful.watcher()));
            }
        }),
    });

    let tg = tokio_graceful::Shutdown::new(std::future::pending::<()>());
    cases.push(Case {
        name: "tokio-graceful Shutdown::guard()",
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(tg.guard()));
            }
        }),
    });

    let manager = async_shutdown::ShutdownManager::<()>::new();
    cases.push(Case {
        name: "async-shutdown delay_shutdown_token()",
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(manager.delay_shutdown_token().expect("running")));
            }
        }),
    });

    let swansong = swansong::Swansong::new();
    cases.push(Case {
        name: "swansong Swansong::guard()",
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(swansong.guard()));
            }
        }),
    });

    let tracker = tokio_util::task::TaskTracker::new();
    cases.push(Case {
        name: "tokio-util TaskTracker::token()",
        run: Arc::new(move |n| {
            for _ in 0..n {
                drop(black_box(tracker.token()));
            }
        }),
    });
    cases
}

fn ns_per_iter(elapsed: Duration, iters: u64) -> f64 {
    elapsed.as_nanos() as f64 / iters as f64
}

/// Measurement 1: one thread, uncontended.
pub fn single_thread(cfg: &Config, rt: &tokio::runtime::Runtime, report: &mut Report) {
    let iters = cfg.scaled(2_000_000);
    let cases = cases(rt);
    let mut group = Group::new(
        "1",
        "guard acquire + release, 1 thread",
        "ns per acquire+release",
    );
    for c in &cases {
        group.row(c.name);
        (c.run)(iters / 10); // warm-up: caches, lazily created shards
    }
    let rounds = 2 * cfg.rounds; // cheap rounds: twice as many, for steadier medians
    let mut disturbed = 0;
    for round in 0..rounds {
        // Rotate the order each round so that slow drift is spread over every case.
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let cpu = sys::thread_cpu_time();
            let start = Instant::now();
            (cases[i].run)(iters);
            let elapsed = start.elapsed();
            if had_cpu(cpu, elapsed) == Some(false) {
                disturbed += 1;
            }
            group.rows[i].samples.push(ns_per_iter(elapsed, iters));
        }
    }
    group.note(format!(
        "{iters} pairs per round, {rounds} rounds; the thread is not pinned"
    ));
    group.note(disturbance(disturbed, rounds * cases.len()));
    report.push(group);
}

/// Measurement 2: two threads on one coordinator, pinned to two different CPUs.
pub fn two_threads(cfg: &Config, rt: &tokio::runtime::Runtime, report: &mut Report) {
    let iters = cfg.scaled(1_000_000);
    let cpus = sys::allowed_cpus();
    let cases = cases(rt);
    let mut group = Group::new(
        "2",
        "guard acquire + release, 2 threads on one coordinator",
        "ns per acquire+release per thread",
    );
    for c in &cases {
        group.row(c.name);
    }
    let mut pin_errors = Vec::new();
    let mut disturbed = 0;
    let rounds = 2 * cfg.rounds; // cheap rounds: twice as many, for steadier medians
    for round in 0..rounds + 1 {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let (elapsed, errors, undisturbed) = contended(&cases[i].run, iters, &cpus);
            pin_errors.extend(errors);
            if round > 0 && !undisturbed {
                disturbed += 1;
            }
            if round > 0 {
                // round 0 is the warm-up
                group.rows[i].samples.push(ns_per_iter(elapsed, iters));
            }
        }
    }
    group.note(format!(
        "{iters} pairs per thread per round, {rounds} rounds after one warm-up; time = the slower thread's"
    ));
    group.note(disturbance(disturbed, rounds * cases.len()));
    pin_errors.sort();
    pin_errors.dedup();
    if pin_errors.is_empty() && cpus.len() >= 2 {
        group.note(format!(
            "threads pinned to CPUs {} and {}",
            cpus[0], cpus[1]
        ));
    } else {
        group.note(format!(
            "threads NOT pinned ({} CPUs allowed{}{})",
            cpus.len(),
            if pin_errors.is_empty() { "" } else { "; " },
            pin_errors.join("; ")
        ));
    }
    report.push(group);
}

/// Whether the thread ran on a CPU for at least 90% of `wall` since `cpu_before`
/// (`None` where thread CPU time is not available).
pub fn had_cpu(cpu_before: Option<Duration>, wall: Duration) -> Option<bool> {
    let used = sys::thread_cpu_time()?.checked_sub(cpu_before?)?;
    Some(used.as_secs_f64() >= 0.9 * wall.as_secs_f64())
}

pub fn disturbance(disturbed: usize, total: usize) -> String {
    format!(
        "{disturbed} of {total} timed loops had a thread off its CPU for more than 10% of the loop (other work on the machine)"
    )
}

/// Runs `run(iters)` on two threads at once, started together; returns the
/// slower thread's time, any pinning failures, and whether both threads had their
/// CPU for the whole loop.
fn contended(run: &Loop, iters: u64, cpus: &[usize]) -> (Duration, Vec<String>, bool) {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let run = run.clone();
            let barrier = barrier.clone();
            let cpu = cpus.get(t).copied();
            std::thread::spawn(move || {
                let pinned = match cpu {
                    Some(cpu) => sys::pin_current_thread(cpu),
                    None => Err("fewer than two CPUs available".into()),
                };
                barrier.wait();
                let cpu = sys::thread_cpu_time();
                let start = Instant::now();
                run(iters);
                let elapsed = start.elapsed();
                (elapsed, pinned.err(), had_cpu(cpu, elapsed) != Some(false))
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut errors = Vec::new();
    let mut undisturbed = true;
    for h in handles {
        let (elapsed, err, had_cpu) = h.join().expect("bench thread panicked");
        slowest = slowest.max(elapsed);
        errors.extend(err);
        undisturbed &= had_cpu;
    }
    (slowest, errors, undisturbed)
}
