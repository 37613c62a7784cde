//! [`Report`]: a scenario's figures, each with DESIGN.md §8's target when there is one, printed as a table and
//! written as JSON (`--json FILE`).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::machine::Machine;

/// A target from DESIGN.md §8.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    /// Whether `value` meets the target.
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Self::AtMost(bound) => value <= bound,
            Self::AtLeast(bound) => value >= bound,
        }
    }

    /// "met", or by how much (percent of the target) `value` misses it.
    fn verdict(self, value: f64) -> String {
        if self.met_by(value) {
            return "met".to_owned();
        }
        let (bound, miss) = match self {
            Self::AtMost(bound) => (bound, value - bound),
            Self::AtLeast(bound) => (bound, bound - value),
        };
        format!("missed by {:.0}%", 100.0 * miss / bound)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AtMost(bound) => write!(f, "<= {}", number(*bound)),
            Self::AtLeast(bound) => write!(f, ">= {}", number(*bound)),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
    pub met: Option<bool>,
}

/// Everything a scenario measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub parameters: Value,
    pub machine: Machine,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
    /// Checks the run failed (lost notifications, memory growth, ...): the bench exits non-zero.
    pub failures: Vec<String>,
}

impl Report {
    /// An empty report of `scenario` run with `parameters`.
    pub fn new(scenario: &'static str, parameters: Value) -> Self {
        Self {
            scenario,
            parameters,
            machine: Machine::this(),
            figures: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn figure(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Option<Target>,
    ) {
        let met = target.map(|t| t.met_by(value));
        self.figures.push(Figure { name: name.into(), value, unit, target, met });
    }

    /// Adds a remark (failed connections, lost notifications, ...).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records a failed check: the run fails with this message.
    pub fn fail(&mut self, failure: impl Into<String>) {
        self.failures.push(failure.into());
    }

    /// The table, for a terminal.
    pub fn table(&self) -> String {
        let mut out = format!("crier-bench {} on {}\n", self.scenario, self.machine);
        out += &format!("parameters: {}\n", self.parameters);
        out += &format!("{:<58} {:>14} {:<10} {:<14} {}\n", "figure", "value", "unit", "target", "verdict");
        for f in &self.figures {
            let target = f.target.map(|t| t.to_string()).unwrap_or_default();
            let verdict = f.target.map(|t| t.verdict(f.value)).unwrap_or_default();
            out += &format!(
                "{:<58} {:>14} {:<10} {:<14} {}\n",
                f.name,
                number(f.value),
                f.unit,
                target,
                verdict
            );
        }
        for note in &self.notes {
            out += &format!("note: {note}\n");
        }
        for failure in &self.failures {
            out += &format!("FAILED: {failure}\n");
        }
        out
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n")?;
        Ok(())
    }
}

/// A figure with sensible precision: thousands separated for big numbers, 3 significant digits for small.
fn number(value: f64) -> String {
    if value.abs() >= 1_000.0 {
        let digits = format!("{:.0}", value.round());
        let (sign, digits) = digits.split_at(usize::from(digits.starts_with('-')));
        let grouped: Vec<String> =
            digits.as_bytes().rchunks(3).rev().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        format!("{sign}{}", grouped.join(","))
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Misses are reported as a percentage of the target, in the direction of the bound.
    #[test]
    fn verdicts_say_how_far_off() {
        assert_eq!(Target::AtLeast(1_400_000.0).verdict(700_000.0), "missed by 50%");
        assert_eq!(Target::AtMost(2.0).verdict(3.0), "missed by 50%");
        assert_eq!(Target::AtMost(2.0).verdict(1.9), "met");
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(0.456), "0.46");
    }
}
