//! [`Waiters`]: the wakers of the tasks waiting for one latched phase.
//!
//! A phase is reached once and never left, so its waiters are woken exactly once,
//! all together. The wakers live in one slab under a lock; a waiting future keeps
//! only its slot number ([`Slot`], 4 bytes, no allocation of its own). Waking takes
//! the whole slab out under the lock, *closes* it, and wakes every task after the
//! lock is released. A closed slab refuses registrations, which tells the waiter
//! that the phase is reached; a woken waiter, or one dropped after the wake-up,
//! never takes the lock again.
//!
//! No lost wake-up: the phase bit is set before [`Waiters::wake_all`] runs, and a
//! registration happens under the same lock as the close, so a waker is either
//! stored before the close (and woken by it) or refused after it.

use std::mem;
use std::task::Waker;

use crate::sync::{AtomicBool, Mutex, Ordering};

/// A waiter's place in one [`Waiters`]: none yet, or a slot number.
#[derive(Debug)]
pub(crate) struct Slot(u32);

impl Slot {
    const NONE: u32 = u32::MAX;

    pub(crate) const fn new() -> Slot {
        Slot(Slot::NONE)
    }
}

#[derive(Default)]
struct Slab {
    closed: bool,
    wakers: Vec<Option<Waker>>,
    /// Slots given back by dropped waiters, reused before the slab grows.
    free: Vec<u32>,
}

/// The waiters of one phase.
pub(crate) struct Waiters {
    /// Set under the lock at the wake-up; read without it by dropped waiters.
    closed: AtomicBool,
    slab: Mutex<Slab>,
}

impl Waiters {
    pub(crate) fn new() -> Waiters {
        Waiters {
            closed: AtomicBool::new(false),
            slab: Mutex::new(Slab::default()),
        }
    }

    fn lock(&self) -> impl std::ops::DerefMut<Target = Slab> + '_ {
        // No user code runs under this lock (wakers are woken after it is
        // released), so poisoning carries no broken invariant.
        self.slab.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `waker` in `slot` (taking a slot on the first call), to be woken by
    /// [`wake_all`](Waiters::wake_all). Returns `false` if the waiters were already
    /// woken: the phase is reached, and nothing was stored.
    pub(crate) fn register(&self, slot: &mut Slot, waker: &Waker) -> bool {
        let mut slab = self.lock();
        if slab.closed {
            return false;
        }
        if slot.0 == Slot::NONE {
            slot.0 = match slab.free.pop() {
                Some(free) => free,
                None => {
                    slab.wakers.push(None);
                    // More than 2^32 - 1 waiters at once cannot be told apart from
                    // `NONE`: abort, like a reference count overflow.
                    u32::try_from(slab.wakers.len() - 1)
                        .ok()
                        .filter(|&n| n != Slot::NONE)
                        .unwrap_or_else(|| std::process::abort())
                }
            };
        }
        let entry = &mut slab.wakers[slot.0 as usize];
        match entry {
            Some(stored) if stored.will_wake(waker) => {}
            _ => *entry = Some(waker.clone()),
        }
        true
    }

    /// Gives `slot` back, unless the waiters were woken already (then the slab it
    /// was in is gone). Never blocks after the wake-up.
    pub(crate) fn unregister(&self, slot: &mut Slot) {
        let taken = mem::replace(slot, Slot::new());
        if taken.0 == Slot::NONE || self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut slab = self.lock();
        if !slab.closed {
            slab.wakers[taken.0 as usize] = None;
            slab.free.push(taken.0);
        }
    }

    /// Wakes every registered waiter, once, and refuses later registrations. Call
    /// it after the phase's bit is set. The wakers run after the lock is released.
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut slab = self.lock();
            if slab.closed {
                return;
            }
            slab.closed = true;
            self.closed.store(true, Ordering::Release);
            slab.free = Vec::new();
            mem::take(&mut slab.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// The number of stored wakers.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.lock().wakers.iter().filter(|w| w.is_some()).count()
    }
}

#[cfg(all(test, not(wind_down_loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::{Wake, Waker};

    use super::{Slot, Waiters};

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    fn slots_in_use(w: &Waiters) -> usize {
        w.lock().wakers.len()
    }

    #[test]
    fn wakes_every_registered_waker_once_then_refuses() {
        let w = Waiters::new();
        let (counts, wakers): (Vec<_>, Vec<_>) = (0..3).map(|_| waker()).unzip();
        let mut slots: Vec<Slot> = (0..3).map(|_| Slot::new()).collect();
        for (slot, waker) in slots.iter_mut().zip(&wakers) {
            assert!(w.register(slot, waker));
        }
        assert_eq!(w.registered(), 3);
        w.wake_all();
        w.wake_all(); // idempotent: nothing is woken twice
        assert!(counts.iter().all(|c| c.0.load(SeqCst) == 1));
        let (late, late_waker) = waker();
        assert!(
            !w.register(&mut Slot::new(), &late_waker),
            "refused once woken"
        );
        assert!(!w.register(&mut slots[0], &late_waker));
        assert_eq!((w.registered(), late.0.load(SeqCst)), (0, 0));
        for slot in &mut slots {
            w.unregister(slot); // after the wake-up: nothing to give back
        }
    }

    #[test]
    fn unregistered_waker_is_not_woken_and_its_slot_is_reused() {
        let w = Waiters::new();
        let (gone, gone_waker) = waker();
        let mut slot = Slot::new();
        assert!(w.register(&mut slot, &gone_waker));
        w.unregister(&mut slot);
        assert_eq!(w.registered(), 0);
        for _ in 0..1000 {
            let mut churn = Slot::new();
            assert!(w.register(&mut churn, &gone_waker));
            w.unregister(&mut churn);
        }
        assert_eq!(slots_in_use(&w), 1, "churn reuses the one slot");
        let (kept, kept_waker) = waker();
        let mut kept_slot = Slot::new();
        assert!(w.register(&mut kept_slot, &kept_waker));
        w.wake_all();
        assert_eq!((gone.0.load(SeqCst), kept.0.load(SeqCst)), (0, 1));
    }

    #[test]
    fn re_registering_keeps_one_slot_and_the_latest_waker() {
        let w = Waiters::new();
        let (first, first_waker) = waker();
        let (second, second_waker) = waker();
        let mut slot = Slot::new();
        assert!(w.register(&mut slot, &first_waker));
        assert!(w.register(&mut slot, &first_waker));
        assert!(w.register(&mut slot, &second_waker));
        assert_eq!((w.registered(), slots_in_use(&w)), (1, 1));
        w.wake_all();
        assert_eq!((first.0.load(SeqCst), second.0.load(SeqCst)), (0, 1));
    }
}
