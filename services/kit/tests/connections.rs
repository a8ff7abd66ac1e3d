//! The server's connection limits over real sockets: idle and half-sent connections are closed
//! within the configured timeouts while `/healthz` keeps answering, requests beyond the in-flight
//! limit are shed with 503 and `Retry-After`, connections beyond the connection limit are closed,
//! and shutdown closes idle connections while it lets busy ones finish.
//!
//! The first test holds 2,000 client sockets and the server their 2,000 peers in this one
//! process: it raises the soft open-file limit (up to the hard limit) and fails, saying so, if
//! the hard limit is too low.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use aide::axum::{ApiRouter, routing::get_with};
use axum::extract::State;
use kit::{ApiResult, Json, app::Mounted, health::Health, server::Limits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
    task::JoinHandle,
};

/// Requests to `/gate/hold` wait here until the gate opens.
struct Gate {
    entered: AtomicUsize,
    open: watch::Sender<bool>,
}

async fn hold(State(gate): State<Arc<Gate>>) -> ApiResult<Json<&'static str>> {
    gate.entered.fetch_add(1, Ordering::SeqCst);
    let mut open = gate.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    Ok(Json("released"))
}

struct Server {
    addr: SocketAddr,
    gate: Arc<Gate>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<bool>>,
}

async fn start(limits: Limits) -> Server {
    let gate = Arc::new(Gate {
        entered: AtomicUsize::new(0),
        open: watch::Sender::new(false),
    });
    let router = ApiRouter::new()
        .api_route("/gate/hold", get_with(hold, |op| op))
        .with_state(Arc::clone(&gate));
    let health = Health::default();
    let app = kit::app::build(
        "kit-test",
        vec![Mounted {
            name: "gate",
            router,
        }],
        health.clone(),
        &kit::app::HttpSettings::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kit::shutdown::serve_with(
        listener,
        app,
        health,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
        limits,
    ));
    Server {
        addr,
        gate,
        stop: Some(stop),
        task,
    }
}

/// One parsed response.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn request(path: &str, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n")
}

/// Reads one response (head, then a `Content-Length` body); `None` when the server closed the
/// connection first.
async fn read_answer(tcp: &mut TcpStream) -> Option<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.get(9..12)?.parse().ok()?;
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    let len: usize = answer.header("content-length")?.parse().ok()?;
    while buf.len() < head_end + len {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    answer.body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Some(answer)
}

/// `GET path` on a fresh connection.
async fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(request(path, true).as_bytes()).await.ok()?;
    read_answer(&mut tcp).await
}

