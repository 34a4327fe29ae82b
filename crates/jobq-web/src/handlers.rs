//! The routes: each reads its input, runs `Jobq` operations on the backend, and renders a page.

use crate::State;
use crate::error::PageError;
use crate::filter::{self, Filter};
use crate::security::{self, AUTH_COOKIE, CSRF_COOKIE, Keys};
use crate::views::{self, BulkTotals, Ctx, QueueRow};
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, OriginalUri, Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobq_core::worker::Backend;
use jobq_core::{CancelOutcome, JobFilter, JobId, RetryOutcome, Status};
use maud::Markup;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Shared<B> = axum::extract::State<Arc<State<B>>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

/// A bulk action stops after this many batches in one request (and offers to continue).
const MAX_BATCHES_PER_REQUEST: u32 = 100;
/// … or after this long.
const MAX_BULK_REQUEST: Duration = Duration::from_secs(20);

pub(crate) fn router<B: Backend>(state: Arc<State<B>>) -> Router {
    Router::new()
        .route("/", get(queues::<B>))
        .route("/queues/live", get(queues_live::<B>))
        .route("/queues/pause", post(pause::<B>))
        .route("/queues/resume", post(resume::<B>))
        .route("/jobs", get(jobs::<B>))
        .route("/jobs/{id}", get(job::<B>))
        .route("/jobs/{id}/confirm", get(confirm_job::<B>))
        .route("/jobs/{id}/action", post(job_action::<B>))
        .route("/bulk/confirm", get(confirm_bulk::<B>))
        .route("/bulk", post(bulk::<B>))
        .route("/workers", get(workers::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/login", get(login_page::<B>).post(login::<B>))
        .route("/logout", post(logout::<B>))
        .route("/assets/style.css", get(style))
        .route("/assets/live.js", get(script))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), context::<B>))
        .with_state(state)
}

/// The request's nonce cookie, when it came with a well-formed one.
#[derive(Debug, Clone)]
struct RequestNonce(Option<String>);

