-- admit_v2: admit_v1 plus refusing an Idempotency-Key reused for a different stream.
-- Expand-only: admit_v1 stays for the release running beside this one; drop it in a later
-- release once nothing calls it.

CREATE FUNCTION streams.admit_v2(
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

    -- A key reused for a different stream is a client bug, not a retry: refuse it (the
    -- IETF Idempotency-Key draft answers 422) rather than silently return another stream.
    IF p_idempotency_key IS NOT NULL THEN
        RETURN QUERY
            SELECT 'idempotency_conflict'::text, v_limit, s.session_id, s.device_id, s.content_id,
                   s.started_at, s.expires_at
              FROM streams.sessions s
             WHERE s.user_id = p_user_id
               AND s.expires_at > clock_timestamp()
               AND s.idempotency_key = p_idempotency_key
               AND (s.device_id <> p_device_id OR s.content_id <> p_content_id)
             LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

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
