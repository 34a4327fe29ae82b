-- $1: a JSON filter as list_jobs.sql reads it, its "limit" the batch size. One bounded batch of
-- Jobq::delete_matching, as cancel.sql's delete does it for one job: the first `limit` matching jobs, by id,
-- that are not running and that no other transaction holds (SKIP LOCKED), are deleted; the locks of deleted
-- waiting jobs go to unsettled_locks (see cancel.sql).
-- Returns {"examined", "last_id", "deleted"}.
WITH p AS NOT MATERIALIZED (
    SELECT ($1::text)::jsonb AS f
), target AS MATERIALIZED (
    SELECT j.id, j.status, j.lock
    FROM {schema}.jobs j, p
    WHERE j.status <> 'doing'
  AND (p.f->>'queue' IS NULL OR j.queue = p.f->>'queue')
  AND (p.f->>'task' IS NULL OR j.task = p.f->>'task')
  AND (p.f->>'status' IS NULL OR j.status = p.f->>'status')
  AND (p.f->>'lock' IS NULL OR j.lock = p.f->>'lock')
  AND (p.f->>'queueing_lock' IS NULL OR j.queueing_lock = p.f->>'queueing_lock')
  AND (p.f->>'after_id' IS NULL OR j.id > (p.f->>'after_id')::bigint)
  AND (p.f->>'created_since' IS NULL OR j.created_at >= (p.f->>'created_since')::timestamptz)
  AND (p.f->>'created_until' IS NULL OR j.created_at < (p.f->>'created_until')::timestamptz)
  AND (p.f->>'finished_since' IS NULL OR j.finished_at >= (p.f->>'finished_since')::timestamptz)
  AND (p.f->>'finished_until' IS NULL OR j.finished_at < (p.f->>'finished_until')::timestamptz)
    ORDER BY j.id
    LIMIT (SELECT (f->>'limit')::bigint FROM p)
    FOR UPDATE OF j SKIP LOCKED
), deleted AS (
    DELETE FROM {schema}.jobs j USING target t WHERE j.id = t.id
    RETURNING j.id
), unsettled AS (
    INSERT INTO {schema}.unsettled_locks (lock)
    SELECT DISTINCT t.lock FROM target t WHERE t.status = 'todo' AND t.lock IS NOT NULL
)
SELECT jsonb_build_object(
    'examined', (SELECT count(*) FROM target),
    'last_id', (SELECT max(id) FROM target),
    'deleted', (SELECT count(*) FROM deleted)
)::text AS jobq
