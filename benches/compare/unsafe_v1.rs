//! The previous design of wind-down's guard, kept as a measurement only.
//!
//! This is not the library and nothing but the bench uses it. Commit 830ccd6's core
//! used unsafe code for its guards: a guard was one tagged pointer (8 bytes) to the
//! coordinator or to the calling thread's shard of its count, shards pointed back
//! to their coordinator through raw pointers, and one strong reference, shared by
//! all counted watchers, kept the coordinator alive instead of one `Arc` per guard.
//! The current core (`src/coordinator/`) is `#![forbid(unsafe_code)]`: its guard
//! holds an `Arc` of its shard (16 bytes) and pays that reference count per guard.
//! The `reference: previous unsafe design` rows of measurements 1 and 2 time this
//! module next to it, so the cost of safety is measured in the same run.
//!
//! Ported from 830ccd6's `src/inner.rs`, `src/shard.rs` and `src/guard.rs`, cut
//! down to what taking and dropping a guard touches: the state word, the
//! per-thread shards, `Held`, acquiring and releasing, and `trigger` (which closes
//! the shards and gives back the shared reference at the drain). No waiters, no
//! reports, no child scopes, no force, no `Guard::clone`, no loom. The code and its
//! SAFETY comments are the original's; only what those parts did not use is gone.
//!
//! The state word (from the original):
//!
//! ```text
//! bit 0      TRIGGERED   set once, never cleared (implies ANNOUNCED)
//! bit 1      FORCED      set once, never cleared (implies TRIGGERED; never set here)
//! bit 2      ANNOUNCED   set once, never cleared: not ready any more
//! bit 3      HOLDS_REF   set by the first acquisition: the counted watchers hold one
//!                        strong reference to this `Inner`, together
//! bits 4..    direct     watchers counted here: guards taken where no shard was open
//! top 6 bits  holds      shards that hold a count here for their own guards
//! ```
//!
//! A shard's word:
//!
//! ```text
//! bit 0      CLOSED   set once, when the coordinator is triggered
//! bit 1      HOLDS    this shard holds one hold on the state word
//! bits 2..   count    live guards counted on this shard
//! ```
//!
//! Guards do not hold an `Arc` each. The first acquisition ever takes one strong
//! reference on behalf of all counted watchers (HOLDS_REF), and the step that drains
//! the coordinator gives it back. No watcher can be added after the drain, so while
//! any guard lives the coordinator is not drained and that reference keeps `Inner`
//! alive: a guard costs one atomic operation to take and one to give back.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

const TRIGGERED: usize = 1;
const FORCED: usize = 2;
const ANNOUNCED: usize = 4;
const HOLDS_REF: usize = 8;
/// One direct watcher.
const ONE: usize = 16;
/// One shard's hold: the top 6 bits (at most 32 shards).
const HOLD_ONE: usize = 1 << (usize::BITS - 6);
/// Direct counts above this abort the process, like `Arc`'s reference count does.
const MAX_DIRECT: usize = HOLD_ONE / ONE / 2;
/// The most holds the field takes. At most 32 shards hold at once, but arrivals
/// that race each take one for a moment; one that finds the field full counts
/// directly instead.
const MAX_HOLDS: usize = usize::MAX / HOLD_ONE;

const CLOSED: usize = 1;
const HOLDS: usize = 2;
const SHARD_ONE: usize = 4;
/// Shard counts above this abort the process, like `Arc`'s reference count does.
const MAX_WORD: usize = usize::MAX / 2;

/// The watchers counted on the state word directly.
const fn direct(state: usize) -> usize {
    (state & (HOLD_ONE - 1)) / ONE
}

/// The shards holding a count on the state word (and arrivals in progress).
const fn holds(state: usize) -> usize {
    state / HOLD_ONE
}

/// Whether nothing is counted: no direct watcher and no holding shard.
const fn empty(state: usize) -> bool {
    state < ONE
}

const fn is_drained(state: usize) -> bool {
    state & TRIGGERED != 0 && empty(state)
}

const fn shard_count(word: usize) -> usize {
    word / SHARD_ONE
}

/// Why a guard was refused (the original's `Cancelled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Drained,
    Forced,
}

struct Inner {
    state: AtomicUsize,
    /// Per-thread shards of the count.
    shards: Box<[Shard]>,
}

impl Inner {
    fn new_root() -> Arc<Inner> {
        Arc::new_cyclic(|weak: &Weak<Inner>| {
            // The pointer of the allocation being made; a shard only uses it while a
            // count it holds keeps the coordinator alive.
            let this = NonNull::new(weak.as_ptr().cast_mut()).expect("Arc pointers are non-null");
            let shards = (0..shards_per_root()).map(|_| Shard::new(this)).collect();
            Inner {
                state: AtomicUsize::new(0),
                shards,
            }
        })
    }

