-- Every index is paid for on every enqueue (each one cost SQLite 15–25 % of its insert
-- rate). jobs_queue_status (queue, status) and the partial jobs_live (queue, status,
-- run_at) become one full index (status, queue, run_at): live counts seek the live
-- statuses and read MIN(run_at) from it (covering), counts by queue and status scan it
-- (covering), and the distinct queue names take jobs_queue_id (queue, id).
DROP INDEX jobs_live;
DROP INDEX jobs_queue_status;
CREATE INDEX jobs_live ON jobs (status, queue, run_at);
