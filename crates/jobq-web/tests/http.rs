//! The dashboard over HTTP, without a browser: every page against a real server (a `jobq_tempdb`
//! database), bad input, escaping, and the security rules (token, login cookie, CSRF, Origin,
//! read-only), each request sent to the router with `tower::ServiceExt::oneshot`.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use jobq_core::prelude::*;
use jobq_tokio_postgres::PoolExecutor;
use jobq_web::Dashboard;
use tower::ServiceExt;

const TOKEN: &str = "correct horse battery staple";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, path: &str) -> Answer {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// A browser's state: its cookies and the CSRF token of the last page.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
    csrf: String,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    async fn get(&mut self, app: &Router, path: &str) -> Answer {
        let request = Request::get(path)
            .header(header::COOKIE, self.cookie_header())
            .body(Body::empty())
            .unwrap();
        let answer = send(app, request).await;
        self.take_cookies(&answer.headers);
        if let Some(at) = answer.body.find("name=\"csrf\" value=\"") {
            let rest = &answer.body[at + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        answer
    }

    /// A form POST as the dashboard's own page sends it (same origin), with `fields` and the CSRF token.
    async fn post(&mut self, app: &Router, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        all.push(("csrf", &csrf));
        self.post_raw(app, path, &all, &[("sec-fetch-site", "same-origin")])
            .await
    }

    async fn post_raw(
        &mut self,
        app: &Router,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = Request::post(path)
            .header(header::HOST, "dashboard.test")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, self.cookie_header());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let answer = send(app, request.body(Body::from(body)).unwrap()).await;
        self.take_cookies(&answer.headers);
        answer
    }
}

fn dashboard(backend: &PoolExecutor) -> Dashboard<PoolExecutor> {
    Dashboard::new(backend.clone(), Jobq::default())
}

#[tokio::test]
async fn every_page_renders_and_metrics_carry_the_queue_gauges() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let jobq = Jobq::default();
    let id = jobq
        .defer_job(NewJob::new(
            "send_email",
            serde_json::json!({"to": "a@example.com"}),
        ))
        .queue("emails")
        .run(&backend)
        .await
        .unwrap();
    let app = dashboard(&backend)
        .metrics_text(|| "# TYPE app_requests_total counter\napp_requests_total 7\n".into())
        .router();

    let queues = get(&app, "/").await;
    assert_eq!(queues.status, StatusCode::OK);
    assert!(
        queues.body.contains("data-queue=\"emails\""),
        "{}",
        queues.body
    );
    assert!(
        queues.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let live = get(&app, "/queues/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.body.starts_with("<table"), "{}", live.body);

    let jobs = get(&app, "/jobs?queue=emails&status=todo").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(jobs.body.contains(&format!("data-id=\"{id}\"")));
    let none = get(&app, "/jobs?queue=emails&status=failed").await;
    assert!(!none.body.contains(&format!("data-id=\"{id}\"")));
    assert!(none.body.contains("No job matches."));

    let job = get(&app, &format!("/jobs/{id}")).await;
    assert_eq!(job.status, StatusCode::OK);
    assert!(job.body.contains("a@example.com"));

    assert_eq!(get(&app, "/workers").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/assets/style.css").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/assets/live.js").await.status, StatusCode::OK);

    let metrics = get(&app, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for line in [
        "# TYPE jobq_queue_jobs gauge",
        "jobq_queue_jobs{queue=\"emails\",status=\"todo\"} 1",
        "jobq_queue_jobs{queue=\"emails\",status=\"doing\"} 0",
        "jobq_queue_due_jobs{queue=\"emails\"} 1",
        "jobq_queue_paused{queue=\"emails\"} 0",
        "app_requests_total 7",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "{line} in {}",
            metrics.body
        );
    }
    assert_eq!(get(&app, "/nowhere").await.status, StatusCode::NOT_FOUND);
}

/// A queue's count of `status` in a queues table (`None` when it shows 0). The table has one queue here.
fn count(body: &str, status: &str) -> Option<i64> {
    let at = body.find(&format!("class=\"count st-{status}\""))?;
    let rest = &body[at..];
    let text = &rest[rest.find('>')? + 1..];
    Some(text[..text.find('<')?].parse().unwrap())
}

/// `GET /metrics` carries the live statuses only (no finished status: that would be a scan of every job),
/// and the queues page's refresh reads only `queue_lag`: its todo and doing counts follow the table, its
/// finished counts stay those of the latest full load, which reads them anew; a refresh with no full load
/// before it (the dashboard restarted under an open page) reads them too.
#[tokio::test]
async fn metrics_and_the_live_refresh_read_only_live_jobs() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    // No worker runs here, so nothing recovers the running job of a worker that does not exist.
    client
        .batch_execute(
            "INSERT INTO jobq.jobs (queue, task, status, finished_at, started_at, worker_id)
             VALUES ('work', 'noop', 'todo', NULL, NULL, NULL),
                    ('work', 'noop', 'todo', NULL, NULL, NULL),
                    ('work', 'noop', 'doing', NULL, now(), 1),
                    ('work', 'noop', 'succeeded', now(), now(), NULL),
                    ('work', 'noop', 'succeeded', now(), now(), NULL),
                    ('work', 'noop', 'succeeded', now(), now(), NULL),
                    ('work', 'noop', 'failed', now(), now(), NULL)",
        )
        .await
        .unwrap();
    let app = dashboard(&backend).router();

    let metrics = get(&app, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "jobq_queue_jobs{queue=\"work\",status=\"todo\"} 2",
        "jobq_queue_jobs{queue=\"work\",status=\"doing\"} 1",
        "jobq_queue_due_jobs{queue=\"work\"} 2",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "{line} in {}",
            metrics.body
        );
    }
    for status in ["succeeded", "failed", "cancelled", "aborted"] {
        assert!(
            !metrics.body.contains(&format!("status=\"{status}\"")),
            "{status} in {}",
            metrics.body
        );
    }

    let page = get(&app, "/").await;
    let counts =
        |body: &str| ["todo", "doing", "succeeded", "failed"].map(|status| count(body, status));
    assert_eq!(counts(&page.body), [Some(2), Some(1), Some(3), Some(1)]);

    // One waiting job succeeds, the running one fails, another starts.
    client
        .batch_execute(
            "UPDATE jobq.jobs SET status = 'succeeded', finished_at = now()
             WHERE id = (SELECT min(id) FROM jobq.jobs WHERE status = 'todo');
             UPDATE jobq.jobs SET status = 'failed', finished_at = now() WHERE status = 'doing';
             INSERT INTO jobq.jobs (queue, task, status, started_at, worker_id)
             VALUES ('work', 'noop', 'doing', now(), 1)",
        )
        .await
        .unwrap();
    let live = get(&app, "/queues/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.body.starts_with("<table"), "{}", live.body);
    assert_eq!(
        counts(&live.body),
        [Some(1), Some(1), Some(3), Some(1)],
        "live counts new, finished ones from the page's load: {}",
        live.body
    );
    let page = get(&app, "/").await;
    assert_eq!(counts(&page.body), [Some(1), Some(1), Some(4), Some(2)]);
    let restarted = dashboard(&backend).router();
    let live = get(&restarted, "/queues/live").await;
    assert_eq!(counts(&live.body), [Some(1), Some(1), Some(4), Some(2)]);

    drop(client);
    let _ = connection.await;
}