/// Before each request: where the dashboard is mounted, this browser's CSRF nonce (a new one when it
/// has none), whether it may act. After: the nonce cookie when it is new, and the security headers.
async fn context<B: Backend>(
    axum::extract::State(state): Shared<B>,
    OriginalUri(original): OriginalUri,
    mut req: Request,
    next: Next,
) -> Response {
    let base = base_path(original.path(), req.uri().path());
    let home = match base.trim_end_matches('/') {
        "" => "/".to_owned(),
        prefix => prefix.to_owned(),
    };
    let headers = req.headers();
    let given = security::cookie(headers, CSRF_COOKIE)
        .filter(|n| security::nonce_well_formed(n))
        .map(str::to_owned);
    let nonce = given.clone().unwrap_or_else(Keys::new_nonce);
    let now = chrono::Utc::now().timestamp();
    let keys = &state.keys;
    let logged_in = keys.has_token()
        && (security::cookie(headers, AUTH_COOKIE).is_some_and(|v| keys.login_valid(v, now))
            || security::bearer(headers).is_some_and(|t| keys.token_matches(t)));
    let actions_off = !state.read_only && !keys.has_token() && !state.allow_actions_without_token;
    let can_act = !state.read_only
        && if keys.has_token() {
            logged_in
        } else {
            state.allow_actions_without_token
        };
    let ctx = Ctx {
        base,
        home,
        csrf: keys.csrf_token(&nonce),
        can_act,
        needs_login: !state.read_only && keys.has_token() && !logged_in,
        read_only: state.read_only,
        actions_off,
    };
    let new_nonce = given.is_none();
    req.extensions_mut().insert(ctx);
    req.extensions_mut().insert(RequestNonce(given));
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if new_nonce {
        h.append(
            header::SET_COOKIE,
            security::set_cookie(CSRF_COOKIE, &nonce, 30 * 24 * 3600),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The mount point ending in `/`, from the full path and the path the dashboard's router saw.
fn base_path(original: &str, inner: &str) -> String {
    let prefix = original
        .strip_suffix(inner)
        .unwrap_or_else(|| original.trim_end_matches('/'));
    let prefix = prefix.trim_end_matches('/');
    format!("{prefix}/")
}

/// A page, or the error page with its status.
fn page(ctx: &Ctx, result: Result<Response, PageError>) -> Response {
    match result {
        Ok(response) => response,
        Err(e) => error_page(ctx, e),
    }
}

fn error_page(ctx: &Ctx, e: PageError) -> Response {
    let reason = e.status.canonical_reason().unwrap_or("Error");
    (
        e.status,
        views::error(ctx, e.status.as_u16(), reason, &e.message),
    )
        .into_response()
}

fn html(markup: Markup) -> Result<Response, PageError> {
    Ok(markup.into_response())
}

/// A redirect to `path` under the dashboard's mount point (303: the next request is a GET); a `path`
/// starting with `?` is the queues page.
fn redirect(ctx: &Ctx, path: &str) -> Response {
    let location = if path.starts_with('?') {
        format!("{}{path}", ctx.home)
    } else {
        format!("{}{path}", ctx.base)
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn params(query: Params) -> Result<HashMap<String, String>, PageError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| PageError::bad_input(format!("unreadable query string: {}", e.body_text())))
}

fn fields(form: Fields) -> Result<HashMap<String, String>, PageError> {
    form.map(|Form(f)| f)
        .map_err(|e| PageError::bad_input(format!("unreadable form: {}", e.body_text())))
}

/// May this POST change something? Read-only refuses; the request must come from the dashboard's own
/// pages (Origin / Sec-Fetch-Site) and carry this browser's CSRF token (or the bearer token); then the
/// visitor must be logged in, or no token be needed.
fn check_action<B: Backend>(
    state: &State<B>,
    ctx: &Ctx,
    nonce: &RequestNonce,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), PageError> {
    if !ctx.can_act {
        return Err(refused(state));
    }
    check_form(state, nonce, headers, form)
}

/// The checks every POST passes, the login's included: same origin, and the CSRF token of this
/// browser's nonce cookie (or a bearer header with the access token, which a browser never sends by
/// itself).
fn check_form<B: Backend>(
    state: &State<B>,
    nonce: &RequestNonce,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), PageError> {
    security::same_origin(headers).map_err(|e| PageError::forbidden(format!("Refused: {e}.")))?;
    if let Some(token) = security::bearer(headers) {
        return if state.keys.token_matches(token) {
            Ok(())
        } else {
            Err(PageError::forbidden(
                "Refused: the bearer token is not the access token.",
            ))
        };
    }
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    match &nonce.0 {
        Some(nonce) if state.keys.csrf_matches(nonce, given) => Ok(()),
        _ => Err(PageError::forbidden(
            "Refused: the form's CSRF token is missing or stale. Reload the page and try again.",
        )),
    }
}

fn confirmed(form: &HashMap<String, String>) -> Result<(), PageError> {
    match form.get("confirm").map(String::as_str) {
        Some("yes") => Ok(()),
        _ => Err(PageError::bad_input(
            "Tick the confirmation box to go ahead.",
        )),
    }
}

/// The queues for a full page load: the finished counts from `queue_counts` (a `GROUP BY` over every row
/// of the jobs table, so only here), the live ones from `queue_lag` (waiting and running jobs only, through
/// partial indexes), merged by name, with throughput since the previous look; kept for the live refresh.
async fn queue_rows<B: Backend>(state: &State<B>) -> Result<Vec<QueueRow>, PageError> {
    let counts = state.run(state.jobq.queue_counts()).await?;
    let lag = state.run(state.jobq.queue_lag()).await?;
    let mut rows: Vec<QueueRow> = Vec::new();
    for c in counts.iter().filter(|c| c.status.is_final()) {
        row(&mut rows, &c.queue).counts[column(c.status)] += c.count;
    }
    set_live(&mut rows, &lag);
    throughput(state, &mut rows);
    if let Ok(mut kept) = state.page_rows.lock() {
        *kept = Some(rows.clone());
    }
    Ok(rows)
}

/// The queues for the page's refresh every few seconds: only `queue_lag` runs, so a page left open costs no
/// scan of the finished jobs. Their counts and the throughput stay those of the latest full load of the
/// queues page (by anyone); without one yet (the dashboard restarted under an open page), it is a full load.
async fn live_queue_rows<B: Backend>(state: &State<B>) -> Result<Vec<QueueRow>, PageError> {
    let kept = state.page_rows.lock().ok().and_then(|kept| kept.clone());
    let Some(mut rows) = kept else {
        return queue_rows(state).await;
    };
    let lag = state.run(state.jobq.queue_lag()).await?;
    set_live(&mut rows, &lag);
    Ok(rows)
}

/// Sets each row's live columns (`todo`, `doing`, due, scheduled, oldest due, paused) from `lag`, to none
/// for a queue `lag` does not list, adding a row for a queue new in it; sorts the rows by name.
fn set_live(rows: &mut Vec<QueueRow>, lag: &[jobq_core::QueueLag]) {
    for r in rows.iter_mut() {
        r.counts[column(Status::Todo)] = 0;
        r.counts[column(Status::Doing)] = 0;
        r.due = 0;
        r.scheduled = 0;
        r.oldest_due_age = None;
        r.paused_at = None;
    }
    for l in lag {
        let r = row(rows, &l.queue);
        r.counts[column(Status::Todo)] = l.due + l.scheduled;
        r.counts[column(Status::Doing)] = l.running;
        r.due = l.due;
        r.scheduled = l.scheduled;
        r.oldest_due_age = l.oldest_due_age;
        r.paused_at = l.paused_at;
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The row of queue `name`, added when missing.
fn row<'a>(rows: &'a mut Vec<QueueRow>, name: &str) -> &'a mut QueueRow {
    match rows.iter().position(|r| r.name == name) {
        Some(i) => &mut rows[i],
        None => {
            rows.push(QueueRow {
                name: name.to_owned(),
                ..QueueRow::default()
            });
            let last = rows.len() - 1;
            &mut rows[last]
        }
    }
}

/// A status's column in [`QueueRow::counts`] (`Status::ALL` order).
fn column(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in Status::ALL")
}

/// Jobs succeeded or failed per minute per queue, from the difference with the counts at an earlier look
/// (kept at most every 5 s, used when 2 s to 10 min old): no statement of its own. A prune in between
/// makes a difference negative, which shows nothing.
fn throughput<B: Backend>(state: &State<B>, rows: &mut [QueueRow]) {
    let finished = |r: &QueueRow| r.counts[2] + r.counts[3];
    let now = Instant::now();
    let Ok(mut previous) = state.previous_counts.lock() else {
        return;
    };
    if let Some((at, before)) = previous.as_ref() {
        let elapsed = now.duration_since(*at);
        if (Duration::from_secs(2)..Duration::from_secs(600)).contains(&elapsed) {
            for r in rows.iter_mut() {
                let delta = finished(r) - before.get(&r.name).copied().unwrap_or(0);
                if delta >= 0 {
                    r.per_minute = Some(delta as f64 * 60.0 / elapsed.as_secs_f64());
                }
            }
        }
    }
    let stale = previous
        .as_ref()
        .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(5));
    if stale {
        *previous = Some((
            now,
            rows.iter().map(|r| (r.name.clone(), finished(r))).collect(),
        ));
    }
}

async fn queues<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    query: Params,
) -> Response {
    let result = async {
        let params = params(query)?;
        let rows = queue_rows(&state).await?;
        html(views::queues(
            &ctx,
            &rows,
            params.get("notice").map(String::as_str),
        ))
    }
    .await;
    page(&ctx, result)
}

async fn queues_live<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    match live_queue_rows(&state).await {
        Ok(rows) => views::queue_table(&ctx, &rows).into_response(),
        Err(e) => (e.status, e.message).into_response(),
    }
}