/// Waits until the server closes `tcp` (end of file or reset) and returns when that was.
async fn closed_at(mut tcp: TcpStream) -> Instant {
    let mut chunk = [0u8; 1024];
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

/// The value of one counter series (with its labels, if any) in `/metrics`.
async fn metric(addr: SocketAddr, series: &str) -> u64 {
    let answer = get(addr, "/metrics").await.expect("/metrics answers");
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_within_the_timeouts_while_healthz_answers() {
    const SILENT: usize = 1_900;
    const HALF: usize = 100;
    const KEPT_ALIVE: usize = 20;
    let header = Duration::from_secs(1);
    let idle = Duration::from_secs(3);
    // Every connection is counted twice: its client socket and the server's.
    let need = 2 * (SILENT + HALF + KEPT_ALIVE) as u64 + 512;
    let fds = kit::server::raise_fd_limit(need);
    assert!(
        fds >= need,
        "this test needs {need} open files (2,000 client and 2,000 server sockets); the hard \
         limit allows {fds}: raise it (ulimit -Hn) to run it"
    );
    let server = start(Limits {
        header_read_timeout: header,
        idle_timeout: idle,
        max_connections: 10_000,
        ..Limits::default()
    })
    .await;
    let addr = server.addr;
    let began = Instant::now();

    // Kept-alive connections that completed a request: from then on, the idle timeout applies.
    let mut kept = Vec::new();
    for _ in 0..KEPT_ALIVE {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // Taken before the request, so before the server's idle clock starts: a lower bound
        // that holds however late this task runs.
        let sent = Instant::now();
        tcp.write_all(request("/healthz", false).as_bytes())
            .await
            .expect("send");
        let answer = read_answer(&mut tcp).await.expect("first request answered");
        assert_eq!(answer.status, 200);
        kept.push((sent, tokio::spawn(closed_at(tcp))));
    }
    // Connections that never send a byte, and connections that send half a request line.
    let mut silent = Vec::new();
    for i in 0..SILENT + HALF {
        // Before connecting, so before the server accepts and starts its header clock.
        let opened = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        if i >= SILENT {
            tcp.write_all(b"GET /healthz HT").await.expect("send half");
        }
        silent.push((opened, tokio::spawn(closed_at(tcp))));
    }
    let all_open = Instant::now();

    // The server keeps answering on fresh connections while it holds them all.
    let t = Instant::now();
    let answer = get(addr, "/healthz").await.expect("healthz while held");
    assert_eq!(answer.status, 200);
    let healthz = t.elapsed();
    assert!(
        healthz < Duration::from_millis(500),
        "healthz took {healthz:?}"
    );

    let mut latest = Duration::ZERO;
    for (opened, task) in silent {
        let closed = tokio::time::timeout(header + Duration::from_secs(5), task)
            .await
            .expect("closed by the server within the header timeout (plus slack)")
            .expect("join");
        let after = closed - opened;
        assert!(
            after >= header,
            "closed after {after:?}, before the header timeout"
        );
        latest = latest.max(after);
    }
    assert!(
        latest < header + Duration::from_secs(2),
        "the last half-sent or silent connection closed {latest:?} after it opened"
    );
    let mut kept_latest = Duration::ZERO;
    for (sent, task) in kept {
        let closed = tokio::time::timeout(idle + Duration::from_secs(5), task)
            .await
            .expect("closed by the server within the idle timeout (plus slack)")
            .expect("join");
        let after = closed - sent;
        assert!(
            after >= idle,
            "a kept-alive connection closed {after:?} after its request, before the idle timeout"
        );
        kept_latest = kept_latest.max(after);
    }
    assert!(
        kept_latest < idle + Duration::from_secs(2),
        "the last kept-alive connection closed {kept_latest:?} after its request"
    );

    assert_eq!(get(addr, "/healthz").await.expect("healthz").status, 200);
    assert_eq!(
        metric(addr, r#"http_connections_timed_out_total{phase="header"}"#).await,
        (SILENT + HALF) as u64
    );
    assert_eq!(
        metric(addr, r#"http_connections_timed_out_total{phase="idle"}"#).await,
        KEPT_ALIVE as u64
    );
    eprintln!(
        "2,000 connections opened in {:?}; healthz answered in {healthz:?} while held; silent and \
         half-sent ones closed at most {latest:?} after opening (header timeout {header:?}), \
         kept-alive ones {kept_latest:?} after their request (idle timeout {idle:?})",
        all_open - began
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_in_flight_are_shed_with_503_and_retry_after() {
    let server = start(Limits {
        max_in_flight: 2,
        ..Limits::default()
    })
    .await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request("/gate/hold", true).as_bytes())
            .await
            .expect("send");
        held.push(tcp);
    }
    let t = Instant::now();
    while server.gate.entered.load(Ordering::SeqCst) < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "held requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let shed = tokio::time::timeout(Duration::from_secs(2), get(addr, "/gate/hold"))
        .await
        .expect("answered at once, not held")
        .expect("an answer");
    assert_eq!(shed.status, 503, "{}", shed.head);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(
        shed.header("content-type"),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(&shed.body).expect("problem+json");
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["type"], "https://meridian.dev/problems/overloaded");
    assert_eq!(
        server.gate.entered.load(Ordering::SeqCst),
        2,
        "a shed request never reaches its handler"
    );
    // Any route is shed, readiness included; liveness and metrics never are.
    assert_eq!(get(addr, "/readyz").await.expect("readyz").status, 503);
    assert_eq!(get(addr, "/healthz").await.expect("healthz").status, 200);
    assert_eq!(metric(addr, "http_requests_shed_total").await, 2);

    server.gate.open.send_replace(true);
    for mut tcp in held {
        let answer = read_answer(&mut tcp).await.expect("held request answered");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "\"released\"");
    }
    // The slots are given back: requests are admitted again.
    assert_eq!(get(addr, "/gate/hold").await.expect("answer").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_and_fresh_ones_work_after_they_drop() {
    const MAX: usize = 50;
    let server = start(Limits {
        max_connections: MAX,
        header_read_timeout: Duration::from_mins(1),
        ..Limits::default()
    })
    .await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..MAX {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Accepted in order, so these come after all of the held ones.
    for _ in 0..10 {
        let mut extra = TcpStream::connect(addr)
            .await
            .expect("the kernel still connects");
        let t = Instant::now();
        // The server may close before or after the request is written; either way, no answer.
        let _ = extra.write_all(request("/healthz", true).as_bytes()).await;
        let answer = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut extra))
            .await
            .expect("closed at once, not left waiting");
        assert!(answer.is_none(), "a connection over the limit was served");
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    drop(held);
    let t = Instant::now();
    let mut refused_meanwhile = 0;
    let answer = loop {
        // The server notices the closed connections as it reads their end of file; until then
        // a fresh connection is still one too many.
        if let Some(answer) = get(addr, "/healthz").await {
            break answer;
        }
        refused_meanwhile += 1;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no connection accepted after the held ones dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(answer.status, 200);
    assert_eq!(
        metric(addr, "http_connections_rejected_total").await,
        10 + refused_meanwhile
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_at_once_and_lets_busy_ones_finish() {
    let mut server = start(Limits::default()).await;
    let addr = server.addr;
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(request("/healthz", false).as_bytes())
        .await
        .expect("send");
    assert_eq!(read_answer(&mut idle).await.expect("answer").status, 200);
    let idle = tokio::spawn(closed_at(idle));
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    busy.write_all(request("/gate/hold", false).as_bytes())
        .await
        .expect("send");
    let t = Instant::now();
    while server.gate.entered.load(Ordering::SeqCst) < 1 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "held request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let stopped = Instant::now();
    let _ = server.stop.take().expect("once").send(());
    let closed = tokio::time::timeout(Duration::from_secs(2), idle)
        .await
        .expect("the idle connection is closed at once, not after its idle timeout")
        .expect("join");
    assert!(closed - stopped < Duration::from_secs(1));
    let t = Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still accepting after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!server.task.is_finished(), "a request is still in flight");

    server.gate.open.send_replace(true);
    let answer = read_answer(&mut busy)
        .await
        .expect("the busy request finishes");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let drained = tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("the server returns")
        .expect("join")
        .expect("serve ok");
    assert!(drained, "drained within the grace period");
}
