//! Not a library: the waiter design of wind-down's previous core (830ccd6's
//! `waiters.rs`, removed in 6464222: the phases now wake through event-listener) on
//! its own, with a bare atomic count instead of wind-down's guards, to show that
//! design's floor next to the event-listener one (rows marked `reference:`).
//!
//! That coordinator kept the wakers of its waiting tasks in one slab under a lock.
//! A waiting future is an `Arc` and a slot number (16 bytes, no allocation of its
//! own). The trigger takes the whole slab out under the lock and wakes every task
//! after releasing it; a woken task finds the flag set and never takes the lock
//! again, and one dropped after the trigger does not either.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

const NO_SLOT: u32 = u32::MAX;

#[derive(Default)]
struct Slab {
    closed: bool,
    wakers: Vec<Option<Waker>>,
    free: Vec<u32>,
}

/// A flag, the waker slab, an atomic count and a `Notify` that the last task out
/// fires: [`crate::fanout`]'s hand-rolled floor with the slab in place of `Notify`.
#[derive(Default)]
pub struct SlabBare {
    triggered: AtomicBool,
    /// Set under the lock together with `Slab::closed`; read without it on drop.
    closed: AtomicBool,
    slab: Mutex<Slab>,
    count: AtomicUsize,
    zero: Notify,
}

impl SlabBare {
    fn lock(&self) -> MutexGuard<'_, Slab> {
        self.slab.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enter(self: &Arc<Self>) -> SlabToken {
        self.count.fetch_add(1, Ordering::Relaxed);
        SlabToken(self.clone())
    }

    pub fn triggered(self: &Arc<Self>) -> SlabWait {
        SlabWait {
            bare: self.clone(),
            slot: NO_SLOT,
        }
    }

    pub async fn trigger_and_drain(&self) {
        self.triggered.store(true, Ordering::Release);
        let wakers = {
            let mut slab = self.lock();
            slab.closed = true;
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut slab.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
        let zero = self.zero.notified();
        if self.count.load(Ordering::Acquire) != 0 {
            zero.await;
        }
    }
}

pub struct SlabToken(Arc<SlabBare>);

impl Drop for SlabToken {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.triggered.load(Ordering::Acquire)
        {
            self.0.zero.notify_one();
        }
    }
}

/// Waits for the trigger: 16 bytes, its waker in the coordinator's slab.
pub struct SlabWait {
    bare: Arc<SlabBare>,
    slot: u32,
}

impl Future for SlabWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.bare.triggered.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut slab = this.bare.lock();
        // The trigger closes the slab under this lock after setting the flag: a
        // waker stored while it is open is taken and woken by the trigger.
        if slab.closed {
            return Poll::Ready(());
        }
        if this.slot == NO_SLOT {
            this.slot = match slab.free.pop() {
                Some(slot) => slot,
                None => {
                    slab.wakers.push(None);
                    u32::try_from(slab.wakers.len() - 1).expect("fewer than 2^32 waiters")
                }
            };
        }
        let entry = &mut slab.wakers[this.slot as usize];
        match entry {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *entry = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for SlabWait {
    fn drop(&mut self) {
        if self.slot == NO_SLOT || self.bare.closed.load(Ordering::Acquire) {
            return;
        }
        let mut slab = self.bare.lock();
        if !slab.closed {
            slab.wakers[self.slot as usize] = None;
            slab.free.push(self.slot);
        }
    }
}
