//! The web console in a real browser: Chromium driven through chromedriver
//! (WebDriver) against the real binary, with events published over gRPC
//! and delivered to a local receiver. Screenshots of each step land in
//! `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs). Without them the test says
//! so and passes, except under CI (`CI` set), where it fails.

use crate::support::{
    bootstrap, call, event, eventually, free_port, grpc, publish, Receiver, ServerBuilder,
};
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{json, Value};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A WebDriver command chromedriver still serves: the browser's console
/// log since the last call (`goog:loggingPrefs` must ask for it).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// chromedriver and one headless Chromium session.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Starts chromedriver and a browser, or `None` (with the reason said)
    /// where they are not installed and this is not CI.
    async fn start() -> Option<Self> {
        let chrome = std::env::var_os("CHROME_BIN")
            .map(PathBuf::from)
            .or_else(|| find_program(&["chromium", "chromium-browser", "google-chrome"]));
        let driver_bin = find_program(&["chromedriver"]);
        let (Some(chrome), Some(driver_bin)) = (chrome, driver_bin) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "the console's browser test needs chromium and chromedriver in CI"
            );
            eprintln!("skipped: chromium and chromedriver are not installed");
            return None;
        };
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = caps.as_object().expect("capabilities").clone();
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("../../target/console-screenshots");
                    // This run's pictures only.
                    let _ = std::fs::remove_dir_all(&shots);
                    std::fs::create_dir_all(&shots).expect("screenshot dir");
                    return Some(Self {
                        client,
                        driver,
                        shots,
                        _profile: profile,
                    });
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last:?}");
    }

    /// Saves a screenshot as `NN-name.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        // Another run may have just cleared the directory.
        let _ = std::fs::create_dir_all(&self.shots);
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save screenshot");
    }

    /// The first element `css` matches, waiting up to 15 s for it.
    async fn find(&self, css: &str) -> Element {
        self.until(css, |_| true, "to appear").await
    }

    /// Waits up to 15 s for an element of `css` whose text contains `text`.
    async fn text(&self, css: &str, text: &str) -> Element {
        let want = text.to_owned();
        self.until(
            css,
            move |t| t.contains(&want),
            &format!("to show {text:?}"),
        )
        .await
    }

    async fn until(&self, css: &str, ok: impl Fn(&str) -> bool, what: &str) -> Element {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        loop {
            if let Ok(all) = self.client.find_all(Locator::Css(css)).await {
                seen.clear();
                for el in all {
                    let Ok(t) = el.text().await else { continue };
                    if ok(&t) {
                        return el;
                    }
                    seen.push(t);
                }
            }
            if tokio::time::Instant::now() > deadline {
                self.shot("zz-timeout").await;
                let log = self.console().await;
                panic!(
                    "timed out waiting for {css} {what}; seen: {seen:?}; browser console: {log:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// The button (or link) whose text is `label`, within `scope` CSS.
    async fn press(&self, scope: &str, label: &str) {
        let css = format!("{scope} button, {scope} a");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(all) = self.client.find_all(Locator::Css(&css)).await {
                for el in all {
                    if el.text().await.is_ok_and(|t| t.trim() == label)
                        && el.is_enabled().await.unwrap_or(false)
                    {
                        el.click().await.expect("click");
                        return;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no enabled {label:?} in {scope}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the control labelled `label`.
    async fn fill(&self, label: &str, value: &str) {
        let id = self
            .until("label", |t| t.trim() == label, &format!("label {label:?}"))
            .await
            .attr("for")
            .await
            .expect("for")
            .expect("the label names its control");
        let input = self.find(&format!("#{id}")).await;
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }

    /// The secret a show-once dialog holds.
    async fn shown_once(&self) -> String {
        self.find("dialog input")
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// Asserts every control of the page has an accessible name (a label,
    /// an `aria-label`, or for buttons their text), and every label and
    /// ARIA reference names an element that exists.
    async fn all_labelled(&self, page: &str) {
        let bare = self
            .js(
                "return [...document.querySelectorAll('input, select, textarea, button')]\
                 .filter(e => e.tagName === 'BUTTON'\
                   ? !e.textContent.trim() && !e.getAttribute('aria-label')\
                   : !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
                 .map(e => e.outerHTML.slice(0, 120))",
            )
            .await;
        assert_eq!(bare, json!([]), "controls without a label on {page}");
        let dangling = self
            .js(
                "return [...document.querySelectorAll('[aria-labelledby], [aria-describedby], label[for]')]\
                 .flatMap(e => [e.getAttribute('aria-labelledby'), e.getAttribute('aria-describedby'),\
                   e.getAttribute('for')].join(' ').split(' ').filter(Boolean))\
                 .filter(id => !document.getElementById(id))",
            )
            .await;
        assert_eq!(dangling, json!([]), "references to no element on {page}");
    }

    /// The browser console's entries since the last call.
    async fn console(&self) -> Vec<Value> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log");
        v.as_array().cloned().unwrap_or_default()
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Entries a page must not produce: errors and warnings of any source.
fn problems(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_webhook_owner_manages_and_debugs_deliveries_in_the_console() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A webhook failing for a second is disabled (the flaky one below).
    let server = ServerBuilder::new(dir.path())
        .set("delivery", "disable_after", "\"1s\"")
        .start();
    let tenant = bootstrap(&server, "console-phone").await;
    let receiver = Receiver::start().await;
    let mut ingest = grpc(&server).await;

    // Sign-in: a wrong key says so; the device token signs in.
    b.client
        .goto(&server.url("/console"))
        .await
        .expect("open console");
    b.fill("Device token or admin key", "not-a-real-key").await;
    b.press("form", "Sign in").await;
    b.text(".error-box", "was not accepted").await;
    b.shot("01-wrong-key").await;
    let refused = b.console().await;
    assert!(
        problems(&refused).iter().all(|m| m.contains("401")),
        "only the refused request is logged: {refused:?}"
    );
    b.all_labelled("sign-in").await;
    // By keyboard: the key field has the focus; Enter signs in.
    let focused = b.client.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("name").await.expect("name").as_deref(),
        Some("credential")
    );
    focused.clear().await.expect("clear");
    let enter = char::from(fantoccini::key::Key::Enter);
    focused
        .send_keys(&format!("{}{enter}", tenant.token))
        .await
        .expect("type the token");
    b.text("h1", "Webhooks").await;
    let kept = b
        .js("return [location.href, document.cookie, sessionStorage.getItem('hookrelay.console.session')]")
        .await;
    assert!(!kept[0].as_str().unwrap_or_default().contains(&tenant.token));
    assert_eq!(kept[1], "", "no cookie");
    assert!(kept[2].as_str().unwrap_or_default().contains(&tenant.token));

    // Create a webhook pointing at the receiver (no retries: a failure is
    // final at once, for the retry below).
    b.press("main", "New webhook").await;
    b.fill("Name", "crm").await;
    b.fill("URL", &receiver.url("/hook")).await;
    b.fill("Search the catalog", "message.received").await;
    b.fill("Retries after a failed attempt", "0").await;
    b.all_labelled("the webhook form").await;
    b.shot("02-new-webhook").await;
    b.press("form", "Create webhook").await;
    b.text("h1", "crm").await;
    let webhook_page = b.client.current_url().await.expect("url").to_string();

    // An event published over gRPC shows up delivered without a reload.
    let data = r#"{"text":"hello"}"#;
    publish(
        &mut ingest,
        event("console-phone", "message.received", data),
    )
    .await
    .expect("publish");
    b.find("tr[data-status='delivered']").await;
    b.shot("03-delivered").await;
    // Its attempt: one, answered 200.
    b.all_labelled("the webhook page").await;
    b.click("tr[data-status='delivered'] a").await;
    b.text("tr[data-attempt='1']", "200").await;
    b.text("#payload", "hello").await;
    b.shot("04-attempt").await;

    // The receiver fails: the delivery fails; a retry from the page
    // delivers it once the receiver is back.
    receiver.set_default(500);
    publish(
        &mut ingest,
        event("console-phone", "message.received", data),
    )
    .await
    .expect("publish");
    b.client.goto(&webhook_page).await.expect("back");
    b.find("tr[data-status='failed']").await;
    b.click("tr[data-status='failed'] a").await;
    b.text("tr[data-attempt='1']", "500").await;
    b.shot("05-failed").await;
    receiver.set_default(200);
    b.click("#retry").await;
    b.text("tr[data-attempt='2']", "200").await;
    b.text("main .badge", "delivered").await;
    b.shot("06-retried").await;

    // Rotate the secret: confirmed, then shown once.
    b.client.goto(&webhook_page).await.expect("back");
    b.find("#stats-totals").await;
    b.click("#rotate-secret").await;
    b.press("dialog", "Rotate").await;
    let value = b.shown_once().await;
    assert!(value.starts_with("whsec_"), "{value}");
    b.shot("07-rotated").await;
    b.press("dialog", "Done").await;

    // Replay the last hour: both events again.
    b.press("form", "Replay").await;
    b.text("#replay-result", "2 events replayed").await;
    b.shot("08-replayed").await;
    assert!(
        receiver.wait_for(5, 15).await.len() >= 5,
        "two events, one retry, two replayed"
    );

    // The webhook's page as its owner comes back to it: the replayed
    // deliveries listed, the charts counting every attempt (once the last
    // attempt is in the log).
    let webhook_id = webhook_page
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let stats_url = format!("/v1/webhooks/{webhook_id}/stats");
    eventually(15, "five attempts in the log", || async {
        let (_, v) = call(&server, Method::GET, &stats_url, &tenant.token, None).await;
        (v["total"]["attempts"] == 5).then_some(())
    })
    .await;
    b.client.refresh().await.expect("reload");
    b.text("#stats-totals", "80.0%").await;
    b.find("tr[data-status='delivered']").await;
    // The whole page in one picture (docs/console.png is one of these).
    b.client.set_window_size(1280, 1640).await.expect("resize");
    b.shot("09-webhook").await;

    // Edit, disable and enable, send a test event.
    b.client.set_window_size(1280, 1000).await.expect("resize");
    b.press("main", "Edit").await;
    b.fill("Name", "crm-v2").await;
    b.press("form", "Save changes").await;
    b.text("h1", "crm-v2").await;
    b.press("main", "Disable").await;
    b.until("main .badge", |t| t == "inactive", "to say inactive")
        .await;
    b.text(".state", "Inactive").await;
    b.press("main", "Enable").await;
    b.until("main .badge", |t| t == "active", "to say active")
        .await;
    b.press("main", "Send test event").await;
    b.text(".notice", "Test event sent").await;
    b.text("tr[data-status='delivered']", "webhook.test").await;

    // A phone-sized window: nothing wider than the screen.
    b.client.set_window_size(375, 812).await.expect("resize");
    b.client.refresh().await.expect("reload");
    b.find("#stats-totals").await;
    b.shot("10-narrow").await;
    let fits = b
        .js("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(fits, json!(true), "the page scrolls sideways at 375 px");
    b.client.set_window_size(1280, 1000).await.expect("resize");

    // The catalog, searched.
    b.press("nav", "Event catalog").await;
    b.fill("Search events", "call.offer").await;
    b.text("td", "call.offer").await;

    // A host that keeps failing: the page says its circuit is open.
    let flaky = Receiver::start().await;
    flaky.set_default(503);
    let (_, made) = call(
        &server,
        Method::POST,
        "/v1/webhooks",
        &tenant.token,
        Some(json!({"name": "flaky", "url": flaky.url("/hook"), "events": ["message.sent"], "retry_attempts": 0})),
    )
    .await;
    let flaky_id = made["id"].as_str().expect("id").to_owned();
    for _ in 0..21 {
        publish(&mut ingest, event("console-phone", "message.sent", data))
            .await
            .expect("publish");
    }
    let flaky_url = format!("/v1/webhooks/{flaky_id}");
    eventually(15, "the circuit to open", || async {
        let (_, v) = call(&server, Method::GET, &flaky_url, &tenant.token, None).await;
        (v["circuit"] == "open").then_some(())
    })
    .await;
    b.client
        .goto(&server.url(&format!("/console#/webhooks/{flaky_id}")))
        .await
        .expect("open flaky");
    b.text(".state", "Circuit open").await;
    b.text(".state", "Failing").await;
    b.shot("11-circuit-open").await;
    // Still failing a second later: disabled, and the page says why.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publish(&mut ingest, event("console-phone", "message.sent", data))
        .await
        .expect("publish");
    eventually(20, "the webhook to be disabled", || async {
        let (_, v) = call(&server, Method::GET, &flaky_url, &tenant.token, None).await;
        (v["active"] == false).then_some(())
    })
    .await;
    b.client.refresh().await.expect("reload");
    b.text(".state", "Disabled automatically").await;
    b.text("main .badge", "inactive").await;

    // Its 22 deliveries: two pages, and a status filter.
    b.find("tr[data-delivery]").await;
    b.press("main", "Older").await;
    b.press("main", "Newest").await;
    b.find("tr[data-status='failed']").await;
    let status = b
        .until("label", |t| t.trim() == "Status", "the status filter")
        .await;
    let select_id = status.attr("for").await.expect("for").expect("labelled");
    b.find(&format!("#{select_id}"))
        .await
        .select_by_value("delivered")
        .await
        .expect("filter");
    b.text("main p", "No delivered deliveries here").await;
    b.find(&format!("#{select_id}"))
        .await
        .select_by_value("failed")
        .await
        .expect("filter");
    b.find("tr[data-status='failed']").await;
    let others = b
        .js("return document.querySelectorAll('tr[data-delivery]:not([data-status=\"failed\"])').length")
        .await;
    assert_eq!(others, json!(0), "only failed deliveries listed");

    // Delete it, after a confirmation.
    b.press("main", "Delete").await;
    b.press("dialog", "Delete").await;
    b.text(".notice", "Webhook deleted").await;
    b.text("h1", "Webhooks").await;
    b.text("tbody", "crm-v2").await;
    let listed = b
        .js("return document.querySelector('tbody').textContent")
        .await;
    assert!(
        !listed.as_str().unwrap_or_default().contains("flaky"),
        "{listed}"
    );

    // Sign out clears the credential.
    b.click("#sign-out").await;
    b.find("input[name='credential']").await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));

    // An admin key: create a token (shown once) and revoke it.
    b.fill("Device token or admin key", &tenant.admin_key).await;
    b.press("form", "Sign in").await;
    b.text("h1", "Organization webhooks").await;
    // An organization-wide webhook, through the same pages.
    b.press("main", "New webhook").await;
    b.fill("Name", "all-phones").await;
    b.fill("URL", &receiver.url("/all")).await;
    b.press("form", "Create webhook").await;
    b.text("h1", "all-phones").await;
    b.text("#stats-totals", "attempts").await;
    b.press("main", "Send test event").await;
    b.text("tr[data-status='delivered']", "webhook.test").await;
    b.press("main", "← All webhooks").await;
    b.text("tbody", "all-phones").await;
    b.press("nav", "Apps and tokens").await;
    b.text("td a", "phone")
        .await
        .click()
        .await
        .expect("open app");
    b.text("h1", "Tokens of").await;
    b.all_labelled("an app's tokens").await;
    b.fill("Token name", "browser-made").await;
    b.press("form", "Create token").await;
    let token = b.shown_once().await;
    b.shot("12-token").await;
    b.press("dialog", "Done").await;
    assert_eq!(
        call(&server, Method::GET, "/v1/whoami", &token, None)
            .await
            .0,
        200
    );
    b.text("tbody tr", "browser-made").await;
    b.press("tbody tr:last-child", "Revoke").await;
    b.press("dialog", "Revoke").await;
    b.text(".notice", "done").await;
    b.shot("13-revoked").await;
    assert_eq!(
        call(&server, Method::GET, "/v1/whoami", &token, None)
            .await
            .0,
        401
    );

    // An organization ingest key, shown once.
    b.press("nav", "Ingest keys").await;
    b.fill("Key name", "gateway-1").await;
    b.press("form", "Create ingest key").await;
    let key = b.shown_once().await;
    assert!(key.starts_with("ik_"), "{key}");
    b.press("dialog", "Done").await;
    b.text("tbody tr", "gateway-1").await;
    b.shot("14-ingest-keys").await;

    let log = b.console().await;
    assert!(problems(&log).is_empty(), "browser console: {log:?}");
    b.close().await;
}
