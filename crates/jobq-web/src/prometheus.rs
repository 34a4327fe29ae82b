//! `GET /metrics`: the queue gauges of [`jobq_core::metrics::queue_gauges`] in Prometheus' text format.

use jobq_core::metrics::{QueueGauge, help};
use std::fmt::Write;

/// Renders `gauges` in the Prometheus text exposition format (version 0.0.4): one `# HELP` and
/// `# TYPE … gauge` line per metric name, then its samples, label values escaped (`\\`, `\"`, `\n`).
///
/// This is what the dashboard's `GET /metrics` serves, for an application that exposes the gauges on an
/// endpoint of its own:
///
/// ```
/// use jobq_core::metrics::QueueGauge;
/// let text = jobq_web::render_queue_gauges(&[QueueGauge {
///     name: jobq_core::metrics::QUEUE_DUE_JOBS,
///     labels: vec![("queue", "a\"b".into())],
///     value: 3.0,
/// }]);
/// assert!(text.ends_with("jobq_queue_due_jobs{queue=\"a\\\"b\"} 3\n"));
/// ```
pub fn render_queue_gauges(gauges: &[QueueGauge]) -> String {
    let mut names: Vec<&'static str> = Vec::new();
    for g in gauges {
        if !names.contains(&g.name) {
            names.push(g.name);
        }
    }
    let mut out = String::new();
    for name in names {
        let _ = writeln!(out, "# HELP {name} {}", help(name).unwrap_or(name));
        let _ = writeln!(out, "# TYPE {name} gauge");
        for g in gauges.iter().filter(|g| g.name == name) {
            out.push_str(name);
            if !g.labels.is_empty() {
                out.push('{');
                for (i, (label, value)) in g.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{label}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(g.value));
        }
    }
    out
}

/// A label value escaped as the exposition format asks: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN` as Prometheus spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobq_core::metrics::{QUEUE, QUEUE_JOBS, QUEUE_OLDEST_DUE_AGE, STATUS};

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let gauges = [
            QueueGauge {
                name: QUEUE_OLDEST_DUE_AGE,
                labels: vec![(QUEUE, "a\\b\n\"c\"".into())],
                value: 1.5,
            },
            QueueGauge {
                name: QUEUE_JOBS,
                labels: vec![(QUEUE, "q".into()), (STATUS, "todo".into())],
                value: 2.0,
            },
            QueueGauge {
                name: QUEUE_JOBS,
                labels: vec![(QUEUE, "q".into()), (STATUS, "doing".into())],
                value: 0.0,
            },
        ];
        let text = render_queue_gauges(&gauges);
        let expected = "\
# HELP jobq_queue_oldest_due_age_seconds Seconds the oldest due job has waited (0 when none is due).
# TYPE jobq_queue_oldest_due_age_seconds gauge
jobq_queue_oldest_due_age_seconds{queue=\"a\\\\b\\n\\\"c\\\"\"} 1.5
# HELP jobq_queue_jobs Live jobs in the table by queue and status (todo: waiting, doing: running).
# TYPE jobq_queue_jobs gauge
jobq_queue_jobs{queue=\"q\",status=\"todo\"} 2
jobq_queue_jobs{queue=\"q\",status=\"doing\"} 0
";
        assert_eq!(text, expected);
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
