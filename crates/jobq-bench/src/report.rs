//! Figures, the live progress display, the final table and the JSON file.

use crate::BoxError;
use comfy_table::{CellAlignment, Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// What a figure should reach, from the design's targets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// No target: reported for context.
    None,
    /// At least this much.
    AtLeast(f64),
    /// At most this much.
    AtMost(f64),
}

impl Target {
    fn is_none(&self) -> bool {
        matches!(self, Target::None)
    }

    fn text(self) -> String {
        match self {
            Target::None => String::new(),
            Target::AtLeast(v) => format!(">= {}", number(v)),
            Target::AtMost(v) => format!("<= {}", number(v)),
        }
    }

    fn verdict(self, value: f64) -> &'static str {
        match self {
            Target::None => "",
            Target::AtLeast(v) if value >= v => "met",
            Target::AtMost(v) if value <= v => "met",
            _ => "MISSED",
        }
    }
}

/// One measured figure. The JSON file holds its name, value and unit, its target (`">= 0.9"`, or absent)
/// with the verdict, and its note: how it was measured, the settings and the reference loop's rate.
#[derive(Debug, Serialize)]
pub(crate) struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    #[serde(
        serialize_with = "target_text",
        skip_serializing_if = "Target::is_none"
    )]
    target: Target,
    #[serde(skip_serializing_if = "String::is_empty")]
    note: String,
}

/// The target as the table shows it, with the verdict, for the JSON file.
fn target_text<S: serde::Serializer>(target: &Target, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&target.text())
}

impl Figure {
    /// A figure without a target.
    pub(crate) fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            value,
            unit,
            target: Target::None,
            note: String::new(),
        }
    }

    /// The target it is held against.
    pub(crate) fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// How it was measured, shown in the table.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            number(self.value),
            self.unit.to_owned(),
            self.target.text(),
            self.target.verdict(self.value).to_owned(),
            self.note.clone(),
        ]
    }

    fn line(&self) -> String {
        let verdict = match self.target.verdict(self.value) {
            "" => String::new(),
            v => format!(" (target {}: {v})", self.target.text()),
        };
        format!(
            "{} = {} {}{verdict}",
            self.name,
            number(self.value),
            self.unit
        )
    }
}

/// A row for figures that could not be measured, with the reason.
#[derive(Debug)]
struct Missing {
    names: String,
    reason: String,
}

/// Collects figures while showing progress, then prints the table and writes the JSON file.
#[derive(Debug)]
pub(crate) struct Report {
    bar: ProgressBar,
    figures: Vec<Figure>,
    missing: Vec<Missing>,
}

impl Report {
    /// A report over `steps` measuring steps.
    pub(crate) fn new(steps: u64) -> Self {
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} {wide_msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            bar,
            figures: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Announces the next step.
    pub(crate) fn step(&self, what: &str) {
        self.bar.set_message(what.to_owned());
        if self.bar.is_hidden() {
            eprintln!(
                "jobq-bench: [{}/{}] {what}",
                self.bar.position() + 1,
                self.bar.length().unwrap_or(0)
            );
        }
    }

    /// A live detail of the running step (not logged when the output is not a terminal).
    pub(crate) fn detail(&self, what: String) {
        self.bar.set_message(what);
    }

    /// The step's figures, or why it failed; either way the run goes on.
    pub(crate) fn finish_step(&mut self, names: &str, figures: Result<Vec<Figure>, BoxError>) {
        match figures {
            Ok(figures) => {
                for f in &figures {
                    self.say(&f.line());
                }
                self.figures.extend(figures);
            }
            Err(e) => self.not_available(names, format!("failed: {}", chain(&*e))),
        }
        self.bar.inc(1);
    }

    /// A figure group that this run does not measure, and why.
    pub(crate) fn not_available(&mut self, names: &str, reason: String) {
        self.say(&format!("{names}: not available ({reason})"));
        self.missing.push(Missing {
            names: names.to_owned(),
            reason,
        });
    }

    /// A line above the progress bar (or on standard error when it is hidden), kept in the scrollback.
    pub(crate) fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("jobq-bench: {line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Whether every figure was measured.
    pub(crate) fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// Prints the table on standard output and writes `{"figures": [...]}` to `json`.
    pub(crate) fn finish(self, title: &str, json: Option<&Path>) -> std::io::Result<()> {
        self.bar.finish_and_clear();
        let mut table = Table::new();
        table
            .load_preset(UTF8_BORDERS_ONLY)
            .set_header(vec!["figure", "value", "unit", "target", "", "how"]);
        for f in &self.figures {
            table.add_row(f.row());
        }
        for m in &self.missing {
            table.add_row(vec![
                m.names.clone(),
                "-".into(),
                String::new(),
                String::new(),
                "n/a".into(),
                m.reason.clone(),
            ]);
        }
        if let Some(column) = table.column_mut(1) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        println!("{title}\n{table}");
        if let Some(path) = json {
            let figures: Vec<_> = self
                .figures
                .iter()
                .map(|f| {
                    let mut value = serde_json::to_value(f).map_err(std::io::Error::other)?;
                    if let (Some(object), verdict @ ("met" | "MISSED")) =
                        (value.as_object_mut(), f.target.verdict(f.value))
                    {
                        object.insert("met".into(), (verdict == "met").into());
                    }
                    Ok::<_, std::io::Error>(value)
                })
                .collect::<Result<_, _>>()?;
            let text = serde_json::to_string_pretty(&serde_json::json!({ "figures": figures }))
                .map_err(std::io::Error::other)?;
            std::fs::write(path, text + "\n")?;
        }
        Ok(())
    }
}

/// An error with its causes, `a: b: c`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// A number as people read it: thousands separated, two decimals below 100.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 100.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else {
        format!("{v:.2}")
    }
}

/// A count as the table shows it: thousands separated, never decimals.
pub(crate) fn count(n: i64) -> String {
    number(n as f64).trim_end_matches(".00").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1234567.8), "1,234,568");
        assert_eq!(number(123.0), "123");
        assert_eq!(number(0.876), "0.88");
        assert_eq!(count(28), "28");
        assert_eq!(count(1_784_773), "1,784,773");
        assert_eq!(Target::AtLeast(0.9).verdict(0.91), "met");
        assert_eq!(Target::AtMost(1.2).verdict(1.3), "MISSED");
    }
}
