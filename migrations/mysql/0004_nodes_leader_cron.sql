-- Several kyu processes on one database: the node registry (heartbeats), the leader
-- lease (one row per lease name, renewed by its holder) and the last enqueued tick of
-- each cron entry. Times are epoch milliseconds, as in jobs.
CREATE TABLE nodes (
    id           VARCHAR(255) NOT NULL PRIMARY KEY,
    host         VARCHAR(255) NOT NULL,
    version      VARCHAR(64)  NOT NULL,
    role         VARCHAR(16)  NOT NULL,
    pool_size    INT          NOT NULL,
    started_at   BIGINT       NOT NULL,
    heartbeat_at BIGINT       NOT NULL,
    KEY nodes_heartbeat (heartbeat_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE leaders (
    name       VARCHAR(100) NOT NULL PRIMARY KEY,
    node       VARCHAR(255) NOT NULL,
    expires_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE cron_ticks (
    name       VARCHAR(100) NOT NULL PRIMARY KEY,
    last_tick  BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
