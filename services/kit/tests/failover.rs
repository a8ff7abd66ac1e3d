//! What a database restart (an Aurora failover, locally: the throwaway server stopped and started)
//! costs the pool's callers: nothing once the server accepts connections again.
//!
//! Every pooled connection dies with the server. Without a check on checkout, each dead connection
//! fails the request that draws it, so a quiet replica would fail up to `max_connections`
//! requests after every failover; `kit::db::pool_with` pings on checkout instead.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::{Duration, Instant};

use kit::db::PoolSettings;
use kit::pg::PgServer;
use sqlx::PgPool;

const CONNECTIONS: u32 = 8;

fn settings() -> PoolSettings {
    PoolSettings {
        max_connections: CONNECTIONS,
        acquire_timeout: Duration::from_secs(5),
        ..PoolSettings::default()
    }
}

async fn one_request(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

/// Opens every connection the pool may hold, so each of them goes through the restart.
async fn fill(pool: &PgPool) {
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(pool.acquire().await.expect("connect"));
    }
    drop(held);
    // Connections go back to the pool on a spawned task: wait until all are idle.
    while pool.num_idle() < CONNECTIONS as usize {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(pool.size(), CONNECTIONS, "every connection open");
}

/// Stops and starts the throwaway server (blocking `pg_ctl` calls, off the runtime's workers).
fn restart(server: &PgServer) {
    tokio::task::block_in_place(|| server.stop()).expect("stop PostgreSQL");
    // `pg_ctl start -w` returns once the server accepts connections.
    tokio::task::block_in_place(|| server.start()).expect("start PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_costs_no_request_once_the_server_accepts_connections_again() {
    let server = PgServer::ensure(None)
        .await
        .expect("throwaway PostgreSQL (install postgresql)");
    let pool = kit::db::pool(server.url(), "failover", &settings()).expect("pool");

    // 1. A quiet replica: every pooled connection sat idle through the restart. (A failover
    // takes seconds; the pool checks connections idle longer than CHECK_IDLE_AFTER.)
    fill(&pool).await;
    let idle_since = Instant::now();
    restart(&server);
    let window = kit::db::CHECK_IDLE_AFTER + Duration::from_millis(20);
    tokio::time::sleep(window.saturating_sub(idle_since.elapsed())).await;
    let mut failed = Vec::new();
    for round in 0..25 {
        let answers =
            futures_util::future::join_all((0..CONNECTIONS).map(|_| one_request(&pool))).await;
        failed.extend(
            answers
                .into_iter()
                .filter_map(Result::err)
                .map(|e| format!("round {round}: {e}")),
        );
    }
    assert!(
        failed.is_empty(),
        "requests failed after the restart: {failed:?}"
    );

    // 2. Under load: requests keep coming while the server is down. Those during the outage
    // fail (nothing can answer them); none that starts after the server is back may.
    fill(&pool).await;
    let done = Arc::new(AtomicBool::new(false));
    let back = Arc::new(OnceLock::<Instant>::new());
    let (ok_after, failed_after) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (pool, done, back) = (pool.clone(), done.clone(), back.clone());
            let (ok_after, failed_after) = (ok_after.clone(), failed_after.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answer = one_request(&pool).await;
                    if back.get().is_some_and(|at| started >= *at) {
                        match answer {
                            Ok(_) => ok_after.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed_after.fetch_add(1, Ordering::Relaxed),
                        };
                    } else if answer.is_err() {
                        // Down: do not spin on instant connect errors.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    restart(&server);
    back.set(Instant::now()).expect("set once");
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let (ok, failed) = (
        ok_after.load(Ordering::Relaxed),
        failed_after.load(Ordering::Relaxed),
    );
    assert!(ok > 100, "the load kept running after the restart: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed after the restart",
        ok + failed
    );
}

async fn backend(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("query")
}

/// `max_lifetime` replaces old connections, so each re-resolves the endpoint (the cluster DNS
/// name moves to the new writer on an Aurora failover).
#[tokio::test]
async fn connections_older_than_max_lifetime_are_replaced() {
    let db = kit::testing::TestDb::new().await;
    let pool = db.pool_with(
        "lifetime",
        &PoolSettings {
            max_connections: 1,
            max_lifetime: Duration::from_millis(300),
            ..PoolSettings::default()
        },
    );
    let mut conn = pool.acquire().await.expect("acquire");
    let first = backend(&mut conn).await;
    drop(conn);
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(
        backend(&mut conn).await,
        first,
        "a young connection is reused"
    );
    // Returned after its lifetime: closed on return, not reused.
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(conn);
    let mut conn = pool.acquire().await.expect("acquire");
    assert_ne!(
        backend(&mut conn).await,
        first,
        "an old connection is replaced"
    );
}
