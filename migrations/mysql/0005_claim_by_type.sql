-- A claim reads each of its job types from its own range: (status, job_type, …) leads
-- both claim indexes, so jobs of types the claimer does not serve (a remote worker's,
-- say) and a backlog past the aging bound cost a claim nothing. jobs_due stays for the
-- promotion of due scheduled jobs.
ALTER TABLE jobs DROP INDEX jobs_claim,
    ADD INDEX jobs_claim (status, job_type, priority DESC, run_at, id),
    ADD INDEX jobs_aged (status, job_type, run_at, id);
