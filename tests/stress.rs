//! Randomised checks of the coordinator.
//!
//! - `threads_doing_random_operations`: four threads started on a barrier take,
//!   clone, hand over and drop guards, trigger, poll and drop waiters, run tracked
//!   futures and create child scopes, for a bounded number of operations each. Every
//!   drained waiter that resolves checks that the scope really is drained and that
//!   its own thread holds nothing on it. Seeded: `TEST_SEED=<n>` replays the
//!   operation sequences (not the thread interleaving); the seed is printed first.
//! - `state_machine`: proptest runs random operation sequences against a trivial
//!   reference model, single-threaded and runtime-free, and compares every
//!   observable (phases, counts, refusals, outcomes, graceful calls) after each step.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll};
use std::thread;

use proptest::prelude::*;

use common::{Conn, ConnLog, poll_now, scaled, with_watchdog};
use wind_down::{Cancelled, Guard, Outcome, Shutdown, Tracked, Wait, Watched};

// ----------------------------------------------------------------------------
// Threads doing random operations.
// ----------------------------------------------------------------------------

/// A future that is ready on its `n`th poll.
struct Countdown(usize);

impl std::future::Future for Countdown {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 <= 1 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Scope 0 is the root; scope `n > 0` is `children[n - 1]`.
struct Shared {
    root: Shutdown,
    children: Mutex<Vec<Shutdown>>,
    /// Guards handed from thread to thread.
    pool: Mutex<Vec<Guard>>,
    trigger_wins: AtomicUsize,
    /// Drained waiters that resolved, on the root and on children.
    drained_seen: [AtomicUsize; 2],
}

const MAX_CHILDREN: usize = 12;

impl Shared {
    fn scope(&self, id: usize) -> Option<Shutdown> {
        if id == 0 {
            Some(self.root.clone())
        } else {
            self.children.lock().unwrap().get(id - 1).cloned()
        }
    }
}

#[derive(Default)]
struct Local {
    guards: Vec<(usize, Guard)>,
    waiters: Vec<(usize, bool, Wait)>,
    tracked: Vec<(usize, Watched<Tracked<Countdown>>)>,
}

impl Local {
    fn holds_on(&self, scope: usize) -> bool {
        self.guards.iter().any(|(s, _)| *s == scope)
            || self.tracked.iter().any(|(s, _)| *s == scope)
    }

