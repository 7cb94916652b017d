//! wind-down side by side with other shutdown coordinators, in one run.
//!
//! `cargo bench --all-features` (or `--features tokio,hyper`) runs every
//! measurement and prints one table: per case the median over several rounds, the
//! spread, and the ratio to the baseline measured in the same run. BENCHMARKS.md
//! says exactly what each row measures, and keeps the results from one machine.
//!
//! Arguments that do not start with `-` select sections by name: `guard`,
//! `contended`, `fanout`, `memory`, `serving`, `drain` (e.g.
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
mod serving;
mod slab;
mod sys;

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
    }
    if cfg.wants("serving") {
        serving::serving(&cfg, &mut report);
    }
    #[cfg(unix)]
    if cfg.wants("drain") {
        drain::drain(&cfg, &mut report);
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
    let mut out = String::from("targets (from issue 5), checked against this run:\n");
    let mut line = |s: String| {
        out.push_str("  ");
        out.push_str(&s);
        out.push('\n');
    };
    let ratio_target = |group: Option<&Group>, case: &str, max: f64| -> String {
        let Some(group) = group else {
            return "not measured in this run".into();
        };
        let Some(r) = group.ratio_of(case) else {
            return "not measured in this run".into();
        };
        let best = best_peer(group).map_or(String::new(), |(name, ratio)| {
            format!("; best peer {name} {ratio:.2}x")
        });
        if r <= max {
            format!("MET: {r:.2}x <= {max:.2}x{best}")
        } else {
            format!(
                "MISSED: {r:.2}x vs <= {max:.2}x, by {:.2}x ({:.0}% over){best}",
                r - max,
                (r / max - 1.0) * 100.0
            )
        }
    };
    line(format!(
        "1. guard, 1 thread, target <= 2.2x: {}",
        ratio_target(report.group("1"), "wind-down Shutdown::guard()", 2.2)
    ));
    line(format!(
        "2. guard, 2 pinned threads, target <= 0.5x: {}",
        ratio_target(report.group("2"), "wind-down Shutdown::guard()", 0.5)
    ));
    for (id, case) in [
        ("3a'", "wind-down watch(conn)"),
        ("3a'", "wind-down guard() + triggered()"),
        ("3b'", "wind-down Shutdown::watch(conn)"),
    ] {
        let Some(group) = report.group(id) else {
            continue;
        };
        let Some(row) = group.rows.iter().find(|r| r.case == case) else {
            continue;
        };
        let ours = report::median(&row.samples);
        let our_iqr = report::relative_iqr(&row.samples);
        let peers: Vec<_> = group.rows.iter().skip(1).filter(|r| is_peer(r)).collect();
        // A difference smaller than the rounds' spread (interquartile range relative
        // to the median, the larger of the two rows') is called a tie.
        let close = |r: &report::Row| {
            let m = report::median(&r.samples);
            (ours / m - 1.0).abs() <= our_iqr.max(report::relative_iqr(&r.samples))
        };
        let not_beaten: Vec<String> = peers
            .iter()
            .filter(|r| report::median(&r.samples) <= ours)
            .map(|r| {
                let m = report::median(&r.samples);
                format!("{} ({m:.2} ms, ours {:.2}x theirs)", r.case, ours / m)
            })
            .collect();
        let ties: Vec<&str> = peers
            .iter()
            .filter(|r| close(r))
            .map(|r| r.case.as_str())
            .collect();
        let mut verdict = if not_beaten.is_empty() {
            format!("MET by median: {ours:.2} ms, faster than every peer in [{id}]")
        } else {
            format!(
                "MISSED: {ours:.2} ms, not faster than {}",
                not_beaten.join(", ")
            )
        };
        if !ties.is_empty() {
            verdict.push_str(&format!(
                "; within the rounds' spread of: {}",
                ties.join(", ")
            ));
        }
        line(format!("3. fan-out at the largest N, {case}: {verdict}"));
    }
    for m in &report.memory_targets {
        line(format!("4. {m}"));
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
            line(format!(
                "6. drain latency with connections (no numeric target): wind-down {wd:.2} ms, hyper-util {hu:.2} ms"
            ));
        }
    }
    out
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
