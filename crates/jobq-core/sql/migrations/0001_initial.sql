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
    worker_id        bigint,  -- the running worker; no foreign key, to keep triggers off the hot path
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    last_error       text,
    -- One entry per failed attempt: {"attempt": n, "at": time, "error": message}.
    errors           jsonb NOT NULL DEFAULT '[]'
);

-- The fetch path reads only these partial indexes, so finished jobs never slow it down.
CREATE INDEX jobs_fetch_idx ON {schema}.jobs (priority DESC, id) WHERE status = 'todo';
CREATE INDEX jobs_fetch_queue_idx ON {schema}.jobs (queue, priority DESC, id) WHERE status = 'todo';
-- At most one `todo` job per queueing lock, at most one `doing` job per lock.
CREATE UNIQUE INDEX jobs_queueing_lock_idx ON {schema}.jobs (queueing_lock) WHERE status = 'todo';
CREATE UNIQUE INDEX jobs_lock_idx ON {schema}.jobs (lock) WHERE status = 'doing';
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

-- Inserts a batch of jobs atomically. Input: a JSON array of job objects. Output:
-- {"ids": [...]} on success, or {"conflict": "<queueing lock>"} when a queueing lock is taken, in which
-- case nothing is inserted. It never raises on a conflict, so the caller's transaction stays usable.
-- One NOTIFY per queue and statement wakes the workers (delivered at the caller's commit).
CREATE FUNCTION {schema}.defer_jobs(new_jobs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    wanted  integer := jsonb_array_length(new_jobs);
    ids     bigint[];
    queues  text[];
    locks   text[];
    missing text;
BEGIN
    WITH inserted AS (
        INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
        SELECT coalesce(n.queue, 'default'), n.task, coalesce(n.args, 'null'), coalesce(n.priority, 0),
               n.lock, n.queueing_lock, coalesce(n.scheduled_at, now())
        FROM ROWS FROM (jsonb_to_recordset(new_jobs)
                 AS (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
                     scheduled_at timestamptz)) WITH ORDINALITY
             AS n(queue, task, args, priority, lock, queueing_lock, scheduled_at, ord)
        ORDER BY n.ord
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
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

    -- A queue name too long for a NOTIFY payload wakes every listener (empty payload).
    PERFORM pg_notify('{channel}', CASE WHEN octet_length(q) <= 1000 THEN q ELSE '' END)
    FROM unnest(queues) AS q;
    RETURN jsonb_build_object('ids', to_jsonb(coalesce(ids, '{}')));
END;
$$;