    fn holds_any(&self) -> bool {
        !self.guards.is_empty() || !self.tracked.is_empty()
    }
}

fn check_refusal(s: &Shutdown, e: Cancelled) {
    match e {
        Cancelled::Drained => assert!(s.is_drained(), "refused as drained while not drained"),
        Cancelled::Forced => assert!(s.is_forced(), "refused as forced while not forced"),
        other => panic!("unexpected refusal {other:?}"),
    }
}

/// When a worker triggers the root (all four do, racing) and maybe forces it.
struct Plan {
    trigger_at: usize,
    force_at: Option<usize>,
}

fn worker(shared: &Shared, seed: u64, iterations: usize, plan: Plan) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut local = Local::default();
    for it in 0..iterations {
        if plan.trigger_at == it && shared.root.trigger() {
            shared.trigger_wins.fetch_add(1, SeqCst);
        }
        if plan.force_at == Some(it) {
            shared.root.force();
        }
        let nchildren = shared.children.lock().unwrap().len();
        let scope_id = if rng.u8(..4) == 0 {
            rng.usize(..=nchildren)
        } else {
            0
        };
        let Some(scope) = shared.scope(scope_id) else {
            continue;
        };
        let mut roll = rng.u8(..100);
        if shared.root.is_triggered() && rng.u8(..4) != 0 {
            // Winding down: mostly release instead of taking more.
            if roll < 16 {
                roll += 16;
            } else if (78..=81).contains(&roll) {
                roll += 4;
            }
        }
        match roll {
            0..=11 => match scope.guard() {
                Ok(g) => local.guards.push((scope_id, g)),
                Err(e) => check_refusal(&scope, e),
            },
            12..=15 => {
                if !local.guards.is_empty() {
                    let i = rng.usize(..local.guards.len());
                    let (s, g) = &local.guards[i];
                    let clone = (*s, g.clone());
                    local.guards.push(clone);
                }
            }
            16..=39 => {
                if !local.guards.is_empty() {
                    let i = rng.usize(..local.guards.len());
                    drop(local.guards.swap_remove(i));
                }
            }
            40..=43 => {
                // Root guards only in the pool, so that `holds_any` stays exact.
                let mut pool = shared.pool.lock().unwrap();
                if pool.len() < 8 {
                    if let Some(i) = local.guards.iter().position(|(s, _)| *s == 0) {
                        pool.push(local.guards.swap_remove(i).1);
                    }
                }
            }
            44..=47 => {
                let taken = shared.pool.lock().unwrap().pop();
                if let Some(g) = taken {
                    if !shared.root.is_triggered() {
                        local.guards.push((0, g));
                    }
                }
            }
            48 => {
                // Rare: the root's trigger.
                if rng.u16(..200) == 0 && scope_id == 0 && scope.trigger() {
                    shared.trigger_wins.fetch_add(1, SeqCst);
                }
            }
            49 => {
                if scope_id != 0 && rng.u8(..8) == 0 {
                    scope.trigger();
                }
            }
            50..=59 => {
                let drained = rng.bool();
                let w = if drained {
                    scope.drained()
                } else {
                    scope.triggered()
                };
                local.waiters.push((scope_id, drained, w));
            }
            60..=73 => {
                if !local.waiters.is_empty() {
                    let i = rng.usize(..local.waiters.len());
                    let (s, drained, w) = &mut local.waiters[i];
                    let (s, drained) = (*s, *drained);
                    if poll_now(w).is_some() {
                        drop(local.waiters.swap_remove(i));
                        let sd = shared.scope(s).expect("scopes are never removed");
                        assert!(sd.is_triggered(), "a resolved waiter saw no trigger");
                        if drained {
                            shared.drained_seen[usize::from(s != 0)].fetch_add(1, SeqCst);
                            assert_eq!(sd.watchers(), 0, "drained with watchers");
                            assert!(sd.is_drained());
                            assert!(!local.holds_on(s), "drained while this thread holds it");
                            if s == 0 {
                                assert!(
                                    !local.holds_any(),
                                    "root drained while this thread holds work"
                                );
                                assert!(
                                    shared.pool.lock().unwrap().is_empty(),
                                    "root drained with pooled guards"
                                );
                            }
                        }
                    }
                }
            }
            74..=77 => {
                if !local.waiters.is_empty() {
                    let i = rng.usize(..local.waiters.len());
                    drop(local.waiters.swap_remove(i));
                }
            }
            78..=81 => {
                let mut t = scope.track(Countdown(rng.usize(2..4)));
                // A refused one resolves on its first poll; an admitted one needs more.
                match poll_now(&mut t) {
                    None => local.tracked.push((scope_id, t)),
                    Some(Err(e)) => check_refusal(&scope, e),
                    // Polled twice in one go only if the trigger came in between:
                    // the connection is polled again after its graceful request.
                    Some(Ok(())) => assert!(scope.is_triggered(), "a countdown completed at once"),
                }
            }
            82..=93 => {
                if !local.tracked.is_empty() {
                    let i = rng.usize(..local.tracked.len());
                    match poll_now(&mut local.tracked[i].1) {
                        None => {}
                        Some(Ok(())) => drop(local.tracked.swap_remove(i)),
                        Some(Err(e)) => {
                            assert_eq!(e, Cancelled::Forced);
                            let (s, _) = local.tracked.swap_remove(i);
                            assert!(shared.scope(s).unwrap().is_forced());
                        }
                    }
                }
            }
            94..=95 => {
                if !local.tracked.is_empty() {
                    let i = rng.usize(..local.tracked.len());
                    drop(local.tracked.swap_remove(i));
                }
            }
            _ => {
                let mut children = shared.children.lock().unwrap();
                if children.len() < MAX_CHILDREN {
                    let child = shared.root.child();
                    if shared.root.is_forced() {
                        assert!(child.is_forced());
                    }
                    children.push(child);
                }
            }
        }
    }
}

