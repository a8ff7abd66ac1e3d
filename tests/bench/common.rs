// Each benchmark binary includes this module and uses a different subset of it.
#![allow(dead_code)]

//! Load-generation helpers shared by the benchmark commands: closed-loop runs at a fixed
//! concurrency and open-loop runs at a fixed rate, recorded in HDR histograms (microseconds).

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

pub struct Stats {
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    pub hist: Histogram<u64>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    pub fn p(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn line(&self, label: &str) -> String {
        format!(
            "{label:<32} {:>9.0} /s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            self.rate(),
            self.p(0.50),
            self.p(0.99),
            self.errors
        )
    }
}

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
}

/// A cheap per-worker PRNG (xorshift), so choosing inputs costs nothing measurable.
pub fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A lean HTTP/1.1 keep-alive client (hyper), so the load generator spends as little of the
/// machine's two cores as possible on itself: nothing parses URLs beyond `http::Uri`.
#[derive(Clone)]
pub struct Http {
    inner: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    /// Sent with every request (the bench's bearer token).
    default_header: Option<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl Http {
    pub fn new(idle: usize) -> Self {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(idle)
                .build(connector);
        Self {
            inner,
            default_header: None,
        }
    }

    /// Sends `Authorization: <value>` with every request.
    #[must_use]
    pub fn with_authorization(mut self, value: &str) -> Self {
        self.default_header = hyper::header::HeaderValue::from_str(value)
            .ok()
            .map(|v| (hyper::header::AUTHORIZATION, v));
        self
    }

    /// Sends a request and returns the status and the whole body.
    pub async fn send(
        &self,
        method: hyper::Method,
        uri: &str,
        json: Option<bytes::Bytes>,
    ) -> anyhow::Result<(hyper::StatusCode, bytes::Bytes)> {
        self.send_with(method, uri, json, None).await
    }

    /// [`send`](Self::send) with one more header (e.g. a webhook signature).
    pub async fn send_with(
        &self,
        method: hyper::Method,
        uri: &str,
        json: Option<bytes::Bytes>,
        header: Option<(&str, &str)>,
    ) -> anyhow::Result<(hyper::StatusCode, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let mut req = hyper::Request::builder().method(method).uri(uri);
        if json.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some((name, value)) = &self.default_header {
            req = req.header(name, value);
        }
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let req = req.body(http_body_util::Full::new(json.unwrap_or_default()))?;
        let res = self.inner.request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

static AUTHORIZATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Every client made after this sends `Authorization: <value>` (a bench's bearer token).
pub fn set_authorization(value: String) {
    let _ = AUTHORIZATION.set(value);
}

pub fn client(idle: usize) -> Http {
    match AUTHORIZATION.get() {
        Some(v) => Http::new(idle).with_authorization(v),
        None => Http::new(idle),
    }
}

/// `concurrency` workers each run `op(client, worker, iteration)` back to back for `secs`.
pub async fn closed_loop<F, Fut>(concurrency: usize, secs: u64, op: F) -> Stats
where
    F: Fn(Http, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let http = client(concurrency);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let (http, op) = (http.clone(), op.clone());
        tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut ops, mut errors) = (0, 0);
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(http.clone(), w, i).await {
                    Ok(()) => {
                        ops += 1;
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("  first error of worker {w}: {e:#}");
                        }
                        errors += 1;
                    }
                }
                i += 1;
            }
            (hist, ops, errors)
        })
    });
    let mut total = Stats {
        ops: 0,
        errors: 0,
        secs: 0.0,
        hist: new_hist(),
    };
    for w in futures_util::future::join_all(workers).await {
        let (h, ops, errors) = w.expect("worker");
        total.hist.add(h).expect("same bounds");
        total.ops += ops;
        total.errors += errors;
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

/// An open-loop run's latencies, two ways.
pub struct FixedRate {
    /// From each operation's scheduled start: counts any lag of the generator itself (tokio's
    /// timer fires on millisecond ticks, so up to 1 ms is the generator's), and never hides a
    /// stall behind a waiting client (coordinated omission). The conservative figure.
    pub scheduled: Stats,
    /// From when the request was actually sent: the service's own latency.
    pub sent: Stats,
}

/// Open loop: `op` starts every 1/rate s whether or not earlier ones finished.
pub async fn fixed_rate<F, Fut>(rate: u64, secs: u64, op: F) -> FixedRate
where
    F: Fn(Http, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let http = client(512);
    let hists = Arc::new(Mutex::new((new_hist(), new_hist())));
    let errors = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = rate * secs;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = started + interval * i as u32;
        // Only sleep when ahead: a sleep whose deadline has passed still waits for the timer
        // driver's next turn, so a generator that fell behind would never catch up.
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let (http, op, hists, errors) = (http.clone(), op.clone(), hists.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            match op(http, i).await {
                Ok(()) => {
                    let (from_schedule, from_send) = (scheduled.elapsed(), sent.elapsed());
                    if let Ok((h, s)) = hists.lock().as_deref_mut() {
                        let _ = h.record(from_schedule.as_micros() as u64);
                        let _ = s.record(from_send.as_micros() as u64);
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    let (scheduled, sent) = Arc::try_unwrap(hists).map_or_else(
        |_| (new_hist(), new_hist()),
        |m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        },
    );
    let errors = errors.load(Ordering::Relaxed);
    let stats = |hist: Histogram<u64>| Stats {
        ops: hist.len(),
        errors,
        secs: secs as f64,
        hist,
    };
    FixedRate {
        scheduled: stats(scheduled),
        sent: stats(sent),
    }
}

/// The baseline rows: the hello-world route through the kit stack, closed loop, at each
/// concurrency, printed as `hello (kit stack) c=N`.
pub async fn hello_baseline(concurrency: &[usize], secs: u64) {
    let hello = hello_through_kit(&kit::testing::http_settings()).await;
    for &c in concurrency {
        let url: std::sync::Arc<str> = format!("{hello}/hello").into();
        let s = closed_loop(c, secs, move |http, _, _| {
            let url = std::sync::Arc::clone(&url);
            async move {
                let (s, _) = http.send(hyper::Method::GET, &url, None).await?;
                anyhow::ensure!(s == 200, "hello {s}");
                Ok(())
            }
        })
        .await;
        println!("{}", s.line(&format!("hello (kit stack) c={c}")));
    }
}

/// The hello-world route behind the whole kit stack (request id, metrics, access-log span,
/// timeout, panic guard, problem+json fallbacks): what a route costs before it does anything.
/// Returns the base URL.
pub async fn hello_through_kit(http: &kit::app::HttpSettings) -> String {
    use aide::axum::{ApiRouter, routing::get_with};
    let router =
        ApiRouter::new().api_route("/hello", get_with(|| async { "hello, world" }, |op| op));
    let app = kit::app::build(
        "hello",
        vec![kit::app::Mounted {
            name: "hello",
            router,
        }],
        kit::health::Health::default(),
        http,
    );
    kit::testing::spawn_app(app).await
}