#[tokio::test]
async fn bad_input_gets_a_400_page_naming_it() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let app = dashboard(&backend).router();
    for (path, says) in [
        ("/jobs?status=lost", "unknown status"),
        ("/jobs?created_since=yesterday", "created_since"),
        ("/jobs?finished_until=99999999999h", "finished_until"),
        ("/jobs?queue=a%00b", "NUL"),
        ("/jobs?limit=0", "limit"),
        ("/jobs?after=x", "after"),
        ("/jobs/abc", "not a positive integer"),
        ("/jobs/99999999999999999999", "not a positive integer"),
        ("/jobs/1/confirm?action=explode", "unknown action"),
        ("/bulk/confirm?action=delete", "needs a filter"),
    ] {
        let answer = get(&app, path).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.body
        );
        assert!(
            answer.body.contains(says),
            "{path} says {says}: {}",
            answer.body
        );
    }
    let missing = get(&app, "/jobs/424242").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("job 424242 does not exist"));
}

#[tokio::test]
async fn user_strings_are_escaped() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let evil = "<script>alert(1)</script>";
    let id = Jobq::default()
        .defer_job(NewJob::new(
            evil,
            serde_json::json!({"html": "<img src=x onerror=alert(2)>"}),
        ))
        .queue("q\"><b>")
        .run(&backend)
        .await
        .unwrap();
    let app = dashboard(&backend).router();
    for path in ["/".to_owned(), "/jobs".to_owned(), format!("/jobs/{id}")] {
        let answer = get(&app, &path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(!answer.body.contains(evil), "{path}: {}", answer.body);
        assert!(!answer.body.contains("<img src=x"), "{path}");
        assert!(!answer.body.contains("\"><b>"), "{path}");
    }
    let job = get(&app, &format!("/jobs/{id}")).await;
    assert!(job.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Prometheus escapes the quote in the label value.
    let metrics = get(&app, "/metrics").await;
    assert!(
        metrics.body.contains("queue=\"q\\\"><b>\""),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn actions_need_the_token_a_csrf_token_and_the_same_origin() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let jobq = Jobq::default();
    let app = dashboard(&backend).token(TOKEN).router();
    let paused = async || {
        jobq.paused_queues()
            .run(&backend)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.queue)
            .collect::<Vec<_>>()
    };

    // Not logged in: no action form, and the action is refused even with a good CSRF token.
    let mut browser = Browser::default();
    let page = browser.get(&app, "/").await;
    assert!(page.body.contains("href=\"login\""));
    assert!(!page.body.contains("action=\"queues/pause\""));
    let refused = browser.post(&app, "/queues/pause", &[("queue", "a")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("Log in"), "{}", refused.body);

    // A wrong token does not log in; the right one does.
    browser.get(&app, "/login").await;
    let wrong = browser.post(&app, "/login", &[("token", "guess")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookie_header().contains("jobq_auth"));
    let ok = browser.post(&app, "/login", &[("token", TOKEN)]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let set = ok.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.starts_with("jobq_auth=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
    );

    // Logged in: the forms are there and work.
    let page = browser.get(&app, "/").await;
    assert!(page.body.contains("action=\"queues/pause\""));
    let done = browser.post(&app, "/queues/pause", &[("queue", "a")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(paused().await, ["a"]);

    // Without the CSRF token, with another browser's, or from another site: refused, whatever the cookie.
    let csrf = browser.csrf.clone();
    for (fields, headers) in [
        (vec![("queue", "b")], vec![]),
        (vec![("queue", "b"), ("csrf", "0123")], vec![]),
        (
            vec![("queue", "b"), ("csrf", &csrf)],
            vec![("origin", "http://evil.example")],
        ),
        (
            vec![("queue", "b"), ("csrf", &csrf)],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ] {
        let answer = browser
            .post_raw(&app, "/queues/pause", &fields, &headers)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{fields:?} {headers:?}"
        );
    }
    let mut other = Browser::default();
    other.get(&app, "/").await;
    other.cookies.extend(
        browser
            .cookies
            .iter()
            .filter(|(k, _)| k == "jobq_auth")
            .cloned(),
    );
    let stolen = other
        .post_raw(
            &app,
            "/queues/pause",
            &[("queue", "b"), ("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN);
    // The same origin, named by Origin, passes.
    let same = browser
        .post_raw(
            &app,
            "/queues/resume",
            &[("queue", "a"), ("csrf", &csrf)],
            &[("origin", "http://dashboard.test")],
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER, "{}", same.body);
    assert!(paused().await.is_empty());

    // A GET never acts.
    assert_eq!(
        get(&app, "/queues/pause?queue=b").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // A script with the bearer token needs no cookie nor CSRF token; a wrong bearer is refused.
    let mut script = Browser::default();
    let bearer = format!("Bearer {TOKEN}");
    let answer = script
        .post_raw(
            &app,
            "/queues/pause",
            &[("queue", "c")],
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let answer = script
        .post_raw(
            &app,
            "/queues/pause",
            &[("queue", "d")],
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(paused().await, ["c"]);

    // Logging out drops the login.
    let out = browser.post(&app, "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(!browser.cookie_header().contains("jobq_auth"));
    let after = browser.post(&app, "/queues/pause", &[("queue", "e")]).await;
    assert_eq!(after.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn without_a_token_actions_are_off_unless_allowed() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let app = dashboard(&backend).router();
    let mut browser = Browser::default();
    let page = browser.get(&app, "/").await;
    assert!(page.body.contains("actions off"));
    let refused = browser.post(&app, "/queues/pause", &[("queue", "a")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("no access token"), "{}", refused.body);

    let app = dashboard(&backend)
        .allow_actions_without_token(true)
        .router();
    let mut browser = Browser::default();
    browser.get(&app, "/").await;
    assert_eq!(
        browser
            .post(&app, "/queues/pause", &[("queue", "a")])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    // CSRF still applies.
    let answer = browser
        .post_raw(&app, "/queues/pause", &[("queue", "b")], &[])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn read_only_renders_no_action_and_refuses_every_one() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let id = Jobq::default()
        .defer_job(NewJob::new("t", serde_json::Value::Null))
        .run(&backend)
        .await
        .unwrap();
    let app = dashboard(&backend).token(TOKEN).read_only(true).router();
    let mut browser = Browser::default();
    for path in [
        "/".to_owned(),
        "/jobs?queue=default".to_owned(),
        format!("/jobs/{id}"),
        "/workers".to_owned(),
    ] {
        let page = browser.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            !page.body.contains("method=\"post\""),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains("read-only"));
    }
    let bearer = format!("Bearer {TOKEN}");
    for (path, fields) in [
        ("/queues/pause".to_owned(), vec![("queue", "default")]),
        (
            format!("/jobs/{id}/action"),
            vec![("action", "cancel"), ("confirm", "yes")],
        ),
        (
            "/bulk".to_owned(),
            vec![
                ("action", "delete"),
                ("confirm", "yes"),
                ("queue", "default"),
            ],
        ),
        ("/login".to_owned(), vec![("token", TOKEN)]),
    ] {
        let answer = browser
            .post_raw(&app, &path, &fields, &[("authorization", &bearer)])
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        get(&app, &format!("/jobs/{id}/confirm?action=cancel"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        Jobq::default().status(id).run(&backend).await.unwrap(),
        Status::Todo
    );
}

#[tokio::test]
async fn job_and_bulk_actions_ask_for_confirmation_then_act() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let jobq = Jobq::default();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = jobq
            .defer_job(NewJob::new("bulk", serde_json::json!({ "i": i })))
            .queue("bulkq")
            .run(&backend)
            .await
            .unwrap();
        ids.push(id);
    }
    let app = dashboard(&backend).token(TOKEN).router();
    let mut browser = Browser::default();
    browser.get(&app, "/login").await;
    browser.post(&app, "/login", &[("token", TOKEN)]).await;

    // One job: the confirm page, then the action without and with the box ticked.
    let confirm = browser
        .get(&app, &format!("/jobs/{}/confirm?action=cancel", ids[0]))
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("name=\"confirm\""));
    let path = format!("/jobs/{}/action", ids[0]);
    let unticked = browser.post(&app, &path, &[("action", "cancel")]).await;
    assert_eq!(unticked.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        jobq.status(ids[0]).run(&backend).await.unwrap(),
        Status::Todo
    );
    let done = browser
        .post(&app, &path, &[("action", "cancel"), ("confirm", "yes")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        jobq.status(ids[0]).run(&backend).await.unwrap(),
        Status::Cancelled
    );
    let retried = browser
        .post(&app, &path, &[("action", "retry"), ("confirm", "yes")])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    assert!(
        retried.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .ends_with("notice=retried")
    );
    assert_eq!(
        jobq.status(ids[0]).run(&backend).await.unwrap(),
        Status::Todo
    );

    // Every job of the queue: the confirm page counts them, then the batches run.
    let confirm = browser
        .get(&app, "/bulk/confirm?action=cancel&queue=bulkq")
        .await;
    assert!(
        confirm.body.contains("<strong>3</strong> jobs match"),
        "{}",
        confirm.body
    );
    let done = browser
        .post(
            &app,
            "/bulk",
            &[("action", "cancel"), ("queue", "bulkq"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Cancelled 3 jobs"), "{}", done.body);
    let done = browser
        .post(
            &app,
            "/bulk",
            &[
                ("action", "delete"),
                ("queue", "bulkq"),
                ("status", "cancelled"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert!(done.body.contains("Deleted 3 jobs"), "{}", done.body);
    assert!(
        jobq.list(&JobFilter::default())
            .run(&backend)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn links_follow_the_mount_point() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let app = Router::new().nest("/admin/jobq", dashboard(&backend).router());
    for path in ["/admin/jobq", "/admin/jobq/jobs", "/admin/jobq/workers"] {
        let page = get(&app, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            page.body.contains("<base href=\"/admin/jobq/\">"),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains("href=\"assets/style.css\""));
        // The queues page is the mount point itself: axum's `nest` does not route `/admin/jobq/`.
        assert!(
            page.body.contains("class=\"brand\" href=\"/admin/jobq\""),
            "{}",
            page.body
        );
    }
}

/// A statement that gets no answer within the query timeout (the jobs table locked by another session)
/// answers 503 saying so, instead of holding the request open for as long as the lock lasts.
#[tokio::test]
async fn a_page_whose_statement_gets_no_answer_answers_503_within_the_query_timeout() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 2).unwrap();
    let (locker, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE jobq.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let app = dashboard(&backend)
        .query_timeout(std::time::Duration::from_millis(300))
        .router();

    let page = get(&app, "/jobs").await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(page.body.contains("no answer within"), "{}", page.body);

    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(get(&app, "/jobs").await.status, StatusCode::OK);
    drop(locker);
    let _ = connection.await;
}
