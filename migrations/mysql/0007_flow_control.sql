-- Flow control (ARCHITECTURE §10).
-- Concurrency keys: at most `concurrency_limit` jobs with one `concurrency_key` run at
-- once. The plain claim indexes put the key right after the type, so a plain claim
-- reads the `concurrency_key IS NULL` range only: a key at its limit with a large
-- backlog costs it nothing. The keyed claim walks keys (jobs_key: status first, so a
-- loose scan finds one entry per key with queued jobs, and a key's running jobs are
-- one range) while holding the `concurrency` row of flow_locks, so two claims never
-- count the same key at once.
-- Fair share: `fair_at` (epoch µs) is a job's place in line among its priority — its
-- due time, unless its tenant enqueues faster than its share — and replaces run_at
-- in the claim indexes and in aging.
ALTER TABLE jobs
    ADD COLUMN concurrency_key VARCHAR(255) NULL,
    ADD COLUMN concurrency_limit BIGINT NULL,
    ADD COLUMN fair_at BIGINT NOT NULL DEFAULT 0;
UPDATE jobs SET fair_at = run_at * 1000;
ALTER TABLE jobs
    DROP INDEX jobs_claim,
    DROP INDEX jobs_aged,
    ADD INDEX jobs_claim (status, job_type, concurrency_key, priority DESC, fair_at, id),
    ADD INDEX jobs_aged (status, job_type, concurrency_key, fair_at, id),
    ADD INDEX jobs_key (status, concurrency_key, priority DESC, fair_at, id);

CREATE TABLE flow_locks (
    name VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
INSERT INTO flow_locks (name) VALUES ('concurrency');
