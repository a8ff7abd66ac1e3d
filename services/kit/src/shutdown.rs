//! Graceful shutdown: on SIGTERM or SIGINT stop accepting, mark the process not-ready, let
//! in-flight requests finish for at most a grace period, then return so pools close cleanly.

use std::{future::Future, time::Duration};

use axum::Router;
use tokio::net::TcpListener;

use crate::{health::Health, server::Limits};

/// Resolves on SIGTERM (Kubernetes, ECS) or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Serves `app` until `shutdown` resolves, then drains for at most `grace`, with the default
/// [`Limits`]. Returns `true` when every in-flight request finished within the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    serve_with(listener, app, health, shutdown, grace, Limits::default()).await
}

/// [`serve`] within `limits` (connection timeouts and limits, load shedding; see
/// [`crate::server`]): what binaries call, with [`CommonConfig::http_limits`].
///
/// [`CommonConfig::http_limits`]: crate::config::CommonConfig::http_limits
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: Limits,
) -> std::io::Result<bool> {
    let shutdown = async move {
        shutdown.await;
        // Not ready before anything stops: load balancers stop sending while the drain runs.
        health.set_draining();
    };
    crate::server::serve(listener, app, limits, shutdown, grace).await
}

/// Disables Nagle's algorithm on accepted connections: responses are small and latency-bound,
/// and a response split across writes must not wait for the peer's delayed ACK.
pub fn nodelay(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    })
}