    fn state(&self) -> usize {
        self.state.load(Ordering::Acquire)
    }

    /// Adds one watcher unless the coordinator is drained or forced: on this
    /// thread's shard while it is open, else on the state word.
    #[inline]
    fn acquire(this: &Arc<Inner>) -> Result<Held, Refused> {
        if let Some(shard) = this.thread_shard() {
            if shard.try_acquire_fast() {
                return Ok(Held::shard(shard));
            }
        }
        Inner::acquire_slow(this)
    }

    /// This thread's shard, if this coordinator has shards.
    #[inline]
    fn thread_shard(&self) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        let slot = thread_slot()?;
        // The length is a power of two.
        self.shards.get(slot & (self.shards.len() - 1))
    }

    #[inline(never)]
    fn acquire_slow(this: &Arc<Inner>) -> Result<Held, Refused> {
        if let Some(shard) = this.thread_shard() {
            // SAFETY: `this` keeps the coordinator alive.
            let acquired = unsafe {
                shard.try_acquire(|| {
                    Inner::acquire_on_word(this, HOLD_ONE).map(|held| held.is_some())
                })
            };
            if let Some(acquired) = acquired {
                return acquired.map(|()| Held::shard(shard));
            }
        }
        Inner::acquire_main(this).map(Held::main)
    }

    /// Adds one direct watcher unless the coordinator is drained or forced, and
    /// returns a pointer that stays valid while that count is held.
    fn acquire_main(this: &Arc<Inner>) -> Result<NonNull<Inner>, Refused> {
        Inner::acquire_on_word(this, ONE).map(|held| held.expect("a direct count always fits"))
    }

    /// Adds `amount` (one direct watcher, [`ONE`], or one shard's hold,
    /// [`HOLD_ONE`]) unless the coordinator is drained or forced. `Ok(None)` if
    /// the holds field is full (for a hold only; nothing was added).
    fn acquire_on_word(
        this: &Arc<Inner>,
        amount: usize,
    ) -> Result<Option<NonNull<Inner>>, Refused> {
        let Some(first) = this.try_acquire(amount)? else {
            return Ok(None);
        };
        if first {
            // The first acquisition: take the watchers' shared strong reference,
            // given back at the drain. Our own count keeps the drain away until then.
            // SAFETY: `this` is a live `Arc`.
            unsafe { Arc::increment_strong_count(Arc::as_ptr(this)) };
        }
        Ok(Some(main_ptr(this)))
    }

    /// Adds `amount` unless the coordinator is drained or forced. Returns whether
    /// this was the first acquisition ever (it set HOLDS_REF), or `None` if
    /// `amount` is a hold and the holds field is full.
    fn try_acquire(&self, amount: usize) -> Result<Option<bool>, Refused> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & FORCED != 0 {
                return Err(Refused::Forced);
            }
            if is_drained(cur) {
                return Err(Refused::Drained);
            }
            if direct(cur) > MAX_DIRECT {
                std::process::abort();
            }
            if amount == HOLD_ONE && holds(cur) == MAX_HOLDS {
                return Ok(None);
            }
            match self.state.compare_exchange_weak(
                cur,
                (cur + amount) | HOLDS_REF,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Some(cur & HOLDS_REF == 0)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back `amount` ([`ONE`] or [`HOLD_ONE`]); the release that empties a
    /// triggered coordinator drains it, and then gives back the watchers' shared
    /// reference, possibly freeing it.
    ///
    /// # Safety
    ///
    /// `ptr` comes from [`Inner::acquire`] (or is an `Arc` pointer of a coordinator
    /// whose count the caller holds), and the caller gives back one count of that
    /// kind that it holds. `ptr` must not be used afterwards.
    unsafe fn release_on_word(ptr: NonNull<Inner>, amount: usize) {
        let drained_with_ref = {
            // SAFETY: the count we still hold keeps the coordinator undrained, so the
            // watchers' shared reference keeps it alive until our `fetch_sub`, and
            // until the end of this block if that made it drained.
            let inner = unsafe { ptr.as_ref() };
            let prev = inner.state.fetch_sub(amount, Ordering::AcqRel);
            debug_assert!(
                prev & !(ONE - 1) >= amount,
                "wind-down: released below zero"
            );
            // (The original woke the drained waiters and let go of its parent here.)
            prev & TRIGGERED != 0 && prev & !(ONE - 1) == amount && prev & HOLDS_REF != 0
        };
        if drained_with_ref {
            // SAFETY: taken in `acquire`, given back exactly once (the drain happens
            // once); no reference to the coordinator is used after this.
            unsafe { Arc::decrement_strong_count(ptr.as_ptr()) };
        }
    }

    /// Sets TRIGGERED (and ANNOUNCED). Returns `true` if this call set TRIGGERED.
    fn trigger(self: &Arc<Self>) -> bool {
        let bits = TRIGGERED | ANNOUNCED;
        let prev = self.state.fetch_or(bits, Ordering::AcqRel);
        // Every trigger() closes (idempotently): once it returns, however it raced
        // another trigger, the shards take no guard and have given back what they
        // held, so the drained state is reachable.
        let departs = self.close_shards();
        self.release_departed(departs);
        let new = bits & !prev;
        // (The original woke each phase's waiters and carried the transition to its
        // child scopes here.) A shard holding at `prev` keeps it non-empty; its
        // departure is a release, which drains if it is the last.
        if new & TRIGGERED != 0 && empty(prev) && prev & HOLDS_REF != 0 {
            // Every caller of a transition holds an `Arc` of its own (a handle, a
            // parent's list entry, a new child), so this never frees `self`.
            // SAFETY: taken in `acquire`, given back once, at the drain.
            unsafe { Arc::decrement_strong_count(Arc::as_ptr(self)) };
        }
        new & TRIGGERED != 0
    }

    /// Closes every shard; returns how many holds the caller must give back.
    fn close_shards(&self) -> usize {
        self.shards.iter().filter(|shard| shard.close()).count()
    }

    /// Gives back the holds of `departs` shards closed while empty.
    fn release_departed(self: &Arc<Self>, departs: usize) {
        for _ in 0..departs {
            // SAFETY: each departing shard held one hold, given back once, by its
            // closer; `self` keeps the coordinator alive.
            unsafe { Inner::release_on_word(main_ptr(self), HOLD_ONE) };
        }
    }

    /// The number of watchers: counted on the state word directly, plus counted on
    /// the shards. Exact when no watcher is being added or given back.
    fn watchers(&self) -> usize {
        let sharded: usize = self
            .shards
            .iter()
            .map(|shard| shard_count(shard.load()))
            .sum();
        direct(self.state()) + sharded
    }
}

