//! The SQL: one function per statement or transaction.
//!
//! Every attendance write runs in one transaction that first takes the site's advisory lock,
//! then changes the row and appends its outbox event (with `pg_notify`, delivered at commit).
//! The lock makes "no double sign-in" a plain read, and gives one site's outbox ids in commit
//! order (see the migration), which is what makes `Last-Event-ID` resumption exact.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::EventType;

/// The channel every replica LISTENs on; the payload is `<outbox id> <site id>`.
pub const CHANNEL: &str = "attendance_outbox";

/// One attendance: a child (entity) signed in at a site, and perhaps out again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, sqlx::FromRow)]
pub struct Attendance {
    pub id: Uuid,
    pub site_id: String,
    pub entity_id: String,
    /// Where the sign-in came from (`kiosk`, `app`, `staff`, ...).
    pub source: String,
    pub sign_in_time: DateTime<Utc>,
    pub sign_out_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One outbox row, as the stream sends it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    pub site_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

const ATTENDANCE_COLS: &str =
    "id, site_id, entity_id, source, sign_in_time, sign_out_time, created_at, updated_at";

pub async fn upsert_site(pool: &PgPool, id: &str, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attendance.sites (id, name) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name",
    )
    .bind(id)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn site_exists(conn: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM attendance.sites WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Opens a write transaction on `site`: its advisory lock held until commit.
async fn begin_site(
    pool: &PgPool,
    site: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('attendance:' || $1, 0))")
        .bind(site)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Appends the event for `a` and notifies the listeners (at commit).
async fn append(
    conn: &mut PgConnection,
    kind: EventType,
    a: &Attendance,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let payload = serde_json::to_value(a).unwrap_or_default();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO attendance.outbox (site_id, type, aggregate, payload, occurred_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&a.site_id)
    .bind(kind.as_str())
    .bind(a.id)
    .bind(payload)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{id} {}", a.site_id))
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

async fn get_for_update(
    conn: &mut PgConnection,
    site: &str,
    id: Uuid,
) -> Result<Option<Attendance>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTENDANCE_COLS} FROM attendance.attendances
         WHERE id = $1 AND site_id = $2 FOR UPDATE"
    )))
    .bind(id)
    .bind(site)
    .fetch_optional(conn)
    .await
}

pub struct NewSignIn<'a> {
    pub id: Uuid,
    pub site_id: &'a str,
    pub entity_id: &'a str,
    pub source: &'a str,
    pub at: DateTime<Utc>,
}

pub enum SignIn {
    Created(Attendance),
    /// The same id signed the same child in at the same site before (a retry).
    Replayed(Attendance),
    /// The id belongs to another attendance.
    IdTaken,
    SiteMissing,
    /// The child is signed in already (the open attendance's id).
    AlreadyIn(Uuid),
}

pub async fn sign_in(
    pool: &PgPool,
    n: &NewSignIn<'_>,
    now: DateTime<Utc>,
) -> Result<SignIn, sqlx::Error> {
    let mut tx = begin_site(pool, n.site_id).await?;
    if !site_exists(&mut tx, n.site_id).await? {
        return Ok(SignIn::SiteMissing);
    }
    let existing: Option<Attendance> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTENDANCE_COLS} FROM attendance.attendances WHERE id = $1"
    )))
    .bind(n.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(a) = existing {
        return Ok(if a.site_id == n.site_id && a.entity_id == n.entity_id {
            SignIn::Replayed(a)
        } else {
            SignIn::IdTaken
        });
    }
    let open: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM attendance.attendances
         WHERE site_id = $1 AND entity_id = $2 AND sign_out_time IS NULL",
    )
    .bind(n.site_id)
    .bind(n.entity_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(open) = open {
        return Ok(SignIn::AlreadyIn(open));
    }
    let a: Attendance = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO attendance.attendances
           (id, site_id, entity_id, source, sign_in_time, sign_out_time, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, NULL, $6, $6)
         RETURNING {ATTENDANCE_COLS}"
    )))
    .bind(n.id)
    .bind(n.site_id)
    .bind(n.entity_id)
    .bind(n.source)
    .bind(n.at)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    append(&mut tx, EventType::Created, &a, now).await?;
    tx.commit().await?;
    Ok(SignIn::Created(a))
}

pub enum SignOut {
    Done(Attendance),
    /// Signed out already, at this very time or with no time given (a retry).
    Replayed(Attendance),
    /// Signed out at another time already (a correction is a PATCH).
    AlreadyOut(Attendance),
    BeforeSignIn(Attendance),
    NotFound,
}