async fn pause<B: Backend>(
    state: Shared<B>,
    ctx: Extension<Ctx>,
    nonce: Extension<RequestNonce>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    steer(state, ctx, nonce, headers, form, true).await
}

async fn resume<B: Backend>(
    state: Shared<B>,
    ctx: Extension<Ctx>,
    nonce: Extension<RequestNonce>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    steer(state, ctx, nonce, headers, form, false).await
}

async fn steer<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Extension(nonce): Extension<RequestNonce>,
    headers: HeaderMap,
    form: Fields,
    pause: bool,
) -> Response {
    let result = async {
        let form = fields(form)?;
        check_action(&state, &ctx, &nonce, &headers, &form)?;
        let queue = form.get("queue").map(|q| q.trim()).unwrap_or("");
        if queue.is_empty() {
            return Err(PageError::bad_input("Name the queue."));
        }
        let changed = if pause {
            state.run(state.jobq.pause_queue(queue)).await?
        } else {
            state.run(state.jobq.resume_queue(queue)).await?
        };
        let notice = match (changed, pause) {
            (false, _) => "unchanged",
            (true, true) => "paused",
            (true, false) => "resumed",
        };
        Ok(redirect(&ctx, &format!("?notice={notice}")))
    }
    .await;
    page(&ctx, result)
}

