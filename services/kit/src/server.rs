//! The HTTP/1.1 server every service runs: hyper's connection driver with the limits that keep one
//! client from holding a replica: a header-read timeout, an idle keep-alive timeout, a maximum of
//! open connections and a maximum of requests in flight, beyond which requests are shed with a
//! problem+json 503 and `Retry-After`. [`crate::shutdown::serve_with`] wraps it with readiness
//! draining; [`Limits::from_env`] reads the settings (see [`CommonConfig`]).
//!
//! The two timeouts follow Go's `ReadHeaderTimeout`/`IdleTimeout` split: a new connection must
//! deliver a whole request head within the header timeout of being accepted; between requests a
//! kept-alive connection may sit idle for the idle timeout, and once the first byte of the next
//! request arrives the header timeout starts again. hyper's own `header_read_timeout` cannot be
//! used for this: it starts when hyper begins waiting for a head, which on a kept-alive connection
//! is right after the previous response, so it is the idle timeout too, and a short one would close
//! the load balancer's pooled connections under it (the ALB's idle timeout must stay below the
//! target's keep-alive). While a request is being handled or its response streamed, neither timer
//! runs: the request timeout bounds the handler, long-lived responses (event streams) are bounded by
//! the connection limit.
//!
//! Series (besides the per-route ones of [`crate::metrics`]):
//! - `http_connections_open` (gauge)
//! - `http_connections_rejected_total` (counter): closed on accept, `HTTP_MAX_CONNECTIONS` reached
//! - `http_connections_timed_out_total{phase="header"|"idle"}` (counter)
//! - `http_requests_shed_total` (counter): answered 503 before routing, `HTTP_MAX_IN_FLIGHT`
//!   reached; these never reach `http_requests_total`. `/healthz` and `/metrics` are never shed.
//!
//! [`CommonConfig`]: crate::config::CommonConfig

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderValue, Response, StatusCode, header},
};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use metrics::{Counter, Gauge};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tower::ServiceExt;

use crate::{
    config::{ConfigError, millis_or, secs_or, var_or},
    error::ApiError,
};

/// Connection and request limits of one server. Defaults are the documented ones of
/// [`CommonConfig`](crate::config::CommonConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A whole request head must arrive within this long of the connection being accepted, or of
    /// the first byte of a follow-up request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Open connections; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Requests being handled at once; further ones are answered 503 without being routed.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // Above the ALB's idle timeout (terraform/modules/alb, 120 s): the balancer, not the
            // target, must be the one to close an idle pooled connection, or a request it sends
            // as the target closes is answered 502.
            idle_timeout: Duration::from_secs(130),
            max_connections: 4096,
            max_in_flight: 256,
        }
    }
}

impl Limits {
    /// `HTTP_HEADER_READ_TIMEOUT_MS`, `HTTP_IDLE_TIMEOUT_SECS`, `HTTP_MAX_CONNECTIONS`,
    /// `HTTP_MAX_IN_FLIGHT`; unset means the default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let limits = Self {
            header_read_timeout: millis_or("HTTP_HEADER_READ_TIMEOUT_MS", d.header_read_timeout)?,
            idle_timeout: secs_or("HTTP_IDLE_TIMEOUT_SECS", d.idle_timeout)?,
            max_connections: var_or("HTTP_MAX_CONNECTIONS", d.max_connections)?,
            max_in_flight: var_or("HTTP_MAX_IN_FLIGHT", d.max_in_flight)?,
        };
        limits.validate()?;
        Ok(limits)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let zero = |name: &str| ConfigError {
            name: name.to_owned(),
            value: "0".to_owned(),
            reason: "must be at least 1".to_owned(),
        };
        if self.header_read_timeout.is_zero() {
            return Err(zero("HTTP_HEADER_READ_TIMEOUT_MS"));
        }
        if self.idle_timeout.is_zero() {
            return Err(zero("HTTP_IDLE_TIMEOUT_SECS"));
        }
        if self.max_connections == 0 {
            return Err(zero("HTTP_MAX_CONNECTIONS"));
        }
        if self.max_in_flight == 0 {
            return Err(zero("HTTP_MAX_IN_FLIGHT"));
        }
        if self.max_connections > Semaphore::MAX_PERMITS {
            return Err(ConfigError {
                name: "HTTP_MAX_CONNECTIONS".to_owned(),
                value: self.max_connections.to_string(),
                reason: format!("must be at most {}", Semaphore::MAX_PERMITS),
            });
        }
        Ok(())
    }
}

