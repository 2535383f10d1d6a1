"""Processing: queued jobs become transcripts with speakers and a summary.

An orchestrator over the aggregates: `worker.PipelineWorkers` claims jobs, keeps their
leases alive, and retries or fails them; `job.JobRunner` runs one job through its stages
(recognition, diarization, summary) against gpu_proxy; `failures` says why an attempt
failed and whether another can help. See docs/pipeline.md.
"""
