//! The SQL: one function per statement or transaction.
//!
//! A command runs in one transaction ([`begin_user`]) that takes the user's advisory lock,
//! reads the read model, appends its event ([`append`]), projects it ([`apply`]) and records
//! the answer for its Idempotency-Key ([`remember`]). The lock serialises one user's commands:
//! the version check, the default flag and the cohort counters are plain reads under it, and
//! one user's event ids are assigned in commit order. The one write outside it is an anonymous
//! open of a share link (`share_opened`: single-statement counter updates, no row read for
//! update), which commutes with every other event, so its place in the log does not matter.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{self, Event, Item, Playlist, Stored, cohort};

/// One lesson of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, sqlx::FromRow)]
pub struct Lesson {
    pub id: String,
    pub title: String,
    pub instrument: String,
    pub genre: String,
    /// 1 (beginner) ..= 5.
    pub difficulty: i32,
    pub duration_secs: i32,
}

pub async fn upsert_lessons(pool: &PgPool, lessons: &[Lesson]) -> Result<(), sqlx::Error> {
    let col = |f: fn(&Lesson) -> String| lessons.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO playlists.lessons (id, title, instrument, genre, difficulty, duration_secs)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[])
         ON CONFLICT (id) DO UPDATE SET title = excluded.title, instrument = excluded.instrument,
           genre = excluded.genre, difficulty = excluded.difficulty,
           duration_secs = excluded.duration_secs",
    )
    .bind(col(|l| l.id.clone()))
    .bind(col(|l| l.title.clone()))
    .bind(col(|l| l.instrument.clone()))
    .bind(col(|l| l.genre.clone()))
    .bind(lessons.iter().map(|l| l.difficulty).collect::<Vec<_>>())
    .bind(lessons.iter().map(|l| l.duration_secs).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}

/// Catalogue filters of `GET /lessons`.
#[derive(Debug, Default)]
pub struct LessonFilter {
    pub instrument: Option<String>,
    pub genre: Option<String>,
}

pub async fn lessons(
    pool: &PgPool,
    f: &LessonFilter,
    after: Option<&String>,
    limit: i64,
) -> Result<Vec<Lesson>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, title, instrument, genre, difficulty, duration_secs FROM playlists.lessons
         WHERE ($1::text IS NULL OR instrument = $1) AND ($2::text IS NULL OR genre = $2)
           AND ($3::text IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
    )
    .bind(&f.instrument)
    .bind(&f.genre)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn lesson_exists(conn: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM playlists.lessons WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// The lessons with these ids, in the order given (unknown ids are left out).
pub async fn lessons_by_id(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<Vec<Lesson>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.id, l.title, l.instrument, l.genre, l.difficulty, l.duration_secs
         FROM UNNEST($1::text[]) WITH ORDINALITY AS x(id, n)
         JOIN playlists.lessons l ON l.id = x.id ORDER BY x.n",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

// ---- commands -------------------------------------------------------------------------------

/// The rebuild's advisory lock (the two-key form: a lock space of its own, never a user's
/// one-key lock): every writer of the log holds it shared ([`begin_writer`]), a rebuild holds
/// it exclusive, so a rebuild waits for the commands in flight and new ones wait for it,
/// instead of deadlocking on the tables each holds.
pub const REBUILD_KEY: (i32, i32) = (0x706c_6179, 1);

/// Opens a transaction that writes to the log: the rebuild lock held shared until commit.
pub async fn begin_writer(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1, $2)")
        .bind(REBUILD_KEY.0)
        .bind(REBUILD_KEY.1)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Opens a command's transaction: the rebuild lock (shared), then the user's advisory lock,
/// held until commit.
pub async fn begin_user(
    pool: &PgPool,
    user: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = begin_writer(pool).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('playlists:' || $1, 0))")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// A stored answer of an Idempotency-Key.
pub struct Remembered {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    pub body: serde_json::Value,
}

pub async fn remembered(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
) -> Result<Option<Remembered>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT fingerprint, status, body FROM playlists.idempotency
         WHERE user_id = $1 AND key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Remembered {
        fingerprint: r.get("fingerprint"),
        status: u16::try_from(r.get::<i32, _>("status")).unwrap_or(500),
        body: r.get("body"),
    }))
}