/// File descriptors kept free for everything that is not a client connection: database pools,
/// the listener, files, the runtime.
const FD_HEADROOM: u64 = 256;

/// Raises the soft open-file limit towards `want` (never above the hard limit, never lowering it)
/// and returns the soft limit in force afterwards (`u64::MAX` for unlimited). Container runtimes
/// often start processes with a soft limit of 1024 under a much higher hard one; Go's runtime
/// raises it the same way at start.
pub fn raise_fd_limit(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = limit.maximum.map_or(want, |hard| want.min(hard));
    if target <= current {
        return current;
    }
    match setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    ) {
        Ok(()) => target,
        Err(e) => {
            tracing::debug!(error = %io::Error::from(e), "could not raise the open-file limit");
            current
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops accepting,
/// lets every connection finish its current request (idle ones close at once) and waits at most
/// `grace` for them. Returns `true` when all connections closed within the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> io::Result<bool> {
    // The series below must bind to the kit's recorder, not to the no-op one.
    crate::metrics::install();
    let want = limits.max_connections as u64 + FD_HEADROOM;
    let fds = raise_fd_limit(want);
    if fds < want {
        tracing::warn!(
            open_file_limit = fds,
            max_connections = limits.max_connections,
            "the open-file limit is below HTTP_MAX_CONNECTIONS plus headroom; accepts may fail \
             before the connection limit is reached"
        );
    }
    let shared = Arc::new(Shared {
        app,
        limits,
        in_flight: AtomicUsize::new(0),
        shed: metrics::counter!("http_requests_shed_total"),
    });
    let open = metrics::gauge!("http_connections_open");
    let rejected = metrics::counter!("http_connections_rejected_total");
    let header_timeouts =
        metrics::counter!("http_connections_timed_out_total", "phase" => "header");
    let idle_timeouts = metrics::counter!("http_connections_timed_out_total", "phase" => "idle");
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (live_tx, live_rx) = watch::channel(());

    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: give connections time to close
                    // instead of spinning on accept.
                    tracing::error!(error = %e, "accept failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Closed rather than left in the accept queue: the client (or load balancer) learns
            // at once and can go elsewhere, and nothing queues behind a full replica.
            rejected.increment(1);
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let conn = Connection {
            shared: Arc::clone(&shared),
            stop: stop_rx.clone(),
            live: live_rx.clone(),
            permit,
            open: open.clone(),
            header_timeouts: header_timeouts.clone(),
            idle_timeouts: idle_timeouts.clone(),
        };
        tokio::spawn(conn.run(tcp));
    }

    drop(listener);
    let _ = stop_tx.send(true);
    drop(live_rx);
    tokio::select! {
        () = live_tx.closed() => Ok(true),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "grace period over; abandoning in-flight requests");
            Ok(false)
        }
    }
}

/// Errors that concern one connection only (the peer gave up before we accepted it).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What every connection of one server shares.
struct Shared {
    app: Router,
    limits: Limits,
    in_flight: AtomicUsize,
    shed: Counter,
}

/// Where a connection is in its request cycle; only `HEAD` and `IDLE` have a deadline.
const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// A connection's phase, written from the IO wrapper, the service and the response body, all of
/// which hyper polls inside the connection's own task. `changes` lets that task notice every
/// transition, even one that came and went within a single poll.
struct Phase {
    phase: AtomicU8,
    changes: AtomicU32,
}

