-- $1: the batch as a two-dimensional text array literal, one row per field (migration 9). Returns the ids
-- as an array literal ({1,2,3}) or {"conflict": "<queueing lock>"}.
SELECT {schema}.defer_columns(($1::text)::text[]) AS jobq
