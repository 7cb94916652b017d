//! Measurement 7: child scopes. `parent.child()` then drop, timed with 0, 10,000 and
//! 100,000 live sibling scopes under the same parent: the cost must not grow with
//! the siblings (a previous design was O(live children) per creation). Then the heap
//! a live parent still holds after 100,000 children came and went.

use std::hint::black_box;
use std::time::Instant;

use crate::alloc;
use crate::guard::{disturbance, had_cpu};
use crate::report::{Group, Report};
use crate::{Config, sys};

/// A parent with `siblings` live child scopes.
struct Parent {
    parent: wind_down::Shutdown,
    _siblings: Vec<wind_down::Shutdown>,
}

impl Parent {
    fn new(siblings: usize) -> Parent {
        let parent = wind_down::Shutdown::new();
        let _siblings = (0..siblings).map(|_| parent.child()).collect();
        Parent { parent, _siblings }
    }

    fn run(&self, iters: u64) {
        for _ in 0..iters {
            drop(black_box(self.parent.child()));
        }
    }
}

pub fn scopes(cfg: &Config, report: &mut Report) {
    let sizes = [0, cfg.scaled_usize(10_000), cfg.scaled_usize(100_000)];
    let iters = cfg.scaled(200_000);
    let mut group = Group::new(
        "7",
        "child scope: parent.child() + drop, with live sibling scopes under the same parent",
        "ns per create+drop",
    );
    let parents: Vec<Parent> = sizes.iter().map(|&n| Parent::new(n)).collect();
    for (i, (&n, p)) in sizes.iter().zip(&parents).enumerate() {
        let prefix = if i == 0 { "baseline: " } else { "" };
        group.row(format!("{prefix}wind-down, {n} live siblings"));
        p.run(iters / 10); // warm-up
    }
    let rounds = cfg.rounds;
    let mut disturbed = 0;
    for round in 0..rounds {
        for k in 0..parents.len() {
            let i = (k + round) % parents.len();
            let cpu = sys::thread_cpu_time();
            let start = Instant::now();
            parents[i].run(iters);
            let elapsed = start.elapsed();
            if had_cpu(cpu, elapsed) == Some(false) {
                disturbed += 1;
            }
            group.rows[i]
                .samples
                .push(elapsed.as_nanos() as f64 / iters as f64);
        }
    }
    drop(parents);
    group.note(format!(
        "{iters} create+drop per round, {rounds} rounds; the siblings are made once, before the rounds, and live through them"
    ));
    group.note(disturbance(disturbed, rounds * sizes.len()));

    // What a live parent keeps once its children are gone.
    let n = sizes[2];
    let parent = wind_down::Shutdown::new();
    let before = alloc::snapshot();
    for _ in 0..n {
        drop(black_box(parent.child()));
    }
    let one_at_a_time = before.since();
    let before = alloc::snapshot();
    let children: Vec<_> = (0..n).map(|_| parent.child()).collect();
    let peak = before.since().live;
    drop(children);
    let all_at_once = before.since();
    drop(parent);
    group.note(format!(
        "heap: {n} children created and dropped one at a time under a live parent: {} allocations ({:.2} per child), {} B still allocated after",
        one_at_a_time.allocs,
        one_at_a_time.allocs as f64 / n as f64,
        one_at_a_time.live
    ));
    group.note(format!(
        "heap: {n} children live at once ({peak} B with the Vec holding them), then all dropped: {} B still allocated after (the parent's slab keeps its capacity: {:.1} B per child of the peak)",
        all_at_once.live,
        all_at_once.live as f64 / n as f64
    ));
    report.line(
        "7",
        format!(
            "child scopes, heap a live parent keeps after {n} children (no numeric target; expected small): one at a time {} B, {n} at once {} B",
            one_at_a_time.live, all_at_once.live
        ),
    );
    report.push(group);
}
