//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven
//! through chromedriver by fantoccini, against the dashboard served in-process on a loopback port over a
//! `jobq_tempdb` database, with a real worker taking the jobs.
//!
//! One browser session runs every case in turn (starting Chromium is the slow part): each page loads,
//! filtering, a failed job retried through the UI (log in, confirm) that the worker then runs, a queue
//! paused in the UI that the worker stops taking and takes again once resumed, escaping (a task named
//! `<script>alert(1)</script>` is text, no alert, no script element), read-only mode and POSTs without
//! the CSRF token.
//!
//! Where Chromium or chromedriver is missing, the tests report as ignored with the reason (`cfg(chromium)`
//! comes from `build.rs`); under `CI=true` they run and fail saying what is missing.
//!
//! `JOBQ_SCREENSHOTS=docs/images cargo test -p jobq-web --test browser -- --ignored screenshots` (or
//! `just screenshots`) writes the screenshots of the documentation.

use axum::Router;
use fantoccini::{Client, ClientBuilder, Locator};
use jobq_core::prelude::*;
use jobq_core::worker::{Backoff, JobContext, JobError, RetryStrategy, Worker};
use jobq_tokio_postgres::PoolExecutor;
use jobq_web::Dashboard;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "browser-test-token";

/// Fails its first `fail_times` attempts, for good (no retry): a failed job to retry by hand.
#[derive(Serialize, Deserialize)]
struct Flaky {
    fail_times: i32,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    fn retry() -> RetryStrategy {
        RetryStrategy::none()
    }
}

/// Always fails, retried twice at once: a job with three attempts' errors, for the screenshots.
#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
    template: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3).backoff(Backoff::Constant(Duration::from_millis(10)))
    }
}

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
}

/// Waits for a long job: what a worker shows as running.
#[derive(Serialize, Deserialize)]
struct Slow {}

impl Task for Slow {
    const NAME: &'static str = "render_report";
}

/// A binary in `PATH` or the usual places: twin of `DIRS` in build.rs, change both.
fn find(name: &str) -> Option<PathBuf> {
    let path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    path.into_iter()
        .chain(["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port, killed when dropped, and a session of headless Chromium.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> Browser {
        let (Some(chromium), Some(driver)) = (find("chromium"), find("chromedriver")) else {
            panic!(
                "the browser tests cannot run: they need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver); CI installs them in .ci/run"
            );
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-extensions", "--no-first-run",
                    "--disable-default-apps", "--disable-sync", "--mute-audio",
                    "--window-size=1280,860", "--force-device-scale-factor=1",
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&url).await {
                Ok(client) => {
                    return Browser {
                        client,
                        _driver: child,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver never started a session: {last:?}");
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Serves `app` on a free loopback port until the token is cancelled; returns its base URL.
async fn serve(app: Router) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
        {
            eprintln!("the dashboard's server stopped: {e}");
        }
    });
    (url, stop)
}

/// A worker on every queue, polling every 100 ms, in the background.
fn start_worker(backend: &PoolExecutor) -> CancellationToken {
    start_named_worker(backend, "browser-test-worker", None)
}

/// A worker named `name` on `queues` (every queue when `None`).
fn start_named_worker(
    backend: &PoolExecutor,
    name: &str,
    queues: Option<&[&str]>,
) -> CancellationToken {
    let mut builder = Worker::builder(Jobq::default(), backend.clone());
    if let Some(queues) = queues {
        builder = builder.queues(queues.iter().copied());
    }
    let worker = builder
        .name(name)
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(200))
        .task(|f: Flaky, ctx: JobContext| async move {
            if ctx.attempt() <= f.fail_times {
                Err(JobError::new(format!(
                    "attempt {}: connection refused by smtp.example.com:587",
                    ctx.attempt()
                )))
            } else {
                Ok(())
            }
        })
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .task(|email: SendEmail, ctx: JobContext| async move {
            Err(JobError::new(format!(
                "attempt {}: SMTP 421 4.7.0 try again later (rendering {:?} for {})",
                ctx.attempt(),
                email.template,
                email.to
            )))
        })
        .task(|_: Slow, ctx: JobContext| async move {
            ctx.aborted().await;
            Ok(())
        })
        .build();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = worker
            .run_until(async move { stopped.cancelled().await })
            .await
        {
            eprintln!("the worker stopped with an error: {e}");
        }
    });
    stop
}

