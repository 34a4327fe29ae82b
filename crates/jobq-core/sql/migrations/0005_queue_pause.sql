-- jobq schema, version 5: queues can be paused and resumed.
--
-- A row per queue that was ever paused; `paused_at` is set while it is paused and cleared by a resume (the
-- row stays, for settings a later version may keep per queue). A queue needs no row to exist: one with
-- none runs, and one can be paused before it has any job, so its future jobs wait.
CREATE TABLE {schema}.queues (
    name       text PRIMARY KEY,
    paused_at  timestamptz
);

-- Pauses a queue: its waiting jobs stay `todo` and no fetch takes them (running jobs run on). Returns
-- whether it changed (false when it was paused already).
CREATE FUNCTION {schema}.pause_queue(queue text) RETURNS boolean
LANGUAGE sql AS $$
    WITH paused AS (
        INSERT INTO {schema}.queues AS q (name, paused_at) VALUES (queue, now())
        ON CONFLICT (name) DO UPDATE SET paused_at = now() WHERE q.paused_at IS NULL
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM paused)
$$;

-- Resumes a queue and wakes its workers (one NOTIFY on the queue's channel, delivered at commit, as a
-- deferral's is). Returns whether it changed (false when it was not paused).
CREATE FUNCTION {schema}.resume_queue(queue text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {schema}.queues SET paused_at = NULL WHERE name = queue AND paused_at IS NOT NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM {schema}.notify_queue(queue);
    RETURN true;
END;
$$;

-- fetch_jobs as migration 4 left it, skipping the jobs of paused queues. The paused queues are read once
-- per call into an array (the table holds a row per paused queue, a handful at most), so the hot path pays
-- one primary-key-sized scan and a comparison per row, never a subquery per row. From chosen queues the
-- paused ones are dropped from the list before the scan, so their jobs are not even visited. From every
-- queue they are a filter: the scan walks past a paused queue's due jobs at the head of the priority index,
-- as it does past unknown tasks (docs/status.md).
--
-- Input: {"worker_id": n, "queues": [..] or null for all, "tasks": [..] or null for any, "limit": n ≤ 1000}.
CREATE OR REPLACE FUNCTION {schema}.fetch_jobs(p jsonb) RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql AS $$
DECLARE
    worker bigint  := (p->>'worker_id')::bigint;
    wanted integer := (p->>'limit')::integer;
    queues text[]  := CASE WHEN jsonb_typeof(p->'queues') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(p->'queues')) END;
    tasks  text[]  := CASE WHEN jsonb_typeof(p->'tasks') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(p->'tasks')) END;
    paused text[]  := ARRAY(SELECT q.name FROM {schema}.queues q WHERE q.paused_at IS NOT NULL);
    ids    bigint[];
BEGIN
    IF queues IS NULL THEN
        ids := ARRAY(SELECT c.id FROM (SELECT r.id FROM {schema}.runnable_jobs r
                                       WHERE (tasks IS NULL OR r.task = ANY (tasks))
                                         AND r.queue <> ALL (paused)
                                       ORDER BY r.priority DESC, r.id
                                       LIMIT 1000 FOR UPDATE SKIP LOCKED) c
                     LIMIT wanted);
    ELSE
        IF cardinality(paused) > 0 THEN
            queues := ARRAY(SELECT w FROM unnest(queues) w WHERE w <> ALL (paused));
        END IF;
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
