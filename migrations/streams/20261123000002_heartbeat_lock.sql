-- Heartbeats take the user's admission lock (expand-only: a new function beside admit_v1).
--
-- Without it a heartbeat that sees a lease as live in its last milliseconds, but commits after
-- an admission (holding the lock) counted that lease as expired, revives a lease the admission
-- already reused: the user would hold limit + 1 slots until one ends. Serializing heartbeats
-- with admissions of the same user closes that window.
CREATE FUNCTION streams.heartbeat_v1(p_session_id uuid, p_ttl_ms bigint)
RETURNS TABLE (
    outcome    text,
    session_id uuid,
    user_id    text,
    device_id  text,
    content_id text,
    started_at timestamptz,
    expires_at timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_user text;
BEGIN
    SELECT s.user_id INTO v_user FROM streams.sessions s WHERE s.session_id = p_session_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, p_session_id, NULL::text, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('streams:' || v_user, 0));

    -- Decided after the lock, on a fresh snapshot (see admit_v1).
    RETURN QUERY
        UPDATE streams.sessions AS s
           SET last_heartbeat_at = clock_timestamp(),
               expires_at = clock_timestamp() + make_interval(secs => p_ttl_ms / 1000.0)
         WHERE s.session_id = p_session_id AND s.expires_at > clock_timestamp()
        RETURNING 'extended'::text, s.session_id, s.user_id, s.device_id, s.content_id,
                  s.started_at, s.expires_at;
    IF FOUND THEN
        RETURN;
    END IF;
    -- Expired: free the slot for good, so the client learns it must start again.
    DELETE FROM streams.sessions s WHERE s.session_id = p_session_id;
    RETURN QUERY SELECT (CASE WHEN FOUND THEN 'expired' ELSE 'not_found' END)::text, p_session_id,
                        NULL::text, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz;
END;
$$;