impl Phase {
    fn set(&self, phase: u8) {
        self.phase.store(phase, Relaxed);
        self.changes.fetch_add(1, Relaxed);
    }
}

struct Connection {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    live: watch::Receiver<()>,
    permit: OwnedSemaphorePermit,
    open: Gauge,
    header_timeouts: Counter,
    idle_timeouts: Counter,
}

/// How a connection's driver ended.
enum Ended {
    Closed(Result<(), hyper::Error>),
    TimedOut(u8),
}

impl Connection {
    async fn run(self, tcp: TcpStream) {
        let Self {
            shared,
            mut stop,
            live,
            permit,
            open,
            header_timeouts,
            idle_timeouts,
        } = self;
        open.increment(1.0);
        let limits = shared.limits;
        let phase = Arc::new(Phase {
            phase: AtomicU8::new(HEAD),
            changes: AtomicU32::new(0),
        });
        let io = TokioIo::new(WatchedIo {
            tcp,
            phase: Arc::clone(&phase),
        });
        let service = {
            let phase = Arc::clone(&phase);
            hyper::service::service_fn(move |req| handle(&shared, &phase, req))
        };
        // Its own block, so that the socket is closed before the permit is given back.
        let ended = {
            let mut conn = pin!(
                hyper::server::conn::http1::Builder::new()
                    // The timeouts are ours (see the module documentation).
                    .header_read_timeout(None)
                    .serve_connection(io, service)
            );
            let mut stop = pin!(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            });
            let mut stopping = false;
            // A new connection owes a whole request head within the header timeout.
            let first = Instant::now() + limits.header_read_timeout;
            let mut deadline = Some(first);
            let mut timer = pin!(tokio::time::sleep_until(first));
            let mut seen = 0;
            std::future::poll_fn(|cx| {
                if !stopping && stop.as_mut().poll(cx).is_ready() {
                    stopping = true;
                    // Idle connections close now; a busy one finishes its request, then closes.
                    conn.as_mut().graceful_shutdown();
                }
                if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Ended::Closed(res));
                }
                // Polling the connection is what moves its phase, so any change is seen here, in
                // the same poll, and the deadline counts from it.
                let changes = phase.changes.load(Relaxed);
                if changes != seen {
                    seen = changes;
                    deadline = match phase.phase.load(Relaxed) {
                        HEAD => Some(Instant::now() + limits.header_read_timeout),
                        IDLE => Some(Instant::now() + limits.idle_timeout),
                        _ => None,
                    };
                    if let Some(at) = deadline {
                        timer.as_mut().reset(at);
                    }
                }
                if deadline.is_some() && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ended::TimedOut(phase.phase.load(Relaxed)));
                }
                Poll::Pending
            })
            .await
        };
        match ended {
            Ended::Closed(Ok(())) => {}
            // Peers that reset or send garbage are routine; nothing of theirs is logged.
            Ended::Closed(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
            // Returning drops the connection, which closes the socket without a response.
            Ended::TimedOut(HEAD) => header_timeouts.increment(1),
            Ended::TimedOut(_) => idle_timeouts.increment(1),
        }
        open.decrement(1.0);
        // Held until here: the connection counts against the limit, and against the drain,
        // until its socket is closed.
        drop((live, permit));
    }
}

