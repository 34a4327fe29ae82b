-- $1: {"worker_id": …, "queues": [..] or null for all, "tasks": [..] or null for any, "limit": n}; see {schema}.fetch_jobs.
-- Each job as a JSON array of its columns in the order of the fields of `Job` (jobq-core/src/model.rs), which
-- reads an array as well as an object: half the text of row_to_json (no names) and half its server time.
SELECT json_build_array(j.id, j.queue, j.task, j.args, j.priority, j.lock, j.queueing_lock, j.status,
                        j.scheduled_at, j.attempts, j.abort_requested, j.worker_id, j.created_at, j.started_at,
                        j.finished_at, j.last_error, j.errors, j.trace_context)::text AS jobq
FROM {schema}.fetch_jobs(($1::text)::jsonb) j
