-- $1: a JSON filter as list_jobs.sql reads it, its "limit" the batch size, plus "abort": bool. One bounded
-- batch of Jobq::cancel_matching, as cancel.sql does it for one job: of the first `limit` matching jobs, by
-- id, that no other transaction holds (SKIP LOCKED), waiting ones become `cancelled`; with "abort", running
-- ones not yet asked are asked to stop (one NOTIFY each on the abort channel). Running jobs are left alone
-- without "abort". The locks of cancelled jobs go to unsettled_locks (see cancel.sql). Returns {"examined", "last_id", "cancelled", "abort_requested"}.
WITH p AS NOT MATERIALIZED (
    SELECT ($1::text)::jsonb AS f
), target AS MATERIALIZED (
    SELECT j.id, j.status, j.lock
    FROM {schema}.jobs j, p
    WHERE (j.status = 'todo'
           OR (j.status = 'doing' AND coalesce((p.f->>'abort')::boolean, false) AND NOT j.abort_requested))
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
), cancelled AS (
    UPDATE {schema}.jobs j SET status = 'cancelled', finished_at = now()
    FROM target t
    WHERE j.id = t.id AND t.status = 'todo'
    RETURNING j.id
), unsettled AS (
    INSERT INTO {schema}.unsettled_locks (lock)
    SELECT DISTINCT t.lock FROM target t WHERE t.status = 'todo' AND t.lock IS NOT NULL
), abort_requested AS (
    UPDATE {schema}.jobs j SET abort_requested = true
    FROM target t
    WHERE j.id = t.id AND t.status = 'doing'
    RETURNING j.id
), notified AS (
    SELECT pg_notify('{channel}_abort', id::text) AS n FROM abort_requested
)
SELECT jsonb_build_object(
    'examined', (SELECT count(*) FROM target),
    'last_id', (SELECT max(id) FROM target),
    'cancelled', (SELECT count(*) FROM cancelled),
    'abort_requested', (SELECT count(*) FROM notified)
)::text AS jobq
