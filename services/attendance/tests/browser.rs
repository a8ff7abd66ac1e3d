//! The live page in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver): the page loads, opens the stream with its ticket, and a sign-in made
//! through the API appears on it — once with the page and the sign-in on one instance, once
//! with the page on instance A and the sign-in sent to instance B on the same database.
//!
//! And when the stream ends after its ticket expired, the page says it is disconnected instead
//! of "reconnecting…" for ever.
//!
//! Without chromium this test FAILS (tests/run installs it in preflight); it never skips.

mod common;

use std::{process::Stdio, time::Duration};

use common::{SITE, harness, harness_with, instance, sign_in};
use reqwest::Client;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Browser {
    driver: tokio::process::Child,
    base: String,
    session: String,
    http: Client,
}

impl Browser {
    async fn start() -> Self {
        for bin in [CHROMIUM, DRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver (tests/run does it in \
                 preflight); this test does not skip"
            );
        }
        let port = kit::testing::free_port();
        let driver = tokio::process::Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not answer on {base}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            },
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
        }
    }

    async fn cmd(&self, path: &str, body: Value) -> Value {
        let res: Value = self
            .http
            .post(format!("{}/session/{}/{path}", self.base, self.session))
            .json(&body)
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        res["value"].clone()
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd("execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until `ok` holds of its value, for up to 10 s.
    async fn wait_for(&self, script: &str, ok: impl Fn(&Value) -> bool, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..100 {
            last = self.js(script).await;
            if ok(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: still {last} after 10 s");
    }

    async fn stop(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill().await;
    }
}

const CHILDREN: &str =
    "return [...document.querySelectorAll('#rows tr')].map((r) => r.dataset.entity)";

async fn page_shows_a_sign_in(page_base: &str, write_base: &str, h: &common::H) {
    let early = sign_in(&Client::new(), write_base, SITE, "early-bird").await;
    let ticket = h.ticket(SITE).await;
    let b = Browser::start().await;
    b.cmd(
        "url",
        json!({"url": format!("{page_base}/attendance/v1/sites/{SITE}/live#ticket={ticket}")}),
    )
    .await;
    b.wait_for(
        "return document.getElementById('status').textContent",
        |v| v == "live",
        "the page's stream",
    )
    .await;
    // The snapshot put the day so far on the page.
    let shown = b.js(CHILDREN).await;
    assert_eq!(shown, json!(["early-bird"]), "{early}");
    sign_in(&Client::new(), write_base, SITE, "late-comer").await;
    b.wait_for(
        CHILDREN,
        |v| v == &json!(["early-bird", "late-comer"]),
        "the sign-in on the page",
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_sign_in_appears_on_the_live_page() {
    let h = harness().await;
    page_shows_a_sign_in(&h.base, &h.base, &h).await;
}

#[tokio::test]
async fn a_sign_in_through_another_instance_appears_on_the_live_page() {
    let h = harness().await;
    let (_pool, other) = instance(&h.db, attendance::Settings::default()).await;
    page_shows_a_sign_in(&h.base, &other, &h).await;
}

#[tokio::test]
async fn the_page_says_disconnected_once_its_ticket_expired_and_the_stream_ended() {
    let h = harness_with(attendance::Settings {
        // The server ends the stream after 2 s; EventSource then reconnects with the same URL.
        stream_max: Duration::from_secs(2),
        ..attendance::Settings::default()
    })
    .await;
    let ticket = h.ticket(SITE).await;
    let b = Browser::start().await;
    b.cmd(
        "url",
        json!({"url": format!("{}/attendance/v1/sites/{SITE}/live#ticket={ticket}", h.base)}),
    )
    .await;
    const STATUS: &str = "return document.getElementById('status').textContent";
    b.wait_for(STATUS, |v| v == "live", "the page's stream")
        .await;
    // The ticket expires while the stream runs on; its reconnect is refused with 401.
    sqlx::query("UPDATE attendance.stream_tickets SET expires_at = now() - interval '1 second'")
        .execute(&h.pool)
        .await
        .expect("expire");
    b.wait_for(
        STATUS,
        |v| v == "disconnected — reload with a new ticket",
        "the closed state",
    )
    .await;
    let state = b.js("return es.readyState").await;
    assert_eq!(state, json!(2), "EventSource.CLOSED");
    b.stop().await;
}
