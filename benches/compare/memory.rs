//! Measurement 4: memory. Guard size, heap allocations per guard, and the per-task
//! state of "wait until shutdown is triggered": the future's own size plus what it
//! allocates on its first poll (counted with the counting global allocator). Then
//! [4b]: wind-down's `Wait` alone, ready at once (made after its phase was reached)
//! and parked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Waker};

use crate::alloc;
use crate::http::{NeverIo, idle_http1_conn};
use crate::report::{Report, Table};

const K: usize = 1000;

/// Heap allocations per acquire+release, over `K` pairs after a warm-up pair.
fn allocs_per_guard<G>(mut acquire: impl FnMut() -> G) -> f64 {
    drop(acquire());
    let before = alloc::snapshot();
    for _ in 0..K {
        drop(std::hint::black_box(acquire()));
    }
    before.since().allocs as f64 / K as f64
}

/// What one waiting task holds: `K` futures from `make`, each polled once (so that
/// it registers its waker). Returns (the future's size, allocations per future on
/// first poll, heap bytes still held per future after the first poll).
fn wait_state<F: Future>(mut make: impl FnMut() -> F) -> (usize, f64, f64) {
    let size = size_of_val(&make());
    // A warm-up waiter: one-time lazy set-up in the library is not per task.
    let mut warm = Box::pin(make());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(warm.as_mut().poll(&mut cx).is_pending());
    let mut futs: Vec<Pin<Box<F>>> = (0..K).map(|_| Box::pin(make())).collect();
    let before = alloc::snapshot();
    for f in &mut futs {
        assert!(f.as_mut().poll(&mut cx).is_pending(), "trigger not set yet");
    }
    let after = before.since();
    drop(futs);
    drop(warm);
    (
        size,
        after.allocs as f64 / K as f64,
        after.live as f64 / K as f64,
    )
}

/// A wait made after its phase was reached, awaited: `K` futures from `make`, each
/// polled to `Ready` on its first poll and dropped. Returns (allocations per
/// future, heap bytes still held per future after all were dropped).
fn ready_wait<F: Future>(mut make: impl FnMut() -> F) -> (f64, f64) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut once = |cx: &mut Context<'_>| {
        let mut fut = std::pin::pin!(make());
        assert!(fut.as_mut().poll(cx).is_ready(), "phase already reached");
    };
    once(&mut cx); // warm-up
    let before = alloc::snapshot();
    for _ in 0..K {
        once(&mut cx);
    }
    let after = before.since();
    (after.allocs as f64 / K as f64, after.live as f64 / K as f64)
}

fn verdict(value: f64, max: f64, unit: &str) -> String {
    if value <= max {
        format!("MET: {value} {unit} <= {max}")
    } else {
        format!(
            "MISSED: {value} {unit} vs <= {max}, by {} {unit}",
            value - max
        )
    }
}

/// Like [`wait_state`] for the per-connection wrapper of a library that watches
/// connections: the wrapper's size and first-poll cost minus the bare connection's.
fn wrapper_state<C: Future, W: Future>(
    mut conn: impl FnMut() -> C,
    mut wrap: impl FnMut(C) -> W,
) -> (isize, f64, f64) {
    let (c_size, c_allocs, c_live) = wait_state(&mut conn);
    let (w_size, w_allocs, w_live) = wait_state(|| wrap(conn()));
    (
        w_size as isize - c_size as isize,
        w_allocs - c_allocs,
        w_live - c_live,
    )
}

