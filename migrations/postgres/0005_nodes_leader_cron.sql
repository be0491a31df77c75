-- Several kyu processes on one database: the node registry (heartbeats), the leader
-- lease (one row per lease name, renewed by its holder) and the last enqueued tick of
-- each cron entry. Times are epoch milliseconds, as in jobs.
CREATE TABLE nodes (
    id           TEXT    NOT NULL PRIMARY KEY,
    host         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    pool_size    INTEGER NOT NULL,
    started_at   BIGINT  NOT NULL,
    heartbeat_at BIGINT  NOT NULL
);
CREATE INDEX nodes_heartbeat ON nodes (heartbeat_at);

CREATE TABLE leaders (
    name       TEXT   NOT NULL PRIMARY KEY,
    node       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE cron_ticks (
    name       TEXT   NOT NULL PRIMARY KEY,
    last_tick  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
