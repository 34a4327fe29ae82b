-- No parameter. Jobs by queue and status: [{"queue", "status", "count"}, …].
SELECT jsonb_build_object('queue', queue, 'status', status, 'count', count(*))::text AS jobq
FROM {schema}.jobs GROUP BY queue, status ORDER BY queue, status
