-- $1: {"filter": a JSON filter as list_jobs.sql reads it, "statuses": [...]}: how many jobs match the
-- filter (its limit aside) in one of those statuses, the ones a bulk operation would look at.
SELECT count(*)::text AS jobq
FROM {schema}.jobs j, (SELECT ($1::text)::jsonb -> 'filter' AS f, ($1::text)::jsonb -> 'statuses' AS s) p
WHERE j.status IN (SELECT jsonb_array_elements_text(p.s))
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
