-- jobq schema, version 7: fetching stays flat behind a lock's backlog and across many queues (issue #16).
--
-- Before: every waiting job of a busy lock sat in the fetch's indexes, and every fetch of every worker
-- walked past all of them with its NOT EXISTS probes (300,000 jobs behind one running lock: 177 ms for a
-- fetch of 10, "Rows Removed by Filter: 300000"; docs/benchmarks.md, "Fetch at scale").
--
-- Now a waiting job carries `blocked`: true while it waits behind another job of its lock, and the fetch's
-- partial indexes leave blocked jobs out. `runnable_jobs` still checks every lock rule on what it reads, so
-- `blocked` never decides what may run, only what the fetch need not look at: a job wrongly left unblocked
-- costs one row walked, a job wrongly left blocked would wait forever. So the one rule kept is liveness:
-- when no job of a lock runs, the first of its due waiting jobs (priority DESC, then id) is not blocked.
--
-- * A deferral (READ COMMITTED only) defers a due job blocked when its lock has a running job, or a due
--   waiting job of the same or higher priority, or an earlier one in the same batch. A job scheduled for
--   later is never blocked (it may become the head when due, with nothing happening at that moment).
-- * Whatever ends a lock's running job (end_jobs: success, failure, abort, deletion, retry, release, and so
--   the heartbeat's reconciliation, recovery of stalled jobs and shutdown) settles the lock in the same
--   statement: its head loses `blocked`. Cancel and delete of a waiting job with a lock (cancel.sql,
--   cancel_matching.sql, delete_matching.sql) leave the lock in `unsettled_locks`, settled by the next fetch.
--   A job put back to `todo` (retry, release, retry by hand) is never blocked.
-- * The race: a deferral into lock L that sees L's job running, while that job ends in another transaction
--   that cannot see the deferral yet. The deferral takes a shared advisory lock on L's bucket (lock_key) until
--   its transaction ends; settling tries the exclusive one, without waiting, and reads the lock's jobs in a
--   statement of its own after it. Got it: every deferral into L is committed and visible, or will see the
--   end (it waited for the settling transaction). Not got it: a deferral is still open, so the lock is also
--   left in unsettled_locks, and a later fetch settles it once it gets the exclusive lock. Shared locks never
--   wait for each other, and exclusive ones are only tried, so a caller's deferral never deadlocks and waits
--   at most for a transaction of jobq's own worker; the worker never waits on a caller's transaction.
--   Where the worker's statements do not run at READ COMMITTED (a database whose default isolation is
--   higher), their snapshot is older than the advisory lock: such a settling leaves the lock in
--   unsettled_locks stamped with its transaction, and a later fetch whose snapshot sees that transaction
--   committed finishes it (see settle_unsettled).
-- * The head of a lock that was blocked and is now free is announced on its queue's channel, so an idle
--   worker starts it at once instead of at its next poll (a backlog of 1,000 jobs behind one lock drained in
--   38 s at one job per 50 ms poll before, 2.5 s after).
-- * Existing backlogs are marked by this migration, under the ALTER's ACCESS EXCLUSIVE lock.
--
-- From chosen queues, fetch_jobs now merges one walk of the queue index per queue for up to 16 queues, and
-- walks the priority index once with a hashed filter for more (see its comment).

-- ---------------------------------------------------------------------------------------------------------
-- 1. Jobs waiting behind a busy lock leave the fetch's indexes.
-- ---------------------------------------------------------------------------------------------------------
-- With a constant default, only a catalog change: no rewrite.
ALTER TABLE {schema}.jobs ADD COLUMN blocked boolean NOT NULL DEFAULT false;

-- Locks that changed where settling could not be sure (see settle_locks): a later fetch settles them. No
-- key, so inserting a row never waits on anyone. `stamp`: a transaction that held the lock's advisory lock
-- while its own snapshot was older (not READ COMMITTED); any snapshot taken after it committed sees every
-- deferral that can matter, so such a row needs no advisory lock to be settled.
CREATE TABLE {schema}.unsettled_locks (
    id     bigint GENERATED ALWAYS AS IDENTITY,
    lock   text NOT NULL,
    stamp  xid8
);