async fn jobs<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    query: Params,
) -> Response {
    let result = async {
        let params = params(query)?;
        let filter = Filter::parse(&params)?;
        let (after, limit) = filter::parse_page(&params, state.page_size)?;
        let list = JobFilter {
            after_id: after,
            limit: Some(limit),
            ..filter.filter.clone()
        };
        let jobs = state.run(state.jobq.list(&list)).await?;
        html(views::jobs(
            &ctx,
            &filter,
            &jobs,
            after,
            limit,
            params.get("notice").map(String::as_str),
        ))
    }
    .await;
    page(&ctx, result)
}

async fn job<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    query: Params,
) -> Response {
    let result = async {
        let params = params(query)?;
        let id = filter::parse_id(&id)?;
        let job = state.run(state.jobq.job(id)).await?;
        html(views::job(
            &ctx,
            &job,
            params.get("notice").map(String::as_str),
        ))
    }
    .await;
    page(&ctx, result)
}

/// The action named in a query or form, one of `allowed`.
fn action<'a>(values: &'a HashMap<String, String>, allowed: &[&str]) -> Result<&'a str, PageError> {
    let action = values.get("action").map(String::as_str).unwrap_or("");
    if allowed.contains(&action) {
        Ok(action)
    } else {
        Err(PageError::bad_input(format!(
            "unknown action {action:?}; expected one of {}",
            allowed.join(", ")
        )))
    }
}

const JOB_ACTIONS: [&str; 4] = ["retry", "cancel", "abort", "delete"];

async fn confirm_job<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    query: Params,
) -> Response {
    let result = async {
        let params = params(query)?;
        let id = filter::parse_id(&id)?;
        let action = action(&params, &JOB_ACTIONS)?;
        if !ctx.can_act {
            return Err(refused(&state));
        }
        let job = state.run(state.jobq.job(id)).await?;
        html(views::confirm_job(&ctx, &job, action))
    }
    .await;
    page(&ctx, result)
}

/// Why this visitor cannot act.
fn refused<B: Backend>(state: &State<B>) -> PageError {
    if state.read_only {
        PageError::forbidden("This dashboard is read-only: it changes nothing.")
    } else if state.keys.has_token() {
        PageError::forbidden("Log in with the dashboard's access token first.")
    } else {
        PageError::forbidden(
            "Actions are off: the dashboard has no access token (start it with --token or \
             JOBQ_DASHBOARD_TOKEN).",
        )
    }
}

async fn job_action<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Extension(nonce): Extension<RequestNonce>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Fields,
) -> Response {
    let result = async {
        let form = fields(form)?;
        check_action(&state, &ctx, &nonce, &headers, &form)?;
        let id = filter::parse_id(&id)?;
        let action = action(&form, &JOB_ACTIONS)?;
        confirmed(&form)?;
        let jobq = &state.jobq;
        let notice = match action {
            "retry" => match state.run(jobq.retry(id)).await? {
                RetryOutcome::Retried => "retried",
                RetryOutcome::Unchanged => "unchanged",
            },
            "cancel" => cancel_notice(state.run(jobq.cancel(id)).await?),
            "abort" => cancel_notice(state.run(jobq.cancel(id).abort()).await?),
            _ => cancel_notice(state.run(jobq.cancel(id).delete()).await?),
        };
        Ok(if notice == "deleted" {
            redirect(&ctx, "jobs?notice=deleted")
        } else {
            redirect(&ctx, &format!("jobs/{id}?notice={notice}"))
        })
    }
    .await;
    page(&ctx, result)
}

