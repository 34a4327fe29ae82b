//! The text `defer_batch` sends (schema 9, `defer_columns`): a two-dimensional PostgreSQL array literal
//! with one row per field and one column per job, and the reading of its answer, an array literal of ids.
//!
//! Every value is written double-quoted with `"` and `\` escaped, so array_in takes it as it is whatever
//! it holds; an absent option is an unquoted `NULL`. The trailing fields that no job of the batch has are
//! left out (the server pads them with NULLs), so a batch of plain jobs is two rows.

use crate::model::{JobId, NewJob};
use std::io::{self, Write};

/// The fields in the order of the literal's rows (and of `defer_columns`' ROWS FROM).
const TASK: usize = 0;
const ARGS: usize = 1;
const QUEUE: usize = 2;
const PRIORITY: usize = 3;
const SCHEDULED_AT: usize = 4;
const TRACE_CONTEXT: usize = 5;
const LOCK: usize = 6;
const QUEUEING_LOCK: usize = 7;
const FIELDS: usize = 8;

/// Writes to the inner buffer with `"` and `\` escaped by a backslash, as inside a quoted array element.
struct Escaped<'a>(&'a mut Vec<u8>);

impl Write for Escaped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'"' || b == b'\\' {
                self.0.extend_from_slice(&buf[start..i]);
                self.0.push(b'\\');
                start = i;
            }
        }
        self.0.extend_from_slice(&buf[start..]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A batch being written, field by field: each field's elements so far (comma-separated), or `None` while
/// no job has had it (its elements would all be NULL).
pub(crate) struct Columns {
    jobs: usize,
    fields: [Option<Vec<u8>>; FIELDS],
}

impl Columns {
    pub(crate) fn new() -> Self {
        Self {
            jobs: 0,
            fields: Default::default(),
        }
    }

    /// Whether a job of the batch has a lock or a queueing lock: then it goes to `defer_jobs` as JSON
    /// ([`into_json`](Self::into_json)), not to `defer_columns`.
    pub(crate) fn has_locks(&self) -> bool {
        self.fields[LOCK].is_some() || self.fields[QUEUEING_LOCK].is_some()
    }

    /// Adds `job`, with `inherited` as its trace context when it has none of its own.
    pub(crate) fn push(
        &mut self,
        job: &NewJob,
        inherited: Option<&str>,
    ) -> Result<(), serde_json::Error> {
        let options = &job.options;
        let trace_context = options.trace_context.as_deref().or(inherited);
        self.text(TASK, Some(&job.task));
        if job.args.is_null() {
            self.null(ARGS);
        } else {
            let out = self.start(ARGS);
            out.push(b'"');
            serde_json::to_writer(Escaped(out), &job.args)?;
            out.push(b'"');
        }
        self.text(QUEUE, options.queue.as_deref());
        match options.priority {
            Some(p) => {
                let out = self.start(PRIORITY);
                write!(out, "{p}").expect("writing to a Vec cannot fail");
            }
            None => self.null(PRIORITY),
        }
        match options.scheduled_at {
            Some(at) => {
                // The same text as the JSON argument carried (serde's RFC 3339 form), without its quotes.
                let json = serde_json::to_string(&at)?;
                self.text(SCHEDULED_AT, Some(json.trim_matches('"')));
            }
            None => self.null(SCHEDULED_AT),
        }
        self.text(TRACE_CONTEXT, trace_context);
        self.text(LOCK, options.lock.as_deref());
        self.text(QUEUEING_LOCK, options.queueing_lock.as_deref());
        self.jobs += 1;
        Ok(())
    }

    /// The buffer of `field`, ready for the current job's element (created with NULLs for the jobs before).
    fn start(&mut self, field: usize) -> &mut Vec<u8> {
        let jobs = self.jobs;
        let out = self.fields[field].get_or_insert_with(|| nulls(jobs));
        if jobs > 0 {
            out.push(b',');
        }
        out
    }

    fn null(&mut self, field: usize) {
        if self.fields[field].is_some() {
            self.start(field).extend_from_slice(b"NULL");
        }
    }

    fn text(&mut self, field: usize, value: Option<&str>) {
        match value {
            Some(value) => {
                let out = self.start(field);
                out.push(b'"');
                Escaped(out)
                    .write_all(value.as_bytes())
                    .expect("writing to a Vec cannot fail");
                out.push(b'"');
            }
            None => self.null(field),
        }
    }

    /// The array literal: `{}` for no job, else one `{…}` row per field up to the last one any job has.
    pub(crate) fn finish(self) -> String {
        let jobs = self.jobs;
        if jobs == 0 {
            return "{}".to_owned();
        }
        let rows = self
            .fields
            .iter()
            .rposition(Option::is_some)
            .map_or(2, |last| last.max(ARGS) + 1);
        let size: usize = self.fields[..rows]
            .iter()
            .map(|f| f.as_ref().map_or(jobs * 5, Vec::len) + 3)
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (i, field) in self.fields.into_iter().take(rows).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            out.extend_from_slice(&field.unwrap_or_else(|| nulls(jobs)));
            out.push(b'}');
        }
        out.push(b'}');
        String::from_utf8(out).expect("the literal is built from UTF-8 text")
    }
}

