-- A claim reads each of its job types from its own range: (job_type, …) leads both claim
-- indexes, so jobs of types the claimer does not serve (a remote worker's, say) and a
-- backlog past the aging bound cost a claim nothing.
DROP INDEX IF EXISTS jobs_claim;
DROP INDEX IF EXISTS jobs_queued_age;
CREATE INDEX jobs_claim ON jobs (job_type, priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_queued_age ON jobs (job_type, run_at, id) WHERE status = 'queued';
