-- $1: a JSON filter {queue, task, status, lock, queueing_lock, after_id, created_since, created_until,
-- finished_since, finished_until, limit}; every key optional, times inclusive since and exclusive until.
-- Returns matching job rows as JSON, oldest (lowest id) first: a page, the next one starting after its last id.
-- The filter's WHERE lines are the same in count_matching, retry_matching, cancel_matching, delete_matching:
-- change all five.
SELECT to_jsonb(j)::text AS jobq
FROM {schema}.jobs j, (SELECT ($1::text)::jsonb AS f) p
WHERE true
  AND (p.f->>'queue' IS NULL OR j.queue = p.f->>'queue')
  AND (p.f->>'task' IS NULL OR j.task = p.f->>'task')
  AND (p.f->>'status' IS NULL OR j.status = p.f->>'status')
  AND (p.f->>'lock' IS NULL OR j.lock = p.f->>'lock')
  AND (p.f->>'queueing_lock' IS NULL OR j.queueing_lock = p.f->>'queueing_lock')
  AND (p.f->>'after_id' IS NULL OR j.id > (p.f->>'after_id')::bigint)
  AND (p.f->>'created_since' IS NULL OR j.created_at >= (p.f->>'created_since')::timestamptz)
  AND (p.f->>'created_until' IS NULL OR j.created_at < (p.f->>'created_until')::timestamptz)
  AND (p.f->>'finished_since' IS NULL OR j.finished_at >= (p.f->>'finished_since')::timestamptz)
  AND (p.f->>'finished_until' IS NULL OR j.finished_at < (p.f->>'finished_until')::timestamptz)
ORDER BY j.id
LIMIT (SELECT coalesce((p.f->>'limit')::bigint, 1000) FROM (SELECT ($1::text)::jsonb AS f) p)