/// One request: shed when too many are in flight, otherwise routed. The in-flight slot is held
/// until the response head is ready (the handler's work); the connection stays busy until the
/// response body is done.
fn handle(
    shared: &Arc<Shared>,
    phase: &Arc<Phase>,
    req: hyper::Request<Incoming>,
) -> impl Future<Output = Result<Response<TrackedBody>, Infallible>> + use<> {
    phase.set(BUSY);
    let busy = Busy(Arc::clone(phase));
    // Taken before the future exists, so that dropping the future unpolled still gives it back.
    let slot = Slot::take(shared);
    async move {
        // Liveness and metrics are never shed: an orchestrator must not restart a replica for
        // being busy, and the overload must stay visible. Both are cheap; readiness is shed like
        // any request (a replica saturated for long fails its balancer checks and sheds there).
        if !slot.admitted && !matches!(req.uri().path(), "/healthz" | "/metrics") {
            slot.shared.shed.increment(1);
            return Ok(overloaded(busy));
        }
        let res = match slot.shared.app.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        drop(slot);
        Ok(res.map(|body| TrackedBody {
            body: Inner::App(body),
            busy: Some(busy),
        }))
    }
}

/// A place among the requests in flight, given back on drop (also when the client goes away
/// mid-request). One that was not admitted counted too, briefly, and is given back all the same.
struct Slot {
    shared: Arc<Shared>,
    admitted: bool,
}

impl Slot {
    fn take(shared: &Arc<Shared>) -> Self {
        let before = shared.in_flight.fetch_add(1, Relaxed);
        Self {
            admitted: before < shared.limits.max_in_flight,
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Marks the connection idle again when the response is done (or abandoned).
struct Busy(Arc<Phase>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(IDLE);
    }
}

/// The shed response's body, rendered once.
static OVERLOADED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    serde_json::to_vec(
        &ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Server overloaded",
        )
        .with_detail("too many requests in flight; retry after the Retry-After delay")
        .problem(),
    )
    .unwrap_or_default()
});

fn overloaded(busy: Busy) -> Response<TrackedBody> {
    let mut res = Response::new(TrackedBody {
        body: Inner::Static(Some(Bytes::from_static(OVERLOADED.as_slice()))),
        busy: Some(busy),
    });
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::error::PROBLEM_JSON),
    );
    // One second: long enough for in-flight requests (sub-millisecond to a few milliseconds
    // each) to drain, short enough not to idle a client that retries elsewhere.
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// A response body that keeps its connection marked busy until it has been sent.
pub struct TrackedBody {
    body: Inner,
    busy: Option<Busy>,
}

enum Inner {
    App(axum::body::Body),
    Static(Option<Bytes>),
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.body {
            Inner::App(body) => Pin::new(body).poll_frame(cx),
            Inner::Static(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Inner::App(body) => body.is_end_stream(),
            Inner::Static(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Inner::App(body) => body.size_hint(),
            Inner::Static(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The connection's socket, noting the first byte of a request that arrives on an idle
/// connection (the start of its header timeout).
struct WatchedIo {
    tcp: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before && self.phase.phase.load(Relaxed) == IDLE {
            self.phase.set(HEAD);
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused_naming_the_variable() {
        for (limits, name) in [
            (
                Limits {
                    header_read_timeout: Duration::ZERO,
                    ..Limits::default()
                },
                "HTTP_HEADER_READ_TIMEOUT_MS",
            ),
            (
                Limits {
                    idle_timeout: Duration::ZERO,
                    ..Limits::default()
                },
                "HTTP_IDLE_TIMEOUT_SECS",
            ),
            (
                Limits {
                    max_connections: 0,
                    ..Limits::default()
                },
                "HTTP_MAX_CONNECTIONS",
            ),
            (
                Limits {
                    max_in_flight: 0,
                    ..Limits::default()
                },
                "HTTP_MAX_IN_FLIGHT",
            ),
        ] {
            let err = limits.validate().expect_err(name);
            assert_eq!(err.name, name);
        }
        assert!(Limits::default().validate().is_ok());
    }

    #[test]
    fn the_shed_body_is_a_problem_document() {
        let doc: serde_json::Value =
            serde_json::from_slice(&OVERLOADED).expect("problem+json body");
        assert_eq!(doc["status"], 503);
        assert_eq!(doc["type"], "https://meridian.dev/problems/overloaded");
    }
}
