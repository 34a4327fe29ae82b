-- jobq schema, version 8: the fetch's walks stay in index order whatever the statistics say.
--
-- fetch_jobs caches one generic plan per session (migration 7), made from the statistics of its moment. On a
-- queue that churns (a steady stream deferred and worked, autovacuum as configured by default), an ANALYZE
-- taken while the waiting jobs were many but one value filled `queue` (so `queue <> ALL (paused)` looked as
-- if it kept almost none) estimated the fetch's candidates at one row. A sort of one row is cheap, so the
-- plan became a Bitmap Heap Scan of every waiting job and a sort of them, on disk: 146 ms for a fetch that
-- the ordered walk of jobs_fetch_idx does in 0.3 ms, and the worker fell from 19,000 to 200 jobs/s until the
-- next ANALYZE replanned it (jobq-bench --only sustained, seventh and eighth sessions).
--
-- Each candidate query of the fetch asks for its jobs in an index's order and stops after `limit`; none
-- needs a sort that an index walk cannot replace. With sorts off for the function (and what it calls:
-- settle_unsettled, unblock_head), the planner keeps the walks whatever its estimates; the sorts that
-- remain (merging the named queues' walks, ordering the taken rows) have no alternative and are of at
-- most `limit` rows per queue. unblock_head, also called from end_jobs, walks one lock's waiting jobs in
-- the lock index's order the same way.
--
-- The same goes for sequential scans: a plan cached while the statistics still described a small table (a
-- new or just emptied one) took the fetched rows by `id = ANY (ids)` as a Seq Scan of the whole table,
-- 100–125 ms a fetch through the first seconds of a steady load until an ANALYZE replanned it. Every
-- statement of the fetch reads jobs through an index, so sequential scans are off for it too.
ALTER FUNCTION {schema}.fetch_jobs(jsonb) SET enable_sort = off;
ALTER FUNCTION {schema}.fetch_jobs(jsonb) SET enable_seqscan = off;
ALTER FUNCTION {schema}.unblock_head(text) SET enable_sort = off;
