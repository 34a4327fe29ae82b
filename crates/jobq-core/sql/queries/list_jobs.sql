-- $1: a JSON filter {queue, task, status, lock, queueing_lock, after_id, limit}; every key optional.
-- Returns matching job rows as JSON, oldest first.
SELECT to_jsonb(j)::text AS jobq
FROM {schema}.jobs j, (SELECT ($1::text)::jsonb AS f) p
WHERE (p.f->>'queue' IS NULL OR j.queue = p.f->>'queue')
  AND (p.f->>'task' IS NULL OR j.task = p.f->>'task')
  AND (p.f->>'status' IS NULL OR j.status = p.f->>'status')
  AND (p.f->>'lock' IS NULL OR j.lock = p.f->>'lock')
  AND (p.f->>'queueing_lock' IS NULL OR j.queueing_lock = p.f->>'queueing_lock')
  AND (p.f->>'after_id' IS NULL OR j.id > (p.f->>'after_id')::bigint)
ORDER BY j.id
LIMIT (SELECT coalesce((p.f->>'limit')::bigint, 1000) FROM (SELECT ($1::text)::jsonb AS f) p)
