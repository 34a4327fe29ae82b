-- $1: {"queue": name}. Resumes the queue and wakes its workers; returns whether it changed. See {schema}.resume_queue.
SELECT {schema}.resume_queue((($1::text)::jsonb)->>'queue')::text AS jobq
