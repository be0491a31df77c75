-- kyu jobs on MySQL 8 / MariaDB 10.6+. Times are epoch milliseconds; JSON is text.
CREATE TABLE jobs (
    id               CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    queue            VARCHAR(100) NOT NULL,
    job_type         VARCHAR(100) NOT NULL,
    provider         VARCHAR(100) NULL,
    priority         INT          NOT NULL,
    payload          LONGTEXT     NOT NULL,
    status           VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    progress         INT          NOT NULL DEFAULT 0,
    result           LONGTEXT     NULL,
    errors           LONGTEXT     NOT NULL,
    attempts         INT          NOT NULL DEFAULT 0,
    max_attempts     INT          NOT NULL,
    run_at           BIGINT       NOT NULL,
    timeout_ms       BIGINT       NOT NULL,
    unique_key       VARCHAR(255) NULL,
    owner            VARCHAR(255) NULL,
    lease_owner      VARCHAR(255) NULL,
    lease_expires_at BIGINT       NULL,
    cancel_requested BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at       BIGINT       NOT NULL,
    started_at       BIGINT       NULL,
    finished_at      BIGINT       NULL,
    updated_at       BIGINT       NOT NULL,
    -- No partial indexes here: the key is only set while the job is live, and NULLs
    -- never collide in a UNIQUE index.
    unique_live      VARCHAR(255) AS (CASE WHEN status IN ('queued', 'scheduled', 'running')
                                           THEN unique_key END) STORED,
    UNIQUE KEY jobs_unique_live (unique_live),
    KEY jobs_claim (status, priority DESC, run_at, id),
    KEY jobs_due (status, run_at),
    KEY jobs_leases (status, lease_expires_at),
    KEY jobs_finished (status, finished_at),
    KEY jobs_queue_status (queue, status),
    KEY jobs_status_id (status, id),
    KEY jobs_owner (owner, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE queues (
    name       VARCHAR(100) NOT NULL PRIMARY KEY,
    paused     BOOLEAN      NOT NULL DEFAULT FALSE,
    updated_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
