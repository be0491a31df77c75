-- kyu jobs on PostgreSQL. Times are epoch milliseconds (BIGINT); JSON is text.
-- Ids sort as bytes (COLLATE "C"): UUID v7 text order is creation order.
CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,
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
    run_at           BIGINT  NOT NULL,
    timeout_ms       BIGINT  NOT NULL,
    unique_key       TEXT,
    owner            TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT  NOT NULL
);

-- The claim: queued jobs, best first (matches ORDER BY priority DESC, run_at, id).
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('completed', 'failed', 'canceled');
CREATE INDEX jobs_queue_status ON jobs (queue, status);
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_owner ON jobs (owner, id) WHERE owner IS NOT NULL;
-- One live job per unique key.
CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'scheduled', 'running');

CREATE TABLE queues (
    name       TEXT    PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT  NOT NULL
);