#[test]
fn threads_doing_random_operations() {
    const THREADS: usize = 4;
    let seed = std::env::var("TEST_SEED")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("TEST_SEED must be an unsigned integer")
        })
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("TEST_SEED={seed} (set it to replay this run's operation sequences)");
    let iterations = scaled(20_000, 300);
    let mut rng = fastrand::Rng::with_seed(seed);
    // Every thread triggers the root somewhere in the second half of its run, and a
    // quarter of the seeds force it partway through thread 0's run.
    let trigger_at: Vec<usize> = (0..THREADS)
        .map(|_| rng.usize(iterations / 2..iterations))
        .collect();
    let force_at = (rng.u8(..4) == 0).then(|| rng.usize(..iterations));

    let shared = Arc::new(Shared {
        root: Shutdown::new(),
        children: Mutex::new(Vec::new()),
        pool: Mutex::new(Vec::new()),
        trigger_wins: AtomicUsize::new(0),
        drained_seen: [AtomicUsize::new(0), AtomicUsize::new(0)],
    });
    let diag = {
        let shared = shared.clone();
        move || {
            format!(
                "TEST_SEED={seed}: root watchers()={} triggered={} forced={} drained={}",
                shared.root.watchers(),
                shared.root.is_triggered(),
                shared.root.is_forced(),
                shared.root.is_drained()
            )
        }
    };
    // Waits with a real waker for the final drain, from the start.
    let final_waiter = {
        let drained = shared.root.drained();
        thread::spawn(move || futures_lite::future::block_on(drained))
    };

    let run = {
        let shared = shared.clone();
        move || {
            let barrier = Arc::new(Barrier::new(THREADS));
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (shared, barrier) = (shared.clone(), barrier.clone());
                    let thread_seed = seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let plan = Plan {
                        trigger_at: trigger_at[t],
                        force_at: if t == 0 { force_at } else { None },
                    };
                    thread::spawn(move || {
                        barrier.wait();
                        worker(&shared, thread_seed, iterations, plan);
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("worker panicked");
            }
            // Everything the workers held is dropped; only the pool still holds guards.
            if shared.root.trigger() {
                shared.trigger_wins.fetch_add(1, SeqCst);
            }
            shared.pool.lock().unwrap().clear();
            final_waiter.join().expect("final drained waiter");
        }
    };
    with_watchdog("stress run", diag, run);

    let root = &shared.root;
    // A force before every trigger triggers the root itself: then no trigger() wins.
    let wins = shared.trigger_wins.load(SeqCst);
    match force_at {
        None => assert_eq!(wins, 1, "exactly one trigger() returned true"),
        Some(_) => assert!(wins <= 1, "{wins} trigger() calls returned true"),
    }
    assert!(root.is_drained());
    assert_eq!(root.watchers(), 0);
    assert_eq!(poll_now(&mut root.drained()), Some(()));
    for (i, child) in shared.children.lock().unwrap().iter().enumerate() {
        assert!(child.is_triggered() && child.is_drained(), "child {i}");
        assert_eq!(child.watchers(), 0, "child {i}");
    }
    eprintln!(
        "TEST_SEED={seed}: drained observed {} times on the root, {} on children; {} children, force_at={force_at:?}",
        shared.drained_seen[0].load(SeqCst),
        shared.drained_seen[1].load(SeqCst),
        shared.children.lock().unwrap().len()
    );
}

// ----------------------------------------------------------------------------
// State machine against a reference model.
// ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Guard,
    DropGuard(usize),
    CloneGuard(usize),
    Trigger,
    Force,
    Watch,
    PollWatched(usize),
    CompleteWatched(usize),
    DropWatched(usize),
    Child,
    ChildGuard(usize),
    DropChildGuard(usize),
    TriggerChild(usize),
    ForceChild(usize),
    DropChildHandle(usize),
    PollWaiters,
}

fn op() -> impl Strategy<Value = Op> {
    let i = any::<usize>();
    prop_oneof![
        4 => Just(Op::Guard),
        3 => i.prop_map(Op::DropGuard),
        2 => i.prop_map(Op::CloneGuard),
        1 => Just(Op::Trigger),
        1 => Just(Op::Force),
        3 => Just(Op::Watch),
        3 => i.prop_map(Op::PollWatched),
        2 => i.prop_map(Op::CompleteWatched),
        1 => i.prop_map(Op::DropWatched),
        2 => Just(Op::Child),
        2 => i.prop_map(Op::ChildGuard),
        2 => i.prop_map(Op::DropChildGuard),
        1 => i.prop_map(Op::TriggerChild),
        1 => i.prop_map(Op::ForceChild),
        1 => i.prop_map(Op::DropChildHandle),
        2 => Just(Op::PollWaiters),
    ]
}

#[derive(Debug, Default)]
struct MWatched {
    refused: Option<Cancelled>,
    finished: bool,
    asked: bool,
}

#[derive(Debug)]
struct MChild {
    triggered: bool,
    forced: bool,
    guards: usize,
    holds_parent: bool,
    handle: bool,
}

impl MChild {
    fn drained(&self) -> bool {
        self.triggered && self.guards == 0
    }
}