/// The pointer for counts on the state word. `Arc::as_ptr` keeps the provenance of
/// the whole allocation, which `Arc::decrement_strong_count` needs at the drain.
fn main_ptr(this: &Arc<Inner>) -> NonNull<Inner> {
    NonNull::new(Arc::as_ptr(this).cast_mut()).expect("Arc pointers are non-null")
}

/// One shard: its word, on a cache line of its own, and its coordinator.
///
/// 128 bytes: the word in the first 64-byte line, the read-only pointer in the
/// second, so that a thread reading the pointer of another thread's shard (to clone
/// a guard counted there) does not pull the line that thread keeps writing.
#[repr(C, align(128))]
struct Shard {
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
    fn new(inner: NonNull<Inner>) -> Shard {
        Shard {
            word: Line(AtomicUsize::new(0)),
            inner,
        }
    }

    fn inner(&self) -> NonNull<Inner> {
        self.inner
    }

    fn load(&self) -> usize {
        self.word.0.load(Ordering::Acquire)
    }

    /// Adds one to this shard's count if it is open and holds: the common case,
    /// one compare-exchange. `false` if not done (closed, not holding, or a lost
    /// race); [`try_acquire`](Shard::try_acquire) then handles every case.
    #[inline]
    fn try_acquire_fast(&self) -> bool {
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
    unsafe fn try_acquire(
        &self,
        acquire_hold: impl Fn() -> Result<bool, Refused>,
    ) -> Option<Result<(), Refused>> {
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

    /// Gives one count back. Returns `true` if this release emptied a closed shard:
    /// the caller must then give back the shard's hold on the state word.
    #[inline]
    fn release(&self) -> bool {
        let prev = self.word.0.fetch_sub(SHARD_ONE, Ordering::AcqRel);
        debug_assert!(
            shard_count(prev) > 0,
            "wind-down: shard released below zero"
        );
        prev & CLOSED != 0 && shard_count(prev) == 1
    }

    /// Closes the shard. Returns `true` if the caller must give back the shard's
    /// hold on the state word: this call closed it, and it held and was empty.
    fn close(&self) -> bool {
        let prev = self.word.0.fetch_or(CLOSED, Ordering::AcqRel);
        prev & CLOSED == 0 && prev & HOLDS != 0 && shard_count(prev) == 0
    }
}

/// How many shards a root coordinator gets: the available parallelism rounded up
/// to a power of two, at least 2 and at most 32.
fn shards_per_root() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 32)
        .next_power_of_two()
}

