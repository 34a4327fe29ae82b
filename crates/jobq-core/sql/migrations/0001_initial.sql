-- jobq schema, version 1.
-- Object names are qualified with a schema placeholder that jobq replaces by the configured, validated name.

CREATE TABLE {schema}.workers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    queues        text[],
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_heartbeat_idx ON {schema}.workers (heartbeat_at);

CREATE TABLE {schema}.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text NOT NULL DEFAULT 'default',
    task             text NOT NULL,
    args             jsonb NOT NULL DEFAULT '{}',
    priority         integer NOT NULL DEFAULT 0,
    lock             text,
    queueing_lock    text,
    status           text NOT NULL DEFAULT 'todo'
                     CHECK (status IN ('todo', 'doing', 'succeeded', 'failed', 'cancelled', 'aborted')),
    scheduled_at     timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    abort_requested  boolean NOT NULL DEFAULT false,
    -- The running worker: set exactly while the job is `doing` (fetch sets it, every way out clears it).
    -- No foreign key, to keep triggers off the hot path.
    worker_id        bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    last_error       text,
    -- One entry per failed attempt: {"attempt": n, "at": time, "error": message}.
    errors           jsonb NOT NULL DEFAULT '[]'
);

-- The fetch path reads only these partial indexes, so finished jobs never slow it down. The per-queue index
-- serves workers of chosen queues; the default queue stays out of it, which spares most deferrals an index
-- entry (a third of an INSERT's cost), and its workers walk the priority index.
CREATE INDEX jobs_fetch_idx ON {schema}.jobs (priority DESC, id) WHERE status = 'todo';
CREATE INDEX jobs_fetch_queue_idx ON {schema}.jobs (queue, priority DESC, id)
    WHERE status = 'todo' AND queue <> 'default';
-- At most one `todo` job per queueing lock, at most one `doing` job per lock. Jobs without one stay out of
-- these indexes, so deferring and fetching them costs no entry there.
CREATE UNIQUE INDEX jobs_queueing_lock_idx ON {schema}.jobs (queueing_lock)
    WHERE status = 'todo' AND queueing_lock IS NOT NULL;
CREATE UNIQUE INDEX jobs_lock_idx ON {schema}.jobs (lock) WHERE status = 'doing' AND lock IS NOT NULL;
-- Lock heads: the first waiting job of each lock.
CREATE INDEX jobs_todo_lock_idx ON {schema}.jobs (lock, priority DESC, id) WHERE status = 'todo' AND lock IS NOT NULL;
-- Running jobs by worker, for stalled-job recovery.
CREATE INDEX jobs_doing_idx ON {schema}.jobs (worker_id) WHERE status = 'doing';
-- Pruning finished jobs by age.
CREATE INDEX jobs_finished_idx ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Periodic (cron) deferral: one row per task and tick that was deferred, so N workers defer each tick once.
CREATE TABLE {schema}.periodic_ticks (
    task        text NOT NULL,
    tick        timestamptz NOT NULL,
    job_id      bigint,
    PRIMARY KEY (task, tick)
);

-- The rows of a JSON array of job objects, defaults filled in, in input order. Plain SQL, so it is planned
-- inline wherever it is used.
CREATE FUNCTION {schema}.job_rows(new_jobs jsonb)
RETURNS TABLE (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
               scheduled_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(n.queue, 'default'), n.task, coalesce(n.args, 'null'), coalesce(n.priority, 0),
           n.lock, n.queueing_lock, coalesce(n.scheduled_at, now())
    FROM ROWS FROM (jsonb_to_recordset(new_jobs)
             AS (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
                 scheduled_at timestamptz)) WITH ORDINALITY
         AS n(queue, task, args, priority, lock, queueing_lock, scheduled_at, ord)
    ORDER BY n.ord
$$;

-- Inserts a batch of jobs atomically. Input: a JSON array of job objects. Output:
-- {"ids": [...]} on success, or {"conflict": "<queueing lock>"} when a queueing lock is taken, in which
-- case nothing is inserted. It never raises on a conflict, so the caller's transaction stays usable.
-- One NOTIFY per queue and statement wakes the workers (delivered at the caller's commit).
-- A batch without queueing locks cannot conflict and skips `ON CONFLICT`'s speculative insertion, a
-- sixth of the cost of a large batch.
CREATE FUNCTION {schema}.defer_jobs(new_jobs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    wanted  integer := jsonb_array_length(new_jobs);
    ids     bigint[];
    queues  text[];
    locks   text[];
    missing text;
BEGIN
    IF NOT new_jobs @? '$[*] ? (@.queueing_lock != null)' THEN
        WITH inserted AS (
            INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
            SELECT * FROM {schema}.job_rows(new_jobs)
            RETURNING id, queue
        )
        SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue) INTO ids, queues FROM inserted;
    ELSE
        WITH inserted AS (
            INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
            SELECT * FROM {schema}.job_rows(new_jobs)
            ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
            RETURNING id, queue, queueing_lock
        )
        SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue), array_agg(queueing_lock)
        INTO ids, queues, locks FROM inserted;

        IF coalesce(array_length(ids, 1), 0) < wanted THEN
            SELECT n.queueing_lock INTO missing
            FROM jsonb_to_recordset(new_jobs) AS n(queueing_lock text)
            WHERE n.queueing_lock IS NOT NULL
            GROUP BY n.queueing_lock
            HAVING count(*) > (SELECT count(*) FROM unnest(locks) l WHERE l = n.queueing_lock)
            LIMIT 1;
            DELETE FROM {schema}.jobs WHERE id = ANY (ids);
            RETURN jsonb_build_object('conflict', missing);
        END IF;
    END IF;

    -- A queue name too long for a NOTIFY payload wakes every listener (empty payload).
    PERFORM pg_notify('{channel}', CASE WHEN octet_length(q) <= 1000 THEN q ELSE '' END)
    FROM unnest(queues) AS q;
    RETURN jsonb_build_object('ids', to_jsonb(coalesce(ids, '{}')));
END;
$$;

-- Defers one job: `defer_jobs` for a single job object, cheaper than going through a recordset (the
-- common case, one job in the caller's transaction). Same output.
CREATE FUNCTION {schema}.defer_job(n jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    new_id    bigint;
    new_queue text;
BEGIN
    INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
    VALUES (coalesce(n->>'queue', 'default'), n->>'task', coalesce(n->'args', 'null'),
            coalesce((n->>'priority')::integer, 0), n->>'lock', n->>'queueing_lock',
            coalesce((n->>'scheduled_at')::timestamptz, now()))
    ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
    RETURNING id, queue INTO new_id, new_queue;
    IF new_id IS NULL THEN
        RETURN jsonb_build_object('conflict', n->>'queueing_lock');
    END IF;
    PERFORM pg_notify('{channel}', CASE WHEN octet_length(new_queue) <= 1000 THEN new_queue ELSE '' END);
    RETURN jsonb_build_object('ids', jsonb_build_array(new_id));
END;
$$;

-- The worker's hot path is two functions, so that PL/pgSQL plans each statement once per connection
-- instead of on every call (an unnamed statement is planned each time it runs; these run as unnamed
-- statements so they also work through PgBouncer in transaction pooling).

-- The jobs a worker may start now: waiting, due, and the head of their lock (the first by priority, then
-- age, of its waiting jobs) with no job of the lock running. A view, so every query that reads it plans
-- it inline.
CREATE VIEW {schema}.runnable_jobs AS
    SELECT j.*
    FROM {schema}.jobs j
    WHERE j.status = 'todo'
      AND j.scheduled_at <= now()
      AND (j.lock IS NULL OR (
            NOT EXISTS (SELECT 1 FROM {schema}.jobs d WHERE d.lock = j.lock AND d.status = 'doing')
            AND NOT EXISTS (
                SELECT 1 FROM {schema}.jobs e
                WHERE e.lock = j.lock AND e.status = 'todo' AND e.scheduled_at <= now()
                  AND (e.priority > j.priority OR (e.priority = j.priority AND e.id < j.id)))));

-- Input: {"worker_id": n, "queues": [..] or null for all, "limit": n ≤ 1000}. Takes up to `limit` runnable
-- jobs, highest priority first then oldest, marks them `doing` for the worker and returns them.
--
-- From every queue, the statement's own LIMIT is a constant and `limit` applies outside it: the subquery
-- yields (and locks) rows only as they are taken, so no more than `limit` are locked, and one cached plan
-- serves every call. (A `LIMIT` parameter makes the generic plan look far costlier than a custom one, as
-- the planner guesses it at a tenth of the table, so PL/pgSQL would plan the statement anew on each call,
-- which costs more than fetching a small batch.) From chosen queues the statement is planned on each call
-- on purpose: only the actual queues tell whether to walk the queue index (a small queue behind a large
-- backlog) or the priority index (a large one), and a cached plan fits one case only.
CREATE FUNCTION {schema}.fetch_jobs(p jsonb) RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql AS $$
DECLARE
    worker bigint  := (p->>'worker_id')::bigint;
    wanted integer := (p->>'limit')::integer;
    queues text[]  := CASE WHEN jsonb_typeof(p->'queues') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(p->'queues')) END;
    ids    bigint[];
BEGIN
    IF queues IS NULL THEN
        ids := ARRAY(SELECT c.id FROM (SELECT r.id FROM {schema}.runnable_jobs r
                                       ORDER BY r.priority DESC, r.id
                                       LIMIT 1000 FOR UPDATE SKIP LOCKED) c
                     LIMIT wanted);
    ELSE
        ids := ARRAY(SELECT r.id FROM {schema}.runnable_jobs r
                     WHERE r.queue = ANY (queues)
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

-- Input: {"worker_id": n, "jobs": [{"id", "status", "error", "scheduled_at", "queue", "priority", "lock",
-- "delete"}, …]}. Ends the worker's running jobs: `succeeded` (deleted instead when "delete" is true),
-- `failed`, `aborted`, or back to `todo` for a retry at `scheduled_at`. Only jobs still running on this
-- worker change: one recovered from it as stalled, cancelled meanwhile or retried by hand is not touched
-- (`worker_id` is set exactly while a job is `doing`, so it alone tells). A retry whose queueing lock
-- another waiting job holds fails instead. Returns the number of jobs ended.
--
-- Successes, the bulk, take two join-free statements on `id = ANY (…)`: primary-key probes whatever the
-- statistics say. They are stale at the start of every burst (they say nothing is running), so a join
-- on `worker_id` or `status = 'doing'` could be planned as a nested loop that rescans one side per job.
-- The other outcomes carry per-job values and join, driven from the input so each job is one probe.
CREATE FUNCTION {schema}.complete_jobs(p jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    worker    bigint := (p->>'worker_id')::bigint;
    succeeded bigint[];
    deleted   bigint[];
    others    boolean;
    n         bigint;
    ended     bigint := 0;
BEGIN
    SELECT coalesce(array_agg(r.id) FILTER (WHERE r.status = 'succeeded' AND NOT coalesce(r.delete, false)), '{}'),
           coalesce(array_agg(r.id) FILTER (WHERE r.status = 'succeeded' AND coalesce(r.delete, false)), '{}'),
           coalesce(bool_or(r.status <> 'succeeded'), false)
    INTO succeeded, deleted, others
    FROM jsonb_to_recordset(p->'jobs') AS r(id bigint, status text, delete boolean);

    UPDATE {schema}.jobs
    SET status = 'succeeded', finished_at = now(), worker_id = NULL, abort_requested = false
    WHERE id = ANY (succeeded) AND worker_id = worker;
    GET DIAGNOSTICS n = ROW_COUNT;
    ended := ended + n;

    IF cardinality(deleted) > 0 THEN
        DELETE FROM {schema}.jobs WHERE id = ANY (deleted) AND worker_id = worker;
        GET DIAGNOSTICS n = ROW_COUNT;
        ended := ended + n;
    END IF;

    IF others THEN
        WITH mine AS (
            SELECT j.id, j.attempts, r.status, r.error, r.scheduled_at, r.queue, r.priority, r.lock,
                   (r.status = 'todo' AND j.queueing_lock IS NOT NULL AND EXISTS (
                       SELECT 1 FROM {schema}.jobs o WHERE o.queueing_lock = j.queueing_lock AND o.status = 'todo'
                   )) AS blocked
            FROM jsonb_to_recordset(p->'jobs')
                     AS r(id bigint, status text, error text, scheduled_at timestamptz, queue text,
                          priority integer, lock text),
                 -- OFFSET 0 keeps the subquery apart: a nested loop from the input, one probe per job.
                 LATERAL (SELECT j.* FROM {schema}.jobs j
                          WHERE j.id = r.id AND j.worker_id = worker OFFSET 0) j
            WHERE r.status <> 'succeeded'
        ), updated AS (
            -- `worker_id = worker` again: READ COMMITTED re-checks it if the row changed meanwhile.
            UPDATE {schema}.jobs j
            SET status = CASE WHEN m.blocked THEN 'failed' ELSE m.status END,
                scheduled_at = CASE WHEN m.status = 'todo' AND NOT m.blocked
                                    THEN coalesce(m.scheduled_at, now()) ELSE j.scheduled_at END,
                finished_at = CASE WHEN m.status = 'todo' AND NOT m.blocked THEN NULL ELSE now() END,
                queue = coalesce(m.queue, j.queue),
                priority = coalesce(m.priority, j.priority),
                lock = coalesce(m.lock, j.lock),
                worker_id = NULL,
                abort_requested = false,
                last_error = coalesce(m.error, j.last_error),
                errors = CASE WHEN m.error IS NULL THEN j.errors
                              ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                  'attempt', m.attempts, 'at', now(),
                                  'error', CASE WHEN m.blocked
                                                THEN m.error || ' (not retried: its queueing lock is taken)'
                                                ELSE m.error END)) END
            FROM mine m
            WHERE j.id = m.id AND j.worker_id = worker
            RETURNING j.status, j.queue
        ), notified AS (
            SELECT pg_notify('{channel}', CASE WHEN octet_length(queue) <= 1000 THEN queue ELSE '' END) AS n
            FROM (SELECT DISTINCT queue FROM updated WHERE status = 'todo') q
        )
        SELECT (SELECT count(*) FROM updated) + 0 * (SELECT count(*) FROM notified) INTO n;
        ended := ended + n;
    END IF;
    RETURN ended;
END;
$$;
