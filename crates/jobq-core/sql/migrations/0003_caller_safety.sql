-- jobq schema, version 3: what jobq does in the caller's transaction never aborts it, at any isolation
-- level, and never deadlocks with another deferral.
--
-- A queueing-lock conflict is reported, not raised. At READ COMMITTED `INSERT … ON CONFLICT DO NOTHING`
-- already does that. At REPEATABLE READ and SERIALIZABLE it raises 40001 ("could not serialize access due
-- to concurrent update") when the conflicting job was committed after the caller's snapshot was taken, or
-- while the insert waited for it: the snapshot cannot see the job, and PostgreSQL will not skip a row it
-- cannot see. There, and only there, the insert runs in a subtransaction (an exception block), and a 40001
-- is looked into: when a job holds one of the queueing locks, the deferral reports that lock; otherwise the
-- error was a real serialization failure, and it is raised again for the caller to retry the transaction.
-- The READ COMMITTED path takes no subtransaction.

-- Wakes the workers of one queue: the one home of the NOTIFY payload rule (a queue name too long for a
-- payload wakes every listener, with an empty payload). Plain SQL without a FROM, so PostgreSQL inlines it
-- into the statement that calls it: it costs a deferral nothing over calling pg_notify itself.
CREATE FUNCTION {schema}.notify_queue(queue text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('{channel}', CASE WHEN octet_length(queue) <= 1000 THEN queue ELSE '' END)
$$;

-- notify_queues (migration 2), one NOTIFY per distinct queue, now in PL/pgSQL on top of notify_queue.
-- PostgreSQL 15 plans a LANGUAGE sql function that it cannot inline (this one has a FROM) anew in every
-- transaction: that cost each deferral about 35 µs, a quarter of its time on the server. PL/pgSQL keeps
-- the plan for the session.
CREATE OR REPLACE FUNCTION {schema}.notify_queues(queues text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM {schema}.notify_queue(q) FROM (SELECT DISTINCT q FROM unnest(queues) AS q) d;
END;
$$;

-- The first of `locks` (in their sort order) that a waiting job holds, judged by the queueing-lock index
-- itself (which sees committed jobs whatever the snapshot), or null. Each lock is tried by inserting a
-- probe row in a subtransaction that is always rolled back, so nothing of it stays. Only called on the rare
-- path above; a lock some other open transaction is inserting is waited for, as the deferral did.
CREATE FUNCTION {schema}.taken_queueing_lock(locks text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l text;
BEGIN
    FOR l IN SELECT DISTINCT x FROM unnest(locks) AS x WHERE x IS NOT NULL ORDER BY x LOOP
        BEGIN
            INSERT INTO {schema}.jobs (task, queueing_lock) VALUES ('jobq probe', l);
            RAISE SQLSTATE 'JQ900'; -- free: undo the probe
        EXCEPTION
            WHEN unique_violation THEN
                RETURN l;
            WHEN SQLSTATE 'JQ900' THEN
                NULL;
            WHEN serialization_failure THEN
                RETURN NULL; -- cannot tell: the deferral's own error stands
        END;
    END LOOP;
    RETURN NULL;
END;
$$;

-- The hint of a serialization failure that a deferral raises again (one that was no queueing-lock conflict).
CREATE FUNCTION {schema}.serialization_hint() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'jobq: this is no queueing-lock conflict but a serialization failure of your transaction ('
           || current_setting('transaction_isolation')
           || '), which PostgreSQL has aborted: roll it back and run it again.'
$$;

-- Defers one job. Input: a job object. Output: {"ids": [id]}, or {"conflict": "<queueing lock>"} when a
-- waiting job holds its queueing lock, in which case nothing is inserted and the caller's transaction stays
-- usable. One NOTIFY for its queue, delivered at the caller's commit.
CREATE OR REPLACE FUNCTION {schema}.defer_job(n jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    new_id    bigint;
    new_queue text;
    message   text;
    detail    text;
BEGIN
    IF n->>'queueing_lock' IS NULL OR current_setting('transaction_isolation') = 'read committed' THEN
        INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
        VALUES (coalesce(n->>'queue', 'default'), n->>'task', coalesce(n->'args', 'null'),
                coalesce((n->>'priority')::integer, 0), n->>'lock', n->>'queueing_lock',
                coalesce((n->>'scheduled_at')::timestamptz, now()))
        ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
        RETURNING id, queue INTO new_id, new_queue;
    ELSE
        BEGIN
            -- The same statement as above.
            INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
            VALUES (coalesce(n->>'queue', 'default'), n->>'task', coalesce(n->'args', 'null'),
                    coalesce((n->>'priority')::integer, 0), n->>'lock', n->>'queueing_lock',
                    coalesce((n->>'scheduled_at')::timestamptz, now()))
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

-- Inserts a batch of jobs atomically. Input: a JSON array of job objects. Output: {"ids": [...]} in input
-- order, or {"conflict": "<queueing lock>"} when a queueing lock is taken (by a waiting job or by another
-- job of the batch), in which case nothing is inserted and the caller's transaction stays usable. One
-- NOTIFY per queue, delivered at the caller's commit.
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
            INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at)
            SELECT * FROM {schema}.job_rows(new_jobs)
            RETURNING id, queue
        )
        SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue) INTO ids, queues FROM inserted;
    ELSIF current_setting('transaction_isolation') = 'read committed' THEN
        WITH numbered AS MATERIALIZED (
            SELECT nextval('{schema}.jobs_id_seq') AS id, r.*
            FROM {schema}.job_rows(new_jobs) r
        ), inserted AS (
            INSERT INTO {schema}.jobs (id, queue, task, args, priority, lock, queueing_lock, scheduled_at)
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
                INSERT INTO {schema}.jobs (id, queue, task, args, priority, lock, queueing_lock, scheduled_at)
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

-- Puts a finished job (failed, cancelled, aborted or succeeded) back to `todo`, to run now. Input:
-- {"id": n}. Output: {"outcome": "retried" | "unchanged"}, or {"outcome": "conflict", "queueing_lock": …}
-- when a waiting job holds its queueing lock; null when the job does not exist. The update runs in a
-- subtransaction, so a queueing lock taken by a job the caller's snapshot cannot see (committed after it
-- at REPEATABLE READ, or while the update waited for it) is reported too instead of aborting the caller's
-- transaction. Retrying by hand is rare; the subtransaction is cheap next to it.
CREATE FUNCTION {schema}.retry_job(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    job_id     bigint := (p->>'id')::bigint;
    was        text;
    held_lock  text;
    new_queue  text;
BEGIN
    SELECT j.status, j.queueing_lock INTO was, held_lock FROM {schema}.jobs j WHERE j.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF was NOT IN ('failed', 'cancelled', 'aborted', 'succeeded') THEN
        RETURN jsonb_build_object('outcome', 'unchanged');
    END IF;
    BEGIN
        UPDATE {schema}.jobs j
        SET status = 'todo', scheduled_at = now(), finished_at = NULL, abort_requested = false, worker_id = NULL
        WHERE j.id = job_id
        RETURNING j.queue INTO new_queue;
    EXCEPTION WHEN unique_violation THEN
        RETURN jsonb_build_object('outcome', 'conflict', 'queueing_lock', held_lock);
    END;
    PERFORM {schema}.notify_queue(new_queue);
    RETURN jsonb_build_object('outcome', 'retried');
END;
$$;