/// The reference: plain fields, with drained derived and latched by construction.
#[derive(Debug, Default)]
struct Model {
    triggered: bool,
    forced: bool,
    guards: usize,
    watched: Vec<MWatched>,
    children: Vec<MChild>,
}

impl Model {
    fn count(&self) -> usize {
        self.guards
            + self.watched.iter().filter(|w| w.refused.is_none()).count()
            + self.children.iter().filter(|c| c.holds_parent).count()
    }

    fn drained(&self) -> bool {
        self.triggered && self.count() == 0
    }

    fn refusal(&self) -> Option<Cancelled> {
        if self.forced {
            Some(Cancelled::Forced)
        } else if self.drained() {
            Some(Cancelled::Drained)
        } else {
            None
        }
    }

    /// A drained child gives its count on the parent back.
    fn settle(&mut self) {
        for c in &mut self.children {
            if c.drained() {
                c.holds_parent = false;
            }
        }
    }
}

fn child_refusal(c: &MChild) -> Option<Cancelled> {
    if c.forced {
        Some(Cancelled::Forced)
    } else if c.drained() {
        Some(Cancelled::Drained)
    } else {
        None
    }
}

struct RChild {
    handle: Option<Shutdown>,
    guards: Vec<Guard>,
}

struct Real {
    root: Shutdown,
    guards: Vec<Guard>,
    watched: Vec<(Watched<Conn>, Arc<ConnLog>)>,
    children: Vec<RChild>,
    next_id: usize,
}

fn pick(i: usize, len: usize) -> Option<usize> {
    (len > 0).then(|| i % len)
}

fn apply(m: &mut Model, r: &mut Real, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Guard => match (r.root.guard(), m.refusal()) {
            (Ok(g), None) => {
                r.guards.push(g);
                m.guards += 1;
            }
            (res, expected) => prop_assert_eq!(res.err(), expected),
        },
        Op::DropGuard(i) => {
            if let Some(i) = pick(i, r.guards.len()) {
                drop(r.guards.swap_remove(i));
                m.guards -= 1;
            }
        }
        Op::CloneGuard(i) => {
            if let Some(i) = pick(i, r.guards.len()) {
                let g = r.guards[i].clone();
                r.guards.push(g);
                m.guards += 1;
            }
        }
        Op::Trigger => {
            prop_assert_eq!(r.root.trigger(), !m.triggered);
            m.triggered = true;
            for c in &mut m.children {
                c.triggered = true;
            }
        }
        Op::Force => {
            let expected = match m.count() {
                0 => Outcome::Drained,
                remaining => Outcome::Forced { remaining },
            };
            prop_assert_eq!(r.root.force(), expected);
            m.triggered = true;
            m.forced = true;
            for c in &mut m.children {
                c.triggered = true;
                c.forced = true;
            }
        }
        Op::Watch => {
            let (conn, log) = Conn::new(r.next_id);
            r.next_id += 1;
            r.watched.push((r.root.watch(conn), log));
            m.watched.push(MWatched {
                refused: m.refusal(),
                ..MWatched::default()
            });
        }
        Op::PollWatched(i) => {
            if let Some(i) = pick(i, r.watched.len()) {
                let (w, log) = &mut r.watched[i];
                let mw = &mut m.watched[i];
                let got = poll_now(w);
                let done = if let Some(refused) = mw.refused {
                    prop_assert_eq!(got, Some(Err(refused)));
                    prop_assert_eq!(log.polls.load(SeqCst), 0);
                    true
                } else if m.forced {
                    prop_assert_eq!(got, Some(Err(Cancelled::Forced)));
                    true
                } else {
                    if m.triggered {
                        mw.asked = true;
                    }
                    if mw.finished {
                        prop_assert!(matches!(got, Some(Ok(_))), "{:?}", got);
                        true
                    } else {
                        prop_assert!(got.is_none());
                        false
                    }
                };
                prop_assert_eq!(log.graceful(), usize::from(mw.asked));
                if done {
                    prop_assert!(log.dropped(), "resolved but not dropped");
                    drop(r.watched.swap_remove(i));
                    m.watched.swap_remove(i);
                }
            }
        }
        Op::CompleteWatched(i) => {
            if let Some(i) = pick(i, r.watched.len()) {
                r.watched[i].1.finish();
                m.watched[i].finished = true;
            }
        }
        Op::DropWatched(i) => {
            if let Some(i) = pick(i, r.watched.len()) {
                let (w, log) = r.watched.swap_remove(i);
                drop(w);
                prop_assert!(log.dropped());
                m.watched.swap_remove(i);
            }
        }
        Op::Child => {
            let holds = m.refusal().is_none();
            r.children.push(RChild {
                handle: Some(r.root.child()),
                guards: Vec::new(),
            });
            m.children.push(MChild {
                triggered: m.triggered,
                forced: m.forced,
                guards: 0,
                holds_parent: holds,
                handle: true,
            });
        }
        Op::ChildGuard(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if let Some(h) = &r.children[i].handle {
                    let mc = &mut m.children[i];
                    match (h.guard(), child_refusal(mc)) {
                        (Ok(g), None) => {
                            r.children[i].guards.push(g);
                            mc.guards += 1;
                        }
                        (res, expected) => prop_assert_eq!(res.err(), expected),
                    }
                }
            }
        }
        Op::DropChildGuard(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if r.children[i].guards.pop().is_some() {
                    m.children[i].guards -= 1;
                }
            }
        }
        Op::TriggerChild(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if let Some(h) = &r.children[i].handle {
                    prop_assert_eq!(h.trigger(), !m.children[i].triggered);
                    m.children[i].triggered = true;
                }
            }
        }
        Op::ForceChild(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if let Some(h) = &r.children[i].handle {
                    let mc = &mut m.children[i];
                    let expected = match mc.guards {
                        0 => Outcome::Drained,
                        remaining => Outcome::Forced { remaining },
                    };
                    prop_assert_eq!(h.force(), expected);
                    mc.triggered = true;
                    mc.forced = true;
                }
            }
        }
        Op::DropChildHandle(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if r.children[i].handle.take().is_some() {
                    // The last handle triggers the child.
                    m.children[i].handle = false;
                    m.children[i].triggered = true;
                }
            }
        }
        Op::PollWaiters => {
            let expect = |b: bool| b.then_some(());
            prop_assert_eq!(poll_now(&mut r.root.triggered()), expect(m.triggered));
            prop_assert_eq!(poll_now(&mut r.root.forced()), expect(m.forced));
            prop_assert_eq!(poll_now(&mut r.root.drained()), expect(m.drained()));
        }
    }
    m.settle();
    Ok(())
}