-- The advisory lock that orders a deferral into a lock against the settling of that lock: a class of jobq's
-- own for this schema, and one of 512 buckets of lock names (so a batch of many locks holds at most 512).
CREATE FUNCTION {schema}.lock_key(l text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtext(l) & 511 $$;
CREATE FUNCTION {schema}.lock_class() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtext('jobq locks ' || '{schema}') $$;

-- Takes the shared advisory locks of `locks`' buckets, in order, until the end of the transaction. Shared
-- locks never wait for each other, and the exclusive ones are only ever tried (never waited for), so this
-- waits at most for a settling statement of jobq's own to commit, and never deadlocks.
CREATE FUNCTION {schema}.share_lock_keys(locks text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({schema}.lock_class(), s.k)
    FROM (SELECT DISTINCT {schema}.lock_key(l) AS k FROM unnest(locks) AS l WHERE l IS NOT NULL ORDER BY 1) s;
END;
$$;

-- Whether a due job of priority `prio` deferred now into lock `l` waits behind another: a job of the lock
-- is running, or a due waiting one comes first (of the same priority, the older one).
CREATE FUNCTION {schema}.lock_busy(l text, prio integer) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM {schema}.jobs d WHERE d.lock = l AND d.status = 'doing')
        OR EXISTS (SELECT 1 FROM {schema}.jobs e
                   WHERE e.lock = l AND e.status = 'todo' AND e.priority >= prio AND e.scheduled_at <= now())
$$;

-- job_rows with each job's `blocked`: a due job with a lock waits when its lock is busy (lock_busy) or when
-- a due job of the same lock comes before it in the batch (priority DESC, then input order).
CREATE FUNCTION {schema}.job_rows_blocked(new_jobs jsonb)
RETURNS TABLE (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
               scheduled_at timestamptz, trace_context text, blocked boolean)
LANGUAGE sql STABLE AS $$
    SELECT r.queue, r.task, r.args, r.priority, r.lock, r.queueing_lock, r.scheduled_at, r.trace_context,
           r.lock IS NOT NULL AND r.scheduled_at <= now()
           AND (row_number() OVER (PARTITION BY r.lock, r.scheduled_at <= now()
                                   ORDER BY r.priority DESC, r.ord) > 1
                OR {schema}.lock_busy(r.lock, r.priority))
    FROM (SELECT coalesce(n.queue, 'default') AS queue, n.task, coalesce(n.args, 'null') AS args,
                 coalesce(n.priority, 0) AS priority, n.lock, n.queueing_lock,
                 coalesce(n.scheduled_at, now()) AS scheduled_at, n.trace_context, n.ord
          FROM ROWS FROM (jsonb_to_recordset(new_jobs)
                   AS (queue text, task text, args jsonb, priority integer, lock text, queueing_lock text,
                       scheduled_at timestamptz, trace_context text)) WITH ORDINALITY
               AS n(queue, task, args, priority, lock, queueing_lock, scheduled_at, trace_context, ord)) r
    ORDER BY r.ord
$$;

-- Gives lock `l` its head when no job of it runs: the first of its due waiting jobs (priority DESC, id)
-- loses `blocked`. Returns false when that job's row is held by another transaction (settle it later).
-- Called as a statement of its own, after the lock's advisory lock was tried.
CREATE FUNCTION {schema}.unblock_head(l text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    q    text;
BEGIN
    IF EXISTS (SELECT 1 FROM {schema}.jobs d WHERE d.lock = l AND d.status = 'doing') THEN
        RETURN true; -- its end settles the lock
    END IF;
    SELECT e.id INTO head FROM {schema}.jobs e
    WHERE e.lock = l AND e.status = 'todo' AND e.scheduled_at <= now()
    ORDER BY e.priority DESC, e.id LIMIT 1;
    IF head IS NULL THEN
        RETURN true;
    END IF;
    PERFORM 1 FROM {schema}.jobs e WHERE e.id = head FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE {schema}.jobs e SET blocked = false WHERE e.id = head AND e.blocked RETURNING e.queue INTO q;
    IF FOUND THEN
        PERFORM {schema}.notify_queue(q); -- an idle worker of its queue starts it now, not at its next poll
    END IF;
    RETURN true;
END;
$$;

-- Settles `locks` after one of their jobs stopped running or waiting: each gets its head. Where a deferral
-- into the lock's bucket is still open (its shared advisory lock is held), or this transaction's snapshot
-- is older than its advisory lock (not READ COMMITTED), the head is given as far as this snapshot sees,
-- and the lock is also left in unsettled_locks for a later fetch.
CREATE FUNCTION {schema}.settle_locks(locks text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    l    text;
    got  boolean;
    rc   boolean := current_setting('transaction_isolation') = 'read committed';
BEGIN
    FOR l IN SELECT DISTINCT x FROM unnest(locks) AS x WHERE x IS NOT NULL ORDER BY x LOOP
        got := pg_try_advisory_xact_lock({schema}.lock_class(), {schema}.lock_key(l));
        -- A statement of its own: at READ COMMITTED its snapshot is taken after the advisory lock.
        IF NOT {schema}.unblock_head(l) OR NOT got OR NOT rc THEN
            INSERT INTO {schema}.unsettled_locks (lock, stamp)
            VALUES (l, CASE WHEN got THEN pg_current_xact_id() END);
        END IF;
    END LOOP;
END;
$$;

-- The fetch's part: settles the locks left in unsettled_locks. A lock whose rows are all stamped by
-- transactions this snapshot sees committed is settled at once; any other once its bucket's advisory lock
-- is got (no deferral into it is open), at READ COMMITTED by the next statement, else by a later
-- transaction (the rows are stamped with this one). Only rows read before settling are deleted: one
-- committed meanwhile (a cancel of the new head, say) waits for the next fetch.
CREATE FUNCTION {schema}.settle_unsettled() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    l     text;
    taken bigint[];
    seen  boolean;
BEGIN
    FOR l, taken, seen IN
        SELECT u.lock, array_agg(u.id),
               bool_and(u.stamp IS NOT NULL AND pg_visible_in_snapshot(u.stamp, pg_current_snapshot()))
        FROM (SELECT v.id, v.lock, v.stamp FROM {schema}.unsettled_locks v FOR UPDATE SKIP LOCKED) u
        GROUP BY u.lock
    LOOP
        IF NOT seen THEN
            CONTINUE WHEN NOT pg_try_advisory_xact_lock({schema}.lock_class(), {schema}.lock_key(l));
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                PERFORM {schema}.unblock_head(l);
                UPDATE {schema}.unsettled_locks SET stamp = pg_current_xact_id() WHERE id = ANY (taken);
                CONTINUE;
            END IF;
        END IF;
        IF {schema}.unblock_head(l) THEN
            DELETE FROM {schema}.unsettled_locks WHERE id = ANY (taken);
        END IF;
    END LOOP;
END;
$$;

-- Existing backlogs: the ALTER above holds the table's ACCESS EXCLUSIVE lock, so nothing runs meanwhile.
UPDATE {schema}.jobs j SET blocked = true
FROM (SELECT w.id, w.lock,
             row_number() OVER (PARTITION BY w.lock ORDER BY w.priority DESC, w.id) AS rn
      FROM {schema}.jobs w
      WHERE w.status = 'todo' AND w.lock IS NOT NULL AND w.scheduled_at <= now()) b
WHERE j.id = b.id
  AND (b.rn > 1 OR EXISTS (SELECT 1 FROM {schema}.jobs d WHERE d.lock = b.lock AND d.status = 'doing'));

DROP INDEX {schema}.jobs_fetch_idx;
DROP INDEX {schema}.jobs_fetch_queue_idx;
CREATE INDEX jobs_fetch_idx ON {schema}.jobs (priority DESC, id) WHERE status = 'todo' AND NOT blocked;
CREATE INDEX jobs_fetch_queue_idx ON {schema}.jobs (queue, priority DESC, id)
    WHERE status = 'todo' AND NOT blocked AND queue <> 'default';

-- runnable_jobs as migration 1 defined it, skipping blocked jobs, and with its "no due waiting job of the lock
-- comes first" probe asked as "this job is the first of its lock's due waiting jobs": one walk of
-- jobs_todo_lock_idx in its own order, stopped at the first due job. Migration 1's NOT EXISTS over an OR of
-- priority and id is no index range, and PostgreSQL planned it as a sequential scan of the table (cheap by
-- its estimate, as it expects to meet a match at once; for a lock's head there is none, so it read every row).
CREATE OR REPLACE VIEW {schema}.runnable_jobs AS
    SELECT j.*
    FROM {schema}.jobs j
    WHERE j.status = 'todo'
      AND NOT j.blocked
      AND j.scheduled_at <= now()
      AND (j.lock IS NULL OR (
            NOT EXISTS (SELECT 1 FROM {schema}.jobs d WHERE d.lock = j.lock AND d.status = 'doing')
            AND j.id = (SELECT e.id FROM {schema}.jobs e
                        WHERE e.lock = j.lock AND e.status = 'todo' AND e.scheduled_at <= now()
                        ORDER BY e.priority DESC, e.id
                        LIMIT 1)));

-- ---------------------------------------------------------------------------------------------------------
-- 2. The fetch settles pending locks first; from chosen queues, a merge of one index walk per queue for a
-- short list, one walk of the priority index with a hashed filter for a long one.
-- ---------------------------------------------------------------------------------------------------------
-- Input: {"worker_id": n, "queues": [..] or null for all, "tasks": [..] or null for any, "limit": n ≤ 1000}.
-- Up to `limit` runnable jobs, highest priority first then oldest, marked `doing` for the worker.
--
-- From every queue: as migration 5 (constant inner LIMIT, one cached plan). From up to 16 chosen queues:
-- each queue's own walk of jobs_fetch_queue_idx in (priority DESC, id) order, `limit` rows each, merged
-- (PostgreSQL 15 cannot walk `queue = ANY (…)` in index order, and sorted every waiting job of the queues);
-- the default queue, which that index leaves out, walks the priority index. From more than 16: one walk of
-- the priority index keeping the rows of the queues, a hash of them built once per call. A worker of many
-- queues sends "queues": "registered" and the list is read from its row in `workers` (stored when it
-- registered), so its fetches carry no list: with 10,000 queues the list was 100 kB of JSON per fetch,
-- and planning it anew on each call (migration 5: an estimate per listed queue) cost 6.7 ms of a 12 ms
-- fetch of 200.
--
-- Every cached statement here uses its generic plan (the SET below): each walk is now an index in its own
-- order, which no value of the inputs changes, and planning each call anew cost more than the fetch itself
-- (1.0–1.4 ms against 0.3–0.4 ms for a fetch of 10 on a 2-core machine, with or without a backlog). A
-- generic plan's cost is a guess for any input and can pass `jit_above_cost`; JIT compilation then ran on
-- every call (20 ms of a 0.4 ms fetch, measured), so JIT is off for this function.
CREATE OR REPLACE FUNCTION {schema}.fetch_jobs(p jsonb) RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    worker bigint  := (p->>'worker_id')::bigint;
    wanted integer := (p->>'limit')::integer;
    -- More than 16 queues, listed or (sent as "registered") those the worker registered with.
    listed jsonb   := CASE WHEN jsonb_typeof(p->'queues') = 'array' THEN p->'queues' ELSE '[]' END;
    mine   boolean := p->>'queues' = 'registered';
    many   boolean := mine OR jsonb_array_length(listed) > 16;
    queues text[]  := CASE WHEN jsonb_typeof(p->'queues') = 'array' AND NOT many
                           THEN ARRAY(SELECT jsonb_array_elements_text(listed)) END;
    tasks  text[]  := CASE WHEN jsonb_typeof(p->'tasks') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(p->'tasks')) END;
    paused text[]  := ARRAY(SELECT q.name FROM {schema}.queues q WHERE q.paused_at IS NOT NULL);
    ids    bigint[];
BEGIN
    IF EXISTS (SELECT 1 FROM {schema}.unsettled_locks) THEN
        PERFORM {schema}.settle_unsettled();
    END IF;
    IF many THEN
        -- `IS TRUE` keeps the IN a filter (a hashed subplan, built once per call) rather than a join
        -- PostgreSQL could plan as a probe of the queue index per listed queue and a sort of their jobs.
        ids := ARRAY(SELECT c.id FROM (SELECT r.id FROM {schema}.runnable_jobs r
                                       WHERE (r.queue IN (SELECT jsonb_array_elements_text(listed)
                                                          UNION ALL
                                                          SELECT unnest(w.queues) FROM {schema}.workers w
                                                          WHERE mine AND w.id = worker)) IS TRUE
                                         AND (tasks IS NULL OR r.task = ANY (tasks))
                                         AND r.queue <> ALL (paused)
                                       ORDER BY r.priority DESC, r.id
                                       LIMIT 1000 FOR UPDATE SKIP LOCKED) c
                     LIMIT wanted);
    ELSIF queues IS NULL THEN
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
        ids := ARRAY(
            SELECT m.id FROM (
                SELECT c.id, c.priority
                FROM (SELECT DISTINCT x FROM unnest(queues) AS x WHERE x <> 'default') w
                CROSS JOIN LATERAL (
                    SELECT r.id, r.priority FROM {schema}.runnable_jobs r
                    WHERE r.queue = w.x AND r.queue <> 'default'
                      AND (tasks IS NULL OR r.task = ANY (tasks))
                    ORDER BY r.priority DESC, r.id
                    LIMIT wanted FOR UPDATE SKIP LOCKED) c
                UNION ALL
                SELECT d.id, d.priority
                FROM (SELECT r.id, r.priority FROM {schema}.runnable_jobs r
                      WHERE 'default' = ANY (queues) AND r.queue = 'default'
                        AND (tasks IS NULL OR r.task = ANY (tasks))
                      ORDER BY r.priority DESC, r.id
                      LIMIT wanted FOR UPDATE SKIP LOCKED) d
            ) m
            ORDER BY m.priority DESC, m.id
            LIMIT wanted);
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

-- ---------------------------------------------------------------------------------------------------------
-- 3. Every way a lock's job stops running settles the lock.
-- ---------------------------------------------------------------------------------------------------------
-- end_jobs as migration 2 left it; a job that goes back to `todo` is never blocked (it may be its lock's
-- head again), and the locks of every job it ended are settled at the end (settle_locks). When every job
-- given was ended, none is busy, and the closing look for busy ones (a probe per job) is skipped.
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
            WHERE j.id IN (SELECT l.id FROM {schema}.jobs l
                           WHERE l.id = ANY (succeeded) AND l.worker_id = worker
                             AND l.attempts = (attempt_of->>l.id::text)::integer
                           FOR UPDATE SKIP LOCKED)
            RETURNING j.lock
        )
        SELECT array_agg(lock) FILTER (WHERE lock IS NOT NULL), count(*) INTO locks, n FROM ended;
        done := done + n;
    END IF;
    IF cardinality(deleted) > 0 THEN
        WITH ended AS (
            DELETE FROM {schema}.jobs j
            WHERE j.id IN (SELECT l.id FROM {schema}.jobs l
                           WHERE l.id = ANY (deleted) AND l.worker_id = worker
                             AND l.attempts = (attempt_of->>l.id::text)::integer
                           FOR UPDATE SKIP LOCKED)
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


-- retry_job as migration 3 left it; a retried job is not blocked (a cancelled one may have been).
CREATE OR REPLACE FUNCTION {schema}.retry_job(p jsonb) RETURNS jsonb
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
        SET status = 'todo', scheduled_at = now(), finished_at = NULL, abort_requested = false, worker_id = NULL,
            blocked = false
        WHERE j.id = job_id
        RETURNING j.queue INTO new_queue;
    EXCEPTION WHEN unique_violation THEN
        RETURN jsonb_build_object('outcome', 'conflict', 'queueing_lock', held_lock);
    END;
    PERFORM {schema}.notify_queue(new_queue);
    RETURN jsonb_build_object('outcome', 'retried');
END;
$$;

-- ---------------------------------------------------------------------------------------------------------
-- 4. Deferral: a due job with a lock is deferred blocked when its lock is busy (see the header).
-- ---------------------------------------------------------------------------------------------------------
-- defer_job as migration 6 left it, storing `blocked`.
CREATE OR REPLACE FUNCTION {schema}.defer_job(n jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    new_id    bigint;
    new_queue text;
    message   text;
    detail    text;
    blocked   boolean := false;
BEGIN
    IF n->>'lock' IS NOT NULL AND current_setting('transaction_isolation') = 'read committed'
       AND coalesce((n->>'scheduled_at')::timestamptz, now()) <= now() THEN
        PERFORM pg_advisory_xact_lock_shared({schema}.lock_class(), {schema}.lock_key(n->>'lock'));
        -- A statement of its own, so its snapshot is taken after the advisory lock is granted.
        blocked := {schema}.lock_busy(n->>'lock', coalesce((n->>'priority')::integer, 0));
    END IF;
    IF n->>'queueing_lock' IS NULL OR current_setting('transaction_isolation') = 'read committed' THEN
        INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                   trace_context, blocked)
        VALUES (coalesce(n->>'queue', 'default'), n->>'task', coalesce(n->'args', 'null'),
                coalesce((n->>'priority')::integer, 0), n->>'lock', n->>'queueing_lock',
                coalesce((n->>'scheduled_at')::timestamptz, now()), n->>'trace_context', blocked)
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

-- defer_jobs as migration 6 left it; a batch with locks at READ COMMITTED stores `blocked` (job_rows_blocked).
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
    IF new_jobs @? '$[*] ? (@.lock != null)' AND current_setting('transaction_isolation') = 'read committed' THEN
        -- Jobs with a lock: the same two paths as below, through job_rows_blocked (migration 7).
        PERFORM {schema}.share_lock_keys(ARRAY(SELECT n.lock FROM jsonb_to_recordset(new_jobs) AS n(lock text)));
        IF NOT new_jobs @? '$[*] ? (@.queueing_lock != null)' THEN
            WITH inserted AS (
                INSERT INTO {schema}.jobs (queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                           trace_context, blocked)
                SELECT * FROM {schema}.job_rows_blocked(new_jobs)
                RETURNING id, queue
            )
            SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue) INTO ids, queues FROM inserted;
        ELSE
            WITH numbered AS MATERIALIZED (
                SELECT nextval('{schema}.jobs_id_seq') AS id, r.*
                FROM {schema}.job_rows_blocked(new_jobs) r
            ), inserted AS (
                INSERT INTO {schema}.jobs (id, queue, task, args, priority, lock, queueing_lock, scheduled_at,
                                           trace_context, blocked)
                OVERRIDING SYSTEM VALUE
                SELECT * FROM numbered ORDER BY queueing_lock, id
                ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
                RETURNING id, queue, queueing_lock
            )
            SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue), array_agg(queueing_lock)
            INTO ids, queues, locks FROM inserted;
        END IF;
    ELSIF NOT new_jobs @? '$[*] ? (@.queueing_lock != null)' THEN
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

-- ---------------------------------------------------------------------------------------------------------
-- 5. Roles granted before this version keep working.
-- ---------------------------------------------------------------------------------------------------------
-- Every role that may write jobs (grants.sql gave it) now writes unsettled_locks too, whenever it cancels,
-- deletes or ends a job with a lock, and runs the new functions: it gets both here, so an application role
-- granted before version 7 needs no new grant (a role granted afterwards gets them from grants.sql).
DO $grants$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = '{schema}.jobs'::regclass AND a.privilege_type = 'INSERT' AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.unsettled_locks TO %s', grantee);
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE {schema}.unsettled_locks_id_seq TO %s', grantee);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO %s', grantee);
    END LOOP;
END
$grants$;
