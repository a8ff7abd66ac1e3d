//! SQL of the stream guard. Every statement is schema-qualified; the pool's `search_path` is
//! `streams` as well.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::domain::{AdmitRow, Session};

pub struct StartRequest<'a> {
    pub session_id: Uuid,
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub content_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub default_limit: i32,
    pub lease_ttl_ms: i64,
}

/// Runs the admission decision (one round trip; see the migration for the locking argument).
pub async fn admit(pool: &PgPool, req: &StartRequest<'_>) -> Result<Vec<AdmitRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT outcome, max_streams, session_id, device_id, content_id, started_at, expires_at \
         FROM streams.admit_v2($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(req.session_id)
    .bind(req.user_id)
    .bind(req.device_id)
    .bind(req.content_id)
    .bind(req.idempotency_key)
    .bind(req.default_limit)
    .bind(req.lease_ttl_ms)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(AdmitRow {
                outcome: r.try_get("outcome")?,
                max_streams: r.try_get("max_streams")?,
                session: Session {
                    session_id: r.try_get("session_id")?,
                    user_id: req.user_id.to_owned(),
                    device_id: r.try_get("device_id")?,
                    content_id: r.try_get("content_id")?,
                    started_at: r.try_get("started_at")?,
                    expires_at: r.try_get("expires_at")?,
                },
            })
        })
        .collect()
}

fn session_from_row(r: &sqlx::postgres::PgRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        session_id: r.try_get("session_id")?,
        user_id: r.try_get("user_id")?,
        device_id: r.try_get("device_id")?,
        content_id: r.try_get("content_id")?,
        started_at: r.try_get("started_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

const SESSION_COLUMNS: &str = "session_id, user_id, device_id, content_id, started_at, expires_at";

/// Result of a heartbeat.
pub enum Heartbeat {
    Extended(Session),
    /// The lease had already run out; the row is deleted and the slot is free.
    Expired,
    NotFound,
}

/// Extends a live lease under the user's admission lock (`streams.heartbeat_v1`). An expired
/// lease is deleted instead, so the client learns it must start again (and re-check the limit)
/// rather than silently resurrect a slot.
pub async fn heartbeat(pool: &PgPool, id: Uuid, ttl_ms: i64) -> Result<Heartbeat, sqlx::Error> {
    let row = sqlx::query(
        "SELECT outcome, session_id, user_id, device_id, content_id, started_at, expires_at \
           FROM streams.heartbeat_v1($1, $2)",
    )
    .bind(id)
    .bind(ttl_ms)
    .fetch_one(pool)
    .await?;
    let outcome: String = row.try_get("outcome")?;
    Ok(match outcome.as_str() {
        "extended" => Heartbeat::Extended(session_from_row(&row)?),
        "expired" => Heartbeat::Expired,
        _ => Heartbeat::NotFound,
    })
}

/// Stops a session. Returns whether a row was deleted (callers answer 204 either way).
pub async fn stop(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("DELETE FROM streams.sessions WHERE session_id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(res.rows_affected() > 0)
}

/// A live session by id.
/// Whose session `id` is (expired or not); `None` when no such row exists.
pub async fn owner(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM streams.sessions WHERE session_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM streams.sessions \
          WHERE session_id = $1 AND expires_at > clock_timestamp()"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(session_from_row).transpose()
}

/// Live sessions of a user in (started_at, session_id) order, after a keyset cursor.
pub async fn list_live(
    pool: &PgPool,
    user_id: &str,
    after: Option<&(DateTime<Utc>, Uuid)>,
    fetch: i64,
) -> Result<Vec<Session>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM streams.sessions \
          WHERE user_id = $1 AND expires_at > clock_timestamp() \
            AND ($2::timestamptz IS NULL OR (started_at, session_id) > ($2, $3)) \
          ORDER BY started_at, session_id LIMIT $4"
    )))
    .bind(user_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(fetch)
    .fetch_all(pool)
    .await?;
    rows.iter().map(session_from_row).collect()
}

/// The user's override, if any.
pub async fn limit_override(pool: &PgPool, user_id: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT max_streams FROM streams.user_limits WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

pub async fn set_limit(pool: &PgPool, user_id: &str, max_streams: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO streams.user_limits (user_id, max_streams) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET max_streams = EXCLUDED.max_streams, updated_at = now()",
    )
    .bind(user_id)
    .bind(max_streams)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn clear_limit(pool: &PgPool, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM streams.user_limits WHERE user_id = $1")
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes up to `batch` expired leases. `SKIP LOCKED` lets several replicas sweep at once
/// without waiting on each other.
pub async fn sweep_batch(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "DELETE FROM streams.sessions WHERE session_id IN ( \
           SELECT session_id FROM streams.sessions \
            WHERE expires_at <= clock_timestamp() \
            ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(res.rows_affected())
}

/// Seconds since the oldest expired-but-not-deleted lease expired (0 when none): sweeper lag.
pub async fn sweeper_lag_seconds(pool: &PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(expires_at))::float8, 0) \
           FROM streams.sessions WHERE expires_at <= clock_timestamp()",
    )
    .fetch_one(pool)
    .await
}

/// Live sessions across all users (for the sampled gauge).
pub async fn count_live(conn: &mut sqlx::PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM streams.sessions WHERE expires_at > clock_timestamp()")
        .fetch_one(conn)
        .await
}
