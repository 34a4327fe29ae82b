//! The pages, as maud templates: every value is escaped unless wrapped in `PreEscaped`, which only the
//! vendored stylesheet link and fixed strings are.

use crate::filter::Filter;
use chrono::{DateTime, Utc};
use jobq_core::{Job, JobId, Status, WorkerInfo};
use maud::{DOCTYPE, Markup, html};
use std::collections::HashMap;
use std::time::Duration;

/// What every page needs to know about the request: where the dashboard is mounted, the form token, and
/// what the visitor may do.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The dashboard's mount point, ending in `/`: the page's `<base href>`.
    pub(crate) base: String,
    /// The queues page: the mount point itself (`/jobq` when nested there, as axum's `nest` does not
    /// route `/jobq/`), or `/`.
    pub(crate) home: String,
    /// The CSRF token of this browser, for every form.
    pub(crate) csrf: String,
    /// Whether action forms are rendered (and accepted): not read-only, and logged in (or no token needed).
    pub(crate) can_act: bool,
    /// Whether a login would allow actions.
    pub(crate) needs_login: bool,
    /// Whether the dashboard is read-only.
    pub(crate) read_only: bool,
    /// Whether actions are off because no token is configured.
    pub(crate) actions_off: bool,
}

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Queues,
    Jobs,
    Workers,
    None,
}

/// The page around `body`.
pub(crate) fn layout(ctx: &Ctx, title: &str, nav: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                base href=(ctx.base);
                title { (title) " · jobq" }
                link rel="stylesheet" href="assets/style.css";
                script src="assets/live.js" defer {}
            }
            body {
                header.top {
                    a.brand href=(ctx.home) { "jobq" }
                    nav {
                        a.active[nav == Nav::Queues] href=(ctx.home) { "Queues" }
                        a.active[nav == Nav::Jobs] href="jobs" { "Jobs" }
                        a.active[nav == Nav::Workers] href="workers" { "Workers" }
                        a href="metrics" { "Metrics" }
                    }
                    div.who {
                        @if ctx.read_only {
                            span.badge.muted { "read-only" }
                        } @else if ctx.actions_off {
                            span.badge.muted title="Start the dashboard with --token (or JOBQ_DASHBOARD_TOKEN) to act" { "actions off: no token" }
                        } @else if ctx.needs_login {
                            a.button.small href="login" { "Log in" }
                        } @else if ctx.can_act {
                            form.inline method="post" action="logout" {
                                input type="hidden" name="csrf" value=(ctx.csrf);
                                button.small.plain type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A status as a coloured badge.
pub(crate) fn status_badge(status: Status) -> Markup {
    html! { span class={ "status st-" (status.as_str()) } { (status.as_str()) } }
}

/// A time in UTC, to the second.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A time, with how long ago it was (`<time>` carries the exact value).
pub(crate) fn time_ago(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let text = match (now - at).to_std() {
        Ok(d) => format!("{} ago", short(d)),
        Err(_) => match (at - now).to_std() {
            Ok(d) if d.as_secs() >= 1 => format!("in {}", short(d)),
            _ => "now".into(),
        },
    };
    html! { time datetime=(at.to_rfc3339()) title=(time(at)) { (text) } }
}

/// A duration in its two largest units: `45s`, `3m 4s`, `2h 5m`, `3d 4h`; under a second in ms.
pub(crate) fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// A page that could not be shown: the status and what was wrong.
pub(crate) fn error(ctx: &Ctx, status: u16, reason: &str, message: &str) -> Markup {
    layout(
        ctx,
        reason,
        Nav::None,
        html! {
            section.error {
                h1 { (status) " " (reason) }
                p.message { (message) }
                p { a href=(ctx.home) { "Back to the queues" } }
            }
        },
    )
}

/// One queue's row on the queues page.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueRow {
    pub(crate) name: String,
    /// Jobs per status, in `Status::ALL` order.
    pub(crate) counts: [i64; 6],
    pub(crate) due: i64,
    pub(crate) scheduled: i64,
    pub(crate) oldest_due_age: Option<Duration>,
    pub(crate) paused_at: Option<DateTime<Utc>>,
    /// Jobs that succeeded or failed per minute, since the previous look.
    pub(crate) per_minute: Option<f64>,
}

/// A fixed message, chosen by a code from the query string (never the query's own text).
pub(crate) fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "paused" => "The queue is paused: its jobs wait until it is resumed.",
        "resumed" => "The queue is resumed.",
        "unchanged" => "Nothing changed.",
        "retried" => "The job is back in its queue, to run now.",
        "cancelled" => "The job is cancelled.",
        "abort_requested" => "The job was asked to stop; its worker ends it as aborted.",
        "deleted" => "The job is deleted.",
        "logged_in" => "Logged in: actions are available.",
        "logged_out" => "Logged out.",
        _ => return None,
    })
}

fn notice_box(code: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = notice(code) { p.notice role="status" { (text) } }
    }
}

