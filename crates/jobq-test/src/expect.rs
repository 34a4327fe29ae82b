//! [`Expect`]: which job a test expects, and the messages of a failed assertion.

use jobq_core::{Job, JobFilter, JobId, Status, Task};
use serde_json::Value;
use std::fmt::{self, Write};

/// Jobs read per statement.
pub(crate) const PAGE: u32 = 1000;
/// Jobs listed in a failure message, at most.
const SHOWN: usize = 20;

/// The job a test expects: its task, and whatever else the test cares about. Fields not given match
/// anything, except the status, which is [`Status::Todo`] (waiting to run) unless [`status`](Self::status)
/// or [`any_status`](Self::any_status) says otherwise.
///
/// ```
/// use jobq_test::Expect;
/// use serde_json::json;
///
/// let expect = Expect::task("send_email")
///     .args_containing(json!({"to": "a@example.com"}))
///     .queue("emails")
///     .priority(5);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "an expectation does nothing until it is passed to an assertion"]
pub struct Expect {
    task: Option<String>,
    args: Option<Args>,
    queue: Option<String>,
    priority: Option<i32>,
    lock: Option<String>,
    queueing_lock: Option<String>,
    status: Option<Status>,
}

#[derive(Debug, Clone, PartialEq)]
enum Args {
    Exactly(Value),
    Containing(Value),
}

impl Expect {
    /// A job of the task named `task`, waiting to run.
    pub fn task(task: impl Into<String>) -> Self {
        Self {
            task: Some(task.into()),
            ..Self::any()
        }
    }

    /// A job of the typed task `T` with exactly `task`'s arguments (as `T` serializes them), waiting to run.
    ///
    /// # Panics
    ///
    /// When `task` does not serialize to JSON.
    pub fn of<T: Task>(task: &T) -> Self {
        let args = serde_json::to_value(task)
            .unwrap_or_else(|e| panic!("jobq-test: the task {} does not serialize: {e}", T::NAME));
        Self::task(T::NAME).args(args)
    }

    /// Any job waiting to run.
    pub fn any() -> Self {
        Self {
            task: None,
            args: None,
            queue: None,
            priority: None,
            lock: None,
            queueing_lock: None,
            status: Some(Status::Todo),
        }
    }

    /// Arguments equal to `args`.
    pub fn args(mut self, args: Value) -> Self {
        self.args = Some(Args::Exactly(args));
        self
    }

    /// Arguments that contain `args`: every key of an object in `args` is in the job's object at the same
    /// place, with a value that contains the expected one; other values (arrays, strings, numbers) are
    /// equal.
    pub fn args_containing(mut self, args: Value) -> Self {
        self.args = Some(Args::Containing(args));
        self
    }

    /// In this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// With this priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// With this lock.
    pub fn lock(mut self, lock: impl Into<String>) -> Self {
        self.lock = Some(lock.into());
        self
    }

    /// With this queueing lock.
    pub fn queueing_lock(mut self, queueing_lock: impl Into<String>) -> Self {
        self.queueing_lock = Some(queueing_lock.into());
        self
    }

    /// In this status instead of [`Status::Todo`]: after [`drain`](crate::drain), say, `Succeeded`.
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    /// In any status.
    pub fn any_status(mut self) -> Self {
        self.status = None;
        self
    }

    /// Whether `job` is one this expects.
    pub fn matches(&self, job: &Job) -> bool {
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let same_opt =
            |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        same(&self.task, &job.task)
            && same(&self.queue, &job.queue)
            && same_opt(&self.lock, &job.lock)
            && same_opt(&self.queueing_lock, &job.queueing_lock)
            && self.priority.is_none_or(|p| p == job.priority)
            && self.status.is_none_or(|s| s == job.status)
            && match &self.args {
                None => true,
                Some(Args::Exactly(args)) => *args == job.args,
                Some(Args::Containing(args)) => contains(&job.args, args),
            }
    }

    /// What the server can narrow the list by; the rest is checked by [`matches`](Self::matches).
    pub(crate) fn filter(&self, after_id: Option<JobId>) -> JobFilter {
        JobFilter {
            queue: self.queue.clone(),
            task: self.task.clone(),
            status: self.status,
            lock: self.lock.clone(),
            queueing_lock: self.queueing_lock.clone(),
            after_id,
            limit: Some(PAGE),
            ..JobFilter::default()
        }
    }