/// Signs the attendance out at `at`, or at `now` when the client gave no time. A sign-out
/// without a time of an attendance signed out already is the retry of a sign-out whose answer
/// was lost (its "now" has passed): it replays the stored row.
pub async fn sign_out(
    pool: &PgPool,
    site: &str,
    id: Uuid,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<SignOut, sqlx::Error> {
    let mut tx = begin_site(pool, site).await?;
    let Some(a) = get_for_update(&mut tx, site, id).await? else {
        return Ok(SignOut::NotFound);
    };
    let explicit = at;
    let at = at.unwrap_or(now);
    match a.sign_out_time {
        Some(_) if explicit.is_none() => return Ok(SignOut::Replayed(a)),
        Some(out) if out == at => return Ok(SignOut::Replayed(a)),
        Some(_) => return Ok(SignOut::AlreadyOut(a)),
        None if at < a.sign_in_time => return Ok(SignOut::BeforeSignIn(a)),
        None => {}
    }
    let a: Attendance = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE attendance.attendances SET sign_out_time = $2, updated_at = $3
         WHERE id = $1 RETURNING {ATTENDANCE_COLS}"
    )))
    .bind(id)
    .bind(at)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    append(&mut tx, EventType::Updated, &a, now).await?;
    tx.commit().await?;
    Ok(SignOut::Done(a))
}

pub enum Correct {
    Done(Attendance),
    Unchanged(Attendance),
    /// The corrected times would put the sign-out before the sign-in.
    OutOfOrder,
    NotFound,
}

pub async fn correct(
    pool: &PgPool,
    site: &str,
    id: Uuid,
    sign_in: Option<DateTime<Utc>>,
    sign_out: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Correct, sqlx::Error> {
    let mut tx = begin_site(pool, site).await?;
    let Some(a) = get_for_update(&mut tx, site, id).await? else {
        return Ok(Correct::NotFound);
    };
    let new_in = sign_in.unwrap_or(a.sign_in_time);
    let new_out = sign_out.or(a.sign_out_time);
    if new_out.is_some_and(|o| o < new_in) {
        return Ok(Correct::OutOfOrder);
    }
    if new_in == a.sign_in_time && new_out == a.sign_out_time {
        return Ok(Correct::Unchanged(a));
    }
    let a: Attendance = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE attendance.attendances SET sign_in_time = $2, sign_out_time = $3, updated_at = $4
         WHERE id = $1 RETURNING {ATTENDANCE_COLS}"
    )))
    .bind(id)
    .bind(new_in)
    .bind(new_out)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    append(&mut tx, EventType::Updated, &a, now).await?;
    tx.commit().await?;
    Ok(Correct::Done(a))
}

/// Deletes the attendance; whether it existed (a retried delete finds nothing and emits nothing).
pub async fn delete(
    pool: &PgPool,
    site: &str,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = begin_site(pool, site).await?;
    let gone: Option<Attendance> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM attendance.attendances WHERE id = $1 AND site_id = $2
         RETURNING {ATTENDANCE_COLS}"
    )))
    .bind(id)
    .bind(site)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(a) = gone else {
        return Ok(false);
    };
    append(&mut tx, EventType::Destroyed, &a, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// A site's attendances signed in within `[start, end)`, in sign-in order, after `after`.
pub async fn list_day(
    conn: &mut PgConnection,
    site: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    after: Option<&(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Attendance>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTENDANCE_COLS} FROM attendance.attendances
         WHERE site_id = $1 AND sign_in_time >= $2 AND sign_in_time < $3
           AND (sign_in_time, id) > (coalesce($4, '-infinity'::timestamptz),
                                     coalesce($5, '00000000-0000-0000-0000-000000000000'::uuid))
         ORDER BY sign_in_time, id LIMIT $6"
    )))
    .bind(site)
    .bind(start)
    .bind(end)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The day's attendances (at most `cap`) and the site's newest outbox id, read in one snapshot:
/// the stream's first event, after which events newer than that id follow.
pub async fn snapshot(
    pool: &PgPool,
    site: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    cap: i64,
) -> Result<(i64, Vec<Attendance>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let last = last_event_id(&mut tx, site).await?;
    let rows = list_day(&mut tx, site, start, end, None, cap).await?;
    tx.commit().await?;
    Ok((last, rows))
}

pub async fn last_event_id(conn: &mut PgConnection, site: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM attendance.outbox WHERE site_id = $1")
        .bind(site)
        .fetch_one(conn)
        .await
}

