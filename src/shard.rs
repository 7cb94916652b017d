//! Per-thread shards of a root coordinator's count.
//!
//! Guards taken on different threads count on different cache lines, so they do
//! not contend. A shard is one padded word:
//!
//! ```text
//! bit 0      CLOSED   set once, when the coordinator is triggered (or forced)
//! bit 1      HOLDS    this shard holds one hold on the state word
//! bits 2..   count    live guards counted on this shard
//! ```
//!
//! The first guard on a shard takes one hold on the coordinator's state word for
//! the shard (*arrival*, HOLDS) and the shard keeps it while open, however often
//! its own count goes to zero and back: steady-state guard traffic touches only the
//! thread's own shard. The trigger closes every shard. A closed shard takes no new
//! guard (acquisition falls back to the state word, which refuses once drained or
//! forced), and it gives its hold back (*departure*) exactly once: at
//! the close if it is empty then, otherwise at the release that empties it. The
//! closer and the last releaser are ordered by the word itself, so exactly one of
//! them sees "closed and empty".
//!
//! A hold is not a watcher: the watchers are the state word's direct count plus
//! the shards' counts. Holds only keep the coordinator from draining, so *drained*
//! (`TRIGGERED`, no direct count, no hold) still means that no guard is live
//! anywhere.

use std::ptr::NonNull;

use crate::inner::{HOLD_ONE, Inner};
use crate::sync::{AtomicUsize, Ordering};

pub(crate) const CLOSED: usize = 1;
pub(crate) const HOLDS: usize = 2;
pub(crate) const SHARD_ONE: usize = 4;
/// Counts above this abort the process, like `Arc`'s reference count does.
const MAX_WORD: usize = usize::MAX / 2;

pub(crate) const fn shard_count(word: usize) -> usize {
    word / SHARD_ONE
}

/// One shard: its word, on a cache line of its own, and its coordinator.
///
/// 128 bytes: the word in the first 64-byte line, the read-only pointer in the
/// second, so that a thread reading the pointer of another thread's shard (to clone
/// a guard counted there) does not pull the line that thread keeps writing.
#[repr(C, align(128))]
pub(crate) struct Shard {
    word: Line<AtomicUsize>,
    /// The coordinator this shard belongs to (it lives inside it).
    inner: NonNull<Inner>,
}

#[repr(align(64))]
struct Line<T>(T);

// SAFETY: `inner` points to the `Inner` that owns this shard, which is `Send + Sync`;
// the shard only reads through it and uses its atomics.
unsafe impl Send for Shard {}
// SAFETY: as above.
unsafe impl Sync for Shard {}

impl Shard {
    pub(crate) fn new(inner: NonNull<Inner>) -> Shard {
        Shard {
            word: Line(AtomicUsize::new(0)),
            inner,
        }
    }

    pub(crate) fn inner(&self) -> NonNull<Inner> {
        self.inner
    }

    pub(crate) fn load(&self) -> usize {
        self.word.0.load(Ordering::Acquire)
    }

