"""Jobs: the processing queue in PostgreSQL, with leases that fence every write of a job."""