fn cancel_notice(outcome: CancelOutcome) -> &'static str {
    match outcome {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Deleted => "deleted",
        CancelOutcome::AbortRequested => "abort_requested",
        CancelOutcome::Unchanged => "unchanged",
    }
}

/// A bulk action's filter: not empty (an action on every job is the CLI's, with `--all`).
fn bulk_filter(values: &HashMap<String, String>) -> Result<Filter, PageError> {
    let filter = Filter::parse(values)?;
    if filter.filter.is_empty() {
        return Err(PageError::bad_input(
            "A bulk action needs a filter: a queue, task, status or time. (To act on every job, use \
             the CLI: jobq jobs delete --all.)",
        ));
    }
    Ok(filter)
}

async fn confirm_bulk<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    query: Params,
) -> Response {
    let result = async {
        let params = params(query)?;
        let action = action(&params, &JOB_ACTIONS)?;
        let filter = bulk_filter(&params)?;
        if !ctx.can_act {
            return Err(refused(&state));
        }
        let jobq = &state.jobq;
        let f = &filter.filter;
        let count = match action {
            "retry" => state.run(jobq.retry_matching(f).count()).await?,
            "cancel" => state.run(jobq.cancel_matching(f).count()).await?,
            "abort" => state.run(jobq.cancel_matching(f).abort().count()).await?,
            _ => state.run(jobq.delete_matching(f).count()).await?,
        };
        html(views::confirm_bulk(&ctx, &filter, action, count))
    }
    .await;
    page(&ctx, result)
}

async fn bulk<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Extension(nonce): Extension<RequestNonce>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let result = async {
        let form = fields(form)?;
        check_action(&state, &ctx, &nonce, &headers, &form)?;
        let action = action(&form, &JOB_ACTIONS)?;
        confirmed(&form)?;
        let filter = bulk_filter(&form)?;
        let (after, _) = filter::parse_page(&form, 1)?;
        let reset = form.get("reset_attempts").map(String::as_str) == Some("yes");
        let totals = run_bulk(&state, &filter.filter, after, action, reset).await?;
        html(views::bulk_result(&ctx, &filter, action, &totals))
    }
    .await;
    page(&ctx, result)
}

/// Runs one-batch bulk calls until the last (`next` is `None`), at most [`MAX_BATCHES_PER_REQUEST`] of
/// them and for at most [`MAX_BULK_REQUEST`]; each batch commits on its own.
async fn run_bulk<B: Backend>(
    state: &State<B>,
    filter: &JobFilter,
    after: Option<JobId>,
    action: &str,
    reset: bool,
) -> Result<BulkTotals, PageError> {
    let started = Instant::now();
    let mut totals = BulkTotals {
        attempts_reset: reset && action == "retry",
        ..BulkTotals::default()
    };
    let mut filter = JobFilter {
        after_id: after,
        limit: None,
        ..filter.clone()
    };
    let jobq = &state.jobq;
    loop {
        let batch = match action {
            "retry" if reset => {
                state
                    .run(jobq.retry_matching(&filter).reset_attempts())
                    .await?
            }
            "retry" => state.run(jobq.retry_matching(&filter)).await?,
            "cancel" => state.run(jobq.cancel_matching(&filter)).await?,
            "abort" => state.run(jobq.cancel_matching(&filter).abort()).await?,
            _ => state.run(jobq.delete_matching(&filter)).await?,
        };
        totals.batches += 1;
        totals.changed += batch.changed;
        totals.conflicts += batch.conflicts;
        totals.abort_requested += batch.abort_requested;
        match batch.next {
            Some(next)
                if totals.batches < MAX_BATCHES_PER_REQUEST
                    && started.elapsed() < MAX_BULK_REQUEST =>
            {
                filter.after_id = Some(next);
            }
            next => {
                totals.next = next;
                return Ok(totals);
            }
        }
    }
}

