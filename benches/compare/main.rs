//! wind-down side by side with other shutdown coordinators, in one run.
//!
//! `cargo bench --all-features` (or `--features tokio,hyper`) runs every
//! measurement and prints one table: per case the median over several rounds, the
//! spread, and the ratio to the baseline measured in the same run. BENCHMARKS.md
//! says exactly what each row measures, and keeps the results from one machine.
//!
//! Arguments that do not start with `-` select sections by name: `guard`,
//! `contended`, `fanout`, `memory`, `serving`, `drain`, `scopes` (e.g.
//! `cargo bench --all-features -- fanout`). `WIND_DOWN_BENCH_ROUNDS` sets the rounds
//! (default 9); `WIND_DOWN_BENCH_QUICK=1` divides every size by ten, for a smoke run.

mod alloc;
#[cfg(unix)]
mod drain;
mod fanout;
mod guard;
mod http;
mod memory;
mod report;
mod scopes;
mod serving;
mod slab;
mod sys;
mod unsafe_v1;

use report::{Group, Report};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

pub struct Config {
    pub rounds: usize,
    quick: bool,
    sections: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let rounds = std::env::var("WIND_DOWN_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(9usize)
            .max(1);
        let quick = std::env::var("WIND_DOWN_BENCH_QUICK").is_ok_and(|v| v == "1");
        // `cargo bench` passes `--bench`; anything else not starting with `-` filters.
        let sections = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        Config {
            rounds,
            quick,
            sections,
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| section.contains(s.as_str()))
    }

    pub fn scaled(&self, n: u64) -> u64 {
        if self.quick { (n / 10).max(1) } else { n }
    }

    pub fn scaled_usize(&self, n: usize) -> usize {
        if self.quick { (n / 10).max(1) } else { n }
    }
}

fn main() {
    #[cfg(unix)]
    drain::child_main(); // a child server of measurement 6 never returns from here

    let cfg = Config::from_env();
    let started = std::time::Instant::now();
    let mut report = Report::default();
    let header = header(&cfg);
    eprint!("{header}");

    // For the libraries that need a tokio context to be created (tokio-graceful).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    if cfg.wants("guard") {
        guard::single_thread(&cfg, &rt, &mut report);
    }
    if cfg.wants("contended") {
        guard::two_threads(&cfg, &rt, &mut report);
    }
    if cfg.wants("fanout") {
        fanout::plain(&cfg, &mut report);
        fanout::hyper(&cfg, &mut report);
    }
    if cfg.wants("memory") {
        memory::memory(&rt, &mut report);
        memory::waits(&mut report);
    }
    if cfg.wants("serving") {
        serving::serving(&cfg, &mut report);
        serving::connection_memory(&cfg, &mut report);
    }
    #[cfg(unix)]
    if cfg.wants("drain") {
        drain::drain(&cfg, &mut report);
    }
    if cfg.wants("scopes") {
        scopes::scopes(&cfg, &mut report);
    }
    drop(rt);

    println!();
    print!("{header}");
    println!();
    for group in report.groups.iter().filter(|g| g.id < "4") {
        println!("{}", group.render());
    }
    for table in &report.tables {
        println!("{}", table.render());
    }
    for group in report.groups.iter().filter(|g| g.id >= "4") {
        println!("{}", group.render());
    }
    println!("{}", targets(&report));
    println!("total bench time: {:.1} s", started.elapsed().as_secs_f64());
}

fn header(cfg: &Config) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "wind-down comparison benchmarks: {} rounds per case{}; {} CPUs available; 1-min load average at start: {}\n\
         machine note: small shared machine, other work may run at the same time: expect noise, read ratios, not absolute numbers\n",
        cfg.rounds,
        if cfg.quick { ", QUICK sizes (/10)" } else { "" },
        cpus,
        sys::load_average().unwrap_or_else(|| "unknown".into()),
    )
}