pub async fn remember(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
    r: &Remembered,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO playlists.idempotency (user_id, key, fingerprint, status, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user)
    .bind(key)
    .bind(&r.fingerprint)
    .bind(i32::from(r.status))
    .bind(&r.body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends `event` to the log.
pub async fn append(
    conn: &mut PgConnection,
    user: &str,
    now: DateTime<Utc>,
    event: Event,
) -> Result<Stored, sqlx::Error> {
    let payload = serde_json::to_value(&event).unwrap_or_default();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO playlists.events (user_id, aggregate, type, payload, occurred_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(user)
    .bind(event.aggregate())
    .bind(event.kind())
    .bind(payload)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(Stored {
        id,
        user_id: user.to_owned(),
        occurred_at: now,
        event,
    })
}

/// Appends and projects: what every command and the sample loader do.
pub async fn record(
    conn: &mut PgConnection,
    user: &str,
    now: DateTime<Utc>,
    event: Event,
) -> Result<Stored, sqlx::Error> {
    let stored = append(conn, user, now, event).await?;
    apply(conn, &stored).await?;
    Ok(stored)
}

/// The playlist read model of `id` (any user's), locked for the transaction.
pub async fn playlist(conn: &mut PgConnection, id: Uuid) -> Result<Option<Playlist>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, name, is_default, version, created_at, updated_at
         FROM playlists.playlists WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let items = sqlx::query(
        "SELECT lesson_id, added_at FROM playlists.playlist_items
         WHERE playlist_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|i| Item {
        lesson_id: i.get("lesson_id"),
        added_at: i.get("added_at"),
    })
    .collect();
    Ok(Some(Playlist {
        id: r.get("id"),
        user_id: r.get("user_id"),
        name: r.get("name"),
        is_default: r.get("is_default"),
        version: r.get("version"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        items,
    }))
}

/// The playlist read model of `id` (any user's) for a read: one plain statement, no row lock
/// (a read never waits for a command, nor a command for a read).
pub async fn playlist_unlocked(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Playlist>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT p.id, p.user_id, p.name, p.is_default, p.version, p.created_at, p.updated_at,
                coalesce(array_agg(i.lesson_id ORDER BY i.position)
                           FILTER (WHERE i.lesson_id IS NOT NULL), '{}') AS lessons,
                coalesce(array_agg(i.added_at ORDER BY i.position)
                           FILTER (WHERE i.lesson_id IS NOT NULL), '{}') AS added
         FROM playlists.playlists p
         LEFT JOIN playlists.playlist_items i ON i.playlist_id = p.id
         WHERE p.id = $1 GROUP BY p.id",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let lessons: Vec<String> = r.get("lessons");
    let added: Vec<DateTime<Utc>> = r.get("added");
    Ok(Some(Playlist {
        id: r.get("id"),
        user_id: r.get("user_id"),
        name: r.get("name"),
        is_default: r.get("is_default"),
        version: r.get("version"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        items: lessons
            .into_iter()
            .zip(added)
            .map(|(lesson_id, added_at)| Item {
                lesson_id,
                added_at,
            })
            .collect(),
    }))
}

/// The user's playlist ids, oldest first.
pub async fn playlist_ids(conn: &mut PgConnection, user: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM playlists.playlists WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(conn)
    .await
}

/// Writes a playlist's read model (row and items) as `p` says.
async fn save_playlist(conn: &mut PgConnection, p: &Playlist) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO playlists.playlists
           (id, user_id, name, is_default, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, is_default = excluded.is_default,
           version = excluded.version, updated_at = excluded.updated_at",
    )
    .bind(p.id)
    .bind(&p.user_id)
    .bind(&p.name)
    .bind(p.is_default)
    .bind(p.version)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM playlists.playlist_items WHERE playlist_id = $1")
        .bind(p.id)
        .execute(&mut *conn)
        .await?;
    if !p.items.is_empty() {
        let lessons: Vec<&str> = p.items.iter().map(|i| i.lesson_id.as_str()).collect();
        let added: Vec<DateTime<Utc>> = p.items.iter().map(|i| i.added_at).collect();
        sqlx::query(
            "INSERT INTO playlists.playlist_items (playlist_id, lesson_id, position, added_at)
             SELECT $1, l, (n - 1)::int, a
             FROM UNNEST($2::text[], $3::timestamptz[]) WITH ORDINALITY AS x(l, a, n)",
        )
        .bind(p.id)
        .bind(lessons)
        .bind(added)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Projects one stored event into every read model (the live path; [`crate::rebuild`] is the
/// batch path over the whole log).
pub async fn apply(conn: &mut PgConnection, s: &Stored) -> Result<(), sqlx::Error> {
    let at = s.occurred_at;
    match &s.event {
        Event::PlaylistCreated { .. }
        | Event::PlaylistRenamed { .. }
        | Event::LessonAdded { .. }
        | Event::LessonMoved { .. }
        | Event::LessonRemoved { .. }
        | Event::PlaylistDeleted { .. } => {
            let id = s.event.aggregate();
            let before = playlist(conn, id).await?;
            if let Event::PlaylistCreated { default: true, .. } = s.event {
                // The old default's representation changes: its version (ETag) moves too, as
                // in domain::set_default (the rebuild's path).
                sqlx::query(
                    "UPDATE playlists.playlists
                     SET is_default = false, version = version + 1, updated_at = $2
                     WHERE user_id = $1 AND is_default",
                )
                .bind(&s.user_id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            match domain::apply(before, &s.user_id, at, &s.event) {
                Some(p) => save_playlist(conn, &p).await?,
                None => {
                    sqlx::query("DELETE FROM playlists.playlists WHERE id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            if let Event::PlaylistDeleted {
                next_default: Some(next),
                ..
            } = s.event
            {
                sqlx::query(
                    "UPDATE playlists.playlists
                     SET is_default = true, version = version + 1, updated_at = $2
                     WHERE id = $1 AND NOT is_default",
                )
                .bind(next)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            if let Event::LessonRemoved {
                lesson_id, reason, ..
            } = &s.event
            {
                sqlx::query(
                    "INSERT INTO playlists.removal_counts (day, lesson_id, reason, n)
                     VALUES ($1, $2, $3, 1)
                     ON CONFLICT (day, lesson_id, reason) DO UPDATE SET n = removal_counts.n + 1",
                )
                .bind(domain::day(at))
                .bind(lesson_id)
                .bind(reason.as_str())
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO playlists.removal_counts_month (month, lesson_id, reason, n)
                     VALUES ($1, $2, $3, 1)
                     ON CONFLICT (month, lesson_id, reason)
                     DO UPDATE SET n = removal_counts_month.n + 1",
                )
                .bind(domain::month_start(domain::day(at)))
                .bind(lesson_id)
                .bind(reason.as_str())
                .execute(&mut *conn)
                .await?;
            }
        }
        Event::ShareCreated {
            playlist_id,
            share_id,
            token_sha256,
            channel,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO playlists.shares
                   (id, playlist_id, user_id, token_sha256, channel, created_at, expires_at)
                 VALUES ($1, $2, $3, decode($4, 'hex'), $5, $6, $7)",
            )
            .bind(share_id)
            .bind(playlist_id)
            .bind(&s.user_id)
            .bind(token_sha256)
            .bind(channel.as_str())
            .bind(at)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
            share_count(conn, domain::day(at), channel.as_str(), 1, 0).await?;
        }
        Event::ShareRevoked { share_id, .. } => {
            sqlx::query(
                "UPDATE playlists.shares SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(share_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Event::ShareOpened {
            share_id, channel, ..
        } => {
            sqlx::query("UPDATE playlists.shares SET opens = opens + 1 WHERE id = $1")
                .bind(share_id)
                .execute(&mut *conn)
                .await?;
            share_count(conn, domain::day(at), channel.as_str(), 0, 1).await?;
        }
        Event::PracticeRecorded {
            session_id,
            lesson_id,
            accuracy,
            duration_secs,
            at: played,
        } => {
            sqlx::query(
                "INSERT INTO playlists.practice_sessions
                   (id, user_id, lesson_id, accuracy, duration_secs, at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(session_id)
            .bind(&s.user_id)
            .bind(lesson_id)
            .bind(accuracy)
            .bind(i32::try_from(*duration_secs).unwrap_or(i32::MAX))
            .bind(played)
            .execute(&mut *conn)
            .await?;
        }
    }
    project_cohort(conn, s).await
}

async fn share_count(
    conn: &mut PgConnection,
    day: NaiveDate,
    channel: &str,
    shares: i64,
    opens: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO playlists.share_counts (day, channel, shares, opens) VALUES ($1, $2, $3, $4)
         ON CONFLICT (day, channel) DO UPDATE
         SET shares = share_counts.shares + $3, opens = share_counts.opens + $4",
    )
    .bind(day)
    .bind(channel)
    .bind(shares)
    .bind(opens)
    .execute(conn)
    .await?;
    Ok(())
}

async fn project_cohort(conn: &mut PgConnection, s: &Stored) -> Result<(), sqlx::Error> {
    let activity = s.event.activity();
    if activity == domain::Activity::None {
        return Ok(());
    }
    let state = sqlx::query(
        "SELECT cohort_week, engaged, retained FROM playlists.user_cohorts WHERE user_id = $1",
    )
    .bind(&s.user_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| cohort::UserCohort {
        cohort_week: r.get("cohort_week"),
        engaged: r.get("engaged"),
        retained: r.get("retained"),
    });
    let (next, deltas) = cohort::step(state, domain::week(s.occurred_at), activity);
    if deltas.is_empty() {
        return Ok(());
    }
    if let Some(n) = next {
        sqlx::query(
            "INSERT INTO playlists.user_cohorts (user_id, cohort_week, engaged, retained)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET engaged = excluded.engaged,
               retained = excluded.retained",
        )
        .bind(&s.user_id)
        .bind(n.cohort_week)
        .bind(n.engaged)
        .bind(n.retained)
        .execute(&mut *conn)
        .await?;
    }
    for d in deltas {
        sqlx::query(
            "INSERT INTO playlists.cohort_counts (cohort_week, engaged, users, retained)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (cohort_week, engaged) DO UPDATE
             SET users = cohort_counts.users + $3, retained = cohort_counts.retained + $4",
        )
        .bind(d.cohort_week)
        .bind(d.engaged)
        .bind(d.users)
        .bind(d.retained)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

// ---- reads ----------------------------------------------------------------------------------

/// One playlist in a user's list.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, sqlx::FromRow)]
pub struct PlaylistSummary {
    pub id: Uuid,
    pub name: String,
    pub is_default: bool,
    pub version: i64,
    pub lessons: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn list_playlists(
    pool: &PgPool,
    user: &str,
    after: Option<&(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<PlaylistSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.is_default, p.version, p.created_at, p.updated_at,
                (SELECT count(*) FROM playlists.playlist_items i WHERE i.playlist_id = p.id) AS lessons
         FROM playlists.playlists p
         WHERE p.user_id = $1 AND ($2::timestamptz IS NULL OR (p.created_at, p.id) > ($2, $3))
         ORDER BY p.created_at, p.id LIMIT $4",
    )
    .bind(user)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A recorded practice session.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub lesson_id: String,
    pub accuracy: f32,
    pub duration_secs: i32,
    pub at: DateTime<Utc>,
}

pub async fn sessions(
    pool: &PgPool,
    user: &str,
    after: Option<&(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Session>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, lesson_id, accuracy, duration_secs, at FROM playlists.practice_sessions
         WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
         ORDER BY at DESC, id DESC LIMIT $4",
    )
    .bind(user)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// What the rotation rule reads, bounded by the playlist's size, not the user's history: per
/// lesson the newest `per_lesson` sessions and a count of those since `day_start` (counted
/// here, not loaded), plus the user's newest session on any lesson (the one just played);
/// nothing after `now`. Newest first by (at, id), the order the rule ranks in.
pub async fn rotation_history(
    conn: &mut PgConnection,
    user: &str,
    lessons: &[String],
    per_lesson: i64,
    day_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Vec<domain::rotation::Session>, HashMap<String, usize>), sqlx::Error> {
    // One probe of practice_sessions_user_lesson per lesson (LATERAL ... LIMIT), not a window
    // over every session of the user, and one of practice_sessions_user for the newest session
    // (NOT lesson_id = ANY(...) there would walk the whole history of a user who only plays
    // this playlist's lessons): it is dropped below when a lesson's probe loaded it already.
    let rows = sqlx::query(
        "SELECT l.lesson_id, s.id, s.accuracy, s.at, t.today
         FROM unnest($2::text[]) AS l(lesson_id)
         CROSS JOIN LATERAL (
            SELECT count(*) AS today FROM playlists.practice_sessions
            WHERE user_id = $1 AND lesson_id = l.lesson_id AND at >= $4 AND at <= $5) t
         LEFT JOIN LATERAL (
            SELECT id, accuracy, at FROM playlists.practice_sessions
            WHERE user_id = $1 AND lesson_id = l.lesson_id AND at <= $5
            ORDER BY at DESC, id DESC LIMIT $3) s ON true
         UNION ALL
         (SELECT lesson_id, id, accuracy, at, NULL FROM playlists.practice_sessions
          WHERE user_id = $1 AND at <= $5
          ORDER BY at DESC, id DESC LIMIT 1)
         ORDER BY at DESC NULLS LAST, id DESC NULLS LAST",
    )
    .bind(user)
    .bind(lessons)
    .bind(per_lesson)
    .bind(day_start)
    .bind(now)
    .fetch_all(conn)
    .await?;
    let mut today = HashMap::new();
    let mut sessions: Vec<domain::rotation::Session> = Vec::with_capacity(rows.len());
    for r in rows {
        let lesson_id: String = r.get("lesson_id");
        // NULL on the newest-session row: its lesson's count, if it is a playlist lesson,
        // comes from that lesson's own row.
        let n: Option<i64> = r.get("today");
        if let Some(n) = n.filter(|n| *n > 0) {
            today.insert(lesson_id.clone(), usize::try_from(n).unwrap_or(usize::MAX));
        }
        let id: Option<Uuid> = r.get("id");
        // Sorted by (at, id): the newest session, when a lesson's probe loaded it too, comes
        // right next to its twin.
        if let Some(id) = id
            && sessions.last().is_none_or(|s| s.id != id)
        {
            sessions.push(domain::rotation::Session {
                id,
                lesson_id,
                accuracy: r.get("accuracy"),
                at: r.get("at"),
            });
        }
    }
    Ok((sessions, today))
}

/// A share link's row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShareRow {
    pub id: Uuid,
    pub playlist_id: Uuid,
    pub user_id: String,
    pub channel: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub opens: i64,
}

const SHARE_COLS: &str =
    "id, playlist_id, user_id, channel, created_at, expires_at, revoked_at, opens";

pub async fn share_by_hash(
    conn: &mut PgConnection,
    hash: &[u8],
) -> Result<Option<ShareRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SHARE_COLS} FROM playlists.shares WHERE token_sha256 = $1"
    )))
    .bind(hash)
    .fetch_optional(conn)
    .await
}

pub async fn share(conn: &mut PgConnection, id: Uuid) -> Result<Option<ShareRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SHARE_COLS} FROM playlists.shares WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn shares_of(
    pool: &PgPool,
    playlist: Uuid,
    after: Option<&(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ShareRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SHARE_COLS} FROM playlists.shares
         WHERE playlist_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
         ORDER BY created_at, id LIMIT $4"
    )))
    .bind(playlist)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

// ---- analytics (the counters only, never the log) --------------------------------------------

/// Removals over `[from, to]`: overall per reason, and per lesson and reason for a page of
/// lessons (by id, after `after`). One statement: the range's whole months come from
/// `removal_counts_month`, only the days of its partial months from `removal_counts` (a year
/// reads 11–12 monthly rows plus at most ~60 daily rows per lesson and reason, instead of 365),
/// summed once per (lesson, reason) and then both ways.
pub async fn removals(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
    after: Option<&String>,
    limit: i64,
) -> Result<Removals, sqlx::Error> {
    // With no whole month the month branch is empty and the day branches cover [from, to].
    let (first, end) = domain::whole_months(from, to).unwrap_or((from, from));
    // The daily table before the monthly one: a statement locks its tables in the order it
    // names them, and the rebuild locks them in this order too (no lock cycle with a rebuild).
    let rows: Vec<(Option<String>, Option<String>, String, i64)> = sqlx::query_as(
        "WITH r AS (
           SELECT lesson_id, reason, n FROM playlists.removal_counts
           WHERE day >= $1 AND day <= $2 AND day < $3
           UNION ALL
           SELECT lesson_id, reason, n FROM playlists.removal_counts
           WHERE day >= $1 AND day <= $2 AND day >= $4
           UNION ALL
           SELECT lesson_id, reason, n FROM playlists.removal_counts_month
           WHERE month >= $3 AND month < $4),
         agg AS MATERIALIZED (
           SELECT lesson_id, reason, sum(n)::bigint AS n FROM r GROUP BY lesson_id, reason),
         page AS (
           SELECT DISTINCT lesson_id FROM agg
           WHERE $5::text IS NULL OR lesson_id > $5
           ORDER BY lesson_id LIMIT $6)
         SELECT NULL::text, NULL::text, reason, sum(n)::bigint FROM agg GROUP BY reason
         UNION ALL
         SELECT a.lesson_id, l.title, a.reason, a.n
         FROM agg a JOIN page USING (lesson_id)
         LEFT JOIN playlists.lessons l ON l.id = a.lesson_id
         ORDER BY 1 NULLS FIRST, 3",
    )
    .bind(from)
    .bind(to)
    .bind(first)
    .bind(end)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Removals::default();
    for (lesson, title, reason, n) in rows {
        match lesson {
            None => out.overall.push((reason, n)),
            Some(lesson) => out.lessons.push((lesson, title, reason, n)),
        }
    }
    Ok(out)
}

/// [`removals`]' answer: (reason, count) overall; (lesson, title, reason, count) for the page,
/// by lesson then reason.
#[derive(Debug, Default)]
pub struct Removals {
    pub overall: Vec<(String, i64)>,
    pub lessons: Vec<(String, Option<String>, String, i64)>,
}

/// Shares and opens per channel over `[from, to]`.
pub async fn shares_by_channel(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT channel, sum(shares)::bigint, sum(opens)::bigint FROM playlists.share_counts
         WHERE day BETWEEN $1 AND $2 GROUP BY channel ORDER BY channel",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

/// Cohort counters for cohort weeks in `[from, to]`: (week, engaged, users, retained).
pub async fn cohorts(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, bool, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT cohort_week, engaged, users, retained FROM playlists.cohort_counts
         WHERE cohort_week BETWEEN $1 AND $2 AND users > 0 ORDER BY cohort_week, engaged",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}
