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
//!
//! Both run with any number of shards per root: `WIND_DOWN_SHARDS=1`, `2` and `32`
//! are the interesting ones (one shared shard, the minimum, more than threads).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll};
use std::thread;

use proptest::prelude::*;

use common::{Conn, ConnLog, poll_now, scaled, with_watchdog};
use wind_down::{Guard, Outcome, Phase, Refused, Shutdown, Stopped, Tracked, Wait, Watched};

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

/// Whether `s` was forced. `Phase::Drained` does not tell (a forced coordinator that
/// drained is done too), but a forced one refuses every new watcher as `Forced`:
/// the probe guard, if admitted, is dropped at once.
fn is_forced(s: &Shutdown) -> bool {
    let phase = s.phase();
    let forced = matches!(s.guard(), Err(Refused::Forced));
    assert!(
        !forced || phase >= Phase::Forced,
        "refused as forced in phase {phase}"
    );
    forced
}

fn is_triggered(s: &Shutdown) -> bool {
    s.phase() >= Phase::Triggered
}

fn check_refusal(s: &Shutdown, e: Refused) {
    match e {
        Refused::Drained => assert_eq!(
            s.phase(),
            Phase::Drained,
            "refused as drained while not drained"
        ),
        Refused::Forced => assert!(is_forced(s), "refused as forced while not forced"),
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
        if is_triggered(&shared.root) && rng.u8(..4) != 0 {
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
                    if !is_triggered(&shared.root) {
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
                        assert!(is_triggered(&sd), "a resolved waiter saw no trigger");
                        if drained {
                            shared.drained_seen[usize::from(s != 0)].fetch_add(1, SeqCst);
                            assert_eq!(sd.report().remaining, 0, "drained with watchers");
                            assert_eq!(sd.phase(), Phase::Drained);
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
                    Some(Err(Stopped::Refused(e))) => check_refusal(&scope, e),
                    // Admitted, then forced before its first poll.
                    Some(Err(Stopped::Forced)) => {
                        assert!(is_forced(&scope), "stopped as forced while not forced");
                    }
                    Some(Err(other)) => panic!("unexpected stop {other:?}"),
                    // Polled twice in one go only if the trigger came in between:
                    // the connection is polled again after its graceful request.
                    Some(Ok(())) => assert!(is_triggered(&scope), "a countdown completed at once"),
                }
            }
            82..=93 => {
                if !local.tracked.is_empty() {
                    let i = rng.usize(..local.tracked.len());
                    match poll_now(&mut local.tracked[i].1) {
                        None => {}
                        Some(Ok(())) => drop(local.tracked.swap_remove(i)),
                        Some(Err(e)) => {
                            assert_eq!(e, Stopped::Forced);
                            let (s, _) = local.tracked.swap_remove(i);
                            assert!(is_forced(&shared.scope(s).unwrap()));
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
                    // Read before the child is made: a child of a forced root is
                    // forced from its creation on.
                    let root_forced = is_forced(&shared.root);
                    let child = shared.root.child();
                    if root_forced {
                        assert!(is_forced(&child), "a child of a forced root");
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
    let iterations = scaled(20_000, 60);
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
                "TEST_SEED={seed}: root report().remaining={} phase={}",
                shared.root.report().remaining,
                shared.root.phase(),
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
    assert_eq!(root.phase(), Phase::Drained);
    assert_eq!(root.report().remaining, 0);
    assert_eq!(poll_now(&mut root.drained()), Some(()));
    let forced = force_at.is_some();
    let refusal = if forced {
        Refused::Forced
    } else {
        Refused::Drained
    };
    assert_eq!(root.guard().err(), Some(refusal));
    for (i, child) in shared.children.lock().unwrap().iter().enumerate() {
        assert_eq!(child.phase(), Phase::Drained, "child {i}");
        assert_eq!(child.report().remaining, 0, "child {i}");
        // Only the root's force forces children here.
        assert_eq!(child.guard().err(), Some(refusal), "child {i}");
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
    Announce,
    Trigger,
    Force,
    /// One poll of `drain_until`, with a deadline that is already past or never comes.
    DrainUntil {
        past: bool,
    },
    Watch,
    PollWatched(usize),
    CompleteWatched(usize),
    DropWatched(usize),
    /// A child scope; with `waits`, waits on its phases are kept past its handle.
    Child {
        waits: bool,
    },
    ChildGuard(usize),
    DropChildGuard(usize),
    TriggerChild(usize),
    ForceChild(usize),
    ChildDrainUntil(usize, bool),
    DropChildHandle(usize),
    PollWaiters,
}

fn op() -> impl Strategy<Value = Op> {
    let i = any::<usize>();
    prop_oneof![
        4 => Just(Op::Guard),
        3 => i.prop_map(Op::DropGuard),
        2 => i.prop_map(Op::CloneGuard),
        1 => Just(Op::Announce),
        1 => Just(Op::Trigger),
        1 => Just(Op::Force),
        1 => any::<bool>().prop_map(|past| Op::DrainUntil { past }),
        3 => Just(Op::Watch),
        3 => i.prop_map(Op::PollWatched),
        2 => i.prop_map(Op::CompleteWatched),
        1 => i.prop_map(Op::DropWatched),
        2 => any::<bool>().prop_map(|waits| Op::Child { waits }),
        2 => i.prop_map(Op::ChildGuard),
        2 => i.prop_map(Op::DropChildGuard),
        1 => i.prop_map(Op::TriggerChild),
        1 => i.prop_map(Op::ForceChild),
        1 => (i, any::<bool>()).prop_map(|(i, past)| Op::ChildDrainUntil(i, past)),
        1 => i.prop_map(Op::DropChildHandle),
        2 => Just(Op::PollWaiters),
    ]
}

/// One scope's latched phases in the model; its count is passed in.
#[derive(Clone, Copy, Debug, Default)]
struct MPhases {
    announced: bool,
    triggered: bool,
    /// Set by the first force: the watchers it reported.
    forced: Option<usize>,
}

impl MPhases {
    /// `true` if first.
    fn announce(&mut self) -> bool {
        !std::mem::replace(&mut self.announced, true)
    }

    /// `true` if first.
    fn trigger(&mut self) -> bool {
        self.announce();
        !std::mem::replace(&mut self.triggered, true)
    }

    /// A force with `count` watchers running; only the first one's report is kept.
    fn force(&mut self, count: usize) {
        self.trigger();
        self.forced.get_or_insert(count);
    }

    fn drained(&self, count: usize) -> bool {
        self.triggered && count == 0
    }

    fn refusal(&self, count: usize) -> Option<Refused> {
        if self.forced.is_some() {
            Some(Refused::Forced)
        } else if self.drained(count) {
            Some(Refused::Drained)
        } else {
            None
        }
    }

    fn phase(&self, count: usize) -> Phase {
        if self.drained(count) {
            Phase::Drained
        } else if self.forced.is_some() {
            Phase::Forced
        } else if self.triggered {
            Phase::Triggered
        } else if self.announced {
            Phase::Announced
        } else {
            Phase::Running
        }
    }

    /// What the first poll of `drain_until` resolves to (the trigger is done by
    /// the caller, on the whole subtree): `None` while pending, else the
    /// remaining count of its outcome. Drained or forced, it reports the first
    /// force (none: drained); else a past deadline forces now.
    fn drain_until(&self, count: usize, past: bool) -> Option<usize> {
        if self.drained(count) || self.forced.is_some() {
            Some(self.forced.unwrap_or(0))
        } else if past {
            Some(count)
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct MWatched {
    refused: Option<Refused>,
    finished: bool,
    asked: bool,
}

#[derive(Debug, Default)]
struct MChild {
    phases: MPhases,
    guards: usize,
}

/// The reference: plain fields, with drained derived and latched by construction.
/// A child scope is not a watcher: the root counts its children's guards, not the
/// children. Dropping a child's handle changes nothing.
#[derive(Debug, Default)]
struct Model {
    phases: MPhases,
    guards: usize,
    watched: Vec<MWatched>,
    children: Vec<MChild>,
}

impl Model {
    fn count(&self) -> usize {
        self.guards
            + self.watched.iter().filter(|w| w.refused.is_none()).count()
            + self.children.iter().map(|c| c.guards).sum::<usize>()
    }

    fn drained(&self) -> bool {
        self.phases.drained(self.count())
    }

    fn refusal(&self) -> Option<Refused> {
        self.phases.refusal(self.count())
    }

    fn phase(&self) -> Phase {
        self.phases.phase(self.count())
    }

    fn announce(&mut self) -> bool {
        for c in &mut self.children {
            c.phases.announce();
        }
        self.phases.announce()
    }

    fn trigger(&mut self) -> bool {
        for c in &mut self.children {
            c.phases.trigger();
        }
        self.phases.trigger()
    }

    /// Returns the count the force reports.
    fn force(&mut self) -> usize {
        let count = self.count();
        for c in &mut self.children {
            c.phases.force(c.guards);
        }
        self.phases.force(count);
        count
    }

    /// The first poll of `drain_until`: it triggers first.
    fn drain_until(&mut self, past: bool) -> Option<usize> {
        self.trigger();
        let got = self.phases.drain_until(self.count(), past);
        if got.is_some() && self.phases.forced.is_none() && !self.drained() {
            self.force();
        }
        got
    }

    /// A child created now: with the root's phases, forced (with nothing) if the
    /// root is.
    fn child(&self) -> MChild {
        MChild {
            phases: MPhases {
                forced: self.phases.forced.map(|_| 0),
                ..self.phases
            },
            guards: 0,
        }
    }
}

struct RChild {
    handle: Option<Shutdown>,
    guards: Vec<Guard>,
    /// Its triggered and drained waits, which outlive the handle.
    waits: Option<(Wait, Wait)>,
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

/// An outcome as the model has it: `(drained, remaining)`.
fn outcome_of(remaining: usize) -> (bool, usize) {
    (remaining == 0, remaining)
}

fn seen(outcome: &Outcome) -> (bool, usize) {
    (outcome.is_drained(), outcome.remaining())
}

/// A deadline that is already past, or never comes.
async fn deadline(past: bool) {
    if !past {
        std::future::pending::<()>().await;
    }
}

/// The first poll of `s.drain_until(deadline(past))`.
fn drain_once(s: &Shutdown, past: bool) -> Option<Outcome> {
    poll_now(&mut Box::pin(s.drain_until(deadline(past))))
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
        Op::Announce => {
            prop_assert_eq!(r.root.announce(), m.announce());
        }
        Op::Trigger => {
            prop_assert_eq!(r.root.trigger(), m.trigger());
        }
        Op::Force => {
            let got = r.root.force();
            let expected = m.force();
            prop_assert_eq!(seen(&got), outcome_of(expected));
        }
        Op::DrainUntil { past } => {
            let got = drain_once(&r.root, past);
            let expected = m.drain_until(past);
            prop_assert_eq!(got.as_ref().map(seen), expected.map(outcome_of));
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
                    prop_assert_eq!(got, Some(Err(Stopped::Refused(refused))));
                    prop_assert_eq!(log.polls.load(SeqCst), 0);
                    true
                } else if m.phases.forced.is_some() {
                    prop_assert_eq!(got, Some(Err(Stopped::Forced)));
                    true
                } else {
                    if m.phases.triggered {
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
        Op::Child { waits } => {
            let handle = r.root.child();
            let waits = waits.then(|| (handle.triggered(), handle.drained()));
            r.children.push(RChild {
                handle: Some(handle),
                guards: Vec::new(),
                waits,
            });
            m.children.push(m.child());
        }
        Op::ChildGuard(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if let Some(h) = &r.children[i].handle {
                    let mc = &mut m.children[i];
                    match (h.guard(), mc.phases.refusal(mc.guards)) {
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
                    prop_assert_eq!(h.trigger(), m.children[i].phases.trigger());
                }
            }
        }
        Op::ForceChild(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                if let Some(h) = &r.children[i].handle {
                    let mc = &mut m.children[i];
                    prop_assert_eq!(seen(&h.force()), outcome_of(mc.guards));
                    mc.phases.force(mc.guards);
                }
            }
        }
        Op::ChildDrainUntil(i, past) => {
            if let Some(i) = pick(i, r.children.len()) {
                if let Some(h) = &r.children[i].handle {
                    let got = drain_once(h, past);
                    let mc = &mut m.children[i];
                    // It triggers the child only.
                    mc.phases.trigger();
                    let expected = mc.phases.drain_until(mc.guards, past);
                    if expected.is_some() && mc.phases.forced.is_none() && mc.guards > 0 {
                        mc.phases.force(mc.guards);
                    }
                    prop_assert_eq!(got.as_ref().map(seen), expected.map(outcome_of));
                }
            }
        }
        Op::DropChildHandle(i) => {
            if let Some(i) = pick(i, r.children.len()) {
                // Not a trigger: the parent still can trigger the child. Without
                // guards or waits, the child is freed and lets go of its parent.
                drop(r.children[i].handle.take());
            }
        }
        Op::PollWaiters => {
            let expect = |b: bool| b.then_some(());
            prop_assert_eq!(
                poll_now(&mut r.root.announced()),
                expect(m.phases.announced)
            );
            prop_assert_eq!(
                poll_now(&mut r.root.triggered()),
                expect(m.phases.triggered)
            );
            prop_assert_eq!(poll_now(&mut r.root.drained()), expect(m.drained()));
        }
    }
    Ok(())
}

fn check(m: &Model, r: &mut Real) -> Result<(), TestCaseError> {
    prop_assert_eq!(r.root.phase(), m.phase());
    prop_assert_eq!(r.root.is_ready(), !m.phases.announced);
    prop_assert_eq!(r.root.report().remaining, m.count());
    // A probe guard, dropped at once: it leaves the count as it was.
    prop_assert_eq!(r.root.guard().err(), m.refusal());
    prop_assert_eq!(r.root.report().remaining, m.count());
    let expect = |b: bool| b.then_some(());
    for (i, (rc, mc)) in r.children.iter_mut().zip(&m.children).enumerate() {
        prop_assert_eq!(rc.guards.len(), mc.guards, "child {}", i);
        if let Some(h) = &rc.handle {
            prop_assert_eq!(h.phase(), mc.phases.phase(mc.guards), "child {}", i);
            prop_assert_eq!(h.is_ready(), !mc.phases.announced, "child {}", i);
            prop_assert_eq!(h.report().remaining, mc.guards, "child {}", i);
            prop_assert_eq!(h.guard().err(), mc.phases.refusal(mc.guards), "child {}", i);
        }
        if let Some((triggered, drained)) = &mut rc.waits {
            prop_assert_eq!(
                poll_now(triggered),
                expect(mc.phases.triggered),
                "child {}",
                i
            );
            prop_assert_eq!(
                poll_now(drained),
                expect(mc.phases.drained(mc.guards)),
                "child {}",
                i
            );
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
            check(&m, &mut r)?;
        }
        // Winding down: whatever is left, dropping it all drains a triggered root,
        // and every child with it.
        r.root.trigger();
        drop(std::mem::take(&mut r.guards));
        drop(std::mem::take(&mut r.watched));
        for c in &mut r.children {
            c.guards.clear();
        }
        prop_assert_eq!(r.root.phase(), Phase::Drained);
        prop_assert_eq!(r.root.report().remaining, 0);
        for (i, c) in r.children.iter_mut().enumerate() {
            if let Some(h) = &c.handle {
                prop_assert_eq!(h.phase(), Phase::Drained, "child {}", i);
            }
            if let Some((triggered, drained)) = &mut c.waits {
                prop_assert_eq!(poll_now(triggered), Some(()), "child {}", i);
                prop_assert_eq!(poll_now(drained), Some(()), "child {}", i);
            }
        }
    }
}
