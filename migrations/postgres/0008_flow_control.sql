-- Flow control (ARCHITECTURE §10).
-- Concurrency keys: at most `concurrency_limit` jobs with one `concurrency_key` run at
-- once. Keyed jobs leave the plain claim indexes, so a key at its limit with a large
-- backlog costs plain claims nothing; the keyed claim walks keys (jobs_key_queued,
-- one entry per key by a loose scan) and counts each key's running jobs
-- (jobs_key_running), under a transaction-scoped advisory lock.
-- Fair share: `fair_at` (epoch µs) is a job's place in line among its priority — its
-- due time, unless its tenant enqueues faster than its share — and replaces run_at
-- in the claim indexes and in aging.
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT, ADD COLUMN concurrency_limit BIGINT,
    ADD COLUMN fair_at BIGINT NOT NULL DEFAULT 0;
UPDATE jobs SET fair_at = run_at * 1000;
DROP INDEX IF EXISTS jobs_claim;
DROP INDEX IF EXISTS jobs_queued_age;
CREATE INDEX jobs_claim ON jobs (job_type, priority DESC, fair_at, id)
    WHERE status = 'queued' AND concurrency_key IS NULL;
CREATE INDEX jobs_queued_age ON jobs (job_type, fair_at, id)
    WHERE status = 'queued' AND concurrency_key IS NULL;
CREATE INDEX jobs_key_queued ON jobs (concurrency_key, priority DESC, fair_at, id)
    WHERE status = 'queued' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_key_running ON jobs (concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
