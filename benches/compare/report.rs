//! Results: groups of rows, each row a set of per-round samples, printed as one
//! table of medians and ratios to the group's baseline (its first row).

use std::fmt::Write as _;

pub struct Row {
    pub case: String,
    pub samples: Vec<f64>,
}

pub struct Group {
    /// The measurement number from BENCHMARKS.md ("1", "3a", ...).
    pub id: &'static str,
    pub title: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// The first row is the baseline the ratios are taken to.
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The spread between the 25th and 75th percentiles, relative to the median.
pub fn relative_iqr(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.75) - at(0.25)) / median(&s)
}

impl Group {
    pub fn new(id: &'static str, title: impl Into<String>, unit: &'static str) -> Group {
        Group {
            id,
            title: title.into(),
            unit,
            higher_is_better: false,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn higher_is_better(mut self) -> Group {
        self.higher_is_better = true;
        self
    }

    /// Adds a row (the first added is the baseline) and returns its index.
    pub fn row(&mut self, case: impl Into<String>) -> usize {
        self.rows.push(Row {
            case: case.into(),
            samples: Vec::new(),
        });
        self.rows.len() - 1
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn median_of(&self, case_prefix: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.case.starts_with(case_prefix) && !r.samples.is_empty())
            .map(|r| median(&r.samples))
    }

    pub fn baseline(&self) -> f64 {
        self.rows.first().map_or(f64::NAN, |r| median(&r.samples))
    }

    pub fn ratio_of(&self, case_prefix: &str) -> Option<f64> {
        self.median_of(case_prefix).map(|m| m / self.baseline())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let better = if self.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(
            out,
            "[{}] {} ({}; {}; ratio = median / baseline median)",
            self.id, self.title, self.unit, better
        );
        let width = self
            .rows
            .iter()
            .map(|r| r.case.len())
            .max()
            .unwrap_or(0)
            .max(4);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>12}  {:>25}  {:>8}",
            "case", "median", "min .. max", "ratio"
        );
        let base = self.baseline();
        for (i, row) in self.rows.iter().enumerate() {
            if row.samples.is_empty() {
                let _ = writeln!(out, "  {:<width$}  {:>12}", row.case, "n/a");
                continue;
            }
            let m = median(&row.samples);
            let min = row.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = row
                .samples
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let ratio = if i == 0 {
                "1.00x".to_string()
            } else {
                format!("{:.2}x", m / base)
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:>12}  {:>25}  {:>8}",
                row.case,
                fmt_num(m),
                format!("{} .. {}", fmt_num(min), fmt_num(max)),
                ratio
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A static table (sizes and allocation counts): no rounds, no medians.
pub struct Table {
    pub id: &'static str,
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "[{}] {}", self.id, self.title);
        let cols = self.header.len();
        let mut widths = vec![0; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.len());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (i, cell) in row.iter().enumerate() {
                if i == 0 {
                    let _ = write!(line, " {:<w$}", cell, w = widths[i]);
                } else {
                    let _ = write!(line, "  {:>w$}", cell, w = widths[i]);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

#[derive(Default)]
pub struct Report {
    pub groups: Vec<Group>,
    pub tables: Vec<Table>,
    /// Lines for the targets summary that a section computes itself (memory,
    /// scopes), with the section's number.
    pub lines: Vec<(&'static str, String)>,
}

impl Report {
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn push(&mut self, group: Group) {
        eprint!("{}", group.render());
        self.groups.push(group);
    }

    /// Adds a line for the targets summary under section `id`.
    pub fn line(&mut self, id: &'static str, line: String) {
        self.lines.push((id, line));
    }

    pub fn push_table(&mut self, table: Table) {
        eprint!("{}", table.render());
        self.tables.push(table);
    }
}
