-- $1: {"worker_id": …}. Removes a worker that stops; returns its id.
DELETE FROM {schema}.workers WHERE id = ((($1::text)::jsonb)->>'worker_id')::bigint RETURNING id::text AS jobq
