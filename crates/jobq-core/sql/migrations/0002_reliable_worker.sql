-- jobq schema, version 2: the worker and the server always agree on what is running, and ending a job
-- never waits on someone else's lock nor fails for everyone because of one job.

-- Wakes the workers of each queue (one NOTIFY per queue; a queue name too long for a payload wakes every
-- listener, with an empty payload).
CREATE FUNCTION {schema}.notify_queues(queues text[]) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('{channel}', CASE WHEN octet_length(q) <= 1000 THEN q ELSE '' END)
    FROM (SELECT DISTINCT q FROM unnest(queues) AS q) d
$$;

-- Ends jobs running on `worker`. `ends` is a JSON array of {"id", "attempt", "end", "error",
-- "scheduled_at", "queue", "priority", "lock", "delete"}, where "end" is one of
--   succeeded  done (deleted instead when "delete" is true),
--   failed     failed for good, with "error",
--   aborted    stopped on request,
--   retry      failed with "error", to run again at "scheduled_at" (now when null), maybe moved to another
--              queue, priority or lock,
--   release    never ran or was stopped by its worker's shutdown: back to `todo` as it was, the attempt not
--              charged ("error", if any, is kept as `last_error` but is no failed attempt).
-- A job changes only while it is still this attempt on this worker (`worker_id` is set exactly while a job
-- is `doing`; `attempts` tells a later attempt of the same job from this one), so ending a job twice, or a
-- job recovered by another worker meanwhile, changes nothing.
--
-- Nothing here waits on another transaction. Ending a job never needs to: a row someone else has locked
-- (a caller's open transaction cancelling it, say) or a queueing lock someone else is inserting is left
-- as it is and reported "busy", and the worker tries again later. Returns {"busy": [ids]}: the jobs of
-- `ends` still running on this worker, this attempt, after the call.
--
-- Successes, the bulk, take join-free statements on `id = ANY (…)`: primary-key probes whatever the
-- statistics say (they are stale at the start of every burst, so a join could be planned as a nested loop
-- that rescans one side per job). Retries and releases of a job with a queueing lock go one by one, each in
-- a subtransaction, since two of them may want the same queueing lock: the first gets it, a later retry
-- fails saying why, and a later release goes back without it (it never ran, so it must not be lost).
CREATE FUNCTION {schema}.end_jobs(worker bigint, ends jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    attempt_of jsonb;
    succeeded  bigint[];
    deleted    bigint[];
    others     boolean;
    e          record;
    q          text;
    queues     text[];
BEGIN
    -- A lock someone else holds is never waited for longer than this (the rest of the batch goes on).
    PERFORM set_config('lock_timeout', '100ms', true);
    SELECT coalesce(jsonb_object_agg(r.id::text, r.attempt), '{}'),
           coalesce(array_agg(r.id) FILTER (WHERE r."end" = 'succeeded' AND NOT coalesce(r.delete, false)), '{}'),
           coalesce(array_agg(r.id) FILTER (WHERE r."end" = 'succeeded' AND coalesce(r.delete, false)), '{}'),
           coalesce(bool_or(r."end" <> 'succeeded'), false)
    INTO attempt_of, succeeded, deleted, others
    FROM jsonb_to_recordset(ends) AS r(id bigint, attempt integer, "end" text, delete boolean);

    IF cardinality(succeeded) > 0 THEN
        UPDATE {schema}.jobs j
        SET status = 'succeeded', finished_at = now(), worker_id = NULL, abort_requested = false
        WHERE j.id IN (SELECT l.id FROM {schema}.jobs l
                       WHERE l.id = ANY (succeeded) AND l.worker_id = worker
                         AND l.attempts = (attempt_of->>l.id::text)::integer
                       FOR UPDATE SKIP LOCKED);
    END IF;
    IF cardinality(deleted) > 0 THEN
        DELETE FROM {schema}.jobs j
        WHERE j.id IN (SELECT l.id FROM {schema}.jobs l
                       WHERE l.id = ANY (deleted) AND l.worker_id = worker
                         AND l.attempts = (attempt_of->>l.id::text)::integer
                       FOR UPDATE SKIP LOCKED);
    END IF;

    IF others THEN
        -- Every other end in one statement, but for the queueing-lock cases below.
        WITH mine AS (
            SELECT j.id, r."end", r.error, r.scheduled_at, r.queue, r.priority, r.lock
            FROM jsonb_to_recordset(ends)
                     AS r(id bigint, attempt integer, "end" text, error text, scheduled_at timestamptz,
                          queue text, priority integer, lock text),
                 -- OFFSET 0 keeps the subquery apart: a nested loop from the input, one probe per job.
                 LATERAL (SELECT j.id, j.queueing_lock FROM {schema}.jobs j
                          WHERE j.id = r.id AND j.worker_id = worker AND j.attempts = r.attempt
                          FOR UPDATE SKIP LOCKED OFFSET 0) j
            WHERE r."end" <> 'succeeded'
              AND NOT (r."end" IN ('retry', 'release') AND j.queueing_lock IS NOT NULL)
        ), updated AS (
            UPDATE {schema}.jobs j
            SET status = CASE m."end" WHEN 'retry' THEN 'todo' WHEN 'release' THEN 'todo' ELSE m."end" END,
                scheduled_at = CASE WHEN m."end" = 'retry' THEN coalesce(m.scheduled_at, now())
                                    ELSE j.scheduled_at END,
                finished_at = CASE WHEN m."end" IN ('retry', 'release') THEN NULL ELSE now() END,
                attempts = CASE WHEN m."end" = 'release' THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
                queue = coalesce(m.queue, j.queue),
                priority = coalesce(m.priority, j.priority),
                lock = coalesce(m.lock, j.lock),
                worker_id = NULL,
                abort_requested = false,
                last_error = coalesce(m.error, j.last_error),
                errors = CASE WHEN m.error IS NULL OR m."end" = 'release' THEN j.errors
                              ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                  'attempt', j.attempts, 'at', now(), 'error', m.error)) END
            FROM mine m
            WHERE j.id = m.id
            RETURNING j.status, j.queue
        )
        SELECT array_agg(queue) FILTER (WHERE status = 'todo') INTO queues FROM updated;

        FOR e IN
            SELECT r.*, j.queueing_lock, j.attempts AS attempts
            FROM jsonb_to_recordset(ends)
                     AS r(id bigint, attempt integer, "end" text, error text, scheduled_at timestamptz,
                          queue text, priority integer, lock text)
                 JOIN {schema}.jobs j ON j.id = r.id AND j.worker_id = worker AND j.attempts = r.attempt
            WHERE r."end" IN ('retry', 'release') AND j.queueing_lock IS NOT NULL
            ORDER BY r.id
        LOOP
            BEGIN
                UPDATE {schema}.jobs j
                SET status = 'todo',
                    scheduled_at = CASE WHEN e."end" = 'retry' THEN coalesce(e.scheduled_at, now())
                                        ELSE j.scheduled_at END,
                    finished_at = NULL,
                    attempts = CASE WHEN e."end" = 'release' THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
                    queue = coalesce(e.queue, j.queue),
                    priority = coalesce(e.priority, j.priority),
                    lock = coalesce(e.lock, j.lock),
                    worker_id = NULL,
                    abort_requested = false,
                    last_error = coalesce(e.error, j.last_error),
                    errors = CASE WHEN e.error IS NULL OR e."end" = 'release' THEN j.errors
                                  ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                      'attempt', j.attempts, 'at', now(), 'error', e.error)) END
                WHERE j.id = e.id
                RETURNING j.queue INTO q;
                queues := queues || q;
            EXCEPTION
                WHEN unique_violation THEN
                    -- Another job holds the queueing lock: a retry fails saying so; a release goes back
                    -- without the queueing lock.
                    IF e."end" = 'retry' THEN
                        UPDATE {schema}.jobs j
                        SET status = 'failed', finished_at = now(), worker_id = NULL, abort_requested = false,
                            last_error = e.error || ' (not retried: its queueing lock is taken)',
                            errors = j.errors || jsonb_build_array(jsonb_build_object(
                                'attempt', j.attempts, 'at', now(),
                                'error', e.error || ' (not retried: its queueing lock is taken)'))
                        WHERE j.id = e.id;
                    ELSE
                        UPDATE {schema}.jobs j
                        SET status = 'todo', queueing_lock = NULL, attempts = greatest(j.attempts - 1, 0),
                            worker_id = NULL, abort_requested = false, last_error = coalesce(e.error, j.last_error)
                        WHERE j.id = e.id
                        RETURNING j.queue INTO q;
                        queues := queues || q;
                    END IF;
                WHEN lock_not_available THEN
                    NULL; -- someone else's open transaction is in the way: busy, try again later
            END;
        END LOOP;
        PERFORM {schema}.notify_queues(queues);
    END IF;

    RETURN jsonb_build_object('busy', coalesce((
        SELECT jsonb_agg(j.id) FROM {schema}.jobs j
        WHERE j.id IN (SELECT (jsonb_array_elements(ends)->>'id')::bigint)
          AND j.worker_id = worker AND j.attempts = (attempt_of->>j.id::text)::integer), '[]'));
