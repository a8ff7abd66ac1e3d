//! The hot queries' plans at 1M visits (generated in SQL): GET /visits and GET /visits with a
//! visitor (the heaviest, 100k visits), first page and a deep page, use their indexes — no sequential scan, no sort of the
//! table — and read a bounded number of rows whatever the depth.

use chrono::{DateTime, Utc};
use kit::testing::TestDb;
use serde_json::Value;
use uuid::Uuid;

/// 1M visits over the last 30 days by 10,000 visitors, and their visitor rows.
pub async fn generate(pool: &sqlx::PgPool, visits: i64) {
    sqlx::query(
        "INSERT INTO attendance.visitors (id, first_visit_at, last_visit_at, visits)
         SELECT md5('visitor' || v)::uuid, now() - interval '30 days', now(), $1 / 10000
         FROM generate_series(1, 10000) v",
    )
    .bind(visits)
    .execute(pool)
    .await
    .expect("visitors");
    sqlx::query(
        "INSERT INTO attendance.visits (id, visited_at, visitor_id, page_path)
         SELECT md5('visit' || i)::uuid,
                now() - (i * (interval '30 days' / $1)),
                -- One visitor in ten visits is visitor1 (a heavy visitor: 100k visits at 1M).
                md5('visitor' || CASE WHEN i % 10 = 0 THEN 1 ELSE i % 10000 + 1 END)::uuid,
                '/page/' || (i % 50)
         FROM generate_series(1, $1) i",
    )
    .bind(visits)
    .execute(pool)
    .await
    .expect("visits");
    for t in ["visits", "visitors"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE attendance.{t}")))
            .execute(pool)
            .await
            .expect("analyze");
    }
}

fn nodes<'a>(plan: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(plan);
    if let Some(children) = plan["Plans"].as_array() {
        for c in children {
            nodes(c, out);
        }
    }
}

async fn plan(
    pool: &sqlx::PgPool,
    sql: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    visitor: Option<Uuid>,
) -> Value {
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
    let mut q = sqlx::query_scalar::<_, Value>(sqlx::AssertSqlSafe(explain))
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(None::<DateTime<Utc>>)
        .bind(101_i64);
    if let Some(v) = visitor {
        q = q.bind(v);
    }
    q.fetch_one(pool).await.expect("explain")[0]["Plan"].clone()
}

#[tokio::test]
async fn hot_visits_queries_use_their_indexes_at_1m_rows() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&attendance::SERVICE).await;
    generate(&pool, 1_000_000).await;
    // A cursor half-way down (page depth ~5,000) and the busiest visitor.
    let (t, id): (DateTime<Utc>, Uuid) = sqlx::query_as(
        "SELECT visited_at, id FROM attendance.visits ORDER BY visited_at DESC, id DESC OFFSET 500000 LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("middle");
    let visitor: Uuid = sqlx::query_scalar("SELECT md5('visitor1')::uuid")
        .fetch_one(&pool)
        .await
        .expect("v");
    let rare: Uuid = sqlx::query_scalar("SELECT md5('visitor2')::uuid")
        .fetch_one(&pool)
        .await
        .expect("v");
    for (name, sql, after, v) in [
        (
            "recent, first page",
            attendance::store::VISITS_RECENT_SQL,
            None,
            None,
        ),
        (
            "recent, deep page",
            attendance::store::VISITS_RECENT_SQL,
            Some((t, id)),
            None,
        ),
        (
            "visitor, first page",
            attendance::store::VISITS_BY_VISITOR_SQL,
            None,
            Some(visitor),
        ),
        (
            "visitor, deep page",
            attendance::store::VISITS_BY_VISITOR_SQL,
            Some((t, id)),
            Some(visitor),
        ),
        (
            "rare visitor",
            attendance::store::VISITS_BY_VISITOR_SQL,
            None,
            Some(rare),
        ),
    ] {
        let p = plan(&pool, sql, after, v).await;
        let mut all = Vec::new();
        nodes(&p, &mut all);
        let types: Vec<&str> = all.iter().filter_map(|n| n["Node Type"].as_str()).collect();
        assert!(!types.contains(&"Seq Scan"), "{name}: {p:#}");
        // The one sort allowed orders the joined page (101 rows); a sort of the table would
        // mean the index order was not used.
        for n in all.iter().filter(|n| n["Node Type"] == "Sort") {
            assert!(
                n["Actual Rows"].as_f64().unwrap_or(f64::MAX) <= 101.0,
                "{name}: {p:#}"
            );
        }
        let visits_scan = all
            .iter()
            .find(|n| n["Relation Name"] == "visits")
            .unwrap_or_else(|| panic!("{name}: no scan of visits: {p:#}"));
        let index = all
            .iter()
            .filter_map(|n| n["Index Name"].as_str())
            .find(|i| i.starts_with("visits"))
            .unwrap_or_default();
        // Without a visitor, the recent index; with one, either index is a range scan in
        // order (the planner takes visits_recent for a visitor with a tenth of all visits,
        // visits_visitor for a rare one), never the table.
        if v.is_none() {
            assert_eq!(index, "visits_recent", "{name}: {p:#}");
        } else {
            assert!(index.starts_with("visits_"), "{name}: {p:#}");
        }
        let removed = visits_scan["Rows Removed by Filter"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(
            removed <= 2000.0,
            "{name}: read {removed} rows to skip them: {p:#}"
        );
        // Bounded work: the page plus its look-ahead row, whatever the depth.
        assert!(
            visits_scan["Actual Rows"].as_f64().unwrap_or(f64::MAX) <= 101.0,
            "{name}: {p:#}"
        );
    }
}
