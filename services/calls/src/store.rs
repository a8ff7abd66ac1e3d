//! SQL of the call-control service: configuration writes (admin API), the full configuration
//! read that builds a snapshot, and batched call-step inserts. None of it runs on a call's path.

use std::collections::HashMap;

use sqlx::{PgPool, Row};

use crate::domain::{
    engine::Routing,
    model::{PbxConfig, SubscriberConfig},
};

pub async fn config_version(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM calls.config_version")
        .fetch_one(pool)
        .await
}

/// Reads all configuration consistently (one repeatable-read transaction). Rows that no longer
/// parse (written by a newer release with a field this one does not know) are skipped and
/// counted, so one bad row cannot stop every other number from being served.
pub async fn load_routing(pool: &PgPool) -> Result<(Routing, usize), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM calls.config_version")
        .fetch_one(&mut *tx)
        .await?;
    let mut skipped = 0;
    let mut subscribers = HashMap::new();
    for row in sqlx::query("SELECT number, rules, fallback_target FROM calls.subscribers")
        .fetch_all(&mut *tx)
        .await?
    {
        let number: String = row.try_get("number")?;
        let rules: serde_json::Value = row.try_get("rules")?;
        match serde_json::from_value(rules) {
            Ok(rules) => {
                subscribers.insert(
                    number,
                    SubscriberConfig {
                        rules,
                        fallback_target: row.try_get("fallback_target")?,
                    },
                );
            }
            Err(e) => {
                tracing::error!(%number, error = %e, "subscriber rules do not parse; skipped");
                skipped += 1;
            }
        }
    }
    let mut pbxes = HashMap::new();
    for row in sqlx::query("SELECT number, flow, fallback_target FROM calls.pbx_flows")
        .fetch_all(&mut *tx)
        .await?
    {
        let number: String = row.try_get("number")?;
        let flow: serde_json::Value = row.try_get("flow")?;
        match serde_json::from_value(flow) {
            Ok(flow) => {
                pbxes.insert(
                    number,
                    PbxConfig {
                        flow,
                        fallback_target: row.try_get("fallback_target")?,
                    },
                );
            }
            Err(e) => {
                tracing::error!(%number, error = %e, "PBX flow does not parse; skipped");
                skipped += 1;
            }
        }
    }
    tx.commit().await?;
    Ok((
        Routing {
            version,
            subscribers,
            pbxes,
        },
        skipped,
    ))
}

/// Who makes a configuration change: recorded in `calls.config_audit` in the same transaction.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a>(pub &'a str);

/// One row of the configuration audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub kind: String,
    pub number: String,
    pub version_before: i64,
    pub version_after: i64,
}

/// Starts a configuration change: locks the version row (config writes serialize on it anyway,
/// through the bump trigger) and reads the version before the change.
async fn begin_change(
    pool: &PgPool,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, i64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let before: i64 = sqlx::query_scalar("SELECT version FROM calls.config_version FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    Ok((tx, before))
}

/// Records the change with the version the bump trigger produced, then commits.
async fn finish_change(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    actor: Actor<'_>,
    action: &str,
    kind: &str,
    number: &str,
    before: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO calls.config_audit \
             (actor, action, kind, number, version_before, version_after) \
         SELECT $1, $2, $3, $4, $5, version FROM calls.config_version",
    )
    .bind(actor.0)
    .bind(action)
    .bind(kind)
    .bind(number)
    .bind(before)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The audit log, optionally of one number, in id order after `after`.
pub async fn audit(
    pool: &PgPool,
    number: Option<&str>,
    after: Option<i64>,
    fetch: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, kind, number, version_before, version_after \
           FROM calls.config_audit \
          WHERE ($1::text IS NULL OR number = $1) AND ($2::bigint IS NULL OR id > $2) \
          ORDER BY id LIMIT $3",
    )
    .bind(number)
    .bind(after)
    .bind(fetch)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                kind: r.try_get("kind")?,
                number: r.try_get("number")?,
                version_before: r.try_get("version_before")?,
                version_after: r.try_get("version_after")?,
            })
        })
        .collect()
}

pub async fn put_subscriber(
    pool: &PgPool,
    actor: Actor<'_>,
    number: &str,
    cfg: &SubscriberConfig,
) -> Result<(), sqlx::Error> {
    let (mut tx, before) = begin_change(pool).await?;
    sqlx::query(
        "INSERT INTO calls.subscribers (number, rules, fallback_target) VALUES ($1, $2, $3) \
         ON CONFLICT (number) DO UPDATE SET rules = EXCLUDED.rules, \
             fallback_target = EXCLUDED.fallback_target, updated_at = now()",
    )
    .bind(number)
    .bind(sqlx::types::Json(&cfg.rules))
    .bind(&cfg.fallback_target)
    .execute(&mut *tx)
    .await?;
    finish_change(tx, actor, "put", "subscriber", number, before).await
}

pub async fn get_subscriber(
    pool: &PgPool,
    number: &str,
) -> Result<Option<SubscriberConfig>, sqlx::Error> {
    let row = sqlx::query("SELECT rules, fallback_target FROM calls.subscribers WHERE number = $1")
        .bind(number)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let rules: sqlx::types::Json<_> = r.try_get("rules")?;
        Ok(SubscriberConfig {
            rules: rules.0,
            fallback_target: r.try_get("fallback_target")?,
        })
    })
    .transpose()
}

