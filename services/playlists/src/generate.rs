//! A seeded generator of event logs with known answers (the analytics test, the benchmark and
//! the sample history of `meridian serve`).
//!
//! Each user gets a cohort week and two planted coin flips: *engaged* (uses playlists in the
//! cohort week, probability [`Planted::engaged`]) and *retained* (active again in one of weeks
//! N+1..N+4, with a probability that depends on engagement: the planted retention difference).
//! Lesson removals draw their reason from [`Planted::reasons`], shares their channel from
//! [`Planted::channels`]. The generator counts what it planted ([`Tally`]) from its own draws,
//! not by reading the events back, so a test that compares the endpoints with the tally checks
//! the projections against an independent answer.
//!
//! Users are independent (no event of one user touches another's state), so the log is written
//! user by user; within a user, events are in time order.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Channel, Event, Reason};

/// The planted probabilities.
#[derive(Debug, Clone)]
pub struct Planted {
    pub engaged: f64,
    pub retention_engaged: f64,
    pub retention_other: f64,
    pub reasons: Vec<(Reason, f64)>,
    pub channels: Vec<(Channel, f64)>,
    /// Probability that an engaged user shares their playlist.
    pub share: f64,
}

impl Default for Planted {
    fn default() -> Self {
        Self {
            engaged: 0.4,
            retention_engaged: 0.55,
            retention_other: 0.30,
            reasons: vec![
                (Reason::Mastered, 0.30),
                (Reason::TooHard, 0.25),
                (Reason::TooEasy, 0.10),
                (Reason::Bored, 0.20),
                (Reason::NotMyStyle, 0.10),
                (Reason::Other, 0.05),
            ],
            channels: vec![
                (Channel::Twitter, 0.20),
                (Channel::Facebook, 0.30),
                (Channel::Whatsapp, 0.35),
                (Channel::CopyLink, 0.15),
            ],
            share: 0.5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub users: u32,
    /// Cohort weeks: users start in one of `weeks` weeks from `start` (a Monday).
    pub weeks: u32,
    pub start: NaiveDate,
    pub seed: u64,
    /// The catalogue's lesson ids (at least 12).
    pub lessons: Vec<String>,
    pub planted: Planted,
    /// User id prefix.
    pub prefix: String,
}

/// What the generator planted, counted from its own draws.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub events: u64,
    pub removals: BTreeMap<Reason, i64>,
    pub removals_by_lesson: BTreeMap<String, BTreeMap<Reason, i64>>,
    /// channel → (shares, opens)
    pub shares: BTreeMap<Channel, (i64, i64)>,
    /// (cohort week, engaged) → (users, retained)
    pub cohorts: BTreeMap<(NaiveDate, bool), (i64, i64)>,
}

/// splitmix64: small, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }
    fn uuid(&mut self) -> Uuid {
        let v = (u128::from(self.next()) << 64) | u128::from(self.next());
        uuid::Builder::from_random_bytes(v.to_le_bytes()).into_uuid()
    }
    fn pick<T: Copy>(&mut self, mix: &[(T, f64)]) -> T {
        let x = self.unit();
        let mut acc = 0.0;
        for (v, p) in mix {
            acc += p;
            if x < acc {
                return *v;
            }
        }
        mix[mix.len() - 1].0
    }
}

/// One generated event of one user.
pub struct Generated {
    pub user_id: String,
    pub at: DateTime<Utc>,
    pub event: Event,
}

struct Clock(DateTime<Utc>);

impl Clock {
    fn tick(&mut self, rng: &mut Rng) -> DateTime<Utc> {
        self.0 += Duration::minutes(1 + rng.below(20) as i64);
        self.0
    }
}

/// The start of a practice evening in `week` (Monday..Friday, 18:00 UTC).
fn evening(week: NaiveDate, rng: &mut Rng) -> DateTime<Utc> {
    let day = week + Duration::days(rng.below(5) as i64);
    day.and_hms_opt(18, 0, 0).unwrap_or_default().and_utc()
}

