-- Live jobs per queue and status for the metrics sampler (Store::live_counts): only
-- live rows are in the index, so the count does not grow with finished jobs.
CREATE INDEX jobs_live ON jobs (queue, status, run_at)
    WHERE status IN ('queued', 'scheduled', 'running');
