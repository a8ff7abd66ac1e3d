//! Graceful shutdown: on SIGTERM or SIGINT stop accepting, mark the process not-ready, let
//! in-flight requests finish for at most a grace period, then return so pools close cleanly.

use std::{future::Future, time::Duration};

use axum::Router;
use tokio::net::TcpListener;

use crate::health::Health;

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

/// Serves `app` until `shutdown` resolves, then drains for at most `grace`.
/// Returns `true` when every in-flight request finished within the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        health.set_draining();
        let _ = tx.send(true);
    });
    let mut drain_rx = rx.clone();
    let server =
        axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        });
    let server = std::pin::pin!(server.into_future());
    let deadline = async move {
        let _ = drain_rx.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        res = server => res.map(|()| true),
        () = deadline => {
            tracing::warn!(?grace, "grace period over; abandoning in-flight requests");
            Ok(false)
        }
    }
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
