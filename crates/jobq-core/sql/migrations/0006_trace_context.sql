-- jobq schema, version 6: a job carries the trace context of the deferral that made it (issue #15).
--
-- `trace_context` holds a W3C `traceparent` header (`00-<trace id>-<parent id>-<flags>`, checked by the
-- library before it is sent), or NULL when none was known. The worker's `job` span links to it, so a trace
-- shows the request that deferred a job and the run that processed it (docs/tracing.md).
--
-- A nullable column with no default is only a catalog change: PostgreSQL neither rewrites the table nor
-- touches its rows or indexes (old rows read it as NULL), so the migration takes the table's lock for a
-- moment, however many jobs it holds. No index: nothing looks jobs up by trace.
ALTER TABLE {schema}.jobs ADD COLUMN trace_context text;

-- job_rows as migration 1 left it, with the `trace_context` column (a changed result type needs a new
-- function; the deferral functions below are the only callers).
DROP FUNCTION {schema}.job_rows(jsonb);
CREATE FUNCTION {schema}.job_rows(new_jobs jsonb)
RETURNS TABLE (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
               scheduled_at timestamptz, trace_context text)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(n.queue, 'default'), n.task, coalesce(n.args, 'null'), coalesce(n.priority, 0),
           n.lock, n.queueing_lock, coalesce(n.scheduled_at, now()), n.trace_context
    FROM ROWS FROM (jsonb_to_recordset(new_jobs)
             AS (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
                 scheduled_at timestamptz, trace_context text)) WITH ORDINALITY
         AS n(queue, task, args, priority, lock, queueing_lock, scheduled_at, trace_context, ord)
    ORDER BY n.ord
$$;

-- defer_job as migration 3 left it, storing the job's `trace_context`. Defers one job. Input: a job object.
-- Output: {"ids": [id]}, or {"conflict": "<queueing lock>"} when a waiting job holds its queueing lock, in
-- which case nothing is inserted and the caller's transaction stays usable. One NOTIFY for its queue,
-- delivered at the caller's commit.
CREATE OR REPLACE FUNCTION {schema}.defer_job(n jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    new_id    bigint;
    new_queue text;
    message   text;
    detail    text;
BEGIN
    IF n->>'queueing_lock' IS NULL OR current_setting('transaction_isolation') = 'read committed' THEN
        INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                   trace_context)
        VALUES (coalesce(n->>'queue', 'default'), n->>'task', coalesce(n->'args', 'null'),
                coalesce((n->>'priority')::integer, 0), n->>'lock', n->>'queueing_lock',
                coalesce((n->>'scheduled_at')::timestamptz, now()), n->>'trace_context')
        ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
        RETURNING id, queue INTO new_id, new_queue;
    ELSE
        BEGIN
            -- The same statement as above.
            INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                       trace_context)
            VALUES (coalesce(n->>'queue', 'default'), n->>'task', coalesce(n->'args', 'null'),
                    coalesce((n->>'priority')::integer, 0), n->>'lock', n->>'queueing_lock',
                    coalesce((n->>'scheduled_at')::timestamptz, now()), n->>'trace_context')
            ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
            RETURNING id, queue INTO new_id, new_queue;
        EXCEPTION WHEN serialization_failure THEN
            GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            IF {schema}.taken_queueing_lock(ARRAY[n->>'queueing_lock']) IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message, DETAIL = detail,
                    HINT = {schema}.serialization_hint();
            END IF;
        END;
    END IF;
    IF new_id IS NULL THEN
        RETURN jsonb_build_object('conflict', n->>'queueing_lock');
    END IF;
    PERFORM {schema}.notify_queue(new_queue);
    RETURN jsonb_build_object('ids', jsonb_build_array(new_id));
END;
$$;

