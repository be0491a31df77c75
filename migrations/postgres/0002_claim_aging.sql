-- Aging: queued jobs by how long they have been due (the starvation bound).
CREATE INDEX jobs_queued_age ON jobs (run_at, id) WHERE status = 'queued';
