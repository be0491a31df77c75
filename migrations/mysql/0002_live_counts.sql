-- Live jobs per queue and status for the metrics sampler (Store::live_counts). MySQL
-- has no partial indexes: a range on status over this covering index reads only the
-- live entries, however many finished jobs the table holds.
CREATE INDEX jobs_live ON jobs (status, queue, run_at);
