//! [`Wakes`]: the wake-ups a state change owes, run after the change is complete.
//!
//! Invariants:
//! - Nothing is woken while a transition or a release is still changing state:
//!   callers collect here, then [`run`](Wakes::run).
//! - Every event is notified with `notify(usize::MAX)`: all of its listeners. An
//!   event nobody listens to is not notified, so that a drain allocates nothing
//!   (event-listener allocates its state on first use): a `SeqCst` fence after the
//!   state change here, and one after a waiter's registration before it reads the
//!   state word again ([`listen`]), make sure that either the waiter sees the new
//!   state or this sees its listener.
//! - A waker that panics does not keep the others from being woken; the first
//!   panic is resumed once every event was notified, unless the thread is
//!   already unwinding (a second panic would abort). event-listener is not
//!   panic-safe (a waker that unwinds out of `notify` leaves its count of notified
//!   listeners short, which a later removal underflows), so it never sees a task's
//!   waker: a [`Listening`] polls its listener with a waker of its own that calls
//!   the task's inside `catch_unwind` and keeps the panic for the transition in
//!   progress on that thread.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use event_listener::{Event, EventListener};

use super::phase::Phase;
use super::state::{ANNOUNCED, FORCED, TRIGGERED};
use super::sync::{Ordering, fence};

/// What [`Wakes`] wakes: a coordinator, with one event per phase.
pub(crate) trait PhaseEvents {
    /// The event notified when `phase` is reached.
    fn event(&self, phase: Phase) -> &Event;
}

/// The phases coordinators (`C`) newly reached, to wake. The first entry is kept
/// inline: a release that drains a root allocates nothing.
pub(crate) struct Wakes<C> {
    first: Option<(C, Reached)>,
    more: Vec<(C, Reached)>,
}

impl<C> Default for Wakes<C> {
    fn default() -> Self {
        Wakes {
            first: None,
            more: Vec::new(),
        }
    }
}

#[derive(Clone, Copy)]
enum Reached {
    /// State bits newly set.
    Bits(u64),
    Drained,
}

impl<C: PhaseEvents> Wakes<C> {
    /// `core` newly has `bits`.
    pub(crate) fn reached(&mut self, core: C, bits: u64) {
        if bits != 0 {
            self.push(core, Reached::Bits(bits));
        }
    }

    /// `core` drained.
    pub(crate) fn drained(&mut self, core: C) {
        self.push(core, Reached::Drained);
    }

    fn push(&mut self, core: C, reached: Reached) {
        if self.first.is_none() {
            self.first = Some((core, reached));
        } else {
            self.more.push((core, reached));
        }
    }

    /// Wakes every waiter due, then resumes the first panic of a waker, if any.
    pub(crate) fn run(self) {
        if self.first.is_none() {
            return;
        }
        fence(Ordering::SeqCst);
        // A panic left by a waker outside a transition is not this one's.
        let _ = CAUGHT.try_with(|caught| caught.borrow_mut().take());
        let mut panic = None;
        for (core, reached) in self.first.iter().chain(&self.more) {
            match *reached {
                Reached::Drained => notify_all(core.event(Phase::Drained), &mut panic),
                Reached::Bits(bits) => {
                    for (bit, phase) in [
                        (ANNOUNCED, Phase::Announced),
                        (TRIGGERED, Phase::Triggered),
                        (FORCED, Phase::Forced),
                    ] {
                        if bits & bit != 0 {
                            notify_all(core.event(phase), &mut panic);
                        }
                    }
                }
            }
        }
        drop(self);
        // A release or a drop may run while its thread already unwinds (a guard
        // dropped by a panic): resuming a second panic there would abort.
        if let Some(panic) = panic.filter(|_| !std::thread::panicking()) {
            resume_unwind(panic);
        }
    }
}

type Payload = Box<dyn Any + Send>;

std::thread_local! {
    /// The first panic of a task's waker caught on this thread since it was last
    /// taken.
    static CAUGHT: RefCell<Option<Payload>> = const { RefCell::new(None) };
}

/// A task's waker, called inside `catch_unwind`.
struct Catching(Waker);

impl Wake for Catching {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.0.wake_by_ref())) {
            let _ = CAUGHT.try_with(|caught| {
                caught.borrow_mut().get_or_insert(payload);
            });
        }
    }
}

/// A waiter registered with one phase's event, polled with a waker that cannot
/// unwind into event-listener.
pub(crate) struct Listening {
    listener: EventListener,
    /// The task's waker and the catching waker around it, made on the first poll
    /// and again only when the task's waker changes.
    wakers: Option<(Waker, Waker)>,
}

impl Listening {
    /// Registers with `event`, for a waiter that reads the state word again right
    /// after: see the module's invariants.
    pub(crate) fn new(event: &Event) -> Listening {
        let listener = event.listen();
        fence(Ordering::SeqCst);
        Listening {
            listener,
            wakers: None,
        }
    }

    /// Ready once the event was notified.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let task = cx.waker();
        let catching = match &self.wakers {
            Some((known, catching)) if known.will_wake(task) => catching,
            _ => {
                let catching = Waker::from(Arc::new(Catching(task.clone())));
                &self.wakers.insert((task.clone(), catching)).1
            }
        };
        Pin::new(&mut self.listener).poll(&mut Context::from_waker(catching))
    }
}

/// Notifies every listener of `event`; keeps the first panic of their wakers.
fn notify_all(event: &Event, panic: &mut Option<Payload>) {
    if event.total_listeners() == 0 {
        return;
    }
    event.notify(usize::MAX);
    if let Ok(Some(payload)) = CAUGHT.try_with(|caught| caught.borrow_mut().take()) {
        panic.get_or_insert(payload);
    }
}
