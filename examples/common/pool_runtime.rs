// A runtime that is neither tokio nor smol, built on std alone: a fixed pool of
// threads polling tasks from a channel, and a sleep backed by a thread. It is all
// `wind_down::Runtime` asks for. Shared by `examples/custom_runtime.rs` and
// `tests/third_runtime.rs`.
//
// It is deliberately small: no reactor (sockets must be polled, see the test's
// listener), and each sleep parks one thread. A real executor does better on both.

#![allow(dead_code)]

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A fixed pool of worker threads. Cheap to clone; the workers stop once every
/// handle and every task is gone (a task lives as long as its future or a waker
/// of it does).
#[derive(Clone)]
pub struct PoolRuntime {
    queue: Sender<Arc<Task>>,
}

impl PoolRuntime {
    /// Starts `threads` workers.
    pub fn new(threads: usize) -> Self {
        let (queue, ready) = channel::<Arc<Task>>();
        let ready = Arc::new(Mutex::new(ready));
        for i in 0..threads.max(1) {
            let ready = ready.clone();
            thread::Builder::new()
                .name(format!("pool-worker-{i}"))
                .spawn(move || work(&ready))
                .expect("spawn a pool worker");
        }
        PoolRuntime { queue }
    }
}

impl wind_down::Runtime for PoolRuntime {
    type Sleep = ThreadSleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(future))),
            queue: self.queue.clone(),
        });
        // The workers outlive every handle, so the queue is open.
        let _ = self.queue.send(task);
    }

    fn sleep(&self, duration: Duration) -> ThreadSleep {
        ThreadSleep::new(duration)
    }
}

/// One spawned future; waking it queues it again.
struct Task {
    /// `None` once the future completed (or panicked).
    future: Mutex<Option<BoxFuture>>,
    queue: Sender<Arc<Task>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let queue = self.queue.clone();
        // Fails only when the workers are gone, and then nobody would poll it.
        let _ = queue.send(self);
    }
}

impl Task {
    fn run(self: Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        // A task queued twice waits here while another worker polls it, then gets
        // one spurious poll: allowed, and no wake-up is lost.
        let mut slot = lock(&self.future);
        let Some(future) = slot.as_mut() else { return };
        // A panicking task is dropped, like on tokio; the worker carries on.
        let done = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
            .map_or(true, |poll| poll.is_ready());
        if done {
            *slot = None;
        }
    }
}

/// A worker: polls queued tasks until the queue closes.
fn work(ready: &Mutex<Receiver<Arc<Task>>>) {
    // Ends when the last sender (a handle or a task) is dropped.
    while let Ok(task) = {
        let ready = lock(ready);
        ready.recv()
    } {
        task.run();
    }
}

/// A sleep backed by a thread that sleeps, then wakes the last poller. The
/// duration counts from creation.
pub struct ThreadSleep {
    state: Arc<Mutex<SleepState>>,
}

struct SleepState {
    done: bool,
    waker: Option<Waker>,
}

impl ThreadSleep {
    pub fn new(duration: Duration) -> Self {
        let state = Arc::new(Mutex::new(SleepState {
            done: false,
            waker: None,
        }));
        let timer = state.clone();
        thread::spawn(move || {
            thread::sleep(duration);
            let waker = {
                let mut state = lock(&timer);
                state.done = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        ThreadSleep { state }
    }
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.done {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Locks, ignoring poisoning: no code here panics while holding a lock, and a
/// panicking task is caught before it could.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
