-- A job whose attempts found no GPU node waits in the queue: since when (NULL while it is
-- not waiting) and how many tries it waited so far. Those tries are not attempts: the
-- recording is not at fault, so they do not count against the job's attempt limit.
ALTER TABLE jobs
    ADD COLUMN gpu_wait_since timestamptz,
    ADD COLUMN gpu_waits integer NOT NULL DEFAULT 0;
