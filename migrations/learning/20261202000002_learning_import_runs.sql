-- One row per importer run (`meridian learning import`, and the sample-data load of `meridian
-- serve`), written after the run, outside its per-file transactions: a failed run leaves the
-- tables as they were, and this row is the only trace it leaves in the database. The serving
-- process samples the newest success and failure into gauges (learning_import_last_*), which
-- the LearningImportFailed alert compares. Expand-only: the previous release ignores the table.
CREATE TABLE learning.import_runs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    ok          boolean     NOT NULL,
    -- Files committed by the run (a failed run may have committed the files before the one
    -- that failed: each file is its own transaction).
    files       integer     NOT NULL CHECK (files >= 0),
    -- The error, cut to 1000 characters by the importer; null when ok.
    error       text        CHECK (error IS NULL OR length(error) <= 1000),
    CHECK (ok = (error IS NULL))
);

-- The gauges' query: the newest success and the newest failure.
CREATE INDEX import_runs_outcome ON learning.import_runs (ok, finished_at DESC);
