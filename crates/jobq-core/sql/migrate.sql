-- Applies the pending migrations in one statement, serialised by an advisory lock so that two processes
-- starting together cannot both migrate. Each pending migration runs in a block of its own below.
DO $jobq_migrate$
BEGIN
    PERFORM pg_advisory_xact_lock(74151, hashtext('{schema}'));
    CREATE SCHEMA IF NOT EXISTS {schema};
    CREATE TABLE IF NOT EXISTS {schema}.migrations (
        version     integer PRIMARY KEY,
        name        text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    );
    IF (SELECT coalesce(max(version), 0) FROM {schema}.migrations) > {latest} THEN
        RAISE EXCEPTION 'jobq schema {schema} is newer than this library (version {latest}): upgrade jobq'
            USING ERRCODE = 'JQ002';
    END IF;
{migrations}
END
$jobq_migrate$
