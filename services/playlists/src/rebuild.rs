//! `rebuild`: truncate every read model and replay the event log into them
//! (`meridian playlists rebuild`).
//!
//! The replay folds the log in memory with the same pure rules the live path uses
//! ([`domain::apply`] for playlists, [`cohort::step`] for cohorts), then writes each read model
//! in bulk; practice sessions are written as they stream past (they are most of the log). It
//! runs in one transaction: first the rebuild advisory lock exclusive ([`store::REBUILD_KEY`];
//! every command and share open holds it shared), so it waits for the writers in flight and new
//! ones wait for it; then `EXCLUSIVE` on `events` and `ACCESS EXCLUSIVE` on the read models
//! (the truncation): reads wait too, until the commit. Each wait is bounded by
//! [`LOCK_TIMEOUT`]: a rebuild that cannot get its locks fails and changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{
    domain::{self, Event, Playlist, Reason, Stored, cohort},
    store,
};

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub events: u64,
    pub playlists: u64,
    pub sessions: u64,
    pub shares: u64,
    pub cohort_users: u64,
    pub millis: u128,
}

struct ShareRow {
    playlist_id: Uuid,
    user_id: String,
    token_sha256: String,
    channel: &'static str,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    opens: i64,
}

struct SessionRow {
    id: Uuid,
    user_id: String,
    lesson_id: String,
    accuracy: f32,
    duration_secs: i32,
    at: DateTime<Utc>,
}

/// The in-memory fold of the log (pure: no I/O).
#[derive(Default)]
pub struct Fold {
    playlists: HashMap<Uuid, Playlist>,
    /// Each user's default playlist (a user's playlists are not scanned per event).
    defaults: HashMap<String, Uuid>,
    shares: HashMap<Uuid, ShareRow>,
    sessions: Vec<SessionRow>,
    removals: HashMap<(NaiveDate, String, Reason), i64>,
    share_counts: HashMap<(NaiveDate, &'static str), (i64, i64)>,
    cohorts: HashMap<String, cohort::UserCohort>,
    pub events: u64,
}

impl Fold {
    pub fn push(&mut self, s: &Stored) {
        self.events += 1;
        let at = s.occurred_at;
        match &s.event {
            Event::PlaylistCreated { .. }
            | Event::PlaylistRenamed { .. }
            | Event::LessonAdded { .. }
            | Event::LessonMoved { .. }
            | Event::LessonRemoved { .. }
            | Event::PlaylistDeleted { .. } => {
                let id = s.event.aggregate();
                if let Event::PlaylistCreated { default: true, .. } = s.event
                    && let Some(old) = self.defaults.get(&s.user_id)
                    && let Some(p) = self.playlists.remove(old)
                {
                    self.playlists
                        .insert(*old, domain::set_default(p, false, at));
                }
                let before = self.playlists.remove(&id);
                match domain::apply(before, &s.user_id, at, &s.event) {
                    Some(p) => {
                        if p.is_default {
                            self.defaults.insert(s.user_id.clone(), id);
                        }
                        self.playlists.insert(id, p);
                    }
                    None => {
                        if self.defaults.get(&s.user_id) == Some(&id) {
                            self.defaults.remove(&s.user_id);
                        }
                    }
                }
                if let Event::PlaylistDeleted {
                    next_default: Some(next),
                    ..
                } = s.event
                    && let Some(p) = self.playlists.remove(&next)
                {
                    self.playlists
                        .insert(next, domain::set_default(p, true, at));
                    self.defaults.insert(s.user_id.clone(), next);
                }
                if let Event::LessonRemoved {
                    lesson_id, reason, ..
                } = &s.event
                {
                    *self
                        .removals
                        .entry((domain::day(at), lesson_id.clone(), *reason))
                        .or_default() += 1;
                }
            }
            Event::ShareCreated {
                playlist_id,
                share_id,
                token_sha256,
                channel,
                expires_at,
            } => {
                self.shares.insert(
                    *share_id,
                    ShareRow {
                        playlist_id: *playlist_id,
                        user_id: s.user_id.clone(),
                        token_sha256: token_sha256.clone(),
                        channel: channel.as_str(),
                        created_at: at,
                        expires_at: *expires_at,
                        revoked_at: None,
                        opens: 0,
                    },
                );
                self.share_counts
                    .entry((domain::day(at), channel.as_str()))
                    .or_default()
                    .0 += 1;
            }
            Event::ShareRevoked { share_id, .. } => {
                if let Some(r) = self.shares.get_mut(share_id)
                    && r.revoked_at.is_none()
                {
                    r.revoked_at = Some(at);
                }
            }
            Event::ShareOpened {
                share_id, channel, ..
            } => {
                if let Some(r) = self.shares.get_mut(share_id) {
                    r.opens += 1;
                }
                self.share_counts
                    .entry((domain::day(at), channel.as_str()))
                    .or_default()
                    .1 += 1;
            }
            Event::PracticeRecorded {
                session_id,
                lesson_id,
                accuracy,
                duration_secs,
                at: played,
            } => self.sessions.push(SessionRow {
                id: *session_id,
                user_id: s.user_id.clone(),
                lesson_id: lesson_id.clone(),
                accuracy: *accuracy,
                duration_secs: i32::try_from(*duration_secs).unwrap_or(i32::MAX),
                at: *played,
            }),
        }
        let activity = s.event.activity();
        if activity != domain::Activity::None {
            let state = self.cohorts.get(&s.user_id).copied();
            let (next, _) = cohort::step(state, domain::week(at), activity);
            if let Some(n) = next
                && Some(n) != state
            {
                self.cohorts.insert(s.user_id.clone(), n);
            }
        }
    }

