-- Routing configuration of the call-control service, and its asynchronous call log.
--
-- Configuration is stored as validated JSON documents (a PBX flow is a graph validated as a
-- whole before it is written) and read in full into an in-memory snapshot; the hot path never
-- queries these tables. Every change bumps calls.config_version and sends NOTIFY calls_config,
-- so replicas reload within milliseconds and the periodic check is one tiny read.

CREATE TABLE calls.subscribers (
    number          text        PRIMARY KEY,
    rules           jsonb       NOT NULL,
    fallback_target text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calls.pbx_flows (
    number          text        PRIMARY KEY,
    flow            jsonb       NOT NULL,
    fallback_target text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calls.config_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL
);
INSERT INTO calls.config_version (version) VALUES (1);

CREATE FUNCTION calls.bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE calls.config_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('calls_config', v::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER subscribers_changed AFTER INSERT OR UPDATE OR DELETE ON calls.subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION calls.bump_config_version();
CREATE TRIGGER pbx_flows_changed AFTER INSERT OR UPDATE OR DELETE ON calls.pbx_flows
    FOR EACH STATEMENT EXECUTE FUNCTION calls.bump_config_version();

-- One row per decision, written asynchronously in batches (never on the call's path).
CREATE TABLE calls.call_steps (
    id          bigserial   PRIMARY KEY,
    call_id     text        NOT NULL,
    request_id  text        NOT NULL,
    number      text        NOT NULL,
    event       text        NOT NULL,
    node        text,
    source      text        NOT NULL,
    actions     jsonb       NOT NULL,
    decided_at  timestamptz NOT NULL
);
CREATE INDEX call_steps_call ON calls.call_steps (call_id, id);