fn check(m: &Model, r: &Real) -> Result<(), TestCaseError> {
    prop_assert_eq!(r.root.is_triggered(), m.triggered);
    prop_assert_eq!(r.root.is_forced(), m.forced);
    prop_assert_eq!(r.root.is_drained(), m.drained());
    prop_assert_eq!(r.root.watchers(), m.count());
    // A probe guard, dropped at once: it leaves the count as it was.
    prop_assert_eq!(r.root.guard().err(), m.refusal());
    prop_assert_eq!(r.root.watchers(), m.count());
    for (i, (rc, mc)) in r.children.iter().zip(&m.children).enumerate() {
        prop_assert_eq!(rc.guards.len(), mc.guards, "child {}", i);
        if let Some(h) = &rc.handle {
            prop_assert_eq!(h.is_triggered(), mc.triggered, "child {}", i);
            prop_assert_eq!(h.is_forced(), mc.forced, "child {}", i);
            prop_assert_eq!(h.is_drained(), mc.drained(), "child {}", i);
            prop_assert_eq!(h.watchers(), mc.guards, "child {}", i);
        }
        if let Some(g) = rc.guards.first() {
            prop_assert_eq!(g.watchers(), mc.guards, "child {}", i);
        }
    }
    Ok(())
}

/// Longest operation sequence; miri interprets proptest's machinery slowly.
const MAX_OPS: usize = if cfg!(miri) { 40 } else { 80 };

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 512 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn state_machine(ops in prop::collection::vec(op(), 1..MAX_OPS)) {
        let mut m = Model::default();
        let mut r = Real {
            root: Shutdown::new(),
            guards: Vec::new(),
            watched: Vec::new(),
            children: Vec::new(),
            next_id: 0,
        };
        for op in &ops {
            apply(&mut m, &mut r, op)?;
            check(&m, &r)?;
        }
        // Winding down: whatever is left, dropping it all drains a triggered root.
        r.root.trigger();
        drop(std::mem::take(&mut r.guards));
        drop(std::mem::take(&mut r.watched));
        for c in &mut r.children {
            c.guards.clear();
        }
        prop_assert!(r.root.is_drained());
        prop_assert_eq!(r.root.watchers(), 0);
    }
}