fn f(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub fn memory(rt: &tokio::runtime::Runtime, report: &mut Report) {
    let _enter = rt.enter(); // tokio-graceful spawns on creation
    let mut rows = Vec::new();
    let mut row = |lib: &str,
                   guard: &str,
                   guard_size: usize,
                   guard_allocs: f64,
                   wait: &str,
                   (wait_size, wait_allocs, wait_live): (usize, f64, f64)| {
        rows.push(vec![
            lib.to_string(),
            guard.to_string(),
            guard_size.to_string(),
            f(guard_allocs),
            wait.to_string(),
            wait_size.to_string(),
            f(wait_allocs),
            f(wait_live),
            f(wait_size as f64 + wait_live),
        ]);
    };

    let bare = Arc::new(AtomicUsize::new(0));
    let notify = tokio::sync::Notify::new();
    row(
        "baseline",
        "Arc<AtomicUsize> clone",
        size_of::<Arc<AtomicUsize>>(),
        allocs_per_guard(|| bare.clone()),
        "tokio Notify::notified()",
        wait_state(|| notify.notified()),
    );

    let slab = Arc::new(crate::slab::SlabBare::default());
    row(
        "reference: waker slab",
        "SlabToken",
        size_of::<crate::slab::SlabToken>(),
        allocs_per_guard(|| slab.enter()),
        "SlabWait (see slab.rs)",
        wait_state(|| slab.triggered()),
    );

    let s = wind_down::Shutdown::new();
    let wind_down_wait = wait_state(|| s.triggered());
    row(
        "wind-down",
        "Guard",
        size_of::<wind_down::Guard>(),
        allocs_per_guard(|| s.guard().expect("not drained")),
        "Shutdown::triggered() (Wait)",
        wind_down_wait,
    );

    let g = hyper_util::server::graceful::GracefulShutdown::new();
    row(
        "hyper-util",
        "Watcher",
        size_of::<hyper_util::server::graceful::Watcher>(),
        allocs_per_guard(|| g.watcher()),
        "(none public; see the wrapper rows)",
        (0, f64::NAN, f64::NAN),
    );

    let tg = tokio_graceful::Shutdown::new(std::future::pending::<()>());
    let tg_guard = tg.guard();
    row(
        "tokio-graceful",
        "ShutdownGuard",
        size_of::<tokio_graceful::ShutdownGuard>(),
        allocs_per_guard(|| tg.guard()),
        "ShutdownGuard::cancelled()",
        wait_state(|| tg_guard.cancelled()),
    );

    let m = async_shutdown::ShutdownManager::<()>::new();
    row(
        "async-shutdown",
        "DelayShutdownToken",
        size_of::<async_shutdown::DelayShutdownToken<()>>(),
        allocs_per_guard(|| m.delay_shutdown_token().expect("running")),
        "wait_shutdown_triggered()",
        wait_state(|| m.wait_shutdown_triggered()),
    );

    let sw = swansong::Swansong::new();
    row(
        "swansong",
        "Guard",
        size_of::<swansong::Guard>(),
        allocs_per_guard(|| sw.guard()),
        "Swansong::shutting_down()",
        wait_state(|| sw.shutting_down()),
    );

    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    row(
        "tokio-util",
        "TaskTrackerToken",
        size_of::<tokio_util::task::task_tracker::TaskTrackerToken>(),
        allocs_per_guard(|| tracker.token()),
        "CancellationToken::cancelled_owned()",
        wait_state(|| cancel.clone().cancelled_owned()),
    );

    // Not a library: wind-down's previous guard (`unsafe_v1.rs`; its waits are not
    // ported: that design's `Wait` was 16 B plus a 16 B slot of its waker slab, as
    // the `reference: waker slab` row above).
    let previous = crate::unsafe_v1::Shutdown::new();
    let at = rows
        .iter()
        .position(|r| r[0] == "wind-down")
        .map_or(rows.len(), |i| i + 1);
    rows.insert(
        at,
        vec![
            "reference: previous unsafe design".into(),
            "Guard (unsafe_v1.rs)".into(),
            size_of::<crate::unsafe_v1::Guard>().to_string(),
            f(allocs_per_guard(|| previous.guard().expect("not drained"))),
            "(not ported)".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ],
    );

    // The per-connection wrappers of the two libraries that watch connections.
    let (wd_size, wd_allocs, wd_live) = wrapper_state(|| idle_http1_conn(NeverIo), |c| s.watch(c));
    let (hu_size, hu_allocs, hu_live) = wrapper_state(|| idle_http1_conn(NeverIo), |c| g.watch(c));
    let wrapper_rows = [
        (
            "wind-down",
            "Shutdown::watch(conn)",
            wd_size,
            wd_allocs,
            wd_live,
        ),
        (
            "hyper-util",
            "GracefulShutdown::watch(conn)",
            hu_size,
            hu_allocs,
            hu_live,
        ),
    ];
    for (lib, what, size, allocs, live) in wrapper_rows {
        rows.push(vec![
            lib.to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!("{what}, minus the conn"),
            size.to_string(),
            f(allocs),
            f(live),
            f(size as f64 + live),
        ]);
    }

    // The targets: guard <= 16 bytes, 0 allocations per guard (and, in
    // `waits` below, per `Wait` that does not park). The per-task state of a parked
    // wait is information, next to the best peer's.
    let ours = rows.iter().find(|r| r[0] == "wind-down").map(|r| {
        (
            r[2].parse::<f64>(),
            r[3].parse::<f64>(),
            r[8].parse::<f64>(),
        )
    });
    let best_peer = rows
        .iter()
        .filter(|r| {
            !matches!(r[0].as_str(), "baseline" | "wind-down")
                && !r[0].starts_with("reference")
                && r[1] != "-"
        })
        .filter_map(|r| r[8].parse::<f64>().ok().map(|v| (v, r[0].clone())))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((Ok(size), Ok(allocs), Ok(total))) = ours {
        report.line(
            "4",
            format!(
                "guard size, target <= 16 bytes: {}",
                verdict(size, 16.0, "bytes")
            ),
        );
        report.line(
            "4",
            format!(
                "heap allocations per guard, target 0: {}",
                verdict(allocs, 0.0, "allocations")
            ),
        );
        let peer = best_peer.map_or(String::new(), |(v, lib)| {
            format!("; best peer measured here: {lib}, {v} bytes")
        });
        report.line(
            "4",
            format!(
                "per-task state of a parked Wait (future + heap after first poll), no target: {total} bytes{peer}"
            ),
        );
    }

    drop(tg_guard);
    report.push_table(Table {
        id: "4",
        title: "memory: guard size, allocations per guard, per-task wait state".into(),
        header: [
            "library",
            "guard type",
            "guard B",
            "allocs/guard",
            "wait future",
            "future B",
            "allocs 1st poll",
            "heap B after 1st poll",
            "total B",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![
            format!(
                "averages over {K} guards / {K} waiters on one coordinator, after one warm-up each; counts from a per-thread counting allocator"
            ),
            "total B = the future's size + the heap bytes it still holds after its first poll (amortised growth of a shared waiter list included)".into(),
            "wrapper rows: size and first-poll cost of the library's per-connection wrapper minus those of the bare idle hyper HTTP/1 connection".into(),
        ],
    });
}

/// [4b]: wind-down's `Wait`: its size, and what it costs when its phase was already
/// reached (it must not allocate) and when it parks.
pub fn waits(report: &mut Report) {
    let wait_size = size_of::<wind_down::Wait>();
    let mut rows = Vec::new();
    let mut ready = Vec::new();

    let triggered = wind_down::Shutdown::new();
    triggered.trigger();
    let (allocs, live) = ready_wait(|| triggered.triggered());
    ready.push(("triggered()", allocs));
    rows.push(vec![
        "Shutdown::triggered() after the trigger, awaited (ready on its first poll)".into(),
        wait_size.to_string(),
        f(allocs),
        f(live),
    ]);

    let drained = wind_down::Shutdown::new();
    drained.trigger();
    let (allocs, live) = ready_wait(|| drained.drained());
    ready.push(("drained()", allocs));
    rows.push(vec![
        "Shutdown::drained() after the drain, awaited (ready on its first poll)".into(),
        wait_size.to_string(),
        f(allocs),
        f(live),
    ]);

    let running = wind_down::Shutdown::new();
    let (size, allocs, live) = wait_state(|| running.triggered());
    rows.push(vec![
        "Shutdown::triggered() before the trigger, first poll (parks)".into(),
        size.to_string(),
        f(allocs),
        f(live),
    ]);

    let worst = ready.iter().map(|r| r.1).fold(0.0, f64::max);
    let each = ready
        .iter()
        .map(|(what, a)| format!("{what} {}", f(*a)))
        .collect::<Vec<_>>()
        .join(", ");
    report.line(
        "4",
        format!(
            "heap allocations per Wait that does not park, target 0: {} ({each})",
            verdict(worst, 0.0, "allocations")
        ),
    );
    report.line(
        "4",
        format!(
            "Wait size, no target: {wait_size} bytes; a parked one also holds {} B of heap (its event-listener entry and catching waker)",
            f(live)
        ),
    );
    report.push_table(Table {
        id: "4b",
        title: "memory: wind-down's Wait, ready at once and parked".into(),
        header: ["wait", "future B", "allocs per wait", "heap B held per wait"]
            .map(String::from)
            .to_vec(),
        rows,
        notes: vec![
            format!(
                "ready rows: {K} waits made after their phase was reached, each polled once (Ready) and dropped, after a warm-up; heap B = net bytes still held after all of them"
            ),
            format!(
                "parked row: {K} waits on one coordinator each polled once (Pending, a no-op waker), after a warm-up; heap B = net bytes held while they are parked"
            ),
        ],
    });
}
