-- Job listings filtered by queue or by type, newest first (the API's GET /api/v1/jobs and
-- the web page's /jobs): the index hands out a page in id order, instead of reading every
-- job of the queue or type and sorting them.
CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE INDEX jobs_type_id ON jobs (job_type, id);