    /// The cohort counters the states add up to: (week, engaged) → (users, retained).
    pub fn cohort_counts(&self) -> BTreeMap<(NaiveDate, bool), (i64, i64)> {
        let mut m: BTreeMap<(NaiveDate, bool), (i64, i64)> = BTreeMap::new();
        for c in self.cohorts.values() {
            let e = m.entry((c.cohort_week, c.engaged)).or_default();
            e.0 += 1;
            e.1 += i64::from(c.retained);
        }
        m
    }
}

/// How long a rebuild waits for each of its locks (commands and reads in flight) before it
/// gives up (`lock_timeout`).
pub const LOCK_TIMEOUT: &str = "10s";

/// Rows per bulk statement.
const CHUNK: usize = 10_000;

/// Truncates the read models and replays `playlists.events` into them.
pub async fn rebuild(pool: &PgPool) -> Result<Report, sqlx::Error> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(store::REBUILD_KEY.0)
        .bind(store::REBUILD_KEY.1)
        .execute(&mut *tx)
        .await?;
    sqlx::query("LOCK TABLE playlists.events IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    // The read models in the order a read statement locks them (a playlist before its items),
    // so a read in flight and the rebuild never wait for each other in a cycle.
    sqlx::query(
        "LOCK TABLE playlists.playlists, playlists.playlist_items, playlists.practice_sessions,
                    playlists.shares, playlists.removal_counts, playlists.removal_counts_month,
                    playlists.share_counts, playlists.user_cohorts, playlists.cohort_counts
         IN ACCESS EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "TRUNCATE playlists.playlist_items, playlists.playlists, playlists.practice_sessions,
                  playlists.shares, playlists.removal_counts, playlists.removal_counts_month,
                  playlists.share_counts, playlists.user_cohorts, playlists.cohort_counts",
    )
    .execute(&mut *tx)
    .await?;
    let mut fold = Fold::default();
    let mut sessions = 0_u64;
    // A second connection streams the log while `tx` writes; it reads the same committed log
    // (writers wait for the lock held by `tx`).
    let mut reader = pool.acquire().await?;
    {
        let mut rows = sqlx::query(
            "SELECT id, user_id, occurred_at, payload::text AS payload FROM playlists.events
             ORDER BY id",
        )
        .fetch(&mut *reader);
        while let Some(r) = rows.try_next().await? {
            let payload: String = r.get("payload");
            let event: Event =
                serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            fold.push(&Stored {
                id: r.get("id"),
                user_id: r.get("user_id"),
                occurred_at: r.get("occurred_at"),
                event,
            });
            if fold.sessions.len() >= CHUNK {
                sessions += fold.sessions.len() as u64;
                write_sessions(&mut tx, &std::mem::take(&mut fold.sessions)).await?;
            }
        }
    }
    drop(reader);
    sessions += fold.sessions.len() as u64;
    write_sessions(&mut tx, &std::mem::take(&mut fold.sessions)).await?;
    let playlists: Vec<&Playlist> = fold.playlists.values().collect();
    for chunk in playlists.chunks(CHUNK) {
        write_playlists(&mut tx, chunk).await?;
    }
    let shares: Vec<(&Uuid, &ShareRow)> = fold.shares.iter().collect();
    for chunk in shares.chunks(CHUNK) {
        write_shares(&mut tx, chunk).await?;
    }
    write_counters(&mut tx, &fold).await?;
    tx.commit().await?;
    Ok(Report {
        events: fold.events,
        playlists: fold.playlists.len() as u64,
        sessions,
        shares: fold.shares.len() as u64,
        cohort_users: fold.cohorts.len() as u64,
        millis: started.elapsed().as_millis(),
    })
}

async fn write_sessions(conn: &mut PgConnection, rows: &[SessionRow]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO playlists.practice_sessions (id, user_id, lesson_id, accuracy, duration_secs, at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::real[], $5::int[],
                              $6::timestamptz[])",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.user_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.lesson_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.accuracy).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.duration_secs).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_playlists(conn: &mut PgConnection, ps: &[&Playlist]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO playlists.playlists (id, user_id, name, is_default, version, created_at, updated_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::bigint[],
                              $6::timestamptz[], $7::timestamptz[])",
    )
    .bind(ps.iter().map(|p| p.id).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.is_default).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.version).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.created_at).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.updated_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    let (mut ids, mut lessons, mut positions, mut added) = (vec![], vec![], vec![], vec![]);
    for p in ps {
        for (n, i) in p.items.iter().enumerate() {
            ids.push(p.id);
            lessons.push(i.lesson_id.as_str());
            positions.push(i32::try_from(n).unwrap_or(i32::MAX));
            added.push(i.added_at);
        }
    }
    sqlx::query(
        "INSERT INTO playlists.playlist_items (playlist_id, lesson_id, position, added_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::timestamptz[])",
    )
    .bind(ids)
    .bind(lessons)
    .bind(positions)
    .bind(added)
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_shares(
    conn: &mut PgConnection,
    rows: &[(&Uuid, &ShareRow)],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO playlists.shares
           (id, playlist_id, user_id, token_sha256, channel, created_at, expires_at, revoked_at, opens)
         SELECT id, p, u, decode(t, 'hex'), c, ca, ea, ra, o
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::bigint[])
           AS x(id, p, u, t, c, ca, ea, ra, o)",
    )
    .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.playlist_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.user_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.token_sha256.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.channel).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.expires_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.revoked_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.opens).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_counters(conn: &mut PgConnection, f: &Fold) -> Result<(), sqlx::Error> {
    let removals: Vec<_> = f.removals.iter().collect();
    for chunk in removals.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO playlists.removal_counts (day, lesson_id, reason, n)
             SELECT * FROM UNNEST($1::date[], $2::text[], $3::text[], $4::bigint[])",
        )
        .bind(chunk.iter().map(|((d, _, _), _)| *d).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|((_, l, _), _)| l.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|((_, _, r), _)| r.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|(_, n)| **n).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    // The monthly rollup is the daily counts summed (store::apply adds to both as it goes).
    sqlx::query(
        "INSERT INTO playlists.removal_counts_month (month, lesson_id, reason, n)
         SELECT date_trunc('month', day::timestamp)::date, lesson_id, reason, sum(n)
         FROM playlists.removal_counts GROUP BY 1, 2, 3",
    )
    .execute(&mut *conn)
    .await?;
    let shares: Vec<_> = f.share_counts.iter().collect();
    for chunk in shares.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO playlists.share_counts (day, channel, shares, opens)
             SELECT * FROM UNNEST($1::date[], $2::text[], $3::bigint[], $4::bigint[])",
        )
        .bind(chunk.iter().map(|((d, _), _)| *d).collect::<Vec<_>>())
        .bind(chunk.iter().map(|((_, c), _)| *c).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, (s, _))| *s).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, (_, o))| *o).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let users: Vec<_> = f.cohorts.iter().collect();
    for chunk in users.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO playlists.user_cohorts (user_id, cohort_week, engaged, retained)
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::bool[], $4::bool[])",
        )
        .bind(chunk.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, c)| c.cohort_week).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, c)| c.engaged).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, c)| c.retained).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let counts: Vec<_> = f.cohort_counts().into_iter().collect();
    sqlx::query(
        "INSERT INTO playlists.cohort_counts (cohort_week, engaged, users, retained)
         SELECT * FROM UNNEST($1::date[], $2::bool[], $3::bigint[], $4::bigint[])",
    )
    .bind(counts.iter().map(|((w, _), _)| *w).collect::<Vec<_>>())
    .bind(counts.iter().map(|((_, e), _)| *e).collect::<Vec<_>>())
    .bind(counts.iter().map(|(_, (u, _))| *u).collect::<Vec<_>>())
    .bind(counts.iter().map(|(_, (_, r))| *r).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
