-- A worker fetches only the tasks it has handlers for, so a deploy that adds a task never turns its jobs
-- into failures on the workers that do not know it yet: those jobs wait for a worker that does.
--
-- Input: {"worker_id": n, "queues": [..] or null for all, "tasks": [..] or null for any, "limit": n ≤ 1000}.
-- Otherwise as before (0001): up to `limit` runnable jobs, highest priority first then oldest, marked
-- `doing` for the worker. A lock's head that is a task this worker does not know keeps the jobs behind it
-- waiting here, as it would if it were running: one running per lock, the head first.
CREATE OR REPLACE FUNCTION {schema}.fetch_jobs(p jsonb) RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql AS $$
DECLARE
    worker bigint  := (p->>'worker_id')::bigint;
    wanted integer := (p->>'limit')::integer;
    queues text[]  := CASE WHEN jsonb_typeof(p->'queues') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(p->'queues')) END;
    tasks  text[]  := CASE WHEN jsonb_typeof(p->'tasks') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(p->'tasks')) END;
    ids    bigint[];
BEGIN
    IF queues IS NULL THEN
        ids := ARRAY(SELECT c.id FROM (SELECT r.id FROM {schema}.runnable_jobs r
                                       WHERE tasks IS NULL OR r.task = ANY (tasks)
                                       ORDER BY r.priority DESC, r.id
                                       LIMIT 1000 FOR UPDATE SKIP LOCKED) c
                     LIMIT wanted);
    ELSE
        ids := ARRAY(SELECT r.id FROM {schema}.runnable_jobs r
                     WHERE r.queue = ANY (queues) AND (tasks IS NULL OR r.task = ANY (tasks))
                     ORDER BY r.priority DESC, r.id
                     LIMIT wanted FOR UPDATE SKIP LOCKED);
    END IF;
    RETURN QUERY
    WITH taken AS (
        UPDATE {schema}.jobs j
        SET status = 'doing', attempts = j.attempts + 1, started_at = now(), worker_id = worker
        WHERE j.id = ANY (ids)
        RETURNING j.*
    )
    SELECT * FROM taken ORDER BY priority DESC, id;
END;
$$;
