-- kyu jobs on SQLite. Times are epoch milliseconds; JSON is text.
CREATE TABLE jobs (
    id               TEXT    PRIMARY KEY NOT NULL,
    queue            TEXT    NOT NULL,
    job_type         TEXT    NOT NULL,
    provider         TEXT,
    priority         INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    progress         INTEGER NOT NULL DEFAULT 0,
    result           TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    unique_key       TEXT,
    owner            TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL
);

-- The claim: queued jobs, best first (matches ORDER BY priority DESC, run_at, id).
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
-- Promotion of due scheduled jobs, and the scheduler's next wake-up.
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE status = 'scheduled';
-- Rescue of expired leases.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
-- Pruning of final jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('completed', 'failed', 'canceled');
-- Counts per queue and status; listing by status.
CREATE INDEX jobs_queue_status ON jobs (queue, status);
CREATE INDEX jobs_status_id ON jobs (status, id);
-- A user's own jobs.
CREATE INDEX jobs_owner ON jobs (owner, id) WHERE owner IS NOT NULL;
-- One live job per unique key.
CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'scheduled', 'running');

CREATE TABLE queues (
    name       TEXT    PRIMARY KEY NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
