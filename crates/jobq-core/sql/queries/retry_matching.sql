-- $1: a JSON filter as list_jobs.sql reads it, its "limit" the batch size, plus "reset_attempts": bool.
-- One bounded batch of Jobq::retry_matching: the first `limit` finished jobs (succeeded, failed, cancelled,
-- aborted) matching the filter, by id, that no other transaction holds (SKIP LOCKED), go back to `todo`, to
-- run now, as retry_job does it. Jobs without a queueing lock are updated in one statement; a job with one
-- goes through retry_job itself, whose subtransaction reports a lock held by another waiting job (even one
-- the snapshot cannot see) as a conflict and leaves the job as it was. One NOTIFY per queue.
-- Returns {"examined", "last_id", "retried", "conflicts", "locked_retried": [ids retried by retry_job]}.
WITH p AS NOT MATERIALIZED (
    SELECT ($1::text)::jsonb AS f
), target AS MATERIALIZED (
    SELECT j.id, j.queueing_lock
    FROM {schema}.jobs j, p
    WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
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
), plain AS (
    UPDATE {schema}.jobs j
    SET status = 'todo', scheduled_at = now(), finished_at = NULL, abort_requested = false, worker_id = NULL,
        blocked = false,
        attempts = CASE WHEN (SELECT coalesce((f->>'reset_attempts')::boolean, false) FROM p) THEN 0
                        ELSE j.attempts END
    FROM target t
    WHERE j.id = t.id AND t.queueing_lock IS NULL
    RETURNING j.id, j.queue
), locked AS MATERIALIZED (
    -- In the order of their queueing locks, as batches take them (no deadlock with a batch deferral).
    SELECT t.id, {schema}.retry_job(jsonb_build_object('id', t.id)) ->> 'outcome' AS outcome
    FROM target t
    WHERE t.queueing_lock IS NOT NULL
    ORDER BY t.queueing_lock, t.id
), notified AS (
    SELECT {schema}.notify_queues(array_agg(queue)) AS n FROM plain
)
SELECT jsonb_build_object(
    'examined', (SELECT count(*) FROM target),
    'last_id', (SELECT max(id) FROM target),
    'retried', (SELECT count(*) FROM plain) + (SELECT count(*) FROM locked WHERE outcome = 'retried'),
    'conflicts', (SELECT count(*) FROM locked WHERE outcome = 'conflict'),
    'locked_retried', (SELECT coalesce(jsonb_agg(id), '[]') FROM locked WHERE outcome = 'retried'),
    'notified', (SELECT count(*) FROM notified)
)::text AS jobq