async fn status(backend: &PoolExecutor, id: JobId) -> Status {
    Jobq::default().status(id).run(backend).await.unwrap()
}

/// Waits (at most 30 s) until the job has `want`.
async fn wait_status(backend: &PoolExecutor, id: JobId, want: Status) {
    for _ in 0..300 {
        if status(backend, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "job {id} never became {want}: {}",
        status(backend, id).await
    );
}

/// Runs a `fetch` POST from the current page and returns the response's status.
async fn post_from_page(client: &Client, path: &str, body: &str) -> u64 {
    let script = "return fetch(arguments[0], {method: 'POST', redirect: 'manual', \
                  headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: arguments[1]})\
                  .then(r => r.status)";
    let status = client
        .execute(script, vec![path.into(), body.into()])
        .await
        .unwrap();
    status.as_u64().unwrap_or(0)
}

/// Clicks what `css` finds and waits (at most 10 s) until the page it leads to has loaded: a click
/// returns before the navigation it starts has ended.
async fn click_through(client: &Client, css: Locator<'_>) {
    client
        .execute("window.__jobq_old_page = true", vec![])
        .await
        .unwrap();
    client.find(css).await.unwrap().click().await.unwrap();
    for _ in 0..200 {
        let loaded = client
            .execute(
                "return window.__jobq_old_page === undefined && document.readyState === 'complete'",
                vec![],
            )
            .await;
        if let Ok(serde_json::Value::Bool(true)) = loaded {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the click on {css:?} led to no new page");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(chromium),
    ignore = "chromium is not installed: apt-get install chromium chromium-driver"
)]
async fn the_dashboard_in_a_real_browser() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 4).unwrap();
    let jobq = Jobq::default();
    let worker = start_worker(&backend);

    // A job that fails for good at its first attempt, and a job whose task name is HTML.
    let failed = jobq
        .defer(&Flaky { fail_times: 1 })
        .queue("emails")
        .run(&backend)
        .await
        .unwrap();
    wait_status(&backend, failed, Status::Failed).await;
    let evil = jobq
        .defer_job(NewJob::new(
            "<script>alert(1)</script>",
            serde_json::json!({"note": "<img src=x onerror=alert(2)>"}),
        ))
        .queue("unknown-tasks")
        .run(&backend)
        .await
        .unwrap();

    let app = Dashboard::new(backend.clone(), Jobq::default())
        .token(TOKEN)
        .router()
        .nest(
            "/ro",
            Dashboard::new(backend.clone(), Jobq::default())
                .read_only(true)
                .router(),
        );
    let (base, server) = serve(app).await;
    let browser = Browser::start().await;
    let c = &browser.client;

    eprintln!("case: every page loads");
    c.goto(&base).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Queues · jobq");
    assert!(text(c, "table.queues").await.contains("emails"));
    click_through(c, Locator::LinkText("Jobs")).await;
    assert_eq!(c.title().await.unwrap(), "Jobs · jobq");
    click_through(c, Locator::LinkText("Workers")).await;
    assert!(
        text(c, "table.workers")
            .await
            .contains("browser-test-worker")
    );
    c.goto(&format!("{base}metrics")).await.unwrap();
    // The gauges count live jobs only: the unknown task's job waits; the failed job has no series.
    let metrics = c.source().await.unwrap();
    assert!(
        metrics.contains("jobq_queue_jobs{queue=\"unknown-tasks\",status=\"todo\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"failed\""), "{metrics}");

    eprintln!("case: filter jobs");
    c.goto(&format!("{base}jobs")).await.unwrap();
    c.find(Locator::Css("input[name=task]"))
        .await
        .unwrap()
        .send_keys("flaky")
        .await
        .unwrap();
    c.find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    click_through(c, Locator::Css("form.filter button[type=submit]")).await;
    let url = c.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").contains("task=flaky"), "{url}");
    let rows = c
        .find_all(Locator::Css("table.jobs tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].attr("data-id").await.unwrap(),
        Some(failed.to_string())
    );
    // A bad filter value is a 400 page that says why.
    c.goto(&format!("{base}jobs?created_since=yesterday"))
        .await
        .unwrap();
    assert!(text(c, "p.message").await.contains("created_since"));

    eprintln!("case: escaping");
    c.goto(&format!("{base}jobs/{evil}")).await.unwrap();
    assert!(text(c, "h1").await.contains("<script>alert(1)</script>"));
    assert!(
        text(c, "pre.args")
            .await
            .contains("<img src=x onerror=alert(2)>")
    );
    let scripts = c
        .execute(
            "return [...document.scripts].map(s => s.getAttribute('src'))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(scripts, serde_json::json!(["assets/live.js"]));
    let images = c
        .execute("return document.images.length", vec![])
        .await
        .unwrap();
    assert_eq!(images, serde_json::json!(0));
    assert!(c.get_alert_text().await.is_err(), "an alert is open");
    c.goto(&format!("{base}jobs")).await.unwrap();
    assert!(
        text(c, "table.jobs")
            .await
            .contains("<script>alert(1)</script>")
    );
    assert!(c.get_alert_text().await.is_err(), "an alert is open");

    eprintln!("case: a POST without the CSRF token is refused, even logged in");
    c.goto(&format!("{base}login")).await.unwrap();
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click_through(c, Locator::Css("form.confirm button[type=submit]")).await;
    assert!(text(c, "p.notice").await.contains("Logged in"));
    assert_eq!(post_from_page(c, "queues/pause", "queue=forged").await, 403);
    assert_eq!(
        post_from_page(c, "queues/pause", "queue=forged&csrf=00ff").await,
        403
    );
    assert!(jobq.paused_queues().run(&backend).await.unwrap().is_empty());

    eprintln!("case: retry a failed job through the UI and see it run");
    c.goto(&format!("{base}jobs/{failed}")).await.unwrap();
    assert!(text(c, "table.errors").await.contains("connection refused"));
    click_through(c, Locator::LinkText("Retry…")).await;
    assert!(text(c, "h1").await.contains("Confirm"));
    // The confirmation box is `required`: the form is sent only once it is ticked.
    c.find(Locator::Css("input[name=confirm]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click_through(c, Locator::Css("form.confirm button[type=submit]")).await;
    assert!(text(c, "p.notice").await.contains("back in its queue"));
    wait_status(&backend, failed, Status::Succeeded).await;
    c.refresh().await.unwrap();
    assert_eq!(text(c, "h1 .status").await, "succeeded");

    eprintln!(
        "case: pause a queue and see the worker stop taking its jobs, resume and see them run"
    );
    c.goto(&base).await.unwrap();
    c.find(Locator::Css("form.pause-any input[name=queue]"))
        .await
        .unwrap()
        .send_keys("steer")
        .await
        .unwrap();
    click_through(c, Locator::Css("form.pause-any button")).await;
    assert!(text(c, "p.notice").await.contains("paused"));
    let held = jobq
        .defer(&Noop {})
        .queue("steer")
        .run(&backend)
        .await
        .unwrap();
    let control = jobq
        .defer(&Noop {})
        .queue("other")
        .run(&backend)
        .await
        .unwrap();
    // The worker runs the other queue's job and leaves the paused queue's alone.
    wait_status(&backend, control, Status::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(status(&backend, held).await, Status::Todo);
    c.refresh().await.unwrap();
    let row = c.find(Locator::Css("tr[data-queue=steer]")).await.unwrap();
    assert!(row.text().await.unwrap().contains("paused"));
    click_through(c, Locator::Css("tr[data-queue=steer] button")).await;
    assert!(text(c, "p.notice").await.contains("resumed"));
    wait_status(&backend, held, Status::Succeeded).await;

    eprintln!("case: read-only mode hides every action, and a forged POST gets 403");
    for path in ["ro", "ro/jobs", &format!("ro/jobs/{failed}"), "ro/workers"] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let forms = c.find_all(Locator::Css("form[method=post]")).await.unwrap();
        assert!(forms.is_empty(), "{path} has an action form");
        assert!(text(c, "header .who").await.contains("read-only"));
    }
    // The read-only pages carry no form token to forge with: a POST is refused before any check.
    assert_eq!(post_from_page(c, "queues/pause", "queue=emails").await, 403);
    let body = "action=delete&confirm=yes";
    assert_eq!(
        post_from_page(c, &format!("jobs/{failed}/action"), body).await,
        403
    );
    assert!(jobq.paused_queues().run(&backend).await.unwrap().is_empty());
    assert_eq!(status(&backend, failed).await, Status::Succeeded);

    browser.close().await;
    server.cancel();
    worker.cancel();
}

/// Writes the documentation's screenshots into `$JOBQ_SCREENSHOTS`: the queues, the jobs list, a job with
/// errors, the workers. Run by `just screenshots`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the docs' screenshots: JOBQ_SCREENSHOTS=docs/images cargo test -p jobq-web --test browser -- --ignored screenshots"]
async fn screenshots() {
    let Some(dir) = std::env::var_os("JOBQ_SCREENSHOTS").map(PathBuf::from) else {
        panic!("set JOBQ_SCREENSHOTS to the directory the screenshots go to (docs/images)");
    };
    std::fs::create_dir_all(&dir).unwrap();
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 4).unwrap();
    let jobq = Jobq::default();
    let worker = start_worker(&backend);

    let mailer = start_named_worker(&backend, "mailer-1", Some(&["emails"]));
    // A queue that has run jobs, one with failures, one paused with work waiting, one scheduled.
    for _ in 0..40 {
        jobq.defer(&Noop {})
            .queue("default")
            .run(&backend)
            .await
            .unwrap();
    }
    let mut failed = None;
    for (to, template) in [
        ("ada@example.com", "welcome"),
        ("grace@example.com", "invoice"),
        ("alan@example.com", "reset_password"),
    ] {
        let email = SendEmail {
            to: to.into(),
            template: template.into(),
        };
        failed = Some(
            jobq.defer(&email)
                .queue("emails")
                .run(&backend)
                .await
                .unwrap(),
        );
    }
    for _ in 0..12 {
        jobq.defer(&Flaky { fail_times: 0 })
            .queue("emails")
            .run(&backend)
            .await
            .unwrap();
    }
    for _ in 0..2 {
        jobq.defer(&Slow {})
            .queue("reports")
            .run(&backend)
            .await
            .unwrap();
    }
    jobq.pause_queue("exports").run(&backend).await.unwrap();
    for _ in 0..7 {
        jobq.defer_job(NewJob::new(
            "export_csv",
            serde_json::json!({"account": 42}),
        ))
        .queue("exports")
        .run(&backend)
        .await
        .unwrap();
    }
    for _ in 0..5 {
        jobq.defer(&Noop {})
            .queue("default")
            .after(Duration::from_secs(3600))
            .run(&backend)
            .await
            .unwrap();
    }
    let failed = failed.unwrap();
    wait_status(&backend, failed, Status::Failed).await;

    let app = Dashboard::new(backend.clone(), Jobq::default())
        .token(TOKEN)
        .router();
    let (base, server) = serve(app).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{base}login")).await.unwrap();
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click_through(c, Locator::Css("form.confirm button[type=submit]")).await;
    // A first look, then more jobs done, so the second look shows throughput.
    c.goto(&base).await.unwrap();
    for _ in 0..30 {
        jobq.defer(&Noop {})
            .queue("default")
            .run(&backend)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (name, path) in [
        ("dashboard-queues.png", String::new()),
        ("dashboard-jobs.png", "jobs?queue=emails".to_owned()),
        ("dashboard-job.png", format!("jobs/{failed}")),
        ("dashboard-workers.png", "workers".to_owned()),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        eprintln!("wrote {} ({} bytes)", dir.join(name).display(), png.len());
    }
    browser.close().await;
    server.cancel();
    worker.cancel();
    mailer.cancel();
}
