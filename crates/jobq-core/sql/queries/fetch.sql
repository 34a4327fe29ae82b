-- $1: {"worker_id": …, "queues": [..] or null for all, "limit": n}. Takes up to `limit` due jobs, highest
-- priority first then oldest, at most one per lock and none whose lock is held by a running job, marks
-- them `doing` for the worker and returns them as JSON.
-- The parameter is referenced inline (no CTE), so that with the value bound the planner folds the limit and
-- the queue list into constants and plans for them.
WITH candidates AS (
    SELECT j.id
    FROM {schema}.jobs j
    WHERE j.status = 'todo'
      AND j.scheduled_at <= now()
      AND ((($1::text)::jsonb)->'queues' = 'null'::jsonb
           OR j.queue IN (SELECT jsonb_array_elements_text((($1::text)::jsonb)->'queues')))
      AND (j.lock IS NULL OR (
            NOT EXISTS (SELECT 1 FROM {schema}.jobs d WHERE d.lock = j.lock AND d.status = 'doing')
            AND NOT EXISTS (
                SELECT 1 FROM {schema}.jobs e
                WHERE e.lock = j.lock AND e.status = 'todo' AND e.scheduled_at <= now()
                  AND (e.priority > j.priority OR (e.priority = j.priority AND e.id < j.id)))))
    ORDER BY j.priority DESC, j.id
    LIMIT ((($1::text)::jsonb)->>'limit')::integer
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE {schema}.jobs j
SET status = 'doing', attempts = j.attempts + 1, started_at = now(),
    worker_id = ((($1::text)::jsonb)->>'worker_id')::bigint
WHERE j.id = ANY (ARRAY(SELECT id FROM candidates))
RETURNING to_jsonb(j)::text AS jobq