pub async fn delete_subscriber(
    pool: &PgPool,
    actor: Actor<'_>,
    number: &str,
) -> Result<bool, sqlx::Error> {
    let (mut tx, before) = begin_change(pool).await?;
    let res = sqlx::query("DELETE FROM calls.subscribers WHERE number = $1")
        .bind(number)
        .execute(&mut *tx)
        .await?;
    finish_change(tx, actor, "delete", "subscriber", number, before).await?;
    Ok(res.rows_affected() > 0)
}

pub async fn put_pbx(
    pool: &PgPool,
    actor: Actor<'_>,
    number: &str,
    cfg: &PbxConfig,
) -> Result<(), sqlx::Error> {
    let (mut tx, before) = begin_change(pool).await?;
    sqlx::query(
        "INSERT INTO calls.pbx_flows (number, flow, fallback_target) VALUES ($1, $2, $3) \
         ON CONFLICT (number) DO UPDATE SET flow = EXCLUDED.flow, \
             fallback_target = EXCLUDED.fallback_target, updated_at = now()",
    )
    .bind(number)
    .bind(sqlx::types::Json(&cfg.flow))
    .bind(&cfg.fallback_target)
    .execute(&mut *tx)
    .await?;
    finish_change(tx, actor, "put", "pbx", number, before).await
}

pub async fn get_pbx(pool: &PgPool, number: &str) -> Result<Option<PbxConfig>, sqlx::Error> {
    let row = sqlx::query("SELECT flow, fallback_target FROM calls.pbx_flows WHERE number = $1")
        .bind(number)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let flow: sqlx::types::Json<_> = r.try_get("flow")?;
        Ok(PbxConfig {
            flow: flow.0,
            fallback_target: r.try_get("fallback_target")?,
        })
    })
    .transpose()
}

pub async fn delete_pbx(
    pool: &PgPool,
    actor: Actor<'_>,
    number: &str,
) -> Result<bool, sqlx::Error> {
    let (mut tx, before) = begin_change(pool).await?;
    let res = sqlx::query("DELETE FROM calls.pbx_flows WHERE number = $1")
        .bind(number)
        .execute(&mut *tx)
        .await?;
    finish_change(tx, actor, "delete", "pbx", number, before).await?;
    Ok(res.rows_affected() > 0)
}

/// One logged decision.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub call_id: String,
    pub request_id: String,
    pub number: String,
    pub event: &'static str,
    pub node: Option<String>,
    pub source: &'static str,
    /// The answer's actions as JSON text.
    pub actions: String,
    pub decided_at: chrono::DateTime<chrono::Utc>,
}

/// Writes a batch with `COPY ... FROM STDIN` (text format): PostgreSQL parses one stream instead
/// of planning an INSERT and unpacking eight arrays, which halves its share of a busy replica's
/// step logging.
pub async fn insert_steps(pool: &PgPool, steps: &[StepRecord]) -> Result<(), sqlx::Error> {
    use sqlx::postgres::PgPoolCopyExt;
    let mut buf = String::with_capacity(steps.len() * 320);
    for s in steps {
        copy_row(&mut buf, s);
    }
    let mut copy = pool
        .copy_in_raw(
            "COPY calls.call_steps (call_id, request_id, number, event, node, source, actions, decided_at) FROM STDIN",
        )
        .await?;
    if let Err(e) = copy.send(buf.as_bytes()).await {
        // Leave the connection usable (or let the pool discard it) before reporting.
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// One row of COPY's text format: tab-separated, `\N` for NULL, and backslash, tab, newline
/// and carriage return escaped (JSON text has backslashes of its own).
pub fn copy_row(buf: &mut String, s: &StepRecord) {
    fn field(buf: &mut String, v: &str) {
        for c in v.chars() {
            match c {
                '\\' => buf.push_str("\\\\"),
                '\t' => buf.push_str("\\t"),
                '\n' => buf.push_str("\\n"),
                '\r' => buf.push_str("\\r"),
                c => buf.push(c),
            }
        }
    }
    for v in [&s.call_id, &s.request_id, &s.number] {
        field(buf, v);
        buf.push('\t');
    }
    field(buf, s.event);
    buf.push('\t');
    match &s.node {
        Some(n) => field(buf, n),
        None => buf.push_str("\\N"),
    }
    buf.push('\t');
    field(buf, s.source);
    buf.push('\t');
    field(buf, &s.actions);
    buf.push('\t');
    buf.push_str(
        &s.decided_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    );
    buf.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_what_copy_text_format_reserves() {
        let step = StepRecord {
            call_id: "c\t1".into(),
            request_id: "r\\1".into(),
            number: "+4610".into(),
            event: "digits",
            node: None,
            source: "live",
            actions: r#"[{"type":"say","text":"a \"quote\"\nline"}]"#.into(),
            decided_at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
        };
        let mut buf = String::new();
        copy_row(&mut buf, &step);
        assert_eq!(
            buf,
            "c\\t1\tr\\\\1\t+4610\tdigits\t\\N\tlive\t[{\"type\":\"say\",\"text\":\"a \\\\\"quote\\\\\"\\\\nline\"}]\t2025-11-24T16:00:00.000000Z\n"
        );
    }
}
