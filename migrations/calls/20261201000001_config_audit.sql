-- Who changed which switchboard, and when: life-critical routing must be traceable.
-- Expand-only: a new table the previous release neither reads nor writes (its configuration
-- writes during a rollout's overlap are therefore not audited; see docs/security.md).
CREATE TABLE calls.config_audit (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    -- The verified token's `sub` (a user or an app client id), never client-supplied text.
    actor          text        NOT NULL,
    action         text        NOT NULL CHECK (action IN ('put', 'delete')),
    kind           text        NOT NULL CHECK (kind IN ('pbx', 'subscriber')),
    number         text        NOT NULL,
    -- calls.config_version before and after the change, in the same transaction.
    version_before bigint      NOT NULL,
    version_after  bigint      NOT NULL
);

-- GET /calls/v1/audit?number=...: one number's history, in id order (keyset pagination).
CREATE INDEX config_audit_number_id ON calls.config_audit (number, id);
