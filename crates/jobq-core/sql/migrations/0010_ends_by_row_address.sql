-- jobq schema, version 10: a worker's successes (and deletions) are ended by the address of the row the
-- end locked.
--
-- end_jobs (migration 7) ended successes with `UPDATE … WHERE j.id IN (SELECT l.id … FOR UPDATE SKIP
-- LOCKED)`: each job's row was found through the primary key twice, once to lock it and once more to update
-- it (a semi-join of the locked ids with the table). The locked row cannot change until the statement ends,
-- so its address (ctid) from the locking walk is where the UPDATE finds it: one index walk a job, and a TID
-- scan for the update. A job's row held by someone else's transaction is still skipped, not waited for.
-- In-server fetch + complete loops over 40,000 jobs (tenth session): `complete` reads 14.7 buffers a job
-- against 17.4 before (a bare `UPDATE … WHERE id = ANY` without the checks and the row locks: 12.7), and
-- took 994–1,130 ms against 1,095–1,465 ms in five interleaved rounds.
--
-- A row that another transaction changed and committed after this statement's snapshot was taken, but
-- before its lock was taken, is locked at its newer version, which the snapshot may not see: then that job
-- is answered as busy and its end is reported again (as for a row held by someone else), not lost.
--
-- The rest of end_jobs is migration 7's.
CREATE OR REPLACE FUNCTION {schema}.end_jobs(worker bigint, ends jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    attempt_of jsonb;
    succeeded  bigint[];
    deleted    bigint[];
    others     boolean;
    e          record;
    q          text;
    queues     text[];
    locks      text[];
    done       integer := 0; -- jobs ended here; when all were, none is busy
    n          integer;
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
        WITH ended AS (
            UPDATE {schema}.jobs j
            SET status = 'succeeded', finished_at = now(), worker_id = NULL, abort_requested = false
            WHERE j.ctid = ANY (ARRAY(SELECT l.ctid FROM {schema}.jobs l
                                      WHERE l.id = ANY (succeeded) AND l.worker_id = worker
                                        AND l.attempts = (attempt_of->>l.id::text)::integer
                                      FOR UPDATE SKIP LOCKED))
            RETURNING j.lock
        )
        SELECT array_agg(lock) FILTER (WHERE lock IS NOT NULL), count(*) INTO locks, n FROM ended;
        done := done + n;
    END IF;
    IF cardinality(deleted) > 0 THEN
        WITH ended AS (
            DELETE FROM {schema}.jobs j
            WHERE j.ctid = ANY (ARRAY(SELECT l.ctid FROM {schema}.jobs l
                                      WHERE l.id = ANY (deleted) AND l.worker_id = worker
                                        AND l.attempts = (attempt_of->>l.id::text)::integer
                                      FOR UPDATE SKIP LOCKED))
            RETURNING j.lock
        )
        SELECT locks || array_agg(lock) FILTER (WHERE lock IS NOT NULL), count(*) INTO locks, n FROM ended;
        done := done + n;
    END IF;

    IF others THEN
        -- Every other end in one statement, but for the queueing-lock cases below.
        WITH mine AS (
            SELECT j.id, j.old_lock, r."end", r.error, r.scheduled_at, r.queue, r.priority, r.lock
            FROM jsonb_to_recordset(ends)
                     AS r(id bigint, attempt integer, "end" text, error text, scheduled_at timestamptz,
                          queue text, priority integer, lock text),
                 -- OFFSET 0 keeps the subquery apart: a nested loop from the input, one probe per job.
                 LATERAL (SELECT j.id, j.queueing_lock, j.lock AS old_lock FROM {schema}.jobs j
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
                blocked = false,
                worker_id = NULL,
                abort_requested = false,
                last_error = coalesce(m.error, j.last_error),
                errors = CASE WHEN m.error IS NULL OR m."end" = 'release' THEN j.errors
                              ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                  'attempt', j.attempts, 'at', now(), 'error', m.error)) END
            FROM mine m
            WHERE j.id = m.id
            RETURNING j.status, j.queue, j.lock, m.old_lock
        )
        SELECT array_agg(queue) FILTER (WHERE status = 'todo'),
               locks || array_agg(old_lock) FILTER (WHERE old_lock IS NOT NULL)
                     || array_agg(lock) FILTER (WHERE lock IS NOT NULL),
               count(*)
        INTO queues, locks, n FROM updated;
        done := done + n;

        FOR e IN
            SELECT r.*, j.queueing_lock, j.attempts AS attempts, j.lock AS old_lock
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
                    blocked = false,
                    worker_id = NULL,
                    abort_requested = false,
                    last_error = coalesce(e.error, j.last_error),
                    errors = CASE WHEN e.error IS NULL OR e."end" = 'release' THEN j.errors
                                  ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                      'attempt', j.attempts, 'at', now(), 'error', e.error)) END
                WHERE j.id = e.id
                RETURNING j.queue INTO q;
                queues := queues || q;
                locks := locks || e.old_lock || e.lock;
                done := done + 1;
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
                        done := done + 1;
                    ELSE
                        UPDATE {schema}.jobs j
                        SET status = 'todo', queueing_lock = NULL, attempts = greatest(j.attempts - 1, 0), blocked = false,
                            worker_id = NULL, abort_requested = false, last_error = coalesce(e.error, j.last_error)
                        WHERE j.id = e.id
                        RETURNING j.queue INTO q;
                        queues := queues || q;
                        done := done + 1;
                    END IF;
                WHEN lock_not_available THEN
                    NULL; -- someone else's open transaction is in the way: busy, try again later
            END;
        END LOOP;
        -- Whatever way the loop's job ended, its lock (and the one it moved to) is settled below.
        SELECT locks || array_agg(e2.old_lock) INTO locks
        FROM (SELECT j.lock AS old_lock FROM jsonb_to_recordset(ends) AS r(id bigint, "end" text)
              JOIN {schema}.jobs j ON j.id = r.id
              WHERE r."end" IN ('retry', 'release') AND j.queueing_lock IS NOT NULL AND j.lock IS NOT NULL) e2;
        PERFORM {schema}.notify_queues(queues);
    END IF;

    -- The locks whose running job ended here get their next head (migration 7).
    IF locks IS NOT NULL AND cardinality(locks) > 0 THEN
        PERFORM {schema}.settle_locks(locks);
    END IF;

    IF done = jsonb_array_length(ends) THEN
        RETURN '{"busy": []}';
    END IF;
    RETURN jsonb_build_object('busy', coalesce((
        SELECT jsonb_agg(j.id) FROM {schema}.jobs j
        WHERE j.id IN (SELECT (jsonb_array_elements(ends)->>'id')::bigint)
          AND j.worker_id = worker AND j.attempts = (attempt_of->>j.id::text)::integer), '[]'));
END;
$$;