impl Columns {
    /// The batch as `defer_jobs`' JSON array of job objects, rebuilt from the elements (the absent options
    /// left out, as a single deferral writes them).
    pub(crate) fn into_json(self) -> String {
        let mut fields: Vec<Option<Elements<'_>>> = self
            .fields
            .iter()
            .map(|f| f.as_deref().map(|buf| Elements { buf, pos: 0 }))
            .collect();
        let keys = [
            "task",
            "args",
            "queue",
            "priority",
            "scheduled_at",
            "trace_context",
            "lock",
            "queueing_lock",
        ];
        let mut out =
            Vec::with_capacity(self.fields.iter().flatten().map(Vec::len).sum::<usize>() + 64);
        out.push(b'[');
        for job in 0..self.jobs {
            if job > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut first = true;
            for (field, key) in fields.iter_mut().zip(keys) {
                let Some(value) = field.as_mut().and_then(Elements::next) else {
                    continue;
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                write!(out, "\"{key}\":").expect("writing to a Vec cannot fail");
                if key == "args" || key == "priority" {
                    // JSON text and an integer: written as they are.
                    out.extend_from_slice(&value);
                } else {
                    let text =
                        String::from_utf8(value).expect("elements are written from UTF-8 text");
                    serde_json::to_writer(&mut out, &text).expect("a string serialises");
                }
            }
            out.push(b'}');
        }
        out.push(b']');
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

/// Reads a field's elements back, in order: each is `None` for NULL, else its unescaped bytes.
struct Elements<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Elements<'_> {
    fn next(&mut self) -> Option<Vec<u8>> {
        let rest = &self.buf[self.pos..];
        let value = if rest.starts_with(b"NULL") {
            self.pos += 4;
            None
        } else if rest.first() == Some(&b'"') {
            let mut value = Vec::new();
            let mut i = 1;
            while rest[i] != b'"' {
                if rest[i] == b'\\' {
                    i += 1;
                }
                value.push(rest[i]);
                i += 1;
            }
            self.pos += i + 1;
            Some(value)
        } else {
            // An unquoted priority.
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            self.pos += end;
            Some(rest[..end].to_vec())
        };
        if self.buf.get(self.pos) == Some(&b',') {
            self.pos += 1;
        }
        value
    }
}

/// `n` NULL elements, comma-separated.
fn nulls(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 5 + 64);
    for k in 0..n {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"NULL");
    }
    out
}