/// The targets, checked against this run's numbers.
fn targets(report: &Report) -> String {
    let mut out = String::from("targets, checked against this run:\n");
    let mut line = |s: String| {
        out.push_str("  ");
        out.push_str(&s);
        out.push('\n');
    };
    const NOT_MEASURED: &str = "not measured in this run";
    const GUARD: &str = "wind-down Shutdown::guard()";

    // 1 and 2: the guard against the baseline, the fastest peer, and the previous
    // (unsafe) design.
    for (id, what, max) in [
        ("1", "guard, 1 thread", 2.2),
        ("2", "guard, 2 pinned threads", 0.5),
    ] {
        let group = report.group(id);
        let ours = group.and_then(|g| g.ratio_of(GUARD));
        line(format!(
            "{id}. {what}, target <= {max:.1}x the baseline: {}",
            ours.map_or(NOT_MEASURED.into(), |r| at_most(r, max))
        ));
        let (Some(group), Some(ours)) = (group, ours) else {
            continue;
        };
        if id == "1" {
            let verdict = match best_peer(group) {
                Some((name, peer)) => {
                    let how = if ours <= peer { "MET" } else { "MISSED" };
                    format!(
                        "{how}: {ours:.2}x vs {name} {peer:.2}x: {}",
                        faster(ours, peer)
                    )
                }
                None => NOT_MEASURED.into(),
            };
            line(format!(
                "{id}. {what}, aim: no slower than the fastest peer: {verdict}"
            ));
        } else if let Some((name, peer)) = best_peer(group) {
            line(format!(
                "{id}. {what}, fastest peer (no target): {name} {peer:.2}x"
            ));
        }
        if let Some(prev) = group.ratio_of(guard::PREVIOUS_DESIGN) {
            let base = group.baseline();
            line(format!(
                "{id}. {what}, cost of safety (no target): {ours:.2}x ({:.2} ns) vs the previous unsafe design {prev:.2}x ({:.2} ns): {:+.0}%",
                ours * base,
                prev * base,
                (ours / prev - 1.0) * 100.0
            ));
        }
    }

    // 3: waking and draining 100,000 waiting tasks (10,000 in a quick run), against
    // the fastest peer.
    for (id, case) in [
        ("3a'", "wind-down watch(conn)"),
        ("3a'", "wind-down guard() + triggered()"),
        ("3b'", "wind-down Shutdown::watch(conn)"),
    ] {
        let Some(group) = report.group(id) else {
            continue;
        };
        let (Some(ours), Some((name, peer))) = (group.median_of(case), fastest_peer(group)) else {
            continue;
        };
        let r = ours / peer;
        let verdict = if r <= 1.25 {
            format!("MET: {r:.2}x <= 1.25x")
        } else {
            format!(
                "MISSED: {r:.2}x vs <= 1.25x, by {:.2}x ({:.0}% over)",
                r - 1.25,
                (r / 1.25 - 1.0) * 100.0
            )
        };
        // A difference smaller than the rounds' spread (interquartile range relative
        // to the median, the larger of the two rows') is called a tie.
        let spread = [case, name.as_str()]
            .iter()
            .filter_map(|c| group.rows.iter().find(|r| r.case == *c))
            .map(|r| report::relative_iqr(&r.samples))
            .fold(0.0, f64::max);
        let tie = if (r - 1.0).abs() <= spread {
            format!(", within the rounds' spread of {:.0}%", spread * 100.0)
        } else {
            String::new()
        };
        line(format!(
            "3. fan-out at the largest N, [{id}] {case}, target within 1.25x of the fastest peer: {verdict} ({ours:.2} ms vs {name} {peer:.2} ms: {}{tie})",
            faster(ours, peer)
        ));
    }
    if let Some(group) = report.group("3a'") {
        if let Some((name, peer)) = fastest_peer(group) {
            let refs: Vec<String> = group
                .rows
                .iter()
                .filter(|r| r.case.starts_with("reference") && !r.samples.is_empty())
                .map(|r| format!("{} {:.2}x", r.case, report::median(&r.samples) / peer))
                .collect();
            if !refs.is_empty() {
                line(format!(
                    "3. [3a'] the reference rows against the fastest peer ({name}), no target: {}",
                    refs.join("; ")
                ));
            }
        }
    }

    for (_, l) in report.lines.iter().filter(|(id, _)| *id == "4") {
        line(format!("4. {l}"));
    }

    if let Some(group) = report.group("5") {
        if let Some(r) = group.ratio_of("wind-down") {
            let verdict = if r >= 0.98 {
                format!("MET: {r:.3}x >= 0.98x")
            } else {
                format!("MISSED: {r:.3}x vs >= 0.98x, by {:.3}x", 0.98 - r)
            };
            line(format!("5. serving throughput vs unwatched: {verdict}"));
        }
    }

    if let Some(group) = report.group("6") {
        let with_conns = |prefix: &str| {
            group
                .rows
                .iter()
                .rev()
                .find(|r| r.case.starts_with(prefix))
                .filter(|r| !r.samples.is_empty())
                .map(|r| report::median(&r.samples))
        };
        if let (Some(wd), Some(hu)) = (with_conns("wind-down"), with_conns("hyper-util")) {
            let r = wd / hu;
            let verdict = if r <= 1.5 {
                format!("MET: {r:.2}x <= 1.5x")
            } else {
                format!("MISSED: {r:.2}x vs <= 1.5x")
            };
            line(format!(
                "6. drain latency, 1000 connections idle 300 ms, vs hyper-util: {verdict} (wind-down {wd:.2} ms, hyper-util {hu:.2} ms)"
            ));
        }
    }

    if let Some(group) = report.group("7") {
        if let Some(last) = group.rows.last().filter(|r| !r.samples.is_empty()) {
            let r = report::median(&last.samples) / group.baseline();
            line(format!(
                "7. child create+drop flat, target: the largest sibling count within 1.5x of 0 siblings: {} ({})",
                at_most(r, 1.5),
                last.case
            ));
        }
    }
    for (_, l) in report.lines.iter().filter(|(id, _)| *id == "7") {
        line(format!("7. {l}"));
    }
    out
}

