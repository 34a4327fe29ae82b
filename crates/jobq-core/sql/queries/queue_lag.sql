-- No parameter. For each queue with waiting jobs or paused: its waiting jobs due now and scheduled later,
-- when the oldest due job became due and how long ago (server time), and since when it is paused:
-- [{"queue", "due", "scheduled", "oldest_due_at", "oldest_due_age_seconds", "paused_at"}, …].
--
-- Reads only waiting jobs, through the partial indexes of waiting jobs: jobs_fetch_idx for those not blocked
-- behind their lock, jobs_todo_lock_idx for those that are (a blocked job always has a lock), so finished
-- jobs, however many, cost it nothing; the paused queues come from their own small table.
WITH waiting_jobs AS (
    SELECT queue, scheduled_at FROM {schema}.jobs WHERE status = 'todo' AND NOT blocked
    UNION ALL
    SELECT queue, scheduled_at FROM {schema}.jobs WHERE status = 'todo' AND blocked AND lock IS NOT NULL
), waiting AS (
    SELECT queue,
           count(*) FILTER (WHERE scheduled_at <= now()) AS due,
           count(*) FILTER (WHERE scheduled_at > now()) AS scheduled,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()) AS oldest_due_at
    FROM waiting_jobs
    GROUP BY queue
), paused AS (
    SELECT name AS queue, paused_at FROM {schema}.queues WHERE paused_at IS NOT NULL
)
SELECT jsonb_build_object(
           'queue', queue,
           'due', coalesce(w.due, 0),
           'scheduled', coalesce(w.scheduled, 0),
           'oldest_due_at', w.oldest_due_at,
           'oldest_due_age_seconds', extract(epoch FROM now() - w.oldest_due_at),
           'paused_at', p.paused_at)::text AS jobq
FROM waiting w FULL JOIN paused p USING (queue)
ORDER BY queue
