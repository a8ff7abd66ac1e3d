-- Attendance: sites, sign-ins/outs per child, the outbox that feeds the live stream, stream
-- tickets; visits and visitors (page-view ingestion).
--
-- Expand/contract only: a release must run beside the previous one (docs/architecture.md).

CREATE TABLE attendance.sites (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The delivery gate signs a child in and out at this site (buildkite/slo.yaml); it exists in
-- every environment so the gate needs no admin right.
INSERT INTO attendance.sites (id, name) VALUES ('slo-probe', 'Delivery gate probe site');

CREATE TABLE attendance.attendances (
    id            uuid        PRIMARY KEY,
    site_id       text        NOT NULL REFERENCES attendance.sites (id),
    entity_id     text        NOT NULL,
    source        text        NOT NULL,
    sign_in_time  timestamptz NOT NULL,
    sign_out_time timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CHECK (sign_out_time IS NULL OR sign_out_time >= sign_in_time)
);

-- No double sign-in: at most one open attendance per child and site.
CREATE UNIQUE INDEX attendances_open ON attendance.attendances (site_id, entity_id)
    WHERE sign_out_time IS NULL;
-- The list per site and day, in sign-in order (keyset on (sign_in_time, id)).
CREATE INDEX attendances_site_day ON attendance.attendances (site_id, sign_in_time, id);

-- Transactional outbox (docs/architecture.md, "Events and the outbox"). Every attendance write
-- appends its event in the same transaction, after taking the site's advisory lock, so ids of
-- one site are assigned in commit order: a reader resuming after id N never misses a row that
-- commits later with a smaller id.
CREATE TABLE attendance.outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     text        NOT NULL,
    type        text        NOT NULL CHECK (type IN ('created', 'updated', 'destroyed')),
    aggregate   uuid        NOT NULL,
    payload     jsonb       NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX outbox_site_id ON attendance.outbox (site_id, id);
-- Retention of the feed's events (attendance::sweeper, ATTENDANCE_OUTBOX_RETENTION_DAYS).
CREATE INDEX outbox_occurred_at ON attendance.outbox (occurred_at);
-- The highest outbox id the sweeper has deleted: a resume from an older Last-Event-ID may have
-- lost events, so it gets a snapshot instead of a backlog with a silent gap (one row).
CREATE TABLE attendance.outbox_horizon (
    one           boolean PRIMARY KEY DEFAULT true CHECK (one),
    swept_through bigint  NOT NULL
);
INSERT INTO attendance.outbox_horizon (swept_through) VALUES (0);

-- Short-lived stream tickets (a browser's EventSource cannot send Authorization). Only the
-- SHA-256 of the ticket is stored; any replica can check it.
CREATE TABLE attendance.stream_tickets (
    ticket_sha256 bytea       PRIMARY KEY,
    site_id       text        NOT NULL,
    sub           text        NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX stream_tickets_expires ON attendance.stream_tickets (expires_at);

-- Visitors are upserted in the transaction that inserts their visits, so a visit never lacks
-- its visitor; reads still LEFT JOIN (a visit is never hidden by its visitor row).
CREATE TABLE attendance.visitors (
    id             uuid        PRIMARY KEY,
    first_visit_at timestamptz NOT NULL,
    last_visit_at  timestamptz NOT NULL,
    visits         bigint      NOT NULL
);
-- The retention sweep removes visitors not seen within the window.
CREATE INDEX visitors_last_visit ON attendance.visitors (last_visit_at);

-- Retention is batched deletes by visited_at (docs/attendance.md: why not partitions).
CREATE TABLE attendance.visits (
    id         uuid        PRIMARY KEY,
    visited_at timestamptz NOT NULL,
    visitor_id uuid        NOT NULL,
    page_path  text        NOT NULL
);
-- GET /visits, newest first, keyset on (visited_at, id); also the retention sweep's range.
CREATE INDEX visits_recent ON attendance.visits (visited_at DESC, id DESC);
-- GET /visits?visitor_id= and GET /visitors/{id}.
CREATE INDEX visits_visitor ON attendance.visits (visitor_id, visited_at DESC, id DESC);
