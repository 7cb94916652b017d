//! A counting global allocator: per-thread counts of allocations and live bytes.
//!
//! Counting is per thread so that the runtime's other threads do not leak into a
//! measurement taken on this one; it costs a thread-local increment per allocation,
//! the same for every library measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn count(allocs: u64, bytes: i64) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = ALLOCS.try_with(|a| a.set(a.get() + allocs));
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(1, layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(1, layout.size() as i64);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, -(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(1, new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// This thread's allocation count and live-byte balance so far.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub allocs: u64,
    pub live: i64,
}

pub fn snapshot() -> Snapshot {
    Snapshot {
        allocs: ALLOCS.with(Cell::get),
        live: LIVE.with(Cell::get),
    }
}

impl Snapshot {
    /// Allocations and net live bytes on this thread since `self`.
    pub fn since(self) -> Snapshot {
        let now = snapshot();
        Snapshot {
            allocs: now.allocs - self.allocs,
            live: now.live - self.live,
        }
    }
}