async fn workers<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let result = async {
        let workers = state.run(state.jobq.workers()).await?;
        let doing = JobFilter {
            status: Some(Status::Doing),
            limit: Some(1000),
            ..JobFilter::default()
        };
        let running_jobs = state.run(state.jobq.list(&doing)).await?;
        let truncated = running_jobs.len() >= 1000;
        let mut running: HashMap<i64, Vec<(JobId, String)>> = HashMap::new();
        for job in running_jobs {
            if let Some(worker) = job.worker_id {
                running.entry(worker).or_default().push((job.id, job.task));
            }
        }
        html(views::workers(&ctx, &workers, &running, truncated))
    }
    .await;
    page(&ctx, result)
}

async fn metrics<B: Backend>(axum::extract::State(state): Shared<B>) -> Response {
    let result = async {
        // Only queue_lag: live jobs through partial indexes, whatever the finished jobs (see the gauges'
        // documentation in jobq_core::metrics).
        let lag = state.run(state.jobq.queue_lag()).await?;
        Ok::<_, PageError>(crate::prometheus::render_queue_gauges(
            &jobq_core::metrics::queue_gauges(&lag),
        ))
    }
    .await;
    match result {
        Ok(mut text) => {
            if let Some(own) = &state.metrics_text {
                text.push_str(&own());
            }
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Err(e) => (e.status, format!("# jobq: {}\n", e.message)).into_response(),
    }
}

async fn login_page<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    if state.read_only || !state.keys.has_token() {
        return error_page(&ctx, refused(&state));
    }
    views::login(&ctx, None).into_response()
}

async fn login<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Extension(nonce): Extension<RequestNonce>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let result = async {
        let form = fields(form)?;
        if state.read_only {
            return Err(refused(&state));
        }
        if !state.keys.has_token() {
            return Err(PageError::forbidden(
                "This dashboard has no access token to log in with.",
            ));
        }
        // Only the form's own checks: a bearer header logs nothing in.
        security::same_origin(&headers)
            .map_err(|e| PageError::forbidden(format!("Refused: {e}.")))?;
        let given = form.get("csrf").map(String::as_str).unwrap_or("");
        if !nonce
            .0
            .as_deref()
            .is_some_and(|n| state.keys.csrf_matches(n, given))
        {
            return Err(PageError::forbidden(
                "Refused: the form's CSRF token is missing or stale. Reload the page and try again.",
            ));
        }
        let token = form.get("token").map(String::as_str).unwrap_or("");
        if !state.keys.token_matches(token) {
            let mut response = views::login(&ctx, Some("That is not the access token.")).into_response();
            *response.status_mut() = StatusCode::FORBIDDEN;
            return Ok(response);
        }
        let now = chrono::Utc::now().timestamp();
        let mut response = redirect(&ctx, "?notice=logged_in");
        response.headers_mut().append(
            header::SET_COOKIE,
            security::set_cookie(
                AUTH_COOKIE,
                &state.keys.login_value(now),
                security::LOGIN_MAX_AGE,
            ),
        );
        Ok(response)
    }
    .await;
    page(&ctx, result)
}

async fn logout<B: Backend>(
    axum::extract::State(state): Shared<B>,
    Extension(ctx): Extension<Ctx>,
    Extension(nonce): Extension<RequestNonce>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let result = async {
        let form = fields(form)?;
        check_form(&state, &nonce, &headers, &form)?;
        let mut response = redirect(&ctx, "?notice=logged_out");
        response
            .headers_mut()
            .append(header::SET_COOKIE, security::set_cookie(AUTH_COOKIE, "", 0));
        Ok(response)
    }
    .await;
    page(&ctx, result)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/live.js"),
    )
        .into_response()
}

async fn not_found(Extension(ctx): Extension<Ctx>) -> Response {
    error_page(&ctx, PageError::not_found("No such page."))
}

#[cfg(test)]
mod tests {
    use super::base_path;

    #[test]
    fn base_paths() {
        assert_eq!(base_path("/", "/"), "/");
        assert_eq!(base_path("/jobs/5", "/jobs/5"), "/");
        assert_eq!(base_path("/jobq", "/"), "/jobq/");
        assert_eq!(base_path("/jobq/", "/"), "/jobq/");
        assert_eq!(base_path("/a/b/jobs/5", "/jobs/5"), "/a/b/");
    }
}