/// This thread's slot: a number handed out round-robin on its first guard, so the
/// threads of one process spread over the shards. `None` while the thread's locals
/// are being torn down; such a guard counts on the state word.
#[inline]
fn thread_slot() -> Option<usize> {
    use std::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.try_with(|slot| {
        let mut n = slot.get();
        if n == usize::MAX {
            n = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            slot.set(n);
        }
        n
    })
    .ok()
}

/// One watcher's count on a coordinator, on its state word or on one of its shards:
/// a pointer to the `Inner` (low bit clear) or to the `Shard` (low bit set; both are
/// at least 8-byte aligned). Valid while the count is held.
struct Held(NonNull<u8>);

impl Held {
    fn main(inner: NonNull<Inner>) -> Held {
        Held(inner.cast())
    }

    #[inline]
    fn shard(shard: &Shard) -> Held {
        Held(NonNull::from(shard).cast::<u8>().map_addr(|a| a | 1))
    }

    #[inline]
    fn as_shard(&self) -> Option<&Shard> {
        if self.0.addr().get() & 1 == 0 {
            return None;
        }
        // SAFETY: tagged by `Held::shard` (the byte below is the shard's start); the
        // count held keeps the coordinator, which owns the shard, alive.
        Some(unsafe { &*self.0.as_ptr().wrapping_sub(1).cast::<Shard>() })
    }

    /// Gives the count back.
    ///
    /// # Safety
    ///
    /// The count was taken by [`Inner::acquire`], and is given back once: `self` is
    /// not used afterwards.
    #[inline]
    unsafe fn release(&self) {
        let (main, amount) = match self.as_shard() {
            Some(shard) => {
                // Read before the release: after it, only a departing caller still
                // holds something on the coordinator (the shard's hold).
                let inner = shard.inner();
                if !shard.release() {
                    return;
                }
                (inner, HOLD_ONE)
            }
            None => (self.0.cast::<Inner>(), ONE),
        };
        // SAFETY: a count on the state word that this caller holds: the guard's own,
        // or the shard's hold, which this release emptied after its close.
        unsafe { Inner::release_on_word(main, amount) };
    }
}

/// The handle: one per coordinator here (not `Clone`). Dropping it triggers, as
/// dropping the original's last handle did, so the drain gives back the shared
/// reference and the coordinator is freed.
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Inner::new_root(),
        }
    }

    /// Takes a guard; refused once drained (or forced).
    #[inline]
    pub fn guard(&self) -> Result<Guard, Refused> {
        Inner::acquire(&self.inner).map(|count| Guard { count })
    }

    /// Triggers; `true` if this call was the first.
    pub fn trigger(&self) -> bool {
        self.inner.trigger()
    }

    pub fn watchers(&self) -> usize {
        self.inner.watchers()
    }

    pub fn is_drained(&self) -> bool {
        is_drained(self.inner.state())
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.inner.trigger();
    }
}

/// An RAII token that counts as one unit of in-flight work: one tagged pointer.
#[must_use = "a guard releases its count as soon as it is dropped"]
pub struct Guard {
    count: Held,
}

// SAFETY: a guard is a counted pointer to an `Inner` or to one of its shards, both
// `Send + Sync`; it only uses their atomics (to read, to count, to give back).
unsafe impl Send for Guard {}
// SAFETY: as above; `&Guard` only reads.
unsafe impl Sync for Guard {}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the count came from `Inner::acquire` and is given back here, once;
        // it is not used again.
        unsafe { self.count.release() };
    }
}

/// Checks that the port still keeps the original's contract before it is timed:
/// guards count, the trigger does not drain while one lives, the last release
/// drains, and a drained coordinator refuses guards and is freed.
pub fn self_check() {
    assert_eq!(size_of::<Guard>(), 8, "one tagged pointer");
    let s = Shutdown::new();
    let weak = Arc::downgrade(&s.inner);
    let a = s.guard().expect("running");
    let b = s.guard().expect("running");
    assert_eq!(s.watchers(), 2);
    drop(b);
    assert!(s.trigger());
    assert!(!s.trigger());
    assert!(!s.is_drained(), "a guard is alive");
    assert_eq!(s.watchers(), 1);
    drop(a);
    assert!(s.is_drained());
    assert_eq!(s.guard().err(), Some(Refused::Drained));
    drop(s);
    assert!(
        weak.upgrade().is_none(),
        "the shared reference was given back"
    );
    // Untriggered with guards taken: dropping the handle triggers and frees it.
    let s = Shutdown::new();
    let weak = Arc::downgrade(&s.inner);
    drop(s.guard().expect("running"));
    drop(s);
    assert!(weak.upgrade().is_none(), "freed at the drain");
}
