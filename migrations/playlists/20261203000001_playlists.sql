-- Playlists: the lesson catalogue, the event log (the source of truth for every command) with
-- its idempotency records, and the read models projected from the log in the same transaction
-- (playlist views, practice sessions, share links, analytics counters). Every read model can
-- be truncated and rebuilt from `events` (`meridian playlists rebuild`).
--
-- Expand/contract only: a release must run beside the previous one (docs/architecture.md).

-- The catalogue: reference data (loaded by the sample data / a content import), not events.
CREATE TABLE playlists.lessons (
    id            text    PRIMARY KEY,
    title         text    NOT NULL,
    instrument    text    NOT NULL,
    genre         text    NOT NULL,
    difficulty    integer NOT NULL CHECK (difficulty BETWEEN 1 AND 5),
    duration_secs integer NOT NULL CHECK (duration_secs > 0)
);

-- The delivery gate's probe plays this lesson (buildkite/slo.yaml); it exists everywhere.
INSERT INTO playlists.lessons (id, title, instrument, genre, difficulty, duration_secs)
VALUES ('slo-probe', 'Delivery gate probe lesson', 'drums', 'test', 1, 60);

-- The event log (transactional outbox, docs/architecture.md "Events and the outbox"). Every
-- command appends its event here in the transaction that updates the read models, after
-- taking the user's advisory lock, so one user's ids are assigned in commit order.
CREATE TABLE playlists.events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text        NOT NULL,
    -- The playlist (playlist and share events) or the practice session.
    aggregate   uuid        NOT NULL,
    type        text        NOT NULL,
    payload     jsonb       NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX events_aggregate ON playlists.events (aggregate, id);

-- Idempotency-Key records: the first answer of a command, returned again to a retry (and no
-- second event appended). Written in the command's transaction.
CREATE TABLE playlists.idempotency (
    user_id     text        NOT NULL,
    key         text        NOT NULL,
    -- SHA-256 of method, path and body: the same key on another request is refused.
    fingerprint bytea       NOT NULL,
    status      integer     NOT NULL,
    body        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- ---- read models (projections of `events`) ---------------------------------------------------

CREATE TABLE playlists.playlists (
    id         uuid        PRIMARY KEY,
    user_id    text        NOT NULL,
    name       text        NOT NULL,
    is_default boolean     NOT NULL,
    -- Bumped by every event of the playlist: the ETag / If-Match version.
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- One default playlist per user.
CREATE UNIQUE INDEX playlists_one_default ON playlists.playlists (user_id) WHERE is_default;
-- A user's list, oldest first (keyset on (created_at, id)).
CREATE INDEX playlists_user ON playlists.playlists (user_id, created_at, id);

CREATE TABLE playlists.playlist_items (
    playlist_id uuid        NOT NULL REFERENCES playlists.playlists (id) ON DELETE CASCADE,
    lesson_id   text        NOT NULL,
    -- 0-based, dense within a playlist.
    position    integer     NOT NULL,
    added_at    timestamptz NOT NULL,
    PRIMARY KEY (playlist_id, lesson_id)
);

-- Practice sessions (the input facts of the rotation rule), from `practice_recorded` events.
CREATE TABLE playlists.practice_sessions (
    id            uuid        PRIMARY KEY,
    user_id       text        NOT NULL,
    lesson_id     text        NOT NULL,
    accuracy      real        NOT NULL CHECK (accuracy BETWEEN 0 AND 1),
    duration_secs integer     NOT NULL,
    at            timestamptz NOT NULL
);
CREATE INDEX practice_sessions_user ON playlists.practice_sessions (user_id, at DESC, id DESC);
-- "What next" reads, per lesson of one playlist, the user's newest few sessions and a count of
-- today's (store::rotation_history): one short range scan per lesson, whatever the history.
CREATE INDEX practice_sessions_user_lesson
    ON playlists.practice_sessions (user_id, lesson_id, at DESC, id DESC);

-- Share links: only the SHA-256 of the token is stored.
CREATE TABLE playlists.shares (
    id           uuid        PRIMARY KEY,
    playlist_id  uuid        NOT NULL,
    user_id      text        NOT NULL,
    token_sha256 bytea       NOT NULL UNIQUE,
    channel      text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    opens        bigint      NOT NULL DEFAULT 0
);
CREATE INDEX shares_playlist ON playlists.shares (playlist_id, created_at, id);

-- Analytics counters: small tables the endpoints sum over a date range (never the log).
CREATE TABLE playlists.removal_counts (
    day       date   NOT NULL,
    lesson_id text   NOT NULL,
    reason    text   NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (day, lesson_id, reason)
);

-- The same counts per calendar month (month = its first day): a range's whole months are read
-- here and only its partial months' days from removal_counts, so a year reads 11-12 monthly
-- rows plus at most ~60 daily rows per lesson and reason instead of 365 (store::removals).
CREATE TABLE playlists.removal_counts_month (
    month     date   NOT NULL CHECK (extract(day FROM month) = 1),
    lesson_id text   NOT NULL,
    reason    text   NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (month, lesson_id, reason)
);

CREATE TABLE playlists.share_counts (
    day     date   NOT NULL,
    channel text   NOT NULL,
    shares  bigint NOT NULL,
    opens   bigint NOT NULL,
    PRIMARY KEY (day, channel)
);

-- Each user's weekly cohort (the ISO week of their first event), whether they used playlists
-- in that week, and whether they were active in weeks N+1..N+4.
CREATE TABLE playlists.user_cohorts (
    user_id     text    PRIMARY KEY,
    cohort_week date    NOT NULL,
    engaged     boolean NOT NULL,
    retained    boolean NOT NULL
);

-- The same, counted per cohort week and engagement (what the retention endpoint reads).
CREATE TABLE playlists.cohort_counts (
    cohort_week date    NOT NULL,
    engaged     boolean NOT NULL,
    users       bigint  NOT NULL,
    retained    bigint  NOT NULL,
    PRIMARY KEY (cohort_week, engaged)
);
