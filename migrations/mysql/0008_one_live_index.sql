-- Every index is rewritten on each of a job's status changes (claimed, finished), and
-- MariaDB has no partial indexes: with a million jobs queued a claim and an ack each
-- rewrote eleven. jobs_queue_status (queue, status) holds nothing jobs_live (status,
-- queue, run_at) does not: counts by queue and status read that one (covering), and the
-- distinct queue names take jobs_queue_id (queue, id).
DROP INDEX jobs_queue_status ON jobs;