/// "MET: r <= max" or "MISSED: r vs <= max, by how much".
fn at_most(r: f64, max: f64) -> String {
    if r <= max {
        format!("MET: {r:.2}x <= {max:.2}x")
    } else {
        format!(
            "MISSED: {r:.2}x vs <= {max:.2}x, by {:.2}x ({:.0}% over)",
            r - max,
            (r / max - 1.0) * 100.0
        )
    }
}

/// How `ours` compares with `theirs` (times, lower is better).
fn faster(ours: f64, theirs: f64) -> String {
    if ours <= theirs {
        format!("{:.0}% faster", (1.0 - ours / theirs) * 100.0)
    } else {
        format!("{:.0}% slower", (ours / theirs - 1.0) * 100.0)
    }
}

/// The peer with the lowest median in `group`, and that median.
fn fastest_peer(group: &Group) -> Option<(String, f64)> {
    best_peer(group).map(|(name, ratio)| (name, ratio * group.baseline()))
}

/// The peer (not the baseline, not wind-down) with the best ratio in `group`.
fn best_peer(group: &Group) -> Option<(String, f64)> {
    let base = group.baseline();
    group
        .rows
        .iter()
        .skip(1)
        .filter(|r| is_peer(r))
        .map(|r| (r.case.clone(), report::median(&r.samples) / base))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// A row of another library: not the baseline (skipped by the callers), not
/// wind-down, not a design reference.
fn is_peer(row: &report::Row) -> bool {
    !row.case.starts_with("wind-down")
        && !row.case.starts_with("reference")
        && !row.samples.is_empty()
}
