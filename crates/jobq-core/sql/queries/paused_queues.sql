-- No parameter. The paused queues, by name: [{"queue", "paused_at"}, …].
SELECT jsonb_build_object('queue', name, 'paused_at', paused_at)::text AS jobq
FROM {schema}.queues WHERE paused_at IS NOT NULL ORDER BY name