    /// Every job of the status this expects: what a failure message lists.
    pub(crate) fn same_status(&self) -> Self {
        Self {
            status: self.status,
            ..Self::any()
        }
    }
}

/// Whether `have` contains `want` (objects by their keys, recursively; anything else by equality).
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(key, want)| have.get(key).is_some_and(|have| contains(have, want))),
        _ => have == want,
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(task) = &self.task {
            parts.push(format!("task {task:?}"));
        }
        match &self.args {
            Some(Args::Exactly(args)) => parts.push(format!("args {args}")),
            Some(Args::Containing(args)) => parts.push(format!("args containing {args}")),
            None => {}
        }
        if let Some(queue) = &self.queue {
            parts.push(format!("queue {queue:?}"));
        }
        if let Some(priority) = self.priority {
            parts.push(format!("priority {priority}"));
        }
        if let Some(lock) = &self.lock {
            parts.push(format!("lock {lock:?}"));
        }
        if let Some(lock) = &self.queueing_lock {
            parts.push(format!("queueing lock {lock:?}"));
        }
        match self.status {
            Some(status) => parts.push(format!("status {status}")),
            None => parts.push("any status".to_owned()),
        }
        f.write_str(&parts.join(", "))
    }
}

/// The message of an assertion that wanted one job and found `matching`; `others` are the jobs of the
/// expected status.
pub(crate) fn one_expected(expect: &Expect, matching: &[Job], others: &[Job]) -> String {
    if matching.is_empty() {
        let mut message = format!("expected a deferred job with {expect}, found none.\n");
        list(&mut message, &status_heading(expect), others);
        message
    } else {
        let mut message = format!(
            "expected one deferred job with {expect}, found {}:\n",
            matching.len()
        );
        list(&mut message, "", matching);
        message
    }
}

/// The message of an assertion that wanted no job and found `matching`.
pub(crate) fn none_expected(expect: &Expect, matching: &[Job]) -> String {
    let mut message = format!(
        "expected no deferred job with {expect}, found {}:\n",
        matching.len()
    );
    list(&mut message, "", matching);
    message
}

fn status_heading(expect: &Expect) -> String {
    match expect.status {
        Some(status) => format!("jobs with status {status}"),
        None => "jobs".to_owned(),
    }
}

fn list(message: &mut String, heading: &str, jobs: &[Job]) {
    if !heading.is_empty() {
        if jobs.is_empty() {
            let _ = writeln!(message, "There are no {heading}.");
            return;
        }
        let _ = writeln!(message, "The {heading} ({}):", jobs.len());
    }
    for job in jobs.iter().take(SHOWN) {
        let _ = write!(
            message,
            "  job {}: task {:?}, args {}, queue {:?}, priority {}, status {}",
            job.id, job.task, job.args, job.queue, job.priority, job.status
        );
        if let Some(lock) = &job.lock {
            let _ = write!(message, ", lock {lock:?}");
        }
        if let Some(lock) = &job.queueing_lock {
            let _ = write!(message, ", queueing lock {lock:?}");
        }
        let _ = writeln!(message, ", scheduled at {}", job.scheduled_at);
    }
    if jobs.len() > SHOWN {
        let _ = writeln!(message, "  ... and {} more", jobs.len() - SHOWN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_is_by_key_and_equality_below() {
        let have = json!({"to": "a@example.com", "meta": {"lang": "en", "n": 1}, "tags": [1, 2]});
        assert!(contains(&have, &json!({})));
        assert!(contains(&have, &json!({"meta": {"lang": "en"}})));
        assert!(contains(&have, &json!({"tags": [1, 2]})));
        assert!(!contains(&have, &json!({"tags": [1]})));
        assert!(!contains(&have, &json!({"meta": {"lang": "de"}})));
        assert!(!contains(&have, &json!({"cc": null})));
    }

    #[test]
    fn an_expectation_reads_as_it_was_written() {
        let expect = Expect::task("send_email")
            .args_containing(json!({"to": "a"}))
            .queue("emails")
            .priority(5);
        assert_eq!(
            expect.to_string(),
            r#"task "send_email", args containing {"to":"a"}, queue "emails", priority 5, status todo"#
        );
        assert_eq!(Expect::any().any_status().to_string(), "any status");
    }
}
