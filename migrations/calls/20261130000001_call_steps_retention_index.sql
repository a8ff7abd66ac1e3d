-- no-transaction
-- Expand only: an index for step-log retention (calls::calllog deletes steps older than
-- CALLS_STEP_RETENTION_DAYS). BRIN, because call_steps is appended in decided_at order: a few
-- pages cover billions of rows and inserts barely notice it. CONCURRENTLY, because the running
-- release keeps appending while this builds; that is why this file runs outside a transaction and
-- holds exactly one statement (PostgreSQL runs a multi-statement string as one transaction).
-- If the build is interrupted it leaves an INVALID index that IF NOT EXISTS would keep: drop it
-- (DROP INDEX CONCURRENTLY calls.call_steps_decided_at) and rerun the migration Job.
CREATE INDEX CONCURRENTLY IF NOT EXISTS call_steps_decided_at ON calls.call_steps USING brin (decided_at);
