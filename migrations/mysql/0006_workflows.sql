-- Workflows (ARCHITECTURE §10): jobs that wait for other jobs. A workflow job carries
-- its workflow, its key there and a counter of unmet dependencies; `waiting` jobs are
-- released by the ack that meets their last dependency (a guarded decrement, not a
-- scan). `canceled_by` names the job whose failure canceled it, so retrying that job
-- puts it back to waiting.
ALTER TABLE jobs
    ADD COLUMN workflow_id  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN workflow_key VARCHAR(100) NULL,
    ADD COLUMN pending_deps INT NOT NULL DEFAULT 0,
    ADD COLUMN canceled_by  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD INDEX jobs_workflow (workflow_id, status),
    ADD INDEX jobs_canceled_by (canceled_by);

CREATE TABLE workflows (
    id          CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    name        VARCHAR(255) NULL,
    owner       VARCHAR(255) NULL,
    total       BIGINT       NOT NULL,
    -- Jobs not final yet, and final but not completed (callbacks not counted): the
    -- ack that brings `remaining` to 0 finished the workflow.
    remaining   BIGINT       NOT NULL,
    failed      BIGINT       NOT NULL DEFAULT 0,
    on_complete CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    on_success  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at  BIGINT       NOT NULL,
    KEY workflows_owner (owner, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per edge: `child_id` waits for `parent_id`. `resolved` is 1 once the edge
-- was counted off the child's counter (or released it), so an edge counts once.
-- `workflow_id` lets pruning drop a finished workflow's edges with it.
CREATE TABLE job_dependencies (
    workflow_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    parent_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    child_id  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    policy    VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    resolved  INT NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, child_id),
    KEY job_dependencies_child (child_id),
    KEY job_dependencies_workflow (workflow_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