/// The ids of `defer_columns`' answer `{1,2,3}` (`{}` for none), or `None` when it is not an array literal
/// of integers.
pub(crate) fn read_ids(answer: &str) -> Option<Vec<JobId>> {
    let inner = answer.strip_prefix('{')?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|id| id.parse().ok().map(JobId))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobOptions;
    use serde_json::json;

    fn literal(jobs: &[NewJob], inherited: Option<&str>) -> String {
        let mut columns = Columns::new();
        for job in jobs {
            columns.push(job, inherited).unwrap();
        }
        columns.finish()
    }

    #[test]
    fn plain_jobs_are_two_rows() {
        let jobs = [
            NewJob::new("a", json!({"n": 1})),
            NewJob::new("b", json!(null)),
            NewJob::new("c\"\\", json!({"s": "x\"y\\z"})),
        ];
        assert_eq!(
            literal(&jobs, None),
            r#"{{"a","b","c\"\\"},{"{\"n\":1}",NULL,"{\"s\":\"x\\\"y\\\\z\"}"}}"#
        );
    }

    #[test]
    fn an_option_of_a_later_job_fills_the_earlier_ones_with_null() {
        let mut late = NewJob::new("b", json!(1));
        late.options = JobOptions {
            priority: Some(-3),
            ..JobOptions::default()
        };
        let jobs = [NewJob::new("a", json!(0)), late, NewJob::new("c", json!(2))];
        assert_eq!(
            literal(&jobs, None),
            r#"{{"a","b","c"},{"0","1","2"},{NULL,NULL,NULL},{NULL,-3,NULL}}"#
        );
    }

    #[test]
    fn every_field_and_the_inherited_trace_context() {
        let at = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.123456Z")
            .unwrap()
            .to_utc();
        let mut job = NewJob::new("t", json!([]));
        job.options = JobOptions {
            queue: Some("q".into()),
            priority: Some(5),
            lock: Some("l".into()),
            queueing_lock: Some("ql".into()),
            scheduled_at: Some(at),
            trace_context: None,
        };
        let mut columns = Columns::new();
        columns.push(&job, Some("tp")).unwrap();
        assert!(columns.has_locks());
        assert_eq!(
            columns.finish(),
            r#"{{"t"},{"[]"},{"q"},{5},{"2030-01-02T03:04:05.123456Z"},{"tp"},{"l"},{"ql"}}"#
        );
        assert_eq!(literal(&[], None), "{}");
    }

    #[test]
    fn a_batch_with_locks_is_rebuilt_as_the_json_a_single_deferral_writes() {
        let at = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.123456Z")
            .unwrap()
            .to_utc();
        let mut locked = NewJob::new("l\"k\\", json!({"a": "x\"y\\z,{}", "b": [null, 1.5]}));
        locked.options = JobOptions {
            queue: Some("q,\"".into()),
            priority: Some(-2),
            lock: Some("NULL".into()),
            queueing_lock: Some("\\".into()),
            scheduled_at: Some(at),
            trace_context: None,
        };
        let jobs = [
            NewJob::new("a", json!(null)),
            locked,
            NewJob::new("c", json!("NULL")),
        ];
        let mut columns = Columns::new();
        for job in &jobs {
            columns.push(job, Some("tp")).unwrap();
        }
        assert!(columns.has_locks());
        let rebuilt: serde_json::Value = serde_json::from_str(&columns.into_json()).unwrap();
        let wire: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                let mut v = serde_json::to_value(j).unwrap();
                let o = v.as_object_mut().unwrap();
                o.retain(|_, x| !x.is_null());
                o.insert("trace_context".into(), json!("tp"));
                v
            })
            .collect();
        assert_eq!(rebuilt, serde_json::Value::Array(wire));
        assert!(!Columns::new().has_locks());
        assert_eq!(Columns::new().into_json(), "[]");
    }

    #[test]
    fn ids_are_read_from_an_array_literal() {
        assert_eq!(read_ids("{}"), Some(vec![]));
        assert_eq!(read_ids("{7}"), Some(vec![JobId(7)]));
        assert_eq!(
            read_ids("{1,22,333}"),
            Some(vec![JobId(1), JobId(22), JobId(333)])
        );
        assert_eq!(read_ids(r#"{"conflict": "x"}"#), None);
        assert_eq!(read_ids("1,2"), None);
    }
}
