-- $1: a token. Sends it on the schema's channel, so a worker can check that its LISTEN connection hears.
SELECT '' AS jobq FROM (SELECT pg_notify('{channel}', $1::text)) AS sent
