-- Workflows (ARCHITECTURE §10): jobs that wait for other jobs. A workflow job carries
-- its workflow, its key there and a counter of unmet dependencies; `waiting` jobs are
-- released by the ack that meets their last dependency (a guarded decrement, not a
-- scan). `canceled_by` names the job whose failure canceled it, so retrying that job
-- puts it back to waiting.
ALTER TABLE jobs ADD COLUMN workflow_id TEXT COLLATE "C",
    ADD COLUMN workflow_key TEXT,
    ADD COLUMN pending_deps INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN canceled_by TEXT COLLATE "C";
CREATE INDEX jobs_workflow ON jobs (workflow_id, status) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobs_canceled_by ON jobs (canceled_by) WHERE canceled_by IS NOT NULL;

CREATE TABLE workflows (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT,
    owner       TEXT,
    total       BIGINT NOT NULL,
    -- Jobs not final yet, and final but not completed (callbacks not counted): the
    -- ack that brings `remaining` to 0 finished the workflow.
    remaining   BIGINT NOT NULL,
    failed      BIGINT NOT NULL DEFAULT 0,
    on_complete TEXT COLLATE "C",
    on_success  TEXT COLLATE "C",
    created_at  BIGINT NOT NULL
);
CREATE INDEX workflows_owner ON workflows (owner, id) WHERE owner IS NOT NULL;

-- One row per edge: `child_id` waits for `parent_id`. `resolved` is 1 once the edge
-- was counted off the child's counter (or released it), so an edge counts once.
-- `workflow_id` lets pruning drop a finished workflow's edges with it.
CREATE TABLE job_dependencies (
    workflow_id TEXT COLLATE "C" NOT NULL,
    parent_id TEXT COLLATE "C" NOT NULL,
    child_id  TEXT COLLATE "C" NOT NULL,
    policy    TEXT    NOT NULL,
    resolved  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX job_dependencies_child ON job_dependencies (child_id);
CREATE INDEX job_dependencies_workflow ON job_dependencies (workflow_id);