/// The queues page.
pub(crate) fn queues(ctx: &Ctx, rows: &[QueueRow], notice: Option<&str>) -> Markup {
    layout(
        ctx,
        "Queues",
        Nav::Queues,
        html! {
            (notice_box(notice))
            h1 { "Queues" }
            div #queues data-live="queues/live" data-every="5" { (queue_table(ctx, rows)) }
            @if ctx.can_act {
                form.inline.pause-any method="post" action="queues/pause" {
                    input type="hidden" name="csrf" value=(ctx.csrf);
                    label { "Pause a queue by name " input type="text" name="queue" required placeholder="queue"; }
                    button type="submit" { "Pause" }
                }
            }
            p.hint { "The todo and doing counts, due, scheduled, oldest due and state refresh every 5 seconds; the finished counts and throughput are as of the page's load (reload for new ones). Throughput is jobs succeeded or failed per minute since the previous load of this page." }
        },
    )
}

/// The queues table alone: what the page refreshes.
pub(crate) fn queue_table(ctx: &Ctx, rows: &[QueueRow]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "No queue has any job yet." }
        } @else {
            table.queues {
                thead { tr {
                    th { "Queue" }
                    @for status in Status::ALL { th.num { (status.as_str()) } }
                    th.num { "due" } th.num { "scheduled" } th.num { "oldest due" } th.num { "per min" }
                    th { "state" }
                    @if ctx.can_act { th {} }
                } }
                tbody {
                    @for row in rows {
                        tr data-queue=(row.name) {
                            td { a href={ "jobs?" (query(&[("queue", &row.name)])) } { (row.name) } }
                            @for (i, status) in Status::ALL.into_iter().enumerate() {
                                td.num {
                                    @if row.counts[i] > 0 {
                                        a class={ "count st-" (status.as_str()) }
                                            href={ "jobs?" (query(&[("queue", &row.name), ("status", status.as_str())])) }
                                            { (row.counts[i]) }
                                    } @else { span.zero { "0" } }
                                }
                            }
                            td.num { (row.due) }
                            td.num { (row.scheduled) }
                            td.num { @match row.oldest_due_age { Some(d) => (short(d)), None => "—" } }
                            td.num { @match row.per_minute { Some(r) => (format!("{r:.0}")), None => "—" } }
                            td {
                                @if row.paused_at.is_some() { span.badge.paused { "paused" } }
                                @else { span.badge.running { "running" } }
                            }
                            @if ctx.can_act {
                                td {
                                    @let (action, label) = if row.paused_at.is_some() { ("queues/resume", "Resume") } else { ("queues/pause", "Pause") };
                                    form.inline method="post" action=(action) {
                                        input type="hidden" name="csrf" value=(ctx.csrf);
                                        input type="hidden" name="queue" value=(row.name);
                                        button.small type="submit" name="do" value=(label.to_lowercase()) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A query string of `pairs`.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// The jobs page: the filter form, one page of jobs, the next page's link, bulk actions.
pub(crate) fn jobs(
    ctx: &Ctx,
    filter: &Filter,
    jobs: &[Job],
    after: Option<JobId>,
    limit: u32,
    notice: Option<&str>,
) -> Markup {
    let now = Utc::now();
    let limit_text = limit.to_string();
    let next = jobs
        .last()
        .filter(|_| jobs.len() >= limit as usize)
        .map(|last| last.id.to_string());
    layout(
        ctx,
        "Jobs",
        Nav::Jobs,
        html! {
            (notice_box(notice))
            h1 { "Jobs" }
            form.filter method="get" action="jobs" {
                label { "Queue" input type="text" name="queue" value=(filter.value("queue")); }
                label { "Task" input type="text" name="task" value=(filter.value("task")); }
                label { "Status"
                    select name="status" {
                        option value="" { "any" }
                        @for status in Status::ALL {
                            option value=(status.as_str()) selected[filter.value("status") == status.as_str()] { (status.as_str()) }
                        }
                    }
                }
                label { "Created since" input type="text" name="created_since" value=(filter.value("created_since")) placeholder="1h, 2026-01-31 12:00"; }
                label { "Created until" input type="text" name="created_until" value=(filter.value("created_until")); }
                label { "Finished since" input type="text" name="finished_since" value=(filter.value("finished_since")); }
                label { "Finished until" input type="text" name="finished_until" value=(filter.value("finished_until")); }
                label.narrow { "Per page" input type="number" name="limit" min="1" max=(crate::MAX_PAGE_SIZE) value=(limit_text); }
                div.buttons {
                    button type="submit" { "Filter" }
                    a.button.plain href="jobs" { "Clear" }
                }
            }
            @if ctx.can_act && !filter.raw.is_empty() {
                div.bulk {
                    span { "Every job matching this filter: " }
                    @for (action, label) in [("retry", "Retry…"), ("cancel", "Cancel…"), ("abort", "Cancel and abort…"), ("delete", "Delete…")] {
                        a.button.small.danger[action == "delete"] href={ "bulk/confirm?" (filter.query(&[("action", action)])) } { (label) }
                    }
                }
            }
            @if jobs.is_empty() {
                p.empty { "No job matches." }
            } @else {
                table.jobs {
                    thead { tr {
                        th.num { "id" } th { "queue" } th { "task" } th { "status" } th.num { "attempts" }
                        th { "created" } th { "scheduled" } th { "finished" } th { "last error" }
                    } }
                    tbody {
                        @for job in jobs {
                            tr data-id=(job.id) {
                                td.num { a href={ "jobs/" (job.id) } { (job.id) } }
                                td { (job.queue) }
                                td.task { a href={ "jobs/" (job.id) } { (job.task) } }
                                td { (status_badge(job.status)) }
                                td.num { (job.attempts) }
                                td { (time_ago(job.created_at, now)) }
                                td { (time_ago(job.scheduled_at, now)) }
                                td { @if let Some(at) = job.finished_at { (time_ago(at, now)) } @else { "—" } }
                                td.error { @if let Some(e) = &job.last_error { (truncate(e, 120)) } }
                            }
                        }
                    }
                }
            }
            nav.pages {
                @if after.is_some() { a.button.plain href={ "jobs?" (filter.query(&[("limit", &limit_text)])) } { "« First page" } }
                @if let Some(next) = &next {
                    a.button.plain #next-page href={ "jobs?" (filter.query(&[("limit", &limit_text), ("after", next)])) } { "Next page »" }
                }
            }
        },
    )
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// What can be done to a job in its status: `(action, button label)`.
pub(crate) fn job_actions(status: Status) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if status.is_final() {
        out.push(("retry", "Retry"));
    }
    if status == Status::Todo {
        out.push(("cancel", "Cancel"));
    }
    if status == Status::Doing {
        out.push(("abort", "Abort"));
    }
    if status != Status::Doing {
        out.push(("delete", "Delete"));
    }
    out
}

/// One job's page.
pub(crate) fn job(ctx: &Ctx, job: &Job, notice: Option<&str>) -> Markup {
    let now = Utc::now();
    let args = serde_json::to_string_pretty(&job.args).unwrap_or_else(|_| job.args.to_string());
    let ran = job
        .started_at
        .zip(job.finished_at)
        .and_then(|(s, f)| (f - s).to_std().ok());
    let waited = job
        .started_at
        .and_then(|s| (s - job.scheduled_at).to_std().ok());
    layout(
        ctx,
        &format!("Job {}", job.id),
        Nav::Jobs,
        html! {
            (notice_box(notice))
            h1 { "Job " (job.id) " " span.task { (job.task) } " " (status_badge(job.status)) }
            @if ctx.can_act {
                div.actions {
                    @for (action, label) in job_actions(job.status) {
                        a.button.danger[action == "delete"] href={ "jobs/" (job.id) "/confirm?action=" (action) } { (label) "…" }
                    }
                }
            } @else if ctx.needs_login {
                p.hint { a href="login" { "Log in" } " to retry, cancel, abort or delete this job." }
            }
            dl.fields {
                dt { "queue" } dd { a href={ "jobs?" (query(&[("queue", &job.queue)])) } { (job.queue) } }
                dt { "task" } dd { a href={ "jobs?" (query(&[("task", &job.task)])) } { (job.task) } }
                dt { "status" } dd { (status_badge(job.status)) @if job.abort_requested { " " span.badge.paused { "abort requested" } } }
                dt { "priority" } dd { (job.priority) }
                dt { "attempts" } dd { (job.attempts) }
                dt { "lock" } dd { @match &job.lock { Some(l) => code { (l) }, None => "—" } }
                dt { "queueing lock" } dd { @match &job.queueing_lock { Some(l) => code { (l) }, None => "—" } }
                dt { "worker" } dd { @match job.worker_id { Some(w) => a href="workers" { "#" (w) }, None => "—" } }
                dt { "created" } dd { (time(job.created_at)) " (" (time_ago(job.created_at, now)) ")" }
                dt { "scheduled" } dd { (time(job.scheduled_at)) " (" (time_ago(job.scheduled_at, now)) ")" }
                dt { "started" } dd { @match job.started_at { Some(at) => { (time(at)) " (" (time_ago(at, now)) ")" }, None => "—" } }
                dt { "finished" } dd { @match job.finished_at { Some(at) => { (time(at)) " (" (time_ago(at, now)) ")" }, None => "—" } }
                dt { "waited" } dd { @match waited { Some(d) => (short(d)), None => "—" } }
                dt { "ran" } dd { @match ran { Some(d) => (short(d)), None => "—" } }
            }
            h2 { "Errors" }
            @if job.errors.is_empty() {
                p.empty { "No attempt failed." }
            } @else {
                table.errors {
                    thead { tr { th.num { "attempt" } th { "at" } th { "error" } } }
                    tbody {
                        @for e in &job.errors {
                            tr { td.num { (e.attempt) } td { (time(e.at)) } td { pre { (e.error) } } }
                        }
                    }
                }
            }
            h2 { "Arguments" }
            pre.args { (args) }
        },
    )
}

/// The confirmation of one job's action.
pub(crate) fn confirm_job(ctx: &Ctx, job: &Job, action: &str) -> Markup {
    let what = match action {
        "retry" => "Put this job back in its queue, to run now (its attempt count is kept)",
        "cancel" => "Cancel this waiting job",
        "abort" => "Ask this running job to stop; its worker ends it as aborted",
        _ => "Delete this job for good",
    };
    layout(
        ctx,
        "Confirm",
        Nav::Jobs,
        html! {
            h1 { "Confirm: " (action) " job " (job.id) }
            p { (what) ": job " a href={ "jobs/" (job.id) } { (job.id) } " (" span.task { (job.task) } ", " (status_badge(job.status)) ", queue " (job.queue) ")." }
            form.confirm method="post" action={ "jobs/" (job.id) "/action" } {
                input type="hidden" name="csrf" value=(ctx.csrf);
                input type="hidden" name="action" value=(action);
                label { input type="checkbox" name="confirm" value="yes" required; " Yes, " (action) " job " (job.id) }
                div.buttons {
                    button.danger[action == "delete"] type="submit" { (capitalise(action)) " job " (job.id) }
                    a.button.plain href={ "jobs/" (job.id) } { "Back" }
                }
            }
        },
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What a bulk action does, in words.
fn bulk_words(action: &str) -> &'static str {
    match action {
        "retry" => {
            "put back in their queue, to run now (attempt counts kept unless reset below), every finished job"
        }
        "cancel" => "cancel every waiting job",
        "abort" => "cancel every waiting job and ask every running job to stop",
        _ => "delete every job that is not running",
    }
}

/// The confirmation of a bulk action, with how many jobs it would look at.
pub(crate) fn confirm_bulk(ctx: &Ctx, filter: &Filter, action: &str, count: u64) -> Markup {
    layout(
        ctx,
        "Confirm",
        Nav::Jobs,
        html! {
            h1 { "Confirm: " (action) " every matching job" }
            p { "This will " (bulk_words(action)) " matching the filter:" }
            ul.filter-summary {
                @for (field, value) in &filter.raw { li { (field) ": " code { (value) } } }
            }
            p.count { strong { (count) } " job" @if count != 1 { "s" } " match now. They are changed in batches of "
                (jobq_core::limits::BULK_BATCH) ", each in its own transaction." }
            form.confirm method="post" action="bulk" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                input type="hidden" name="action" value=(action);
                @for (field, value) in &filter.raw { input type="hidden" name=(field) value=(value); }
                @if action == "retry" {
                    label { input type="checkbox" name="reset_attempts" value="yes"; " Reset attempt counts (each job gets its full retry budget again)" }
                }
                label { input type="checkbox" name="confirm" value="yes" required; " Yes, " (action) " these jobs" }
                div.buttons {
                    button.danger[action == "delete"] type="submit" { (capitalise(action)) " matching jobs" }
                    a.button.plain href={ "jobs?" (filter.query(&[])) } { "Back" }
                }
            }
        },
    )
}

/// What a bulk action did.
#[derive(Debug, Default)]
pub(crate) struct BulkTotals {
    pub(crate) batches: u32,
    pub(crate) changed: u64,
    pub(crate) conflicts: u64,
    pub(crate) abort_requested: u64,
    pub(crate) attempts_reset: bool,
    /// Where to continue when the request stopped before the end.
    pub(crate) next: Option<JobId>,
}

/// The result of a bulk action.
pub(crate) fn bulk_result(ctx: &Ctx, filter: &Filter, action: &str, t: &BulkTotals) -> Markup {
    let verb = match action {
        "retry" => "Retried",
        "cancel" | "abort" => "Cancelled",
        _ => "Deleted",
    };
    layout(
        ctx,
        "Done",
        Nav::Jobs,
        html! {
            h1 { (verb) " " (t.changed) " job" @if t.changed != 1 { "s" } }
            ul {
                li { (t.batches) " batch" @if t.batches != 1 { "es" } }
                @if action == "retry" {
                    li { (t.conflicts) " left as they were: another waiting job holds their queueing lock" }
                    li { "attempt counts " @if t.attempts_reset { "reset to 0" } @else { "kept" } }
                }
                @if action == "abort" { li { (t.abort_requested) " running job(s) asked to stop" } }
            }
            @if let Some(next) = t.next {
                p.notice { "Stopped before the end, to keep this request short: more jobs may match." }
                form.confirm method="post" action="bulk" {
                    input type="hidden" name="csrf" value=(ctx.csrf);
                    input type="hidden" name="action" value=(action);
                    input type="hidden" name="after" value=(next);
                    @if t.attempts_reset { input type="hidden" name="reset_attempts" value="yes"; }
                    @for (field, value) in &filter.raw { input type="hidden" name=(field) value=(value); }
                    label { input type="checkbox" name="confirm" value="yes" required; " Yes, continue" }
                    button type="submit" { "Continue" }
                }
            }
            p { a href={ "jobs?" (filter.query(&[])) } { "Back to the jobs" } }
        },
    )
}

/// The workers page: each worker and the jobs it is running.
pub(crate) fn workers(
    ctx: &Ctx,
    workers: &[WorkerInfo],
    running: &HashMap<i64, Vec<(JobId, String)>>,
    truncated: bool,
) -> Markup {
    let now = Utc::now();
    layout(
        ctx,
        "Workers",
        Nav::Workers,
        html! {
            h1 { "Workers" }
            @if workers.is_empty() {
                p.empty { "No worker is registered." }
            } @else {
                table.workers {
                    thead { tr {
                        th.num { "id" } th { "name" } th { "queues" } th { "started" } th { "heartbeat" } th.num { "running" } th { "jobs" }
                    } }
                    tbody {
                        @for w in workers {
                            tr data-worker=(w.id) {
                                td.num { (w.id) }
                                td { (w.name) }
                                td { @match &w.queues { Some(q) => (q.join(", ")), None => em { "all" } } }
                                td { (time_ago(w.started_at, now)) }
                                td { (time_ago(w.heartbeat_at, now)) }
                                td.num { (w.running) }
                                td.jobs {
                                    @for (id, task) in running.get(&w.id).map(Vec::as_slice).unwrap_or(&[]) {
                                        a href={ "jobs/" (id) } { "#" (id) " " (task) } " "
                                    }
                                }
                            }
                        }
                    }
                }
                @if truncated { p.hint { "Only the first 1,000 running jobs are shown." } }
            }
        },
    )
}

/// The login form.
pub(crate) fn login(ctx: &Ctx, message: Option<&str>) -> Markup {
    layout(
        ctx,
        "Log in",
        Nav::None,
        html! {
            h1 { "Log in" }
            p { "Actions (pause, resume, retry, cancel, abort, delete) need the dashboard's access token." }
            @if let Some(m) = message { p.message { (m) } }
            form.confirm method="post" action="login" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                label { "Access token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                div.buttons { button type="submit" { "Log in" } }
            }
        },
    )
}