END;
$$;

-- Input: {"worker_id": n, "jobs": [ends]}; see end_jobs.
CREATE FUNCTION {schema}.complete(p jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT {schema}.end_jobs((p->>'worker_id')::bigint, p->'jobs')
$$;

-- Input: {"worker_id": n, "held": [ids]}: every job the worker is running, has fetched but not started, or
-- has ended but not yet reported. Records that the worker is alive, and puts back every job the server has
-- `doing` for it that it does not hold: a fetch or hand-over whose answer was lost committed them, and they
-- never started here, so they go back to `todo` with their attempt not charged. The worker calls this only
-- when no fetch or hand-over of its own is on the way.
-- Returns null when the worker was declared dead and removed, else {"aborts": [ids of its running jobs
-- whose abort was requested], "released": n, "busy": [ids it could not put back yet]}.
CREATE FUNCTION {schema}.heartbeat(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    worker   bigint := (p->>'worker_id')::bigint;
    held     bigint[] := ARRAY(SELECT jsonb_array_elements_text(p->'held')::bigint);
    unknown  jsonb;
    ended    jsonb := '{"busy": []}';
BEGIN
    UPDATE {schema}.workers SET heartbeat_at = now() WHERE id = worker;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_agg(jsonb_build_object('id', j.id, 'attempt', j.attempts, 'end', 'release'))
    INTO unknown
    FROM {schema}.jobs j
    WHERE j.worker_id = worker AND j.status = 'doing' AND j.id <> ALL (held);
    IF unknown IS NOT NULL THEN
        ended := {schema}.end_jobs(worker, unknown);
    END IF;
    RETURN jsonb_build_object(
        'aborts', coalesce((SELECT jsonb_agg(j.id) FROM {schema}.jobs j
                            WHERE j.worker_id = worker AND j.status = 'doing' AND j.abort_requested
                              AND j.id = ANY (held)), '[]'),
        'released', coalesce(jsonb_array_length(unknown), 0) - jsonb_array_length(ended->'busy'),
        'busy', ended->'busy');
END;
$$;

DROP FUNCTION {schema}.complete_jobs(jsonb);
