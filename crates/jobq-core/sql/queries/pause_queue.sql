-- $1: {"queue": name}. Pauses the queue; returns whether it changed (`true`/`false`). See {schema}.pause_queue.
SELECT {schema}.pause_queue((($1::text)::jsonb)->>'queue')::text AS jobq