-- defer_jobs as migration 3 left it, storing each job's `trace_context` (through job_rows). Inserts a batch
-- of jobs atomically. Input: a JSON array of job objects. Output: {"ids": [...]} in input order, or
-- {"conflict": "<queueing lock>"} when a queueing lock is taken (by a waiting job or by another job of the
-- batch), in which case nothing is inserted and the caller's transaction stays usable. One NOTIFY per
-- queue, delivered at the caller's commit. A job without a trace context costs one more absent key per row
-- in job_rows' recordset, nothing else.
--
-- A batch without queueing locks cannot conflict and skips `ON CONFLICT`'s speculative insertion, a sixth
-- of the cost of a large batch. A batch with queueing locks inserts its jobs in the order of their queueing
-- locks, whatever the input order: two batches waiting for each other's uncommitted locks then always wait
-- in the same direction, so they never deadlock (the second gets the conflict once the first commits).
-- Its ids are drawn from the sequence in input order first, so the ids still follow the input, and so does
-- the order in which workers take jobs of equal priority.
CREATE OR REPLACE FUNCTION {schema}.defer_jobs(new_jobs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    wanted  integer := jsonb_array_length(new_jobs);
    ids     bigint[];
    queues  text[];
    locks   text[];
    missing text;
    message text;
    detail  text;
BEGIN
    IF NOT new_jobs @? '$[*] ? (@.queueing_lock != null)' THEN
        WITH inserted AS (
            INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                       trace_context)
            SELECT * FROM {schema}.job_rows(new_jobs)
            RETURNING id, queue
        )
        SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue) INTO ids, queues FROM inserted;
    ELSIF current_setting('transaction_isolation') = 'read committed' THEN
        WITH numbered AS MATERIALIZED (
            SELECT nextval('{schema}.jobs_id_seq') AS id, r.*
            FROM {schema}.job_rows(new_jobs) r
        ), inserted AS (
            INSERT INTO {schema}.jobs (id, queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                       trace_context)
            OVERRIDING SYSTEM VALUE
            SELECT * FROM numbered ORDER BY queueing_lock, id
            ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
            RETURNING id, queue, queueing_lock
        )
        SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue), array_agg(queueing_lock)
        INTO ids, queues, locks FROM inserted;
    ELSE
        BEGIN
            -- The same statement as above.
            WITH numbered AS MATERIALIZED (
                SELECT nextval('{schema}.jobs_id_seq') AS id, r.*
                FROM {schema}.job_rows(new_jobs) r
            ), inserted AS (
                INSERT INTO {schema}.jobs (id, queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                           trace_context)
                OVERRIDING SYSTEM VALUE
                SELECT * FROM numbered ORDER BY queueing_lock, id
                ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
                RETURNING id, queue, queueing_lock
            )
            SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue), array_agg(queueing_lock)
            INTO ids, queues, locks FROM inserted;
        EXCEPTION WHEN serialization_failure THEN
            GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            missing := {schema}.taken_queueing_lock(ARRAY(
                SELECT n.queueing_lock FROM jsonb_to_recordset(new_jobs) AS n(queueing_lock text)));
            IF missing IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message, DETAIL = detail,
                    HINT = {schema}.serialization_hint();
            END IF;
            RETURN jsonb_build_object('conflict', missing);
        END;
    END IF;

    IF coalesce(array_length(ids, 1), 0) < wanted THEN
        -- Some job was skipped: the first lock (in sort order) with fewer inserted jobs than wanted.
        SELECT n.queueing_lock INTO missing
        FROM jsonb_to_recordset(new_jobs) AS n(queueing_lock text)
        WHERE n.queueing_lock IS NOT NULL
        GROUP BY n.queueing_lock
        HAVING count(*) > (SELECT count(*) FROM unnest(locks) l WHERE l = n.queueing_lock)
        ORDER BY n.queueing_lock
        LIMIT 1;
        DELETE FROM {schema}.jobs WHERE id = ANY (ids);
        RETURN jsonb_build_object('conflict', missing);
    END IF;

    PERFORM {schema}.notify_queues(queues);
    RETURN jsonb_build_object('ids', to_jsonb(coalesce(ids, '{}')));
END;
$$;
