//! Guarantee 11 (cheap guards) and allocation hygiene, measured with a counting
//! global allocator (this file is its own test binary).
//!
//! The counters are per thread, so allocations by the test harness's other threads
//! do not leak in; the tests still take one lock so that they run one at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future as _;
use std::sync::Mutex;
use std::task::{Context, Waker};

use wind_down::{Guard, Phase, Shutdown};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add_live(bytes: isize) {
    // `try_with`: the thread-local may already be gone while the thread exits.
    let _ = LIVE_BYTES.try_with(|l| l.set(l.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        add_live(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        add_live(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        add_live(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serialises the tests of this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

#[test]
fn g11_guard_is_two_words() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 16 bytes on 64-bit targets: a tag and one pointer.
    assert_eq!(size_of::<Guard>(), 2 * size_of::<usize>());
    assert_eq!(size_of::<Option<Guard>>(), 2 * size_of::<usize>());
    #[cfg(target_pointer_width = "64")]
    assert_eq!(size_of::<Guard>(), 16);
}

#[test]
fn g11_guard_acquire_and_release_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Shutdown::new();
    let child = s.child();
    let rounds = if cfg!(miri) { 10 } else { 1000 };

    // `report()` walks the scopes (and may allocate for it): it is called
    // between the measured stretches, not in them.
    let mut allocated = 0;
    for _ in 0..rounds {
        let before = allocs();
        let g = s.guard().unwrap();
        let g2 = g.clone();
        allocated += allocs() - before;
        assert_eq!(
            s.report().remaining,
            2,
            "two guards (the child scope is not one)"
        );
        let before = allocs();
        drop(g);
        drop(g2);
        let cg = child.guard().unwrap();
        allocated += allocs() - before;
        assert_eq!(
            s.report().remaining,
            1,
            "the child's guard counts in its parent"
        );
        let before = allocs();
        drop(cg);
        allocated += allocs() - before;
        assert_eq!(s.report().remaining, 0);
    }
    assert_eq!(allocated, 0, "guard acquire/clone/release allocated");

    // After the trigger too: a guard taken and released while draining (the root's
    // shards are closed then: it counts on the state word).
    let g = s.guard().unwrap();
    s.trigger();
    let before = allocs();
    let g2 = s.guard().unwrap();
    drop(g2);
    assert_eq!(
        allocs() - before,
        0,
        "guard acquire/release while draining allocated"
    );
    drop(g);
    assert_eq!(s.phase(), Phase::Drained);
}

#[test]
fn g11_the_draining_release_allocates_nothing_with_a_waiter() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // With a drained waiter already registered, the release that drains only
    // notifies an existing event.
    let s = Shutdown::new();
    let g = s.guard().unwrap();
    s.trigger();
    let mut cx = Context::from_waker(Waker::noop());
    let mut drained = s.drained();
    assert!(std::pin::Pin::new(&mut drained).poll(&mut cx).is_pending());
    let before = allocs();
    drop(g);
    assert_eq!(
        allocs() - before,
        0,
        "the draining release allocated (with a drained waiter registered)"
    );
    assert_eq!(s.phase(), Phase::Drained);
    assert!(std::pin::Pin::new(&mut drained).poll(&mut cx).is_ready());
}

#[test]
fn g11_the_draining_release_allocates_nothing_unobserved() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // With nobody ever listening, the release that drains (and wakes the, empty,
    // list of drained waiters) allocates nothing either.
    let s = Shutdown::new();
    let g = s.guard().unwrap();
    s.trigger();
    let before = allocs();
    drop(g);
    assert_eq!(allocs() - before, 0, "the draining release allocated");
    assert_eq!(s.phase(), Phase::Drained);
}

#[test]
fn waiter_churn_keeps_live_heap_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Shutdown::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut cycle = || {
        let mut wait = s.triggered();
        assert!(std::pin::Pin::new(&mut wait).poll(&mut cx).is_pending());
        drop(wait);
    };
    // Warm up: the phase's waiter list grows its slab on first use.
    cycle();
    let baseline = live_bytes();
    let cycles = if cfg!(miri) { 1_000 } else { 1_000_000 };
    let mut peak = 0;
    for _ in 0..cycles {
        cycle();
        peak = peak.max(live_bytes() - baseline);
    }
    let delta = live_bytes() - baseline;
    // Under 1 MiB, and under 8 bytes a cycle: any leaked allocation exceeds that.
    let bound = (1isize << 20).min(8 * cycles as isize);
    assert!(
        delta < bound,
        "live heap grew by {delta} bytes over {cycles} cycles"
    );
    assert!(peak < bound, "live heap peaked {peak} bytes above baseline");
    assert!(allocs() > 0, "the counting allocator is in use");
}

/// A dropped child scope frees its memory at once: after a burst of 100,000
/// children created and dropped under a live parent, what stays allocated is the
/// parent's list capacity (a few words per slot), not the scopes. A second burst
/// reuses that capacity: the live heap does not grow again.
#[test]
fn dropped_scopes_free_their_memory_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const BURST: usize = if cfg!(miri) { 200 } else { 100_000 };
    let parent = Shutdown::new();
    let before = live_bytes();
    let scopes: Vec<Shutdown> = (0..BURST).map(|_| parent.child()).collect();
    let per_scope_live = (live_bytes() - before) / BURST as isize;
    drop(scopes);
    let kept = live_bytes() - before;
    // The slab keeps one entry per slot (an enum of a `Weak` and a key).
    assert!(
        kept <= (BURST * 32) as isize,
        "{kept} bytes kept after dropping {BURST} scopes of {per_scope_live} bytes each"
    );
    assert!(per_scope_live > 64, "a scope should own more than its slot");
    let scopes: Vec<Shutdown> = (0..BURST).map(|_| parent.child()).collect();
    drop(scopes);
    assert!(
        live_bytes() - before <= kept,
        "a second burst grew the heap: {} > {kept}",
        live_bytes() - before
    );
    assert!(parent.trigger());
    assert_eq!(
        parent.phase(),
        Phase::Drained,
        "a dropped scope still held its parent"
    );
}
