-- No parameter. For each queue with waiting or running jobs, or paused: its waiting jobs due now and
-- scheduled later, when the oldest due job became due and how long ago (server time), its running jobs, and
-- since when it is paused:
-- [{"queue", "due", "scheduled", "running", "oldest_due_at", "oldest_due_age_seconds", "paused_at"}, …].
--
-- Reads only live jobs, each branch through a partial index: jobs_fetch_idx for the waiting jobs not blocked
-- behind their lock, jobs_todo_lock_idx for those that are (a blocked job always has a lock), jobs_doing_idx
-- for the running ones (their scheduled_at left NULL here, so the due and scheduled filters skip them); so
-- finished jobs, however many, cost it nothing. The paused queues come from their own small table.
WITH live_jobs AS (
    SELECT queue, scheduled_at, false AS running FROM {schema}.jobs WHERE status = 'todo' AND NOT blocked
    UNION ALL
    SELECT queue, scheduled_at, false FROM {schema}.jobs WHERE status = 'todo' AND blocked AND lock IS NOT NULL
    UNION ALL
    SELECT queue, NULL, true FROM {schema}.jobs WHERE status = 'doing'
), live AS (
    SELECT queue,
           count(*) FILTER (WHERE scheduled_at <= now()) AS due,
           count(*) FILTER (WHERE scheduled_at > now()) AS scheduled,
           count(*) FILTER (WHERE running) AS running,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()) AS oldest_due_at
    FROM live_jobs
    GROUP BY queue
), paused AS (
    SELECT name AS queue, paused_at FROM {schema}.queues WHERE paused_at IS NOT NULL
)
SELECT jsonb_build_object(
           'queue', queue,
           'due', coalesce(l.due, 0),
           'scheduled', coalesce(l.scheduled, 0),
           'running', coalesce(l.running, 0),
           'oldest_due_at', l.oldest_due_at,
           'oldest_due_age_seconds', extract(epoch FROM now() - l.oldest_due_at),
           'paused_at', p.paused_at)::text AS jobq
FROM live l FULL JOIN paused p USING (queue)
ORDER BY queue