/// A site's events after `after`, oldest first, at most `limit`.
pub async fn events_after(
    pool: &PgPool,
    site: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, site_id, type, payload, occurred_at FROM attendance.outbox
         WHERE site_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(site)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn insert_ticket(
    pool: &PgPool,
    sha256: &[u8],
    site: &str,
    sub: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attendance.stream_tickets (ticket_sha256, site_id, sub, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256)
    .bind(site)
    .bind(sub)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// The site a live ticket opens, if it is one.
pub async fn ticket_site(
    pool: &PgPool,
    sha256: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT site_id FROM attendance.stream_tickets WHERE ticket_sha256 = $1 AND expires_at > $2",
    )
    .bind(sha256)
    .bind(now)
    .fetch_optional(pool)
    .await
}

// ---- visits ---------------------------------------------------------------------------------

/// One page visit, as ingested.
#[derive(Debug, Clone)]
pub struct NewVisit {
    pub id: Uuid,
    pub visited_at: DateTime<Utc>,
    pub visitor_id: Uuid,
    pub page_path: String,
}

/// Inserts the visits that are new (by id) and upserts their visitors, in one statement (one
/// transaction): a visit is never visible without its visitor. Returns how many were new.
/// Rows go in id order and visitors in visitor order, so two concurrent batches lock in the
/// same order and cannot deadlock each other.
pub async fn ingest(pool: &PgPool, visits: &[NewVisit]) -> Result<u64, sqlx::Error> {
    let mut sorted: Vec<&NewVisit> = visits.iter().collect();
    sorted.sort_by_key(|v| v.id);
    let ids: Vec<Uuid> = sorted.iter().map(|v| v.id).collect();
    let ats: Vec<DateTime<Utc>> = sorted.iter().map(|v| v.visited_at).collect();
    let visitors: Vec<Uuid> = sorted.iter().map(|v| v.visitor_id).collect();
    let paths: Vec<&str> = sorted.iter().map(|v| v.page_path.as_str()).collect();
    let inserted: i64 = sqlx::query_scalar(
        "WITH input AS (
             SELECT DISTINCT ON (id) * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[])
                 AS t(id, visited_at, visitor_id, page_path)
             ORDER BY id
         ), ins AS (
             INSERT INTO attendance.visits (id, visited_at, visitor_id, page_path)
             SELECT id, visited_at, visitor_id, page_path FROM input ORDER BY id
             ON CONFLICT (id) DO NOTHING
             RETURNING visitor_id, visited_at
         ), agg AS (
             SELECT visitor_id, min(visited_at) AS first, max(visited_at) AS last, count(*) AS n
             FROM ins GROUP BY visitor_id
         ), up AS (
             INSERT INTO attendance.visitors AS r (id, first_visit_at, last_visit_at, visits)
             SELECT visitor_id, first, last, n FROM agg ORDER BY visitor_id
             ON CONFLICT (id) DO UPDATE SET
                 first_visit_at = least(r.first_visit_at, excluded.first_visit_at),
                 last_visit_at = greatest(r.last_visit_at, excluded.last_visit_at),
                 visits = r.visits + excluded.visits
             RETURNING 1
         )
         SELECT coalesce((SELECT sum(n) FROM agg), 0)::bigint",
    )
    .bind(&ids)
    .bind(&ats)
    .bind(&visitors)
    .bind(&paths)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(inserted).unwrap_or(0))
}

/// A visit with its visitor (absent only if the visitor row was removed by retention).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VisitRow {
    pub id: Uuid,
    pub visited_at: DateTime<Utc>,
    pub visitor_id: Uuid,
    pub page_path: String,
    pub first_visit_at: Option<DateTime<Utc>>,
    pub last_visit_at: Option<DateTime<Utc>>,
    pub visits: Option<i64>,
}

