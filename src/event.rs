//! The notification primitive behind the coordinator's phases.
//!
//! Normally this is `event-listener`. Under `--cfg wind_down_loom` it is a small
//! stand-in with the same semantics that the coordinator relies on (a listener
//! registers when created, so a notification between creation and first poll is
//! not lost; `notify_additional(n)` wakes `n` registered listeners that were not
//! notified yet and says how many it woke; dropping a
//! listener unregisters it), built on loom's primitives so that loom can schedule
//! through it. `event-listener` itself uses std locks and may wake while holding
//! them, which loom's scheduler cannot step through.

#[cfg(not(wind_down_loom))]
pub(crate) use event_listener::{Event, EventListener};

#[cfg(wind_down_loom)]
pub(crate) use self::model::{Event, EventListener};

#[cfg(wind_down_loom)]
mod model {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use loom::sync::Mutex;

    #[derive(Default)]
    struct Slot {
        notified: bool,
        waker: Option<Waker>,
    }

    #[derive(Default)]
    struct List {
        next_id: usize,
        slots: Vec<(usize, Slot)>,
    }

    pub(crate) struct Event {
        list: Arc<Mutex<List>>,
    }

    impl Event {
        pub(crate) fn new() -> Self {
            Event {
                list: Arc::new(Mutex::new(List::default())),
            }
        }

        pub(crate) fn listen(&self) -> EventListener {
            let mut list = self.list.lock().unwrap();
            let id = list.next_id;
            list.next_id += 1;
            list.slots.push((id, Slot::default()));
            EventListener {
                list: self.list.clone(),
                id,
            }
        }

        /// Notifies up to `n` registered listeners not notified yet; returns how
        /// many it notified.
        pub(crate) fn notify_additional(&self, n: usize) -> usize {
            let (notified, wakers) = {
                let mut list = self.list.lock().unwrap();
                let mut notified = 0;
                let mut wakers: Vec<Waker> = Vec::new();
                for (_, slot) in list.slots.iter_mut().filter(|(_, s)| !s.notified).take(n) {
                    slot.notified = true;
                    notified += 1;
                    wakers.extend(slot.waker.take());
                }
                (notified, wakers)
            };
            for w in wakers {
                w.wake();
            }
            notified
        }

        #[cfg(test)]
        pub(crate) fn total_listeners(&self) -> usize {
            self.list.lock().unwrap().slots.len()
        }
    }

    pub(crate) struct EventListener {
        list: Arc<Mutex<List>>,
        id: usize,
    }

    impl Future for EventListener {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut list = self.list.lock().unwrap();
            let slot = list
                .slots
                .iter_mut()
                .find(|(id, _)| *id == self.id)
                .map(|(_, s)| s)
                .expect("listener registered");
            if slot.notified {
                Poll::Ready(())
            } else {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    impl Drop for EventListener {
        fn drop(&mut self) {
            let mut list = self.list.lock().unwrap();
            list.slots.retain(|(id, _)| *id != self.id);
        }
    }
}
