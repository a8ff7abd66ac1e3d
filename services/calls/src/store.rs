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

pub async fn put_subscriber(
    pool: &PgPool,
    number: &str,
    cfg: &SubscriberConfig,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO calls.subscribers (number, rules, fallback_target) VALUES ($1, $2, $3) \
         ON CONFLICT (number) DO UPDATE SET rules = EXCLUDED.rules, \
             fallback_target = EXCLUDED.fallback_target, updated_at = now()",
    )
    .bind(number)
    .bind(sqlx::types::Json(&cfg.rules))
    .bind(&cfg.fallback_target)
    .execute(pool)
    .await?;
    Ok(())
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

pub async fn delete_subscriber(pool: &PgPool, number: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("DELETE FROM calls.subscribers WHERE number = $1")
        .bind(number)
        .execute(pool)
        .await?;
    Ok(res.rows_affected() > 0)
}

pub async fn put_pbx(pool: &PgPool, number: &str, cfg: &PbxConfig) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO calls.pbx_flows (number, flow, fallback_target) VALUES ($1, $2, $3) \
         ON CONFLICT (number) DO UPDATE SET flow = EXCLUDED.flow, \
             fallback_target = EXCLUDED.fallback_target, updated_at = now()",
    )
    .bind(number)
    .bind(sqlx::types::Json(&cfg.flow))
    .bind(&cfg.fallback_target)
    .execute(pool)
    .await?;
    Ok(())
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

pub async fn delete_pbx(pool: &PgPool, number: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("DELETE FROM calls.pbx_flows WHERE number = $1")
        .bind(number)
        .execute(pool)
        .await?;
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

/// Inserts a batch in one statement (arrays unnested server-side).
pub async fn insert_steps(pool: &PgPool, steps: &[StepRecord]) -> Result<(), sqlx::Error> {
    let col = |f: fn(&StepRecord) -> String| steps.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO calls.call_steps (call_id, request_id, number, event, node, source, actions, decided_at) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]::jsonb[], $8::timestamptz[])",
    )
    .bind(col(|s| s.call_id.clone()))
    .bind(col(|s| s.request_id.clone()))
    .bind(col(|s| s.number.clone()))
    .bind(steps.iter().map(|s| s.event).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.node.clone()).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.source).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.actions.clone()).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.decided_at).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}
