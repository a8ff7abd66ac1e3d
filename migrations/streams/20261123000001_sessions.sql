-- Stream sessions (leases) and per-user limit overrides.
--
-- Expand/contract only: a release must run beside the previous one, so columns are added as
-- nullable or with defaults, functions get a new versioned name instead of a changed signature,
-- and nothing is dropped until no running release uses it.

CREATE TABLE streams.user_limits (
    user_id     text        PRIMARY KEY,
    max_streams integer     NOT NULL CHECK (max_streams BETWEEN 1 AND 20),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE streams.sessions (
    session_id        uuid        PRIMARY KEY,
    user_id           text        NOT NULL,
    device_id         text        NOT NULL,
    content_id        text        NOT NULL,
    idempotency_key   text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL
);

-- Live sessions of one user: the admission count and the user's list.
CREATE INDEX sessions_user_expires ON streams.sessions (user_id, expires_at);
-- The sweeper walks expired leases oldest first.
CREATE INDEX sessions_expires ON streams.sessions (expires_at);

-- The admission decision, as one statement so it costs one round trip.
--
-- Correctness: every admission for a user takes the same transaction-scoped advisory lock
-- before it counts, so decisions for one user are serialized across all replicas. The count is
-- a separate statement inside this VOLATILE function, so it runs on a snapshot taken *after* the
-- lock was granted and sees every session committed by the previous lock holder (a commit is
-- visible before its locks are released).
--
-- Returns one row, outcome 'admitted' or 'idempotent_replay', with the session; or one row per
-- live session with outcome 'rejected_limit' (limits are >= 1, so there is at least one).
CREATE FUNCTION streams.admit_v1(
    p_session_id      uuid,
    p_user_id         text,
    p_device_id       text,
    p_content_id      text,
    p_idempotency_key text,
    p_default_limit   integer,
    p_ttl_ms          bigint
) RETURNS TABLE (
    outcome     text,
    max_streams integer,
    session_id  uuid,
    device_id   text,
    content_id  text,
    started_at  timestamptz,
    expires_at  timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_limit integer;
    v_live  integer;
    v_ttl   interval := make_interval(secs => p_ttl_ms / 1000.0);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('streams:' || p_user_id, 0));

    SELECT coalesce((SELECT l.max_streams FROM streams.user_limits l WHERE l.user_id = p_user_id),
                    p_default_limit)
      INTO v_limit;

    -- A retried start returns the session it created, never a second slot: same key, or (with
    -- no key) the same device already playing the same content.
    RETURN QUERY
        SELECT 'idempotent_replay'::text, v_limit, s.session_id, s.device_id, s.content_id,
               s.started_at, s.expires_at
          FROM streams.sessions s
         WHERE s.user_id = p_user_id
           AND s.expires_at > clock_timestamp()
           AND CASE WHEN p_idempotency_key IS NOT NULL
                    THEN s.idempotency_key = p_idempotency_key
                    ELSE s.device_id = p_device_id AND s.content_id = p_content_id
               END
         ORDER BY s.started_at
         LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;

    SELECT count(*) INTO v_live
      FROM streams.sessions s
     WHERE s.user_id = p_user_id AND s.expires_at > clock_timestamp();

    IF v_live >= v_limit THEN
        RETURN QUERY
            SELECT 'rejected_limit'::text, v_limit, s.session_id, s.device_id, s.content_id,
                   s.started_at, s.expires_at
              FROM streams.sessions s
             WHERE s.user_id = p_user_id AND s.expires_at > clock_timestamp()
             ORDER BY s.started_at, s.session_id;
        RETURN;
    END IF;

    RETURN QUERY
        INSERT INTO streams.sessions AS s
               (session_id, user_id, device_id, content_id, idempotency_key, started_at,
                last_heartbeat_at, expires_at)
        VALUES (p_session_id, p_user_id, p_device_id, p_content_id, p_idempotency_key,
                clock_timestamp(), clock_timestamp(), clock_timestamp() + v_ttl)
        RETURNING 'admitted'::text, v_limit, s.session_id, s.device_id, s.content_id,
                  s.started_at, s.expires_at;
END;
$$;