    /// Adds one to this shard's count if it is open and holds: the common case,
    /// one compare-exchange. `false` if not done (closed, not holding, or a lost
    /// race); [`try_acquire`](Shard::try_acquire) then handles every case.
    #[inline]
    pub(crate) fn try_acquire_fast(&self) -> bool {
        let cur = self.word.0.load(Ordering::Relaxed);
        cur & (CLOSED | HOLDS) == HOLDS
            && cur <= MAX_WORD
            && self
                .word
                .0
                .compare_exchange_weak(cur, cur + SHARD_ONE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Adds one to this shard's count, arriving first if it does not hold yet.
    /// `None` if the shard is closed, or if arriving found no room for one more
    /// hold (`acquire_hold` returned `Ok(false)`): count on the state word instead.
    /// `Some(Err(..))` if arriving was refused (drained or forced).
    ///
    /// # Safety
    ///
    /// The coordinator stays alive during the call (the caller holds an `Arc` of
    /// it, or a count on it): a lost arrival gives its hold back here.
    pub(crate) unsafe fn try_acquire(
        &self,
        acquire_hold: impl Fn() -> Result<bool, crate::Cancelled>,
    ) -> Option<Result<(), crate::Cancelled>> {
        let mut cur = self.word.0.load(Ordering::Acquire);
        // Lock-free, not wait-free: every failed compare-exchange means another
        // thread changed this word (a guard, an arrival or the close).
        loop {
            if cur & CLOSED != 0 {
                return None;
            }
            if cur > MAX_WORD {
                std::process::abort();
            }
            if cur & HOLDS == 0 {
                // Arrival: take the shard's hold on the state word first, so that
                // the word never says HOLDS without the hold being taken.
                match acquire_hold() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(refused) => return Some(Err(refused)),
                }
                match self.word.0.compare_exchange(
                    cur,
                    (cur + SHARD_ONE) | HOLDS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(Ok(())),
                    Err(actual) => {
                        // Another thread arrived first, or the shard was closed:
                        // give back the hold taken above.
                        // SAFETY: the caller keeps the coordinator alive.
                        unsafe { Inner::release_on_word(self.inner, HOLD_ONE) };
                        cur = actual;
                    }
                }
            } else {
                match self.word.0.compare_exchange_weak(
                    cur,
                    cur + SHARD_ONE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(Ok(())),
                    Err(actual) => cur = actual,
                }
            }
        }
    }

    /// Adds one to a count that the caller already holds one of.
    #[inline]
    pub(crate) fn acquire_held(&self) {
        if self.word.0.fetch_add(SHARD_ONE, Ordering::Relaxed) > MAX_WORD {
            std::process::abort();
        }
    }

    /// Gives one count back. Returns `true` if this release emptied a closed shard:
    /// the caller must then give back the shard's hold on the state word.
    #[inline]
    pub(crate) fn release(&self) -> bool {
        let prev = self.word.0.fetch_sub(SHARD_ONE, Ordering::AcqRel);
        debug_assert!(
            shard_count(prev) > 0,
            "wind-down: shard released below zero"
        );
        prev & CLOSED != 0 && shard_count(prev) == 1
    }

    /// Closes the shard. Returns `true` if the caller must give back the shard's
    /// hold on the state word: this call closed it, and it held and was empty.
    pub(crate) fn close(&self) -> bool {
        let prev = self.word.0.fetch_or(CLOSED, Ordering::AcqRel);
        prev & CLOSED == 0 && prev & HOLDS != 0 && shard_count(prev) == 0
    }
}

/// How many shards a root coordinator gets: the available parallelism rounded up
/// to a power of two, at least 2 (so the sharded path is always the one in use and
/// tested) and at most 32.
#[cfg(not(wind_down_loom))]
pub(crate) fn shards_per_root() -> usize {
    static SHARDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 32)
            .next_power_of_two()
    })
}

#[cfg(wind_down_loom)]
pub(crate) fn shards_per_root() -> usize {
    2
}

/// This thread's slot: a number handed out round-robin on its first guard, so the
/// threads of one process spread over the shards. `None` while the thread's locals
/// are being torn down; such a guard counts on the state word.
#[cfg(not(wind_down_loom))]
#[inline]
pub(crate) fn thread_slot() -> Option<usize> {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.try_with(|slot| {
        let mut n = slot.get();
        if n == usize::MAX {
            n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1);
            slot.set(n);
        }
        n
    })
    .ok()
}

/// Under loom: the model thread's number, deterministic across executions.
#[cfg(wind_down_loom)]
pub(crate) fn thread_slot() -> Option<usize> {
    let id = format!("{:?}", loom::thread::current().id());
    Some(
        id.bytes()
            .filter(u8::is_ascii_digit)
            .fold(0, |n, d| n * 10 + usize::from(d - b'0')),
    )
}