/// The filters of GET /visits.
#[derive(Debug, Clone, Default)]
pub struct VisitFilter {
    pub visitor_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The hot query: newest first, keyset on (visited_at, id) below the cursor (or below `to`),
/// down to `from`, at most `limit` rows, each joined to its visitor in the same statement (no
/// N+1) by a primary-key probe per row: the LATERAL ... LIMIT 1 is never flattened into a
/// join, so the planner cannot hash-join the whole visitors table for a page of 100. One
/// statement per shape so each uses its index as a range: visits_recent without a
/// visitor, visits_visitor with one.
pub const VISITS_RECENT_SQL: &str = "SELECT v.id, v.visited_at, v.visitor_id, v.page_path,
        r.first_visit_at, r.last_visit_at, r.visits
 FROM (SELECT id, visited_at, visitor_id, page_path FROM attendance.visits
       WHERE (visited_at, id) < (coalesce($1, 'infinity'::timestamptz),
                                 coalesce($2, '00000000-0000-0000-0000-000000000000'::uuid))
         AND visited_at >= coalesce($3, '-infinity'::timestamptz)
       ORDER BY visited_at DESC, id DESC LIMIT $4) v
 LEFT JOIN LATERAL (SELECT first_visit_at, last_visit_at, visits FROM attendance.visitors
                    WHERE id = v.visitor_id LIMIT 1) r ON true
 ORDER BY v.visited_at DESC, v.id DESC";

pub const VISITS_BY_VISITOR_SQL: &str = "SELECT v.id, v.visited_at, v.visitor_id, v.page_path,
        r.first_visit_at, r.last_visit_at, r.visits
 FROM (SELECT id, visited_at, visitor_id, page_path FROM attendance.visits
       WHERE visitor_id = $5
         AND (visited_at, id) < (coalesce($1, 'infinity'::timestamptz),
                                 coalesce($2, '00000000-0000-0000-0000-000000000000'::uuid))
         AND visited_at >= coalesce($3, '-infinity'::timestamptz)
       ORDER BY visited_at DESC, id DESC LIMIT $4) v
 LEFT JOIN LATERAL (SELECT first_visit_at, last_visit_at, visits FROM attendance.visitors
                    WHERE id = v.visitor_id LIMIT 1) r ON true
 ORDER BY v.visited_at DESC, v.id DESC";

pub async fn visits(
    pool: &PgPool,
    f: &VisitFilter,
    after: Option<&(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<VisitRow>, sqlx::Error> {
    // The cursor is below `to` (it came from a page of the same query), or there is none and
    // `to` is the upper bound with the smallest id, i.e. strictly before `to`.
    let (upper_t, upper_id) = match after {
        Some((t, id)) => (Some(*t), Some(*id)),
        None => (f.to, None),
    };
    let q = if f.visitor_id.is_some() {
        VISITS_BY_VISITOR_SQL
    } else {
        VISITS_RECENT_SQL
    };
    let mut q = sqlx::query_as(q)
        .bind(upper_t)
        .bind(upper_id)
        .bind(f.from)
        .bind(limit);
    if let Some(v) = f.visitor_id {
        q = q.bind(v);
    }
    q.fetch_all(pool).await
}

/// A visitor and their totals.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Visitor {
    pub id: Uuid,
    pub first_visit_at: DateTime<Utc>,
    pub last_visit_at: DateTime<Utc>,
    pub visits: i64,
}

pub async fn visitor(pool: &PgPool, id: Uuid) -> Result<Option<Visitor>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, first_visit_at, last_visit_at, visits FROM attendance.visitors WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Deletes up to `batch` visits older than `cutoff` (oldest first, through visits_recent);
/// how many went. The sweeper repeats it until a batch comes back short.
pub async fn sweep_visits(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM attendance.visits WHERE id IN (
             SELECT id FROM attendance.visits WHERE visited_at < $1
             ORDER BY visited_at LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` feed events that occurred before `cutoff`, oldest first (index
/// `outbox_occurred_at`), and moves the horizon past them; how many went.
pub async fn sweep_outbox(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    // The horizon moves in the same statement as the delete, so a resume never sees the rows
    // gone without the mark.
    let n: i64 = sqlx::query_scalar(
        "WITH d AS (
             DELETE FROM attendance.outbox WHERE id IN (
                 SELECT id FROM attendance.outbox WHERE occurred_at < $1
                 ORDER BY occurred_at LIMIT $2)
             RETURNING id),
         u AS (
             UPDATE attendance.outbox_horizon
             SET swept_through = greatest(swept_through, coalesce((SELECT max(id) FROM d), 0)))
         SELECT count(*) FROM d",
    )
    .bind(cutoff)
    .bind(batch)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The highest outbox id the sweeper has deleted (0 before any): a resume after an older id
/// may have lost events.
pub async fn swept_through(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT swept_through FROM attendance.outbox_horizon")
        .fetch_one(pool)
        .await
}

/// Visitors not seen since `cutoff` (none of their visits is retained any more), and expired
/// stream tickets, in one bounded batch each.
pub async fn sweep_rest(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let visitors = sqlx::query(
        "DELETE FROM attendance.visitors WHERE id IN (
             SELECT id FROM attendance.visitors WHERE last_visit_at < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    let tickets = sqlx::query(
        "DELETE FROM attendance.stream_tickets WHERE ticket_sha256 IN (
             SELECT ticket_sha256 FROM attendance.stream_tickets WHERE expires_at < $1 LIMIT $2)",
    )
    .bind(now)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(visitors.rows_affected() + tickets.rows_affected())
}
