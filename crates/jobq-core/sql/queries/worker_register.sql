-- $1: {"name": …, "queues": [..] or null}. Registers a worker and returns its id.
INSERT INTO {schema}.workers (name, queues)
SELECT p->>'name', CASE WHEN p->'queues' = 'null'::jsonb THEN NULL
                        ELSE ARRAY(SELECT jsonb_array_elements_text(p->'queues')) END
FROM (SELECT ($1::text)::jsonb AS p) s
RETURNING id::text AS jobq