/// User `u`'s events, in time order, counted into `tally`.
pub fn user_events(spec: &Spec, u: u32, tally: &mut Tally) -> Vec<Generated> {
    let planted = &spec.planted;
    let mut rng = Rng(spec.seed ^ (u64::from(u).wrapping_mul(0xA24B_AED4_963E_E407)));
    let user = format!("{}{u}", spec.prefix);
    let cohort = spec.start + Duration::weeks(rng.below(u64::from(spec.weeks.max(1))) as i64);
    let engaged = rng.unit() < planted.engaged;
    let retained = rng.unit()
        < if engaged {
            planted.retention_engaged
        } else {
            planted.retention_other
        };
    let counts = tally.cohorts.entry((cohort, engaged)).or_default();
    counts.0 += 1;
    counts.1 += i64::from(retained);
    let mut out = Vec::new();
    let mut clock = Clock(evening(cohort, &mut rng));
    let lessons = &spec.lessons;
    let push = |out: &mut Vec<Generated>, at, event| {
        out.push(Generated {
            user_id: user.clone(),
            at,
            event,
        });
    };
    let practice = |rng: &mut Rng, clock: &mut Clock, out: &mut Vec<Generated>, n: u64| {
        for _ in 0..n {
            let at = clock.tick(rng);
            let lesson = lessons[rng.below(lessons.len() as u64) as usize].clone();
            push(
                out,
                at,
                Event::PracticeRecorded {
                    session_id: rng.uuid(),
                    lesson_id: lesson,
                    accuracy: (0.3 + 0.7 * rng.unit()) as f32,
                    duration_secs: 60 + rng.below(600) as u32,
                    at,
                },
            );
        }
    };
    // The first event is a practice session, so the cohort week is the week drawn above.
    let sessions = 3 + rng.below(8);
    practice(&mut rng, &mut clock, &mut out, sessions);
    let mut items: Vec<String> = Vec::new();
    let playlist = rng.uuid();
    let remove = |rng: &mut Rng,
                  clock: &mut Clock,
                  out: &mut Vec<Generated>,
                  items: &mut Vec<String>,
                  tally: &mut Tally| {
        if items.is_empty() {
            return;
        }
        let lesson = items.remove(rng.below(items.len() as u64) as usize);
        let reason = rng.pick(&planted.reasons);
        *tally.removals.entry(reason).or_default() += 1;
        *tally
            .removals_by_lesson
            .entry(lesson.clone())
            .or_default()
            .entry(reason)
            .or_default() += 1;
        out.push(Generated {
            user_id: format!("{}{u}", spec.prefix),
            at: clock.tick(rng),
            event: Event::LessonRemoved {
                playlist_id: playlist,
                lesson_id: lesson,
                reason,
                note: (reason == Reason::Other).then(|| "generated note".to_owned()),
            },
        });
    };
    let add =
        |rng: &mut Rng, clock: &mut Clock, out: &mut Vec<Generated>, items: &mut Vec<String>| {
            let free: Vec<&String> = lessons.iter().filter(|l| !items.contains(l)).collect();
            if free.is_empty() {
                return;
            }
            let lesson = free[rng.below(free.len() as u64) as usize].clone();
            out.push(Generated {
                user_id: format!("{}{u}", spec.prefix),
                at: clock.tick(rng),
                event: Event::LessonAdded {
                    playlist_id: playlist,
                    lesson_id: lesson.clone(),
                    position: items.len() as u32,
                },
            });
            items.push(lesson);
        };
    if engaged {
        let at = clock.tick(&mut rng);
        out.push(Generated {
            user_id: user.clone(),
            at,
            event: Event::PlaylistCreated {
                playlist_id: playlist,
                name: "My practice".into(),
                default: true,
            },
        });
        for _ in 0..(6 + rng.below(5)) {
            add(&mut rng, &mut clock, &mut out, &mut items);
        }
        let at = clock.tick(&mut rng);
        out.push(Generated {
            user_id: user.clone(),
            at,
            event: Event::LessonMoved {
                playlist_id: playlist,
                lesson_id: items[items.len() - 1].clone(),
                position: 0,
            },
        });
        let moved = items.pop().unwrap_or_default();
        items.insert(0, moved);
        for _ in 0..(2 + rng.below(3)) {
            remove(&mut rng, &mut clock, &mut out, &mut items, tally);
        }
        if rng.unit() < planted.share {
            let channel = rng.pick(&planted.channels);
            let share_id = rng.uuid();
            let token = rng.uuid();
            let at = clock.tick(&mut rng);
            out.push(Generated {
                user_id: user.clone(),
                at,
                event: Event::ShareCreated {
                    playlist_id: playlist,
                    share_id,
                    token_sha256: hex(&Sha256::digest(token.as_bytes())),
                    channel,
                    expires_at: None,
                },
            });
            let opens = rng.below(7);
            let s = tally.shares.entry(channel).or_default();
            s.0 += 1;
            s.1 += opens as i64;
            for _ in 0..opens {
                let at = clock.tick(&mut rng);
                out.push(Generated {
                    user_id: user.clone(),
                    at,
                    event: Event::ShareOpened {
                        playlist_id: playlist,
                        share_id,
                        channel,
                    },
                });
            }
        }
        let more = 1 + rng.below(4);
        practice(&mut rng, &mut clock, &mut out, more);
    }
    if retained {
        let week = cohort + Duration::weeks(1 + rng.below(4) as i64);
        clock = Clock(evening(week, &mut rng));
        let later = 3 + rng.below(8);
        practice(&mut rng, &mut clock, &mut out, later);
        if engaged {
            add(&mut rng, &mut clock, &mut out, &mut items);
            remove(&mut rng, &mut clock, &mut out, &mut items, tally);
        }
    }
    tally.events += out.len() as u64;
    out
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Rows per insert statement.
const CHUNK: usize = 10_000;

/// Writes the spec's events to `playlists.events` (read models untouched: run
/// [`crate::rebuild::rebuild`] after), and returns what was planted.
pub async fn insert(pool: &PgPool, spec: &Spec) -> Result<Tally, sqlx::Error> {
    let mut tally = Tally::default();
    let mut buf: Vec<Generated> = Vec::with_capacity(CHUNK + 64);
    for u in 0..spec.users {
        buf.extend(user_events(spec, u, &mut tally));
        if buf.len() >= CHUNK {
            write(pool, &std::mem::take(&mut buf)).await?;
        }
    }
    write(pool, &buf).await?;
    Ok(tally)
}

async fn write(pool: &PgPool, rows: &[Generated]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO playlists.events (user_id, aggregate, type, payload, occurred_at)
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::jsonb[], $5::timestamptz[])",
    )
    .bind(rows.iter().map(|g| g.user_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|g| g.event.aggregate()).collect::<Vec<_>>())
    .bind(rows.iter().map(|g| g.event.kind()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|g| serde_json::to_value(&g.event).unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|g| g.at).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            users: 200,
            weeks: 4,
            start: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
            seed: 7,
            lessons: (0..20).map(|i| format!("l{i}")).collect(),
            planted: Planted::default(),
            prefix: "u".into(),
        }
    }

    #[test]
    fn deterministic_and_in_time_order_per_user() {
        let (mut a, mut b) = (Tally::default(), Tally::default());
        for u in 0..50 {
            let x = user_events(&spec(), u, &mut a);
            let y = user_events(&spec(), u, &mut b);
            assert_eq!(x.len(), y.len());
            assert!(x.windows(2).all(|w| w[0].at < w[1].at), "user {u}");
            assert_eq!(
                x.iter().map(|g| &g.event).collect::<Vec<_>>(),
                y.iter().map(|g| &g.event).collect::<Vec<_>>()
            );
        }
        assert_eq!(a, b);
    }
}
